// Package layout is where built images live under an output directory:
// the one home of DIR/ARCH/TYPE/FILE, which builds write and publish reads.
package layout

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/image-builder-action/image-builder-action/pkg/manifest"
)

// EntryDir is DIR/ARCH/TYPE: where one entry's files go when a run builds
// several entries, whose file names (disk.qcow2…) would otherwise collide.
func EntryDir(dir, arch, typ string) string { return filepath.Join(dir, arch, typ) }

// BuildDir is where a build writes e's files: dir itself when the run
// builds one entry (a matrix job), EntryDir when it builds several.
func BuildDir(dir string, e *manifest.Entry, several bool) string {
	if several {
		return EntryDir(dir, e.Arch, e.Type)
	}
	return dir
}

// Candidates are the places e's file may be, most specific first:
// DIR/ARCH/TYPE/FILE, DIR/ARCH/FILE and, when uniqueName says no other
// entry looked for has the same file name, DIR/FILE.
func Candidates(dir string, e *manifest.Entry, uniqueName bool) []string {
	c := []string{
		filepath.Join(EntryDir(dir, e.Arch, e.Type), e.Filename),
		filepath.Join(dir, e.Arch, e.Filename),
	}
	if uniqueName {
		c = append(c, filepath.Join(dir, e.Filename))
	}
	return c
}

// Find returns the first of Candidates that is a regular file, or "" when
// none is; it also returns the candidates, for a message naming them. A
// candidate that cannot be examined (other than by not existing) is an
// error.
func Find(dir string, e *manifest.Entry, uniqueName bool) (string, []string, error) {
	cands := Candidates(dir, e, uniqueName)
	for _, c := range cands {
		fi, err := os.Stat(c)
		if err == nil && fi.Mode().IsRegular() {
			return c, cands, nil
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", cands, err // a *fs.PathError: it names the file
		}
	}
	return "", cands, nil
}
