package stages

// Helpers shared by the disk assembly and export stages: sources in earlier
// pipelines' trees, output names, partitions read back from an image,
// sparse copies, and running the build root's tools on files of the output
// directory.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/diskfs/go-diskfs/partition/gpt"
	"golang.org/x/sys/unix"
)

const (
	// sectorSize is the logical sector size of the images made here.
	sectorSize = 512
	// outMount is where a tool sees the output directory (Env.Tree).
	outMount = "/run/ibuild/out"
	// inMount is where a tool sees its input tree or file.
	inMount = "/run/ibuild/in"
)

// Source names a tree or a file of an earlier pipeline of the same entry:
// Env.Inputs[Pipeline] joined with Path.
type Source struct {
	Pipeline string `json:"pipeline"`
	Path     string `json:"path"`
}

func (s Source) validate(field string) error {
	switch {
	case s.Pipeline == "":
		return fmt.Errorf("%s.pipeline: empty", field)
	case strings.ContainsAny(s.Pipeline, "/\x00") || s.Pipeline == "." || s.Pipeline == "..":
		return fmt.Errorf("%s.pipeline: %q is not a pipeline name", field, s.Pipeline)
	case s.Path == "":
		return fmt.Errorf("%s.path: empty", field)
	case !strings.HasPrefix(s.Path, "/"):
		return fmt.Errorf("%s.path: %q is not absolute", field, s.Path)
	case strings.ContainsAny(s.Path, "\x00\n"):
		return fmt.Errorf("%s.path: %q contains a NUL or newline", field, s.Path)
	case path.Clean(s.Path) != s.Path:
		return fmt.Errorf("%s.path: %q is not clean (want %q)", field, s.Path, path.Clean(s.Path))
	}
	for _, c := range strings.Split(s.Path, "/") {
		if c == ".." {
			return fmt.Errorf("%s.path: %q contains \"..\"", field, s.Path)
		}
	}
	return nil
}

// hostPath returns where s is on the host. Symlinks on the way are refused:
// a source is named by its real path in the tree, and following a link
// could leave the tree.
func (s Source) hostPath(env *Env) (string, error) {
	root, ok := env.Inputs[s.Pipeline]
	if !ok || root == "" {
		return "", fmt.Errorf("source %s:%s: pipeline %q is not an input of this pipeline", s.Pipeline, s.Path, s.Pipeline)
	}
	p := root
	for _, c := range strings.Split(strings.TrimPrefix(s.Path, "/"), "/") {
		if c == "" {
			continue
		}
		p = filepath.Join(p, c)
		fi, err := os.Lstat(p)
		if err != nil {
			return "", fmt.Errorf("source %s:%s: %w", s.Pipeline, s.Path, err)
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			return "", fmt.Errorf("source %s:%s: %s is a symlink", s.Pipeline, s.Path, p)
		}
	}
	return p, nil
}

// sourceFile returns the host path of a source that must be a regular file.
func (s Source) sourceFile(env *Env) (string, os.FileInfo, error) {
	p, err := s.hostPath(env)
	if err != nil {
		return "", nil, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return "", nil, fmt.Errorf("source %s:%s: %w", s.Pipeline, s.Path, err)
	}
	if !fi.Mode().IsRegular() {
		return "", nil, fmt.Errorf("source %s:%s: not a regular file", s.Pipeline, s.Path)
	}
	return p, fi, nil
}

// sourceDir returns the host path of a source that must be a directory.
func (s Source) sourceDir(env *Env) (string, error) {
	p, err := s.hostPath(env)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("source %s:%s: %w", s.Pipeline, s.Path, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("source %s:%s: not a directory", s.Pipeline, s.Path)
	}
	return p, nil
}

// checkFilename checks that name is a plain file name for the output
// directory: no directories, nothing hidden behind "." or "..".
func checkFilename(field, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%s: empty", field)
	case name == "." || name == "..":
		return fmt.Errorf("%s: %q is not a file name", field, name)
	case strings.ContainsAny(name, "/\x00\n"):
		return fmt.Errorf("%s: %q must be a base name (no slashes, NUL or newline)", field, name)
	case strings.HasPrefix(name, "."):
		// Hidden names are the stages' temporary files.
		return fmt.Errorf("%s: %q must not start with a dot", field, name)
	case len(name) > 255:
		return fmt.Errorf("%s: longer than 255 bytes", field)
	}
	return nil
}

// checkPartitionNumber checks a 1-based GPT partition number.
func checkPartitionNumber(field string, n int) error {
	if n < 1 || n > 128 {
		return fmt.Errorf("%s: %d is not a partition number (1-128)", field, n)
	}
	return nil
}

// needTools returns an error when the stage cannot run build tools.
func needTools(env *Env, tool string) error {
	if env.BuildRoot == "" {
		return fmt.Errorf("running %s: no build root (the build pipeline cannot run image stages)", tool)
	}
	if env.Runner == nil {
		return fmt.Errorf("running %s: no runner", tool)
	}
	return nil
}

// toolIO connects a tool's standard streams; nil ones default to nothing
// (stdin) and Env.Log (stdout, stderr). stderr, when set, gets a copy of
// what goes to the log.
type toolIO struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

// runTool runs a tool of the build root with binds and extra environment.
func runTool(ctx context.Context, env *Env, binds []Bind, extraEnv []string, tio toolIO, args ...string) error {
	if err := needTools(env, args[0]); err != nil {
		return err
	}
	cmd := &Cmd{Root: env.BuildRoot, Args: args, Env: extraEnv, Binds: binds, Stdin: tio.stdin}
	if env.Log != nil {
		cmd.Stdout, cmd.Stderr = env.Log, env.Log
	}
	if tio.stdout != nil {
		cmd.Stdout = tio.stdout
	}
	if tio.stderr != nil {
		if cmd.Stderr != nil {
			cmd.Stderr = io.MultiWriter(cmd.Stderr, tio.stderr)
		} else {
			cmd.Stderr = tio.stderr
		}
	}
	if err := env.Runner.Run(ctx, cmd); err != nil {
		return fmt.Errorf("running %s: %w", args[0], err)
	}
	return nil
}

// diskPart is a partition of an image, in bytes.
type diskPart struct {
	Start, Size int64
	// Type is a GUID, upper case, on GPT; two lower-case hex digits on
	// dos.
	Type string
	// SectorSize is the disk's logical sector size.
	SectorSize int64
}

// readPartition reads partition n (1-based) of the image at p: a GPT with
// 512- or 4096-byte sectors (found by its header's signature), else a dos
// partition table (512-byte sectors unless the Disk stage's 4096, which
// it tells by the first partition's alignment: see dosSectorSize).
func readPartition(p string, n int) (diskPart, error) {
	f, err := os.Open(p)
	if err != nil {
		return diskPart{}, fmt.Errorf("reading partition table: %w", err)
	}
	defer f.Close()
	for _, ss := range []int64{512, 4096} {
		sig := make([]byte, 8)
		if _, err := f.ReadAt(sig, ss); err != nil {
			continue
		}
		if string(sig) != "EFI PART" {
			continue
		}
		tbl, err := gpt.Read(f, int(ss), int(ss))
		if err != nil {
			return diskPart{}, fmt.Errorf("reading partition table of %s: %w", filepath.Base(p), err)
		}
		if tbl.RecoveredFromBackup {
			return diskPart{}, fmt.Errorf("reading partition table of %s: primary GPT is damaged", filepath.Base(p))
		}
		for _, part := range tbl.Partitions {
			if part.Index == n && part.Type != gpt.Unused {
				return diskPart{
					Start:      int64(part.Start) * ss,
					Size:       int64(part.End-part.Start+1) * ss,
					Type:       strings.ToUpper(string(part.Type)),
					SectorSize: ss,
				}, nil
			}
		}
		return diskPart{}, fmt.Errorf("%s has no partition %d", filepath.Base(p), n)
	}
	mbr := make([]byte, 512)
	if _, err := f.ReadAt(mbr, 0); err != nil {
		return diskPart{}, fmt.Errorf("reading partition table of %s: %w", filepath.Base(p), err)
	}
	if mbr[510] != 0x55 || mbr[511] != 0xaa {
		return diskPart{}, fmt.Errorf("%s has no partition table", filepath.Base(p))
	}
	if n < 1 || n > 4 {
		return diskPart{}, fmt.Errorf("%s has no partition %d (a dos table has 4)", filepath.Base(p), n)
	}
	ss := dosSectorSize(mbr)
	e := mbr[446+16*(n-1) : 446+16*n]
	start, size := int64(binary.LittleEndian.Uint32(e[8:])), int64(binary.LittleEndian.Uint32(e[12:]))
	if e[4] == 0 || size == 0 {
		return diskPart{}, fmt.Errorf("%s has no partition %d", filepath.Base(p), n)
	}
	return diskPart{Start: start * ss, Size: size * ss, Type: fmt.Sprintf("%02x", e[4]), SectorSize: ss}, nil
}

// dosSectorSize tells a dos table's sector size, which it does not
// record: the Disk stage marks 4096-byte ones in the MBR's reserved bytes
// 444-445 ("4K"), which partitioning tools leave alone.
func dosSectorSize(mbr []byte) int64 {
	if mbr[444] == '4' && mbr[445] == 'K' {
		return 4096
	}
	return 512
}

// imagePartition is a partition of a disk image in the output directory
// that a stage rewrites with the build root's tools.
type imagePartition struct {
	diskPart
	// img is the image's host path.
	img string
}

// findImagePartition reads partition n (1-based) of the image filename in
// the output directory.
func findImagePartition(env *Env, filename string, n int) (imagePartition, error) {
	img := filepath.Join(env.Tree, filename)
	part, err := readPartition(img, n)
	if err != nil {
		return imagePartition{}, err
	}
	return imagePartition{diskPart: part, img: img}, nil
}

// startSector is the partition's first sector.
func (p imagePartition) startSector() int64 { return p.Start / p.SectorSize }

// update applies fn to a sparse copy of the image and renames the copy over
// the image when fn succeeds (updateImage). fn gets the copy's path as a
// tool sees it with outputBind.
func (p imagePartition) update(fn func(toolPath string) error) error {
	return updateImage(p.img, func(tmp string) error {
		return fn(path.Join(outMount, tmp))
	})
}

// outputBind shows a tool the output directory at outMount.
func outputBind(env *Env) Bind { return Bind{Src: env.Tree, Dst: outMount} }

// updateImage applies fn to a sparse copy of the image at p, a file of the
// output directory, and renames the copy over p when fn succeeds: a stage
// that fails leaves the image as it was. fn gets the copy's base name.
func updateImage(p string, fn func(tmpBase string) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+".tmp-*")
	if err != nil {
		return fmt.Errorf("copying %s: %w", filepath.Base(p), err)
	}
	tmpPath := tmp.Name()
	defer os.Remove(tmpPath) // after the rename, a no-op
	src, err := os.Open(p)
	if err != nil {
		tmp.Close()
		return fmt.Errorf("copying %s: %w", filepath.Base(p), err)
	}
	err = copySparse(tmp, src)
	src.Close()
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copying %s: %w", filepath.Base(p), err)
	}
	if err := fn(filepath.Base(tmpPath)); err != nil {
		return err
	}
	if err := os.Rename(tmpPath, p); err != nil {
		return fmt.Errorf("replacing %s: %w", filepath.Base(p), err)
	}
	return nil
}

// copySparse copies src into dst (both at offset 0), keeping holes: a
// reflink when the file system has them, else the data extents only.
func copySparse(dst, src *os.File) error {
	fi, err := src.Stat()
	if err != nil {
		return err
	}
	if err := unix.IoctlFileClone(int(dst.Fd()), int(src.Fd())); err == nil {
		return nil
	}
	size := fi.Size()
	if err := dst.Truncate(0); err != nil {
		return err
	}
	err = forEachExtent(src, size, func(off, n int64) error {
		for n > 0 {
			o1, o2 := off, off
			c, err := unix.CopyFileRange(int(src.Fd()), &o1, int(dst.Fd()), &o2, int(min(n, 1<<30)), 0)
			if err != nil || c == 0 {
				// Not supported across these files: copy by hand.
				_, err := io.Copy(io.NewOffsetWriter(dst, off), io.NewSectionReader(src, off, n))
				return err
			}
			off += int64(c)
			n -= int64(c)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return dst.Truncate(size)
}

// forEachExtent calls fn for each data extent of f (SEEK_DATA/SEEK_HOLE);
// a file system without them reports the whole file as data.
func forEachExtent(f *os.File, size int64, fn func(off, n int64) error) error {
	fd := int(f.Fd())
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only a hole is left
		}
		if err != nil {
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
				return fn(off, size-off)
			}
			return err
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		if hole > size {
			hole = size
		}
		if err := fn(data, hole-data); err != nil {
			return err
		}
		off = hole
	}
	return nil
}

// contentDigest hashes what f holds, independent of how it is stored: the
// offsets and bytes of its non-zero 4 KiB blocks, reading data extents only.
// Bytes in skip (offset, length pairs) count as zero, so fields about to be
// patched with values derived from the digest do not feed it.
func contentDigest(f *os.File, size int64, skip [][2]int64) ([]byte, error) {
	const block = 4096
	h := sha256.New()
	var hdr [16]byte
	zero := make([]byte, block)
	buf := make([]byte, 1<<20)
	last := int64(-1) // last block hashed, as extents may share a block
	err := forEachExtent(f, size, func(off, n int64) error {
		start := off / block * block
		end := min((off+n+block-1)/block*block, size)
		for pos := start; pos < end; {
			m := min(int64(len(buf)), end-pos)
			if _, err := f.ReadAt(buf[:m], pos); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			for _, s := range skip {
				lo, hi := max(s[0], pos), min(s[0]+s[1], pos+m)
				for i := lo; i < hi; i++ {
					buf[i-pos] = 0
				}
			}
			for b := int64(0); b < m; b += block {
				idx := (pos + b) / block
				chunk := buf[b:min(b+block, m)]
				if idx <= last || bytes.Equal(chunk, zero[:len(chunk)]) {
					continue
				}
				last = idx
				putUint64(hdr[:8], uint64(idx))
				putUint64(hdr[8:], uint64(len(chunk)))
				h.Write(hdr[:])
				h.Write(chunk)
			}
			pos += m
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	putUint64(hdr[:8], uint64(size))
	h.Write(hdr[:8])
	return h.Sum(nil), nil
}

func putUint64(b []byte, v uint64) {
	for i := 0; i < 8; i++ {
		b[i] = byte(v >> (56 - 8*i))
	}
}

// outputTemp makes a hidden temporary directory in the output directory;
// a stage writes its file there under its final name and renames it into
// place (a file's name can end up inside it, as in a VMDK descriptor).
func outputTemp(tree, stage string) (string, error) {
	d, err := os.MkdirTemp(tree, "."+stage+"-")
	if err != nil {
		return "", fmt.Errorf("making temporary directory: %w", err)
	}
	return d, nil
}
