package build

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/image-builder-action/image-builder-action/pkg/manifest"
)

// Verification is what Verify found: each file checked beside the file the
// rebuild made.
type Verification struct {
	// Entry is the entry's name, "arch/type".
	Entry string
	// Files are the checks, in the rebuild's output order (by name).
	Files []FileCheck
}

// FileCheck compares one file with its rebuilt counterpart.
type FileCheck struct {
	// Name is the rebuilt output's name ("disk.qcow2").
	Name string
	// Path is the file checked; "" when the image directory lacks it.
	Path string
	// SHA256 is the checked file's digest ("" when missing); Want the
	// rebuilt file's.
	SHA256, Want string
	// Rebuilt is the rebuilt file's path; it is gone after Verify unless
	// WithOutputDir kept it.
	Rebuilt string
}

// Match reports whether the file is the rebuilt one, byte for byte.
func (c FileCheck) Match() bool { return c.SHA256 != "" && c.SHA256 == c.Want }

// OK reports whether every file matches.
func (v *Verification) OK() bool { return v.Mismatch() == nil }

// Mismatch returns the first file that differs from its rebuild, or nil.
func (v *Verification) Mismatch() *FileCheck {
	for i := range v.Files {
		if !v.Files[i].Match() {
			return &v.Files[i]
		}
	}
	return nil
}

// Verify rebuilds the lockfile's entry for arch and typ and compares the
// result with image: a file, or a directory holding the entry's outputs
// (what Build wrote). A file is compared with the output of the same name,
// or with the only output when the entry has one (so a renamed image still
// verifies). The rebuild goes to a temporary directory, removed at the
// end, unless WithOutputDir names one to keep it in; it takes the same
// options as Build, and WithFreshTrees makes it run every stage rather
// than trust trees cached by earlier builds.
//
// A mismatch is not an error: the Verification says which file differs.
func Verify(ctx context.Context, lf *manifest.Lockfile, arch, typ, image string, opts ...Option) (*Verification, error) {
	fi, err := os.Stat(image)
	if err != nil {
		return nil, fmt.Errorf("verifying: %w", err)
	}
	var o options
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("build options: %w", err)
		}
	}
	if o.outputDir == "" {
		tmp, err := os.MkdirTemp("", "ibuild-verify-")
		if err != nil {
			return nil, fmt.Errorf("verifying: %w", err)
		}
		defer os.RemoveAll(tmp)
		opts = append(opts[:len(opts):len(opts)], WithOutputDir(tmp))
	} else {
		imageDir := image
		if !fi.IsDir() {
			imageDir = filepath.Dir(image)
		}
		if sameDir(o.outputDir, imageDir) {
			return nil, fmt.Errorf("verifying: the rebuild would overwrite %s: choose another output directory", image)
		}
	}
	res, err := Build(ctx, lf, arch, typ, opts...)
	if err != nil {
		return nil, fmt.Errorf("rebuilding: %w", err)
	}
	v := &Verification{Entry: res.Entry}
	for _, out := range res.Files {
		c := FileCheck{Name: out.Name, Want: out.SHA256, Rebuilt: out.Path}
		switch {
		case fi.IsDir():
			c.Path = filepath.Join(image, out.Name)
		case filepath.Base(image) == filepath.Base(out.Name) || len(res.Files) == 1:
			c.Path = image
		default:
			continue // another output of the entry: not asked about
		}
		if c.SHA256, _, err = hashFile(c.Path); err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("verifying: %w", err)
			}
			c.Path, c.SHA256 = "", ""
		}
		v.Files = append(v.Files, c)
	}
	if len(v.Files) == 0 {
		var names []string
		for _, out := range res.Files {
			names = append(names, out.Name)
		}
		return nil, fmt.Errorf("verifying: %s is none of the entry's outputs (%v)", image, names)
	}
	return v, nil
}

// sameDir reports whether a and b are the same directory.
func sameDir(a, b string) bool {
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}
