package manifest

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse reads any bytes as a lockfile, as the Action's check does with
// a pull request's: no panic, and what parses is valid and writes back to
// a lockfile that parses the same.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob("../../testdata/*/*.lock.json")
	if err != nil {
		f.Fatal(err)
	}
	if len(files) == 0 {
		f.Fatal("no lockfiles in testdata to seed from")
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := Parse("fuzz.lock.json", data)
		if err != nil {
			return
		}
		if err := l.Validate(); err != nil {
			t.Fatalf("parsed an invalid lockfile: %v", err)
		}
		out, err := l.Marshal()
		if err != nil {
			t.Fatalf("marshalling a parsed lockfile: %v", err)
		}
		l2, err := Parse("again.lock.json", out)
		if err != nil {
			t.Fatalf("a written lockfile does not parse: %v\n%s", err, out)
		}
		out2, err := l2.Marshal()
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("writing is not stable: %v", err)
		}
	})
}
