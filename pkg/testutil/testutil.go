// Package testutil holds what the tests of several packages do alike:
// golden files rewritten by -update, and file digests.
package testutil

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files")

// Update says whether the test runs with -update (rewrite golden files).
func Update() bool { return *update }

// Golden compares got with the golden file at path, after writing got
// there when the test runs with -update, and returns the golden content.
func Golden(t testing.TB, path string, got []byte) []byte {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("%s differs (-want +got; -update rewrites):\n%s", path, d)
	}
	return want
}

// Cache is the package and tree cache the tests of every package share
// ($IBUILD_TEST_CACHE, else ibuild-test-cache in the temp dir), joined with
// sub and created.
func Cache(t testing.TB, sub ...string) string {
	t.Helper()
	d := os.Getenv("IBUILD_TEST_CACHE")
	if d == "" {
		d = filepath.Join(os.TempDir(), "ibuild-test-cache")
	}
	d = filepath.Join(append([]string{d}, sub...)...)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// LogWriter writes each Write to the test's log, as a line (for slog
// handlers of the code under test).
func LogWriter(t testing.TB) io.Writer { return logWriter{t} }

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// FileSHA256 is the hex SHA-256 of the file at path, read as a stream
// (images are big).
func FileSHA256(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
