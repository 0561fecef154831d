package stages

// Helpers shared by the stages that write tar archives: a reproducible tar
// of a tree, compressors, and archives of a few files.

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// treeTarOptions shapes a tar of a tree.
type treeTarOptions struct {
	// dotPrefix names members "./etc/…" after a "./" entry for the root,
	// as rootfs tarballs do; otherwise members are "etc/…" and the root
	// has no entry, as in OCI layers.
	dotPrefix bool
	// epoch clamps modification times.
	epoch int64
}

// writeTreeTar writes the tree at src to w as a tar archive, reproducibly:
// members in name order within each directory (parents first), numeric
// owners without names, modification times clamped to the epoch and no
// access or change times, hard links as links to the first name, device
// nodes and FIFOs, and extended attributes (security.capability…) as PAX
// SCHILY.xattr records. Sockets are left out, as tar does; so are system.*
// attributes (POSIX ACLs), which need their own encoding.
func writeTreeTar(ctx context.Context, w io.Writer, src string, o treeTarOptions) error {
	tw := tar.NewWriter(w)
	type inode struct{ dev, ino uint64 }
	links := map[inode]string{}
	buf := make([]byte, 1<<20)
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("reading %s: %w", p, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		rel = filepath.ToSlash(rel)
		name := rel
		switch {
		case rel == "." && !o.dotPrefix:
			return nil
		case rel == ".":
			name = "./"
		case o.dotPrefix:
			name = "./" + rel
		}
		fi, err := d.Info()
		if err != nil {
			return fmt.Errorf("reading %s: %w", p, err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("reading %s: no stat", p)
		}
		mtime := time.Unix(st.Mtim.Sec, 0)
		if mtime.Unix() > o.epoch {
			mtime = time.Unix(o.epoch, 0)
		}
		hdr := &tar.Header{
			Name:    name,
			Mode:    int64(st.Mode & 0o7777),
			Uid:     int(st.Uid),
			Gid:     int(st.Gid),
			ModTime: mtime,
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			hdr.Typeflag = tar.TypeDir
			if !strings.HasSuffix(hdr.Name, "/") {
				hdr.Name += "/"
			}
		case unix.S_IFREG:
			hdr.Typeflag = tar.TypeReg
			hdr.Size = st.Size
			if st.Nlink > 1 {
				key := inode{uint64(st.Dev), st.Ino}
				if first, ok := links[key]; ok {
					hdr.Typeflag = tar.TypeLink
					hdr.Linkname = first
					hdr.Size = 0
				} else {
					links[key] = name
				}
			}
		case unix.S_IFLNK:
			hdr.Typeflag = tar.TypeSymlink
			if hdr.Linkname, err = os.Readlink(p); err != nil {
				return fmt.Errorf("reading %s: %w", p, err)
			}
		case unix.S_IFCHR, unix.S_IFBLK:
			hdr.Typeflag = tar.TypeChar
			if st.Mode&unix.S_IFMT == unix.S_IFBLK {
				hdr.Typeflag = tar.TypeBlock
			}
			hdr.Devmajor = int64(unix.Major(st.Rdev))
			hdr.Devminor = int64(unix.Minor(st.Rdev))
		case unix.S_IFIFO:
			hdr.Typeflag = tar.TypeFifo
		default:
			return nil // sockets
		}
		if hdr.Typeflag != tar.TypeLink {
			xattrs, err := readXattrs(p)
			if err != nil {
				return err
			}
			for k, v := range xattrs {
				if hdr.PAXRecords == nil {
					hdr.PAXRecords = map[string]string{}
				}
				hdr.PAXRecords["SCHILY.xattr."+k] = v
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("writing %s to tar: %w", name, err)
		}
		if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
			f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW, 0)
			if err != nil {
				return fmt.Errorf("reading %s: %w", p, err)
			}
			n, err := io.CopyBuffer(tw, io.LimitReader(f, hdr.Size), buf)
			f.Close()
			if err != nil {
				return fmt.Errorf("writing %s to tar: %w", name, err)
			}
			if n != hdr.Size {
				return fmt.Errorf("reading %s: file shrank from %d to %d bytes while being read", p, hdr.Size, n)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// readXattrs returns the extended attributes of p (not following
// symlinks), without system.* ones.
func readXattrs(p string) (map[string]string, error) {
	size, err := unix.Llistxattr(p, nil)
	if errors.Is(err, unix.ENOTSUP) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing attributes of %s: %w", p, err)
	}
	if size == 0 {
		return nil, nil
	}
	list := make([]byte, size)
	size, err = unix.Llistxattr(p, list)
	if err != nil {
		return nil, fmt.Errorf("listing attributes of %s: %w", p, err)
	}
	out := map[string]string{}
	for _, name := range strings.Split(strings.TrimRight(string(list[:size]), "\x00"), "\x00") {
		if name == "" || strings.HasPrefix(name, "system.") {
			continue
		}
		n, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return nil, fmt.Errorf("reading attribute %s of %s: %w", name, p, err)
		}
		v := make([]byte, n)
		n, err = unix.Lgetxattr(p, name, v)
		if err != nil {
			return nil, fmt.Errorf("reading attribute %s of %s: %w", name, p, err)
		}
		out[name] = string(v[:n])
	}
	return out, nil
}

// compressions are the compression option's values.
var compressions = []string{"", "gzip", "xz", "zstd"}

func checkCompression(field, c string) error {
	for _, k := range compressions {
		if c == k {
			return nil
		}
	}
	return fmt.Errorf("%s: %q is not one of \"\", \"gzip\", \"xz\", \"zstd\"", field, c)
}

// compressTo writes what fill writes to w, compressed: gzip without a
// name or time (gzip -n) and zstd (whose output does not depend on its
// concurrency) in Go; xz with the build root's xz -T0, which uses every
// CPU (its multi-threaded output does not depend on how many there are)
// and compresses better than Go's xz writer (a minimal Debian tree: 71
// MiB against 86).
func compressTo(ctx context.Context, env *Env, w io.Writer, kind string, fill func(io.Writer) error) error {
	if kind == "xz" {
		pr, pw := io.Pipe()
		filled := make(chan error, 1)
		go func() {
			err := fill(pw)
			pw.CloseWithError(err)
			filled <- err
		}()
		runErr := runTool(ctx, env, nil, nil, toolIO{stdin: pr, stdout: w}, "xz", "-T0", "-6", "-c")
		pr.CloseWithError(io.ErrClosedPipe) // a tool that stopped reading ends fill
		fillErr := <-filled
		if runErr != nil && (fillErr == nil || errors.Is(fillErr, io.ErrClosedPipe)) {
			return runErr
		}
		if fillErr != nil {
			return fillErr
		}
		return runErr
	}
	cw, err := compressor(w, kind)
	if err != nil {
		return err
	}
	if err := fill(cw); err != nil {
		return err
	}
	return cw.Close()
}

// compressor wraps w in a Go compressor: "" (none), gzip or zstd. Closing
// it finishes the stream but leaves w open.
func compressor(w io.Writer, kind string) (io.WriteCloser, error) {
	switch kind {
	case "":
		return nopWriteCloser{w}, nil
	case "gzip":
		gz, err := gzip.NewWriterLevel(w, gzip.DefaultCompression)
		if err != nil {
			return nil, err
		}
		// Time 0 is "no time"; this writer would write the zero
		// time.Time's seconds truncated instead.
		gz.ModTime = time.Unix(0, 0)
		return gz, nil
	case "zstd":
		return zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedDefault))
	}
	return nil, fmt.Errorf("unknown compression %q", kind)
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// tarFile is a member of a small archive of files.
type tarFile struct {
	name string
	// Either data or path (a file to copy) gives the contents.
	data []byte
	path string
	mode int64
	dir  bool
}

// writeFilesTar writes files to w in the given order, owned by 0:0 with
// the epoch as their time: ustar when the members fit, PAX otherwise.
func writeFilesTar(ctx context.Context, w io.Writer, files []tarFile, epoch int64) error {
	tw := tar.NewWriter(w)
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr := &tar.Header{Name: f.name, Mode: f.mode, ModTime: time.Unix(epoch, 0), Typeflag: tar.TypeReg}
		var r io.Reader
		switch {
		case f.dir:
			hdr.Typeflag = tar.TypeDir
		case f.path != "":
			in, err := os.Open(f.path)
			if err != nil {
				return fmt.Errorf("reading %s: %w", f.path, err)
			}
			defer in.Close()
			fi, err := in.Stat()
			if err != nil {
				return fmt.Errorf("reading %s: %w", f.path, err)
			}
			hdr.Size = fi.Size()
			r = in
		default:
			hdr.Size = int64(len(f.data))
			r = bytes.NewReader(f.data)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("writing %s to tar: %w", f.name, err)
		}
		if r != nil {
			n, err := io.Copy(tw, io.LimitReader(r, hdr.Size))
			if err != nil {
				return fmt.Errorf("writing %s to tar: %w", f.name, err)
			}
			if n != hdr.Size {
				return fmt.Errorf("writing %s to tar: %s shrank while being read", f.name, f.path)
			}
		}
	}
	return tw.Close()
}

// writeOutput writes a file of the output directory through fn under a
// temporary name and renames it into place when fn and the writes succeed.
func writeOutput(tree, filename string, fn func(w io.Writer) error) error {
	f, err := os.CreateTemp(tree, "."+filename+".tmp-*")
	if err != nil {
		return fmt.Errorf("creating %s: %w", filename, err)
	}
	defer os.Remove(f.Name())
	if err := fn(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", filename, err)
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", filename, err)
	}
	if err := os.Rename(f.Name(), filepath.Join(tree, filename)); err != nil {
		return fmt.Errorf("writing %s: %w", filename, err)
	}
	return nil
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
