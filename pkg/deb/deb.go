// Package deb reads Debian binary packages in pure Go: the ar container, the
// control file, and the data archive, which it extracts into a tree the way
// `dpkg-deb --fsys-tarfile | tar --keep-directory-symlink -x` does, with
// dpkg's path filters applied. The build pipeline uses it to bootstrap a
// tree before any dpkg exists there.
package deb

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/image-builder-action/image-builder-action/pkg/decompress"
)

// member is one file of an ar archive.
type member struct {
	name   string
	offset int64
	size   int64
}

// members lists the ar archive's files.
func members(r io.ReaderAt, size int64) ([]member, error) {
	magic := make([]byte, 8)
	if _, err := r.ReadAt(magic, 0); err != nil {
		return nil, fmt.Errorf("reading ar header: %w", err)
	}
	if string(magic) != "!<arch>\n" {
		return nil, errors.New("not an ar archive (no !<arch> magic)")
	}
	var out []member
	off := int64(8)
	hdr := make([]byte, 60)
	for off < size {
		if _, err := r.ReadAt(hdr, off); err != nil {
			if err == io.EOF {
				break
			}
			return nil, fmt.Errorf("reading ar member header at %d: %w", off, err)
		}
		if string(hdr[58:60]) != "`\n" {
			return nil, fmt.Errorf("bad ar member header at %d", off)
		}
		name := strings.TrimRight(strings.TrimSpace(string(hdr[0:16])), "/")
		n, err := strconv.ParseInt(strings.TrimSpace(string(hdr[48:58])), 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("bad ar member size %q at %d", hdr[48:58], off)
		}
		out = append(out, member{name: name, offset: off + 60, size: n})
		off += 60 + n + n%2
	}
	return out, nil
}

// Package is an opened .deb file.
type Package struct {
	path    string
	f       *os.File
	control member
	data    member
}

// Open opens the .deb at path.
func Open(path string) (*Package, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	ms, err := members(f, fi.Size())
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	p := &Package{path: path, f: f}
	for _, m := range ms {
		switch {
		case strings.HasPrefix(m.name, "control.tar"):
			p.control = m
		case strings.HasPrefix(m.name, "data.tar"):
			p.data = m
		}
	}
	if p.control.name == "" || p.data.name == "" {
		f.Close()
		return nil, fmt.Errorf("reading %s: no control.tar or data.tar member", path)
	}
	return p, nil
}

// Close closes the file.
func (p *Package) Close() error { return p.f.Close() }

// tarReader decompresses one member according to its name's extension.
func (p *Package) tarReader(m member) (*tar.Reader, func(), error) {
	r, closer, err := p.decompressed(m)
	if err != nil {
		return nil, nil, err
	}
	return tar.NewReader(r), closer, nil
}

// decompressed reads one member decompressed according to its name's
// extension.
func (p *Package) decompressed(m member) (io.Reader, func(), error) {
	sr := io.NewSectionReader(p.f, m.offset, m.size)
	var r io.Reader = bufio.NewReaderSize(sr, 1<<16)
	closer := func() {}
	switch ext := strings.TrimPrefix(m.name, strings.SplitN(m.name, ".tar", 2)[0]+".tar"); ext {
	case "":
	case ".gz":
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("reading %s %s: %w", p.path, m.name, err)
		}
		r = zr
	case ".xz":
		zr, err := decompress.XZ(r)
		if err != nil {
			return nil, nil, fmt.Errorf("reading %s %s: %w", p.path, m.name, err)
		}
		r = zr
	case ".zst":
		zr, err := decompress.Zstd(r)
		if err != nil {
			return nil, nil, fmt.Errorf("reading %s %s: %w", p.path, m.name, err)
		}
		r = zr
		closer = zr.Close
	default:
		return nil, nil, fmt.Errorf("reading %s: unsupported compression of %s", p.path, m.name)
	}
	return r, closer, nil
}

// Control is a package's control file, by field name.
type Control map[string]string

// Control reads the package's control file.
func (p *Package) Control() (Control, error) {
	tr, closeFn, err := p.tarReader(p.control)
	if err != nil {
		return nil, err
	}
	defer closeFn()
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, fmt.Errorf("reading %s: no control file in %s", p.path, p.control.name)
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s %s: %w", p.path, p.control.name, err)
		}
		if strings.TrimPrefix(h.Name, "./") == "control" {
			data, err := io.ReadAll(io.LimitReader(tr, 1<<20))
			if err != nil {
				return nil, fmt.Errorf("reading %s control: %w", p.path, err)
			}
			c, err := ParseControl(data)
			if err != nil {
				return nil, fmt.Errorf("reading %s control: %w", p.path, err)
			}
			return c, nil
		}
	}
}

// ParseControl parses one deb822 paragraph. Continuation lines are kept,
// joined with newlines.
func ParseControl(data []byte) (Control, error) {
	c := Control{}
	last := ""
	for i, line := range strings.Split(string(bytes.TrimRight(data, "\n")), "\n") {
		if line == "" {
			return nil, fmt.Errorf("line %d: more than one paragraph", i+1)
		}
		if line[0] == ' ' || line[0] == '\t' {
			if last == "" {
				return nil, fmt.Errorf("line %d: continuation line without a field", i+1)
			}
			c[last] += "\n" + line
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("line %d: no colon in %q", i+1, line)
		}
		last = strings.TrimSpace(k)
		c[last] = strings.TrimSpace(v)
	}
	return c, nil
}

// Files lists the paths of the data archive's entries, as "/usr/bin/x".
func (p *Package) Files() ([]string, error) {
	tr, closeFn, err := p.tarReader(p.data)
	if err != nil {
		return nil, err
	}
	defer closeFn()
	var out []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", p.path, err)
		}
		out = append(out, path.Clean("/"+h.Name))
	}
}

// WriteUncompressed writes the package to path again with its data archive
// uncompressed (data.tar; dpkg reads that as well). A dpkg run under
// emulation then spends no emulated time on decompression, which is most
// of what unpacking costs there: it is done here, natively.
func (p *Package) WriteUncompressed(path string) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	w := bufio.NewWriterSize(f, 1<<20)
	if _, err := w.WriteString("!<arch>\n"); err != nil {
		return err
	}
	member := func(name string, size int64) error {
		_, err := fmt.Fprintf(w, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", name, 0, 0, 0, "100644", size)
		return err
	}
	pad := func(size int64) error {
		if size%2 == 1 {
			return w.WriteByte('\n')
		}
		return nil
	}
	if err := member("debian-binary", 4); err != nil {
		return err
	}
	if _, err := w.WriteString("2.0\n"); err != nil {
		return err
	}
	if err := member(p.control.name, p.control.size); err != nil {
		return err
	}
	if _, err := io.Copy(w, io.NewSectionReader(p.f, p.control.offset, p.control.size)); err != nil {
		return fmt.Errorf("copying %s of %s: %w", p.control.name, p.path, err)
	}
	if err := pad(p.control.size); err != nil {
		return err
	}
	// The size goes in the header before the data: write a placeholder
	// and fill it in once the data is out.
	if err := w.Flush(); err != nil {
		return err
	}
	hdrAt, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return err
	}
	if err := member("data.tar", 0); err != nil {
		return err
	}
	r, closeFn, err := p.decompressed(p.data)
	if err != nil {
		return err
	}
	defer closeFn()
	n, err := io.Copy(w, r)
	if err != nil {
		return fmt.Errorf("decompressing %s of %s: %w", p.data.name, p.path, err)
	}
	if err := pad(n); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	hdr := fmt.Sprintf("%-16s%-12d%-6d%-6d%-8s%-10d`\n", "data.tar", 0, 0, 0, "100644", n)
	if _, err := f.WriteAt([]byte(hdr), hdrAt); err != nil {
		return err
	}
	return nil
}

// Data returns a reader of the package's data archive, decompressed; call
// the returned function when done with it.
func (p *Package) Data() (*tar.Reader, func(), error) {
	return p.tarReader(p.data)
}
