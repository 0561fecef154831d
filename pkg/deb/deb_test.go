package deb

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

func TestFnmatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"/usr/share/doc/*", "/usr/share/doc/dpkg", true},
		{"/usr/share/doc/*", "/usr/share/doc/dpkg/copyright", true}, // '*' crosses '/'
		{"/usr/share/doc/*", "/usr/share/doc", false},
		{"/usr/share/doc/*/copyright", "/usr/share/doc/dpkg/copyright", true},
		{"/usr/share/doc/*/copyright", "/usr/share/doc/dpkg/changelog.gz", false},
		{"/usr/share/locale/??/*", "/usr/share/locale/de/LC_MESSAGES/x.mo", true},
		{"/usr/share/locale/??/*", "/usr/share/locale/de_AT/x", false},
		{"/usr/lib/[a-c]*", "/usr/lib/bin", true},
		{"/usr/lib/[!a-c]*", "/usr/lib/bin", false},
		{"/usr/lib/[^a-c]*", "/usr/lib/dir", true},
		{`/a\*b`, "/a*b", true},
		{`/a\*b`, "/axb", false},
		{"/x[", "/x[", true},
		{"*", "", true},
		{"", "", true},
		{"/exact", "/exact", true},
		{"/exact", "/exact/more", false},
	} {
		if got := fnmatch(tc.pattern, tc.name); got != tc.want {
			t.Errorf("fnmatch(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
}

func TestFilter(t *testing.T) {
	f := NewFilter([]string{"/usr/share/doc/*", "/usr/share/man/*"}, []string{"/usr/share/doc/*/copyright"})
	for _, tc := range []struct {
		path string
		dir  bool
		skip bool
	}{
		{"/usr/bin/dpkg", false, false},
		{"/usr/share/doc", true, false},
		{"/usr/share/doc/dpkg", true, false}, // kept: copyright may be re-included below it
		{"/usr/share/doc/dpkg/changelog.gz", false, true},
		{"/usr/share/doc/dpkg/copyright", false, false},
		{"/usr/share/man/man1", true, true},
		{"/usr/share/man/man1/dpkg.1.gz", false, true},
	} {
		if got := f.Skip(tc.path, tc.dir); got != tc.skip {
			t.Errorf("Skip(%q, %v) = %v, want %v", tc.path, tc.dir, got, tc.skip)
		}
	}
	var none *Filter
	if none.Skip("/usr/share/doc/x", false) {
		t.Errorf("a nil filter skipped")
	}
}

func TestParseControl(t *testing.T) {
	c, err := ParseControl([]byte("Package: dpkg\nVersion: 1.21.22\nEssential: yes\nDescription: Debian package system\n more text\n .\n end\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c["Package"] != "dpkg" || c["Essential"] != "yes" || c["Description"] != "Debian package system\n more text\n .\n end" {
		t.Errorf("%#v", c)
	}
	for _, bad := range []string{"Package: a\n\nPackage: b\n", " leading continuation\n", "no colon\n"} {
		if _, err := ParseControl([]byte(bad)); err == nil {
			t.Errorf("ParseControl(%q): no error", bad)
		}
	}
}

type entry struct {
	name, link string
	typ        byte
	mode       int64
	body       string
	uid        int
}

func tarball(t testing.TB, entries []entry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, Size: int64(len(e.body)),
			Uid: e.uid, ModTime: time.Unix(1700000000, 0)}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return buf.Bytes()
}

// makeDeb writes an ar archive like dpkg-deb's, compressing the data
// archive as ext says.
func makeDeb(t testing.TB, control string, data []byte, ext string) string {
	var comp bytes.Buffer
	switch ext {
	case ".gz":
		w := gzip.NewWriter(&comp)
		w.Write(data)
		w.Close()
	case ".zst":
		w, _ := zstd.NewWriter(&comp)
		w.Write(data)
		w.Close()
	case "":
		comp.Write(data)
	}
	return makeDebRaw(t, control, "data.tar"+ext, comp.Bytes())
}

// makeDebRaw writes a .deb whose data member is name holding data as is.
func makeDebRaw(t testing.TB, control, name string, data []byte) string {
	ctl := tarball(t, []entry{{name: "./", typ: tar.TypeDir, mode: 0o755}, {name: "./control", typ: tar.TypeReg, mode: 0o644, body: control}})
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(ctl)
	zw.Close()
	var ar bytes.Buffer
	ar.WriteString("!<arch>\n")
	add := func(name string, b []byte) {
		fmt.Fprintf(&ar, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", name, 0, 0, 0, "100644", len(b))
		ar.Write(b)
		if len(b)%2 == 1 {
			ar.WriteByte('\n')
		}
	}
	add("debian-binary", []byte("2.0\n"))
	add("control.tar.gz", gz.Bytes())
	add(name, data)
	p := filepath.Join(t.TempDir(), "p.deb")
	if err := os.WriteFile(p, ar.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExtract(t *testing.T) {
	data := tarball(t, []entry{
		{name: "./", typ: tar.TypeDir, mode: 0o755},
		{name: "./bin/", typ: tar.TypeDir, mode: 0o755},
		{name: "./bin/tool", typ: tar.TypeReg, mode: 0o4755, body: "tool"},
		{name: "./bin/tool2", typ: tar.TypeLink, link: "./bin/tool"},
		{name: "./etc/", typ: tar.TypeDir, mode: 0o755},
		{name: "./etc/conf/x", typ: tar.TypeReg, mode: 0o600, body: "escaped?", uid: 0},
		{name: "./usr/share/doc/p/", typ: tar.TypeDir, mode: 0o755},
		{name: "./usr/share/doc/p/changelog", typ: tar.TypeReg, mode: 0o644, body: "log"},
		{name: "./usr/share/doc/p/copyright", typ: tar.TypeReg, mode: 0o644, body: "(c)"},
		{name: "./usr/lib/link", typ: tar.TypeSymlink, link: "../bin/tool"},
	})
	for _, ext := range []string{".gz", ".zst", ""} {
		t.Run("data.tar"+ext, func(t *testing.T) {
			p := makeDeb(t, "Package: p\nVersion: 1\nArchitecture: all\n", data, ext)
			tree := t.TempDir()
			outside := t.TempDir()
			// Merged /usr: /bin is a symlink the package must not replace.
			os.MkdirAll(filepath.Join(tree, "usr/bin"), 0o755)
			os.Symlink("usr/bin", filepath.Join(tree, "bin"))
			// A symlink pointing out of the tree: followed inside it.
			os.Symlink(outside, filepath.Join(tree, "etc-escape"))
			os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
			os.Symlink("/etc-escape", filepath.Join(tree, "etc/conf"))

			pkg, err := Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer pkg.Close()
			c, err := pkg.Control()
			if err != nil || c["Package"] != "p" {
				t.Fatalf("control %v %v", c, err)
			}
			f := NewFilter([]string{"/usr/share/doc/*"}, []string{"/usr/share/doc/*/copyright"})
			if err := pkg.Extract(context.Background(), tree, f); err != nil {
				t.Fatal(err)
			}
			if l, err := os.Readlink(filepath.Join(tree, "bin")); err != nil || l != "usr/bin" {
				t.Errorf("/bin symlink replaced: %q %v", l, err)
			}
			fi, err := os.Stat(filepath.Join(tree, "usr/bin/tool"))
			if err != nil || fi.Mode()&os.ModeSetuid == 0 || !fi.ModTime().Equal(time.Unix(1700000000, 0)) {
				t.Errorf("tool: %v %v", fi, err)
			}
			fi2, err := os.Stat(filepath.Join(tree, "usr/bin/tool2"))
			if err != nil || !os.SameFile(fi, fi2) {
				t.Errorf("hard link: %v", err)
			}
			if entries, _ := os.ReadDir(outside); len(entries) != 0 {
				t.Errorf("a file was written outside the tree: %v", entries)
			}
			// /etc/conf -> /etc-escape -> <outside>, all resolved in the tree.
			if b, err := os.ReadFile(filepath.Join(tree, outside, "x")); err != nil || string(b) != "escaped?" {
				t.Errorf("file through an absolute symlink not placed inside the tree: %q %v", b, err)
			}
			if _, err := os.Stat(filepath.Join(tree, "usr/share/doc/p/changelog")); err == nil {
				t.Errorf("excluded file extracted")
			}
			if _, err := os.Stat(filepath.Join(tree, "usr/share/doc/p/copyright")); err != nil {
				t.Errorf("re-included file missing: %v", err)
			}
			if l, _ := os.Readlink(filepath.Join(tree, "usr/lib/link")); l != "../bin/tool" {
				t.Errorf("symlink %q", l)
			}
			files, err := pkg.Files()
			if err != nil || len(files) != 10 || files[2] != "/bin/tool" {
				t.Errorf("files %v %v", files, err)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	notAr := filepath.Join(dir, "x.deb")
	os.WriteFile(notAr, []byte("hello world, not an ar"), 0o644)
	if _, err := Open(notAr); err == nil {
		t.Errorf("opened a non-ar file")
	}
	noData := filepath.Join(dir, "y.deb")
	os.WriteFile(noData, []byte("!<arch>\n"), 0o644)
	if _, err := Open(noData); err == nil {
		t.Errorf("opened an archive without members")
	}
}

// TestWriteUncompressed: the copy has the same control and data, and dpkg-deb
// (the reader that counts: dpkg) takes it.
func TestWriteUncompressed(t *testing.T) {
	data := tarball(t, []entry{
		{name: "./", typ: tar.TypeDir, mode: 0o755},
		{name: "./usr/", typ: tar.TypeDir, mode: 0o755},
		{name: "./usr/odd", typ: tar.TypeReg, mode: 0o644, body: "odd length"},
	})
	for _, ext := range []string{".gz", ".zst", ""} {
		t.Run("data.tar"+ext, func(t *testing.T) {
			src := makeDeb(t, "Package: p\nVersion: 1\nArchitecture: arm64\nMaintainer: m <m@example.org>\nDescription: d\n", data, ext)
			p, err := Open(src)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			dst := filepath.Join(t.TempDir(), "u.deb")
			if err := p.WriteUncompressed(dst); err != nil {
				t.Fatal(err)
			}
			u, err := Open(dst)
			if err != nil {
				t.Fatal(err)
			}
			defer u.Close()
			if u.data.name != "data.tar" || u.data.size != int64(len(data)) {
				t.Errorf("data member %s of %d bytes, want data.tar of %d", u.data.name, u.data.size, len(data))
			}
			c, err := u.Control()
			if err != nil || c["Architecture"] != "arm64" {
				t.Errorf("control %v: %v", c, err)
			}
			files, err := u.Files()
			if err != nil || fmt.Sprint(files) != "[/ /usr /usr/odd]" {
				t.Errorf("files %v: %v", files, err)
			}
			if _, err := exec.LookPath("dpkg-deb"); err != nil {
				return
			}
			out, err := exec.Command("dpkg-deb", "--fsys-tarfile", dst).Output()
			if err != nil || !bytes.Equal(out, data) {
				t.Errorf("dpkg-deb --fsys-tarfile: %v (%d bytes, want %d)", err, len(out), len(data))
			}
			if out, err := exec.Command("dpkg-deb", "--field", dst, "Package").Output(); err != nil || string(out) != "p\n" {
				t.Errorf("dpkg-deb --field: %v: %s", err, out)
			}
		})
	}
}

// TestHugeWindowRefused: a data.tar whose xz dictionary or zstd window is
// above decompress.MaxWindow is refused with an error naming the file,
// before the decoder allocates it.
func TestHugeWindowRefused(t *testing.T) {
	data := tarball(t, []entry{{name: "./", typ: tar.TypeDir, mode: 0o755}, {name: "./a", typ: tar.TypeReg, mode: 0o644, body: "a\n"}})
	// zstd: a frame asking for a 2 GiB window, holding data as one raw block.
	zst := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 21 << 3}
	h := uint32(1) | uint32(len(data))<<3
	zst = append(append(zst, byte(h), byte(h>>8), byte(h>>16)), data...)
	// xz: ulikunitz's stream with its block header's dictionary code set to
	// 40 (4 GiB) and the header's CRC32 recomputed.
	var xb bytes.Buffer
	xw, err := xz.WriterConfig{DictCap: 1 << 16}.NewWriter(&xb)
	if err != nil {
		t.Fatal(err)
	}
	xw.Write(data)
	xw.Close()
	x := xb.Bytes()
	hs := (int(x[12]) + 1) * 4
	bh := x[12 : 12+hs]
	i := bytes.Index(bh, []byte{0x21, 0x01})
	if i < 0 {
		t.Fatalf("no LZMA2 filter in % x", bh)
	}
	bh[i+2] = 40
	binary.LittleEndian.PutUint32(bh[hs-4:], crc32.ChecksumIEEE(bh[:hs-4]))
	for name, c := range map[string]struct {
		member string
		data   []byte
		want   string
	}{
		"zstd": {"data.tar.zst", zst, "window size exceeded"},
		"xz":   {"data.tar.xz", x, "block dictionary of 4095 MiB is more than the 128 MiB allowed"},
	} {
		t.Run(name, func(t *testing.T) {
			p := makeDebRaw(t, "Package: p\n", c.member, c.data)
			pkg, err := Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer pkg.Close()
			err = pkg.Extract(context.Background(), t.TempDir(), nil)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("err = %v, want one naming %s and saying %q", err, p, c.want)
			}
		})
	}
}
