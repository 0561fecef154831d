package cmd

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/pkg/repo"
)

// TestLockOneFieldChange locks a blueprint against the real archive with
// the real image definitions, changes its hostname and locks again: the
// lockfile's git diff is a few lines (the field and two digests), and
// the kernel command line holds the blueprint's console once.
func TestLockOneFieldChange(t *testing.T) {
	needArchive(t)
	dir := t.TempDir()
	bp, out := filepath.Join(dir, "base.toml"), filepath.Join(dir, "base.lock.json")
	const body = `name = "base"
distro = "debian-12"
[customizations]
hostname = "base"
[customizations.kernel]
append = "console=ttyS0,115200"
`
	lock := func(body string) []byte {
		t.Helper()
		if err := os.WriteFile(bp, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, stderr, code := run(t, "lock", bp, "--type", "qcow2", "--arch", "x86_64", "--cache", cacheDir(t)); code != 0 {
			t.Fatalf("lock: exit %d: %s", code, stderr)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	first := lock(body)
	if n := strings.Count(string(first), "console=ttyS0,115200"); n != 1 {
		t.Errorf("console=ttyS0,115200 appears %d times in the lockfile, want once", n)
	}
	old := filepath.Join(dir, "old.lock.json")
	if err := os.WriteFile(old, first, 0o644); err != nil {
		t.Fatal(err)
	}
	second := lock(strings.Replace(body, `hostname = "base"`, `hostname = "base2"`, 1))

	diff, err := exec.Command("git", "diff", "--no-index", "--no-color", old, out).Output()
	if len(diff) == 0 {
		t.Fatalf("git diff: %v", err)
	}
	lines := strings.Split(strings.TrimRight(string(diff), "\n"), "\n")
	if len(lines) >= 40 {
		t.Errorf("git diff of a hostname change: %d lines", len(lines))
	}
	changed := 0
	for _, l := range lines {
		if (l[0] == '+' || l[0] == '-') && !strings.HasPrefix(l, "+++") && !strings.HasPrefix(l, "---") {
			changed++
		}
	}
	if changed >= 10 || !strings.Contains(string(diff), `+                "hostname": "base2"`) {
		t.Errorf("git diff of a hostname change has %d changed lines, want under 10 with the hostname:\n%s", changed, diff)
	}
	t.Logf("git diff of a hostname change: %d lines, %d changed; lockfile %d bytes", len(lines), changed, len(second))
}

// TestDiffChangelogArchive locks a container image against the release
// suite alone, then with its -updates and -security suites, and reads
// the changelogs of what they upgrade from the real packages.
func TestDiffChangelogArchive(t *testing.T) {
	srcs := needArchive(t)
	if len(srcs) < 2 {
		t.Skip("the host's apt sources name only the release suite")
	}
	dir := t.TempDir()
	bp := filepath.Join(dir, "c.toml")
	if err := os.WriteFile(bp, []byte("name = \"c\"\ndistro = \"debian-12\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	lockTo := func(out string, srcs []repo.Source) {
		args := []string{"lock", bp, "--type", "container", "--arch", "x86_64", "-o", out, "--cache", cacheDir(t)}
		for _, s := range srcs {
			args = append(args, "--repo", s.URI+" "+s.Suite+" "+strings.Join(s.Components, " "))
		}
		if _, stderr, code := run(t, args...); code != 0 {
			t.Fatalf("lock: exit %d: %s", code, stderr)
		}
	}
	old, nw := filepath.Join(dir, "old.lock.json"), filepath.Join(dir, "new.lock.json")
	lockTo(old, srcs[:1])
	lockTo(nw, srcs)
	out, stderr, code := run(t, "diff", old, nw, "--changelog", "--format", "json", "--cache", cacheDir(t))
	if code != 0 {
		t.Fatalf("diff: exit %d: %s", code, stderr)
	}
	var d manifest.Diff
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatal(err)
	}
	upgraded, withLog := 0, 0
	for _, e := range d.Entries {
		for _, c := range e.Packages {
			if c.Change != manifest.Upgraded {
				continue
			}
			upgraded++
			if len(c.Changelog) > 0 {
				withLog++
				if c.Changelog[0].Version != c.NewVersion && !strings.HasPrefix(c.NewVersion, c.Changelog[0].Version+"+b") {
					t.Errorf("%s %s: newest changelog entry is %s", c.Name, c.NewVersion, c.Changelog[0].Version)
				}
			} else {
				t.Logf("%s %s → %s: %s", c.Name, c.OldVersion, c.NewVersion, c.ChangelogNote)
			}
		}
	}
	t.Logf("%d packages upgraded, %d with changelog entries", upgraded, withLog)
	if upgraded == 0 {
		t.Skip("the -updates and -security suites upgrade nothing in this image today")
	}
	if withLog == 0 {
		t.Errorf("no upgraded package got its changelog")
	}
}
