package depsolve

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/repo"
)

// aptOracle resolves a handmade index with apt itself: the packages go into
// a local flat repository (file:, trusted), read by apt-get update into a
// throw-away root, and `apt-get install -s --no-install-recommends
// install...` says what it would install, as name=version sorted. No
// network is involved. It skips t when apt-get is missing.
func aptOracle(t *testing.T, pkgs []repo.Package, install []string) ([]string, error) {
	t.Helper()
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Skip("apt-get not installed")
	}
	dir := t.TempDir()
	for _, d := range []string{"repo", "etc/apt/sources.list.d", "etc/apt/apt.conf.d", "etc/apt/preferences.d",
		"var/lib/apt/lists/partial", "var/cache/apt/archives/partial", "var/lib/dpkg"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var b strings.Builder
	for _, p := range pkgs {
		fmt.Fprintf(&b, "Package: %s\nVersion: %s\nArchitecture: %s\n", p.Name, p.Version, p.Architecture)
		for _, f := range []struct{ k, v string }{
			{"Multi-Arch", p.MultiArch}, {"Priority", p.Priority}, {"Pre-Depends", p.PreDepends},
			{"Depends", p.Depends}, {"Provides", p.Provides}, {"Conflicts", p.Conflicts},
			{"Breaks", p.Breaks}, {"Recommends", p.Recommends},
		} {
			if f.v != "" {
				fmt.Fprintf(&b, "%s: %s\n", f.k, f.v)
			}
		}
		if p.Essential {
			b.WriteString("Essential: yes\n")
		}
		fmt.Fprintf(&b, "Filename: %s\nSize: 1\nMaintainer: nobody\nDescription: test\n\n", p.Filename)
	}
	files := map[string]string{
		"repo/Packages":                    b.String(),
		"var/lib/dpkg/status":              "",
		"etc/apt/sources.list.d/test.list": "deb [trusted=yes] file:" + filepath.Join(dir, "repo") + " ./\n",
		"apt.conf": fmt.Sprintf("Dir %q;\nDir::State::status %q;\nAPT::Architecture \"amd64\";\nAPT::Architectures \"amd64\";\n"+
			"Acquire::Languages \"none\";\nDebug::NoLocking \"true\";\n", dir+"/", filepath.Join(dir, "var/lib/dpkg/status")),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func(args ...string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "APT_CONFIG="+filepath.Join(dir, "apt.conf"), "LC_ALL=C.UTF-8")
		return cmd.CombinedOutput()
	}
	if out, err := run("update", "-qq"); err != nil {
		return nil, fmt.Errorf("apt-get update: %v\n%s", err, out)
	}
	out, err := run(append([]string{"install", "-s", "-q", "--no-install-recommends"}, install...)...)
	if err != nil {
		return nil, fmt.Errorf("apt-get install: %v\n%s", err, lastLines(out, 10))
	}
	var got []string
	for _, line := range strings.Split(string(out), "\n") {
		if m := instLine.FindStringSubmatch(line); m != nil {
			got = append(got, m[1]+"="+m[2])
		}
	}
	sort.Strings(got)
	return got, nil
}

// aptOracleLimit keeps the handmade-universe runs of apt from competing
// with each other for the two cores.
var aptOracleLimit = make(chan struct{}, 2)
