package blueprint

import (
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files")

const (
	testdataDir = "../../testdata/blueprints"
	badDir      = testdataDir + "/bad"
	badGolden   = badDir + "/errors.golden"
)

// TestBadGolden parses every file in testdata/blueprints/bad (one class of
// bad input each) and compares the errors with errors.golden.
func TestBadGolden(t *testing.T) {
	entries, err := os.ReadDir(badDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && e.Name() != filepath.Base(badGolden) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	if len(names) < 20 {
		t.Fatalf("found %d bad inputs, want at least 20", len(names))
	}

	var got strings.Builder
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join(badDir, name))
		if err != nil {
			t.Fatal(err)
		}
		_, err = Parse(name, data)
		if err == nil {
			t.Errorf("%s: parsed without error", name)
			continue
		}
		for _, e := range Errors(err) {
			if e.File != name {
				t.Errorf("%s: error does not name the file: %v", name, e)
			}
		}
		got.WriteString("== " + name + "\n" + err.Error() + "\n\n")
	}

	if *update {
		if err := os.WriteFile(badGolden, []byte(got.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(badGolden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got.String()); diff != "" {
		t.Errorf("errors differ from %s (-want +got):\n%s", badGolden, diff)
	}
}
