package compose

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/image-builder-action/image-builder-action/pkg/ctxio"
)

// ArtifactStore keeps what builds produce (images, logs) where every API
// node can read them: a directory (shared over NFS between machines, say)
// or an object store. Keys are slash-separated ("ID/0/image.qcow2").
type ArtifactStore interface {
	// Put stores r's bytes under key, whole or not at all.
	Put(ctx context.Context, key string, r io.Reader) error
	// Open reads key; an error matching fs.ErrNotExist when absent.
	Open(ctx context.Context, key string) (io.ReadSeekCloser, int64, error)
	// DeletePrefix removes every key starting with prefix + "/".
	DeletePrefix(ctx context.Context, prefix string) error
}

// DirStore is an ArtifactStore in a directory.
type DirStore struct{ Dir string }

var _ ArtifactStore = DirStore{}

// checkKey refuses keys that would leave the store's root.
func checkKey(key string) error {
	clean := path.Clean("/" + key)
	if key == "" || clean != "/"+key || strings.Contains(key, "\\") {
		return fmt.Errorf("artifact key %q is not a clean relative path", key)
	}
	return nil
}

func (d DirStore) path(key string) (string, error) {
	if err := checkKey(key); err != nil {
		return "", err
	}
	return filepath.Join(d.Dir, filepath.FromSlash(key)), nil
}

// Put writes to a temporary file beside the target, then renames it.
func (d DirStore) Put(ctx context.Context, key string, r io.Reader) error {
	p, err := d.path(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("storing artifact %s: %w", key, err)
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".put-*")
	if err != nil {
		return fmt.Errorf("storing artifact %s: %w", key, err)
	}
	defer os.Remove(f.Name())
	if _, err := io.Copy(f, ctxio.Reader(ctx, r)); err != nil {
		f.Close()
		return fmt.Errorf("storing artifact %s: %w", key, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("storing artifact %s: %w", key, err)
	}
	if err := os.Rename(f.Name(), p); err != nil {
		return fmt.Errorf("storing artifact %s: %w", key, err)
	}
	return nil
}

// Open opens the file of key.
func (d DirStore) Open(_ context.Context, key string) (io.ReadSeekCloser, int64, error) {
	p, err := d.path(key)
	if err != nil {
		return nil, 0, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, 0, fmt.Errorf("opening artifact %s: %w", key, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("opening artifact %s: %w", key, err)
	}
	return f, st.Size(), nil
}

// DeletePrefix removes the directory of prefix.
func (d DirStore) DeletePrefix(_ context.Context, prefix string) error {
	p, err := d.path(prefix)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting artifacts %s: %w", prefix, err)
	}
	return nil
}
