package cmd

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A lockfile that was edited by hand, or is stale, is refused before any
// work: nothing is downloaded, no output directory appears.
func TestBuildRefusesTamperedAndStale(t *testing.T) {
	golden, err := os.ReadFile("../../../testdata/lock/blueprint.lock.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		edit  func([]byte) []byte
		want  string
		extra []string
	}{
		{"stage option edited", func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"hostname": "fixture"`), []byte(`"hostname": "evil"`), 1)
		}, "changed by hand", nil},
		{"package digest edited", func(b []byte) []byte {
			i := bytes.Index(b, []byte(`"sha256": "`)) + len(`"sha256": "`)
			b = append([]byte(nil), b...)
			b[i] ^= 1
			return b
		}, "changed by hand", nil},
		// The fixture was locked with test image definitions, not these.
		{"image definitions differ", func(b []byte) []byte { return b }, "image definitions of this ibuild differ", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			lockPath := filepath.Join(dir, "bp.lock.json")
			if err := os.WriteFile(lockPath, tc.edit(golden), 0o644); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "out")
			args := append([]string{"build", lockPath, "--type", "qcow2", "-o", out, "--cache", filepath.Join(dir, "cache")}, tc.extra...)
			_, stderr, code := run(t, args...)
			if code == 0 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr lacks %q:\n%s", code, tc.want, stderr)
			}
			for _, p := range []string{out, filepath.Join(dir, "cache")} {
				if _, err := os.Stat(p); err == nil {
					t.Errorf("%s exists after a refused build", p)
				}
			}
		})
	}
}
