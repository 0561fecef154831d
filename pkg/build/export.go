package build

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/image-builder-action/image-builder-action/pkg/atomicfile"
)

// exportFiles copies the regular files of tree into dir (each through a
// temp file and a rename) and returns them with their digests.
func exportFiles(tree, dir string) ([]OutputFile, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("writing outputs: %w", err)
	}
	var names []string
	err := filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, err := filepath.Rel(tree, p)
			if err != nil {
				return err
			}
			names = append(names, rel)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("writing outputs: %w", err)
	}
	if len(names) == 0 {
		return nil, errors.New("writing outputs: the last pipeline produced no files")
	}
	sort.Strings(names)
	var out []OutputFile
	for _, name := range names {
		dst := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return nil, fmt.Errorf("writing %s: %w", dst, err)
		}
		prefix := filepath.Join(filepath.Dir(dst), "."+filepath.Base(name)+".tmp-")
		// What a killed build left while writing this name.
		if stale, _ := filepath.Glob(prefix + "*"); len(stale) > 0 {
			for _, p := range stale {
				os.Remove(p)
			}
		}
		tmp := prefix + randomHex()
		sum, size, err := copyHashed(filepath.Join(tree, name), tmp)
		if err == nil {
			err = os.Rename(tmp, dst)
		}
		if err != nil {
			os.Remove(tmp)
			return nil, fmt.Errorf("writing %s: %w", dst, err)
		}
		// The build's record of the digest, in sha256sum's format: uploads
		// refuse a file that no longer matches it.
		if err := writeRecord(dst, sum); err != nil {
			return nil, err
		}
		out = append(out, OutputFile{Name: name, Path: dst, Size: size, SHA256: sum})
	}
	return out, nil
}

// copyHashed copies src to a new file dst, keeping src's holes, and
// returns the sha256 of the content. It hashes what it copies: images are
// hundreds of MiB, and copying then reading them again to hash cost a
// second a build.
func copyHashed(src, dst string) (string, int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", 0, err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return "", 0, err
	}
	size := fi.Size()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", 0, err
	}
	h := sha256.New()
	if err := copySparse(in, out, size, h); err != nil {
		out.Close()
		return "", 0, err
	}
	if err := out.Close(); err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), size, nil
}

// copySparse copies the data extents of in to the same offsets of out,
// writing every byte of in (holes as zeros) to h, and sets out's size.
func copySparse(in, out *os.File, size int64, h hash.Hash) error {
	fd := int(in.Fd())
	buf := make([]byte, 1<<20)
	zeros := make([]byte, 1<<20)
	hashZeros := func(n int64) {
		for n > 0 {
			k := min(n, int64(len(zeros)))
			h.Write(zeros[:k])
			n -= k
		}
	}
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		switch {
		case errors.Is(err, unix.ENXIO): // only a hole is left
			data = size
		case err != nil: // no hole detection here: all data
			data = off
		}
		hashZeros(data - off)
		if data >= size {
			break
		}
		end, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			end = size
		}
		if _, err := in.Seek(data, io.SeekStart); err != nil {
			return err
		}
		if _, err := out.Seek(data, io.SeekStart); err != nil {
			return err
		}
		if _, err := io.CopyBuffer(io.MultiWriter(out, h), io.LimitReader(in, end-data), buf); err != nil {
			return err
		}
		off = end
	}
	return out.Truncate(size)
}

func hashFile(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// writeRecord writes FILE.sha256 beside an output, atomically.
func writeRecord(dst, sum string) error {
	return atomicfile.Write(dst+".sha256", []byte(sum+"  "+filepath.Base(dst)+"\n"), 0o644)
}
