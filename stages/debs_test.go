package stages_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/build"
	"github.com/image-builder-action/image-builder-action/pkg/build/buildtest"
	"github.com/image-builder-action/image-builder-action/stages"
)

func TestDebsValidate(t *testing.T) {
	for _, tc := range []struct {
		name, opts, want string
	}{
		{"ok", `{"packages":["dpkg:amd64=1.21.22","base-files:amd64=12.4+deb12u5","tzdata:all=2024a-0+deb12u1","xz:amd64=1:2.3-4~b1"],"path_exclude":["/usr/share/doc/*"],"path_include":["/usr/share/doc/*/copyright"]}`, ""},
		{"empty", `{"packages":[]}`, "packages: empty"},
		{"missing", `{}`, "packages: empty"},
		{"not a ref", `{"packages":["dpkg"]}`, `packages[0]: "dpkg" is not a package ref`},
		{"no arch", `{"packages":["dpkg=1.0"]}`, "not a package ref"},
		{"bad name", `{"packages":["Dpkg:amd64=1.0"]}`, "not a package ref"},
		{"bad version", `{"packages":["dpkg:amd64=1 0"]}`, "not a package ref"},
		{"duplicate", `{"packages":["aa:amd64=1","bb:amd64=1","aa:amd64=2"]}`, "packages[2]: aa:amd64 is already packages[0]"},
		{"relative exclude", `{"packages":["aa:amd64=1"],"path_exclude":["usr/share/doc/*"]}`, "path_exclude[0]"},
		{"newline", `{"packages":["aa:amd64=1"],"path_exclude":["/usr/share/doc/*\npath-include=/x"]}`, "path_exclude[0]"},
		{"include alone", `{"packages":["aa:amd64=1"],"path_include":["/usr/share/doc/*/copyright"]}`, "path_include: without path_exclude"},
		{"unknown field", `{"packages":["aa:amd64=1"],"recommends":true}`, `unknown field "recommends"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := stages.New("debs", json.RawMessage(tc.opts))
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// testLog sends tool output to the test log.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func mountinfo(t *testing.T) string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDebsBootstrap bootstraps a small build root from an empty tree with
// real packages: no dpkg on the host is used.
func TestDebsBootstrap(t *testing.T) {
	if testing.Short() {
		t.Skip("bootstraps a Debian tree")
	}
	first := buildtest.Resolve(t, "amd64", "?essential", "usr-is-merged", "e2fsprogs")
	pkgs := buildtest.Resolve(t, "amd64", "?essential", "usr-is-merged", "e2fsprogs", "mtools")
	src := buildtest.Sources(t, pkgs)
	t.Logf("package set: %s", buildtest.Describe(pkgs))
	opts, _ := json.Marshal(map[string]any{
		"packages":     buildtest.Refs(pkgs),
		"path_exclude": []string{"/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*"},
		"path_include": []string{"/usr/share/doc/*/copyright"},
	})
	firstOpts, _ := json.Marshal(map[string]any{
		"packages":     buildtest.Refs(first),
		"path_exclude": []string{"/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*"},
		"path_include": []string{"/usr/share/doc/*/copyright"},
	})
	st1, err := stages.New("debs", firstOpts)
	if err != nil {
		t.Fatal(err)
	}
	// The second stage adds mtools to the tree the first one made.
	st, err := stages.New("debs", opts)
	if err != nil {
		t.Fatal(err)
	}
	tree := buildtest.TempDir(t)
	before := mountinfo(t)
	var log bytes.Buffer
	env := &stages.Env{
		Tree: tree, Packages: src, Arch: "amd64", SourceDateEpoch: 1700000000, Log: &log,
		Runner: build.NewRunner(build.WithRunnerLog(&log), build.WithSourceDateEpoch(1700000000)),
	}
	start := time.Now()
	err = st1.Run(context.Background(), env)
	t.Logf("first debs stage took %s", time.Since(start))
	if err != nil {
		t.Fatalf("%v\n%s", err, tail(log.String(), 60))
	}
	start = time.Now()
	err = st.Run(context.Background(), env)
	t.Logf("debs took %s", time.Since(start))
	for _, l := range strings.Split(log.String(), "\n") {
		if strings.HasPrefix(l, "debs: ") {
			t.Log(l)
		}
	}
	if err != nil {
		t.Fatalf("%v\n%s", err, tail(log.String(), 60))
	}
	if after := mountinfo(t); after != before {
		t.Errorf("host mounts changed")
	}
	checkDpkgTree(t, tree, buildtest.Refs(pkgs))
	if _, err := os.Stat(filepath.Join(tree, "usr/share/doc/dpkg/copyright")); err != nil {
		t.Errorf("path_include: %v", err)
	}
	if m, _ := filepath.Glob(filepath.Join(tree, "usr/share/man/*")); len(m) != 0 {
		t.Errorf("path_exclude left %v", m)
	}
	if b, err := os.ReadFile(filepath.Join(tree, "etc/dpkg/dpkg.cfg.d/ibuild-excludes")); err != nil || !strings.Contains(string(b), "path-exclude=/usr/share/doc/*\n") {
		t.Errorf("excludes file: %q %v", b, err)
	}
	if l, err := os.Readlink(filepath.Join(tree, "bin")); err != nil || l != "usr/bin" {
		t.Errorf("/bin is not the merged-/usr symlink: %q %v", l, err)
	}
}

// checkDpkgTree checks that every ref is installed ("ii") by the tree's
// own dpkg, dpkg --audit is clean and nothing the stage added stayed.
func checkDpkgTree(t *testing.T, tree string, refs []string) {
	t.Helper()
	r := build.NewRunner()
	var out bytes.Buffer
	err := r.Run(context.Background(), &stages.Cmd{Root: tree, Args: []string{"dpkg-query", "-W", "-f", "${db:Status-Abbrev} ${Package}:${Architecture}=${Version}\n"}, Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		f := strings.Fields(l)
		if len(f) != 2 || f[0] != "ii" {
			t.Errorf("dpkg state: %q", l)
			continue
		}
		got[f[1]] = true
	}
	for _, ref := range refs {
		if !got[ref] {
			t.Errorf("%s is not installed", ref)
		}
	}
	out.Reset()
	if err := r.Run(context.Background(), &stages.Cmd{Root: tree, Args: []string{"dpkg", "--audit"}, Stdout: &out}); err != nil || out.Len() != 0 {
		t.Errorf("dpkg --audit: %v %s", err, out.String())
	}
	out.Reset()
	if err := r.Run(context.Background(), &stages.Cmd{Root: tree, Args: []string{"dpkg-divert", "--list"}, Stdout: &out}); err != nil || strings.Contains(out.String(), "ibuild") {
		t.Errorf("diversions left: %v %s", err, out.String())
	}
	if _, err := os.Lstat(filepath.Join(tree, "usr/sbin/policy-rc.d")); err == nil {
		t.Errorf("policy-rc.d left in the tree")
	}
	for _, d := range []string{"proc", "dev", "tmp", "run"} {
		entries, _ := os.ReadDir(filepath.Join(tree, d))
		if len(entries) != 0 && d != "tmp" {
			t.Errorf("/%s not empty: %v", d, entries)
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

var _ = exec.Command
