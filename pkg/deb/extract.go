package deb

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"

	"time"

	"golang.org/x/sys/unix"

	"github.com/image-builder-action/image-builder-action/pkg/treepath"
)

// Extract unpacks the package's data archive into dest: owners, modes,
// setuid bits and mtimes as archived; existing symlinks to directories are
// kept (merged /usr); entries f skips are left out. Paths are resolved
// inside dest, so no symlink in the tree leads a file out of it. Several
// packages may be extracted into one tree at once.
func (p *Package) Extract(ctx context.Context, dest string, f *Filter) error {
	tr, closeFn, err := p.tarReader(p.data)
	if err != nil {
		return err
	}
	defer closeFn()
	if err := extract(ctx, tr, dest, f); err != nil {
		return fmt.Errorf("extracting %s: %w", p.path, err)
	}
	return nil
}

// ExtractTar is Extract for an uncompressed data archive read from r, as
// `dpkg-deb --fsys-tarfile` writes it.
func ExtractTar(ctx context.Context, r io.Reader, dest string, f *Filter) error {
	return extract(ctx, tar.NewReader(r), dest, f)
}

func extract(ctx context.Context, tr *tar.Reader, dest string, f *Filter) error {
	x := &extractor{dest: filepath.Clean(dest), dirs: map[string]string{}}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean("/" + h.Name)
		if name == "/" {
			continue
		}
		if f.Skip(name, h.Typeflag == tar.TypeDir || h.Typeflag == tar.TypeSymlink) {
			continue
		}
		if err := x.entry(h, name, tr); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
}

type extractor struct {
	dest string
	dirs map[string]string // archive directory -> host path
}

// hostDir returns the host path of the archive directory dir, creating it
// (and its parents) when missing.
func (x *extractor) hostDir(dir string) (string, error) {
	if hp, ok := x.dirs[dir]; ok {
		return hp, nil
	}
	hp, err := treepath.Resolve(x.dest, dir, true)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(hp, 0o755); err != nil {
		return "", err
	}
	x.dirs[dir] = hp
	return hp, nil
}

// removeExisting clears the way for a new entry at hp (not a directory).
func removeExisting(hp string) error {
	fi, err := os.Lstat(hp)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return fmt.Errorf("a directory is in the way")
	}
	return os.Remove(hp)
}

func (x *extractor) entry(h *tar.Header, name string, r io.Reader) error {
	parent, err := x.hostDir(path.Dir(name))
	if err != nil {
		return err
	}
	hp := filepath.Join(parent, path.Base(name))
	mode := uint32(h.Mode & 0o7777)
	switch h.Typeflag {
	case tar.TypeDir:
		fi, err := os.Stat(hp) // follows a symlink: keep directory symlinks
		switch {
		case err == nil && fi.IsDir():
			if lfi, err := os.Lstat(hp); err == nil && lfi.Mode()&os.ModeSymlink != 0 {
				return nil
			}
		case err == nil:
			return fmt.Errorf("a non-directory is in the way")
		default:
			if err := os.Mkdir(hp, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
				return err
			}
		}
		if err := os.Lchown(hp, h.Uid, h.Gid); err != nil {
			return err
		}
		if err := unix.Chmod(hp, mode); err != nil {
			return err
		}
		x.dirs[name] = hp
	case tar.TypeReg, tar.TypeRegA:
		if err := removeExisting(hp); err != nil {
			return err
		}
		f, err := os.OpenFile(hp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, r); err != nil {
			f.Close()
			return err
		}
		// chown before chmod: chown clears setuid bits.
		if err := f.Chown(h.Uid, h.Gid); err != nil {
			f.Close()
			return err
		}
		if err := unix.Fchmod(int(f.Fd()), mode); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		return setMtime(hp, h.ModTime)
	case tar.TypeSymlink:
		if err := removeExisting(hp); err != nil {
			return err
		}
		if err := os.Symlink(h.Linkname, hp); err != nil {
			return err
		}
		if err := os.Lchown(hp, h.Uid, h.Gid); err != nil {
			return err
		}
		return setMtime(hp, h.ModTime)
	case tar.TypeLink:
		target := path.Clean("/" + h.Linkname)
		tparent, err := x.hostDir(path.Dir(target))
		if err != nil {
			return err
		}
		if err := removeExisting(hp); err != nil {
			return err
		}
		return os.Link(filepath.Join(tparent, path.Base(target)), hp)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		if err := removeExisting(hp); err != nil {
			return err
		}
		m := mode
		switch h.Typeflag {
		case tar.TypeChar:
			m |= unix.S_IFCHR
		case tar.TypeBlock:
			m |= unix.S_IFBLK
		default:
			m |= unix.S_IFIFO
		}
		if err := unix.Mknod(hp, m, int(unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor)))); err != nil {
			return err
		}
		if err := os.Lchown(hp, h.Uid, h.Gid); err != nil {
			return err
		}
		if err := unix.Chmod(hp, mode); err != nil {
			return err
		}
		return setMtime(hp, h.ModTime)
	case tar.TypeXGlobalHeader:
	default:
		return fmt.Errorf("unsupported tar entry type %q", h.Typeflag)
	}
	return nil
}

func setMtime(hp string, t time.Time) error {
	ts := []unix.Timespec{unix.NsecToTimespec(t.UnixNano()), unix.NsecToTimespec(t.UnixNano())}
	return unix.UtimesNanoAt(unix.AT_FDCWD, hp, ts, unix.AT_SYMLINK_NOFOLLOW)
}
