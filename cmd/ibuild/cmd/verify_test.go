package cmd

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// verify refuses what build refuses, before any work, and wants its two
// arguments; the rebuild itself is tested end to end (cmd/ibuild's
// TestReproducible) and in package build (TestVerify).
func TestVerifyRefuses(t *testing.T) {
	golden, err := os.ReadFile("../../../testdata/lock/blueprint.lock.json")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	image := filepath.Join(dir, "disk.qcow2")
	if err := os.WriteFile(image, []byte("not an image"), 0o644); err != nil {
		t.Fatal(err)
	}
	edited := filepath.Join(dir, "edited.lock.json")
	if err := os.WriteFile(edited, bytes.Replace(golden, []byte(`"hostname": "fixture"`), []byte(`"hostname": "evil"`), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, "stale.lock.json")
	if err := os.WriteFile(stale, golden, 0o644); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(dir, "cache")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"one argument", []string{"verify", stale}, "accepts 2 arg(s), received 1"},
		{"edited lockfile", []string{"verify", edited, image, "--cache", cache}, "changed by hand"},
		{"stale lockfile", []string{"verify", stale, image, "--cache", cache}, "image definitions of this ibuild differ"},
		{"no image", []string{"verify", stale, filepath.Join(dir, "missing"), "--cache", cache, "--allow-stale"}, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := run(t, tc.args...)
			if code != 1 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr lacks %q:\n%s", code, tc.want, stderr)
			}
			if _, err := os.Stat(cache); err == nil {
				t.Errorf("the cache was made by a refused verify")
			}
		})
	}
}
