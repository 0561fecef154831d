package stages

import (
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// formatInFile serves tools that cannot write at an offset of an image
// (mkfs.xfs, mkswap): fn makes the file system in a sparse file of the
// partition's size (it gets the file's path as a tool sees it, under
// outMount), whose data extents then go into the partition on a copy of
// the image, renamed over it.
func (p imagePartition) formatInFile(env *Env, fn func(toolPath string) error) error {
	f, err := os.CreateTemp(env.Tree, ".partition-*")
	if err != nil {
		return fmt.Errorf("making partition file: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Truncate(p.Size); err != nil {
		f.Close()
		return fmt.Errorf("making partition file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("making partition file: %w", err)
	}
	if err := fn(path.Join(outMount, filepath.Base(tmp))); err != nil {
		return err
	}
	return p.update(func(target string) error {
		src, err := os.Open(tmp)
		if err != nil {
			return err
		}
		defer src.Close()
		fi, err := src.Stat()
		if err != nil {
			return err
		}
		if fi.Size() != p.Size {
			return fmt.Errorf("the tool resized the partition file to %d bytes (want %d)", fi.Size(), p.Size)
		}
		dst, err := os.OpenFile(filepath.Join(env.Tree, path.Base(target)), os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer dst.Close()
		// Whatever the partition held goes: a hole where the new file
		// system has none.
		if err := unix.Fallocate(int(dst.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, p.Start, p.Size); err != nil {
			zero := make([]byte, 1<<20)
			for off := int64(0); off < p.Size; off += int64(len(zero)) {
				n := min(int64(len(zero)), p.Size-off)
				if _, err := dst.WriteAt(zero[:n], p.Start+off); err != nil {
					return fmt.Errorf("clearing partition: %w", err)
				}
			}
		}
		err = forEachExtent(src, p.Size, func(off, n int64) error {
			_, err := io.Copy(io.NewOffsetWriter(dst, p.Start+off), io.NewSectionReader(src, off, n))
			return err
		})
		if err != nil {
			return fmt.Errorf("copying partition into the image: %w", err)
		}
		return dst.Close()
	})
}
