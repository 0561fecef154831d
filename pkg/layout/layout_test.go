package layout

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/image-builder-action/image-builder-action/pkg/manifest"
)

func TestFind(t *testing.T) {
	e := &manifest.Entry{Arch: "x86_64", Type: "qcow2", Filename: "disk.qcow2"}
	for _, tc := range []struct {
		name   string
		files  []string // made under the output directory
		unique bool
		want   string // "" when none is found
	}{
		{"most specific first", []string{"x86_64/qcow2/disk.qcow2", "x86_64/disk.qcow2", "disk.qcow2"}, true, "x86_64/qcow2/disk.qcow2"},
		{"arch only", []string{"x86_64/disk.qcow2", "disk.qcow2"}, true, "x86_64/disk.qcow2"},
		{"flat", []string{"disk.qcow2"}, true, "disk.qcow2"},
		{"flat, name shared", []string{"disk.qcow2"}, false, ""},
		{"other arch", []string{"aarch64/qcow2/disk.qcow2"}, true, ""},
		{"a directory is no file", []string{"x86_64/qcow2/disk.qcow2/"}, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range tc.files {
				p := filepath.Join(dir, f)
				if f[len(f)-1] == '/' {
					if err := os.MkdirAll(p, 0o755); err != nil {
						t.Fatal(err)
					}
					continue
				}
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, cands, err := Find(dir, e, tc.unique)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want != "" {
				tc.want = filepath.Join(dir, tc.want)
			}
			if got != tc.want {
				t.Errorf("found %q, want %q", got, tc.want)
			}
			if n := map[bool]int{true: 3, false: 2}[tc.unique]; len(cands) != n {
				t.Errorf("%d candidates, want %d: %q", len(cands), n, cands)
			}
		})
	}
}

// What a build of several entries writes is what publish finds first.
func TestBuildDirIsFound(t *testing.T) {
	e := &manifest.Entry{Arch: "aarch64", Type: "vmdk", Filename: "disk.vmdk"}
	for _, several := range []bool{false, true} {
		d := BuildDir("out", e, several)
		want := "out"
		if several {
			want = filepath.Join("out", "aarch64", "vmdk")
		}
		if d != want {
			t.Errorf("several %v: %s, want %s", several, d, want)
		}
		found := false
		for _, c := range Candidates("out", e, true) {
			found = found || c == filepath.Join(d, e.Filename)
		}
		if !found {
			t.Errorf("several %v: %s is not among the places publish looks", several, d)
		}
	}
	if d := cmp.Diff([]string{"o/x/t/f", "o/x/f"}, Candidates("o", &manifest.Entry{Arch: "x", Type: "t", Filename: "f"}, false)); d != "" {
		t.Error(d)
	}
}
