package changelog

import (
	"archive/tar"
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

// docFiles is what a .deb holds under /usr/share/doc/<name>: its
// changelogs (gunzipped, by file name) or a link to another package's
// directory (a package built from the same source often shares one).
type docFiles struct {
	Files map[string]string `json:"files,omitempty"`
	Link  string            `json:"link,omitempty"`
}

// maxChangelog bounds a changelog read from a package (the biggest in
// Debian are a few MiB).
const maxChangelog = 32 << 20

// readDoc reads the changelogs of package name from the .deb at file:
// changelog.Debian.gz, changelog.Debian.<arch>.gz (a binNMU's entries)
// and changelog.gz (a native package's).
func readDoc(file, name string) (*docFiles, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, comp, err := dataMember(f)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	var r io.Reader
	switch comp {
	case ".xz":
		if r, err = decompress.XZ(data); err != nil {
			return nil, fmt.Errorf("reading %s: %w", file, err)
		}
	case ".zst":
		z, err := decompress.Zstd(data)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", file, err)
		}
		defer z.Close()
		r = z
	case ".gz":
		if r, err = gzip.NewReader(data); err != nil {
			return nil, fmt.Errorf("reading %s: %w", file, err)
		}
	case "":
		r = data
	default:
		return nil, fmt.Errorf("reading %s: data.tar%s: unknown compression", file, comp)
	}
	dir := "usr/share/doc/" + name
	out := &docFiles{Files: map[string]string{}}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", file, err)
		}
		p := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		if p == dir && h.Typeflag == tar.TypeSymlink {
			out.Link = path.Base(h.Linkname)
			continue
		}
		base := path.Base(p)
		if path.Dir(p) != dir || h.Typeflag != tar.TypeReg || !strings.HasPrefix(base, "changelog") || !strings.HasSuffix(base, ".gz") {
			continue
		}
		z, err := gzip.NewReader(tr)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %s: %w", file, p, err)
		}
		text, err := io.ReadAll(io.LimitReader(z, maxChangelog))
		if err != nil {
			return nil, fmt.Errorf("reading %s: %s: %w", file, p, err)
		}
		out.Files[base] = string(text)
	}
	return out, nil
}

// dataMember finds data.tar* in the ar archive of a .deb and returns a
// reader of it and its compression's extension.
func dataMember(f *os.File) (io.Reader, string, error) {
	magic := make([]byte, 8)
	if _, err := io.ReadFull(f, magic); err != nil || string(magic) != "!<arch>\n" {
		return nil, "", errors.New("not a Debian package (no ar header)")
	}
	off := int64(8)
	hdr := make([]byte, 60)
	for {
		if _, err := f.ReadAt(hdr, off); err != nil {
			return nil, "", errors.New("no data.tar member")
		}
		if !bytes.Equal(hdr[58:60], []byte("`\n")) {
			return nil, "", fmt.Errorf("bad ar member header at offset %d", off)
		}
		name := strings.TrimSuffix(strings.TrimSpace(string(hdr[0:16])), "/")
		size, err := strconv.ParseInt(strings.TrimSpace(string(hdr[48:58])), 10, 64)
		if err != nil || size < 0 {
			return nil, "", fmt.Errorf("bad ar member size at offset %d", off)
		}
		off += 60
		if ext, ok := strings.CutPrefix(name, "data.tar"); ok {
			return io.NewSectionReader(f, off, size), ext, nil
		}
		off += size + size%2
	}
}
