package cmd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
