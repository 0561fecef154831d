package changelog

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/image-builder-action/image-builder-action/pkg/deb"
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
	pkg, err := deb.Open(file)
	if err != nil {
		return nil, err
	}
	defer pkg.Close()
	tr, closeData, err := pkg.Data()
	if err != nil {
		return nil, err
	}
	defer closeData()
	dir := "usr/share/doc/" + name
	out := &docFiles{Files: map[string]string{}}
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
