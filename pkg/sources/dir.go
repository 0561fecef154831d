package sources

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/image-builder-action/image-builder-action/pkg/ctxio"
	"github.com/image-builder-action/image-builder-action/pkg/manifest"
)

// Dir is a store in a directory: DIR/sha256/HEX, the layout of ibuild's
// own package cache, so a cache directory can serve as a store too.
type Dir struct{ root string }

// NewDir returns the store rooted at dir (created by the first Put).
func NewDir(dir string) *Dir { return &Dir{root: dir} }

var _ Store = (*Dir)(nil)

func (d *Dir) String() string { return "dir " + d.root }

func (d *Dir) path(sha string) string { return filepath.Join(d.root, "sha256", sha) }

func (d *Dir) Locate(p *manifest.Package) string { return d.path(p.SHA256) }

func (d *Dir) Open(ctx context.Context, p *manifest.Package) (io.ReadCloser, error) {
	f, err := os.Open(d.path(p.SHA256))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, notFound(d.path(p.SHA256))
	}
	return f, err
}

func (d *Dir) Has(ctx context.Context, sha string) (bool, error) {
	_, err := os.Stat(d.path(sha))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// Put writes a temp file beside the target and renames it: a reader never
// sees half a file under a digest's name.
func (d *Dir) Put(ctx context.Context, p *manifest.Package, r io.ReadSeeker) error {
	dir := filepath.Join(d.root, "sha256")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("storing %s in %s: %w", p.Ref(), d.root, err)
	}
	f, err := os.CreateTemp(dir, "."+p.SHA256+".tmp-*")
	if err != nil {
		return fmt.Errorf("storing %s in %s: %w", p.Ref(), d.root, err)
	}
	defer os.Remove(f.Name()) // a no-op after the rename
	_, err = io.Copy(f, ctxio.Reader(ctx, r))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), d.path(p.SHA256))
	}
	if err != nil {
		return fmt.Errorf("storing %s in %s: %w", p.Ref(), d.root, err)
	}
	return nil
}
