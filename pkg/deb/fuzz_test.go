package deb

import (
	"archive/tar"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzDeb reads any file as a .deb: the ar container, the control file,
// the data archive's list and its extraction. Nothing may panic, and
// nothing may be written outside the tree.
func FuzzDeb(f *testing.F) {
	data := tarball(f, []entry{
		{name: "./", typ: tar.TypeDir, mode: 0o755},
		{name: "./bin/", typ: tar.TypeDir, mode: 0o755},
		{name: "./bin/tool", typ: tar.TypeReg, mode: 0o755, body: "tool"},
		{name: "./bin/tool2", typ: tar.TypeLink, link: "./bin/tool"},
		{name: "./etc/link", typ: tar.TypeSymlink, link: "../../../../outside"},
		{name: "./etc/link/x", typ: tar.TypeReg, mode: 0o644, body: "x"},
		{name: "../escape", typ: tar.TypeReg, mode: 0o644, body: "x"},
	})
	for _, ext := range []string{"", ".gz", ".zst"} {
		b, err := os.ReadFile(makeDeb(f, "Package: p\nVersion: 1\nArchitecture: all\nDescription: d\n more\n", data, ext))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("!<arch>\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		p := filepath.Join(dir, "p.deb")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		pkg, err := Open(p)
		if err != nil {
			return
		}
		defer pkg.Close()
		pkg.Control()
		if files, err := pkg.Files(); err == nil {
			for _, f := range files {
				if !strings.HasPrefix(f, "/") {
					t.Errorf("file %q is not absolute", f)
				}
			}
		}
		// Two levels down, so an escape of one or two ".." shows.
		tree := filepath.Join(dir, "box", "tree")
		if err := os.MkdirAll(tree, 0o755); err != nil {
			t.Fatal(err)
		}
		pkg.Extract(context.Background(), tree, NewFilter([]string{"/usr/share/doc/*"}, nil))
		for d, want := range map[string]string{dir: "box p.deb", filepath.Join(dir, "box"): "tree"} {
			ents, err := os.ReadDir(d)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			if got := strings.Join(names, " "); got != want {
				t.Errorf("extraction wrote outside the tree: %s holds %s", d, got)
			}
		}
	})
}
