package blueprint

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func addSeeds(f *testing.F, ext string) {
	f.Helper()
	for _, pattern := range []string{"*", "composer/*", "bad/*"} {
		files, err := filepath.Glob(filepath.Join(testdataDir, pattern+ext))
		if err != nil {
			f.Fatal(err)
		}
		for _, p := range files {
			data, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
}

// checkParse is what must hold for any input: no panic, errors located
// in the file (and within it), success only for valid blueprints.
func checkParse(t *testing.T, name string, data []byte) {
	b, err := Parse(name, data)
	if err != nil {
		errs := Errors(err)
		if len(errs) == 0 {
			t.Fatalf("error is not an *Error: %v", err)
		}
		lines := bytes.Count(data, []byte("\n")) + 1
		for _, e := range errs {
			if e.File != name {
				t.Fatalf("error does not name the file: %v", e)
			}
			if e.Line < 0 || e.Line > lines || e.Column < 0 {
				t.Fatalf("error position %d:%d outside a %d-line file: %v", e.Line, e.Column, lines, e)
			}
		}
		return
	}
	if b.Name == "" {
		t.Fatal("parsed a blueprint without a name")
	}
	if err := b.Validate(); err != nil {
		t.Fatalf("Parse accepted what Validate refuses: %v", err)
	}
	for _, f := range b.SetFields() {
		if _, ok := b.Source.Position(f); !ok {
			t.Fatalf("set field %q has no position", f)
		}
	}
}

func FuzzParseTOML(f *testing.F) {
	addSeeds(f, ".toml")
	f.Fuzz(func(t *testing.T, data []byte) {
		checkParse(t, "fuzz.toml", data)
	})
}

func FuzzParseJSON(f *testing.F) {
	addSeeds(f, ".json")
	f.Fuzz(func(t *testing.T, data []byte) {
		checkParse(t, "fuzz.json", data)
	})
}
