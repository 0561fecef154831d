package cmd

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/lock/locktest"
	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/pkg/repo"
)

// run runs ibuild with args in-process and returns stdout, stderr and the
// exit code.
func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	c := New()
	c.SetArgs(args)
	c.SetOut(&out)
	c.SetErr(&errOut)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	err := c.ExecuteContext(ctx)
	code := 0
	if err != nil {
		code = 1
		var ee *ExitError
		if errors.As(err, &ee) {
			code = ee.Code
		}
		errOut.WriteString(err.Error())
	}
	return out.String(), errOut.String(), code
}

// needArchive skips unless the host's apt sources name a Debian mirror
// that answers.
func needArchive(t *testing.T) []repo.Source { return locktest.NeedArchive(t) }

// cacheDir is shared by the tests of one run, so metadata is fetched once.
func cacheDir(t *testing.T) string {
	d := os.Getenv("IBUILD_TEST_CACHE")
	if d == "" {
		d = filepath.Join(os.TempDir(), "ibuild-test-cache")
	}
	return filepath.Join(d, "cli")
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLockExamples(t *testing.T) {
	needArchive(t)
	for _, tc := range []struct{ file, types, arch string }{
		{"example.toml", "qcow2,raw,vmdk,vhd,ova,ami,gce,tar,container,wsl", "x86_64"},
		{"minimal.toml", "qcow2,container", "x86_64,aarch64"},
		{"server.json", "qcow2", "x86_64"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			dir := t.TempDir()
			bp := filepath.Join(dir, tc.file)
			copyFile(t, filepath.Join("../../../testdata/blueprints", tc.file), bp)
			a, b := filepath.Join(dir, "a.lock.json"), filepath.Join(dir, "b.lock.json")
			for _, out := range []string{a, b} {
				if _, stderr, code := run(t, "lock", bp, "--type", tc.types, "--arch", tc.arch, "-o", out, "--cache", cacheDir(t)); code != 0 {
					t.Fatalf("lock: exit %d: %s", code, stderr)
				}
			}
			ab, _ := os.ReadFile(a)
			bb, _ := os.ReadFile(b)
			if !bytes.Equal(ab, bb) {
				t.Fatal("two locks against the same archive state differ")
			}
			lf, err := manifest.Load(a)
			if err != nil {
				t.Fatal(err)
			}
			want := len(strings.Split(tc.types, ",")) * len(strings.Split(tc.arch, ","))
			if len(lf.Entries) != want {
				t.Errorf("%d entries, want %d", len(lf.Entries), want)
			}
			idx := lf.PackageIndex()
			for _, e := range lf.Entries {
				for _, p := range e.Pipelines {
					for _, ref := range p.PackageRefs() {
						if idx[ref] == nil {
							t.Errorf("%s %s: dangling package %s", e.Name(), p.Name, ref)
						}
					}
				}
			}
			if _, stderr, code := run(t, "lock", "--check", bp, "-o", a, "--cache", cacheDir(t)); code != 0 {
				t.Errorf("check of a fresh lockfile: exit %d: %s", code, stderr)
			}
		})
	}
}

func TestLockCheckStale(t *testing.T) {
	needArchive(t)
	dir := t.TempDir()
	bp := filepath.Join(dir, "example.toml")
	copyFile(t, "../../../testdata/blueprints/example.toml", bp)
	if _, stderr, code := run(t, "lock", bp, "--cache", cacheDir(t)); code != 0 {
		t.Fatalf("lock: %s", stderr)
	}
	lockPath := filepath.Join(dir, "example.lock.json")
	before, _ := os.ReadFile(lockPath)
	src, _ := os.ReadFile(bp)
	src = bytes.Replace(src, []byte(`hostname = "ibuild-example"`), []byte(`hostname = "renamed"`), 1)
	src = append(src, []byte("\n[[packages]]\nname = \"jq\"\n")...)
	if err := os.WriteFile(bp, src, 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := run(t, "lock", "--check", bp, "--cache", cacheDir(t))
	if code != 1 {
		t.Fatalf("check of a stale lockfile: exit %d, want 1: %s", code, stderr)
	}
	for _, want := range []string{"+ jq:amd64", "3 added, 1 stage changed", `os/hostname: hostname "ibuild-example" → "renamed"`} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(stderr, "is stale: the blueprint") {
		t.Errorf("stderr: %s", stderr)
	}
	after, _ := os.ReadFile(lockPath)
	if !bytes.Equal(before, after) {
		t.Error("--check changed the lockfile")
	}
}

func TestLockFaultsLeaveLockfile(t *testing.T) {
	srcs := needArchive(t)
	mirror := srcs[0].URI
	dir := t.TempDir()
	bp := filepath.Join(dir, "bp.toml")
	lockPath := filepath.Join(dir, "bp.lock.json")
	const old = "the old lockfile\n"
	otherKey := "/usr/share/keyrings/debian-archive-bullseye-security-automatic.gpg"
	for _, tc := range []struct {
		name, bp string
		args     []string
		want     string
	}{
		{"unreachable repository", "name = \"x\"\ndistro = \"debian-12\"\n", []string{"--repo", "http://127.0.0.1:9/debian bookworm main"}, "http://127.0.0.1:9/debian/dists/bookworm/InRelease"},
		{"bad signature", "name = \"x\"\ndistro = \"debian-12\"\n", []string{"--repo", mirror + " bookworm main", "--keyring", otherKey}, "InRelease"},
		{"unknown package", "name = \"x\"\ndistro = \"debian-12\"\n[[packages]]\nname = \"no-such-package-ibuild\"\n", nil, `packages[0].name: package "no-such-package-ibuild" is not in the repositories`},
		{"unsatisfiable version", "name = \"x\"\ndistro = \"debian-12\"\n[[packages]]\nname = \"bash\"\nversion = \"99.*\"\n", nil, "bash"},
		{"unknown distro", "name = \"x\"\ndistro = \"debian-7\"\n", nil, `unknown distro "debian-7"`},
		{"unknown arch", "name = \"x\"\ndistro = \"debian-12\"\n", []string{"--arch", "mips"}, `unknown architecture "mips"`},
		{"unknown type", "name = \"x\"\ndistro = \"debian-12\"\n", []string{"--type", "iso"}, `unknown image type "iso"`},
		{"bad blueprint", "name = \"x\"\ndistro = \"debian-12\"\n[customizations]\nhostnme = \"x\"\n", nil, `bp.toml:4:1: customizations: unknown field "hostnme"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "bad signature" {
				if _, err := os.Stat(otherKey); err != nil {
					t.Skip("no second keyring on this host")
				}
			}
			if err := os.WriteFile(bp, []byte(tc.bp), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(lockPath, []byte(old), 0o644); err != nil {
				t.Fatal(err)
			}
			args := append([]string{"lock", bp, "--cache", cacheDir(t)}, tc.args...)
			_, stderr, code := run(t, args...)
			if code == 0 {
				t.Fatal("exit 0")
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, stderr)
			}
			if b, _ := os.ReadFile(lockPath); string(b) != old {
				t.Errorf("the lockfile changed: %.100q", b)
			}
			ents, _ := os.ReadDir(dir)
			if len(ents) != 2 {
				t.Errorf("files left behind: %v", ents)
			}
		})
	}
}

func TestDiffCommand(t *testing.T) {
	old, nw := "../../../testdata/lock/blueprint.lock.json", filepath.Join(t.TempDir(), "new.lock.json")
	b, _ := os.ReadFile(old)
	b = bytes.ReplaceAll(b, []byte(`"hostname": "fixture"`), []byte(`"hostname": "renamed"`))
	if err := os.WriteFile(nw, b, 0o644); err != nil {
		t.Fatal(err)
	}
	for format, want := range map[string]string{"text": `os/hostname: hostname "fixture" → "renamed"`, "markdown": "- `os/hostname`: `hostname` `\"fixture\"` → `\"renamed\"`", "json": `"path": "hostname"`} {
		out, stderr, code := run(t, "diff", old, nw, "--format", format)
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("--format %s: exit %d, output lacks %q:\n%s%s", format, code, want, out, stderr)
		}
	}
	if _, stderr, code := run(t, "diff", old, nw, "--format", "yaml"); code == 0 || !strings.Contains(stderr, "--format") {
		t.Errorf("bad format: exit %d %s", code, stderr)
	}
	out, _, _ := run(t, "matrix", old)
	if strings.TrimSpace(out) != `{"include":[{"distro":"testdist","arch":"x86_64","type":"container"},{"distro":"testdist","arch":"x86_64","type":"qcow2"}]}` {
		t.Errorf("matrix: %s", out)
	}
}
