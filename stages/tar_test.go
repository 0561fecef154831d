package stages_test

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestTarValidate(t *testing.T) {
	const src = `"source":{"pipeline":"os","path":"/"}`
	tests := []struct{ options, err string }{
		{`{"filename":"root.tar",` + src + `,"compression":""}`, ""},
		{`{"filename":"root.tar",` + src + `}`, ""},
		{`{"filename":"root.tar.gz",` + src + `,"compression":"gzip"}`, ""},
		{`{"filename":"root.tar.xz",` + src + `,"compression":"xz"}`, ""},
		{`{"filename":"root.tar.zst",` + src + `,"compression":"zstd"}`, ""},
		{`{"filename":"root.tar.bz2",` + src + `,"compression":"bzip2"}`, `compression: "bzip2" is not one of`},
		{`{"filename":"",` + src + `}`, "filename: empty"},
		{`{"filename":"../root.tar",` + src + `}`, "filename:"},
		{`{"filename":"root.tar"}`, "source.pipeline: empty"},
		{`{"filename":"root.tar","source":{"pipeline":"os","path":"/./"}}`, "source.path"},
		{`{"filename":"root.tar",` + src + `,"owner":"root"}`, `unknown field "owner"`},
	}
	imgValidate(t, "tar", tests)
}

// imgTarHeaders reads an uncompressed tar's headers; contents are read
// into the returned map by member name.
func imgTarHeaders(t *testing.T, r io.Reader) ([]*tar.Header, map[string][]byte) {
	t.Helper()
	tr := tar.NewReader(r)
	var hdrs []*tar.Header
	data := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return hdrs, data
		}
		if err != nil {
			t.Fatalf("reading tar: %v", err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		hdrs = append(hdrs, h)
		data[h.Name] = b
	}
}

// imgDecompress decompresses a file with the host's tool for compression.
func imgDecompress(t *testing.T, p, compression string) []byte {
	t.Helper()
	switch compression {
	case "":
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	case "gzip":
		return []byte(imgCmd(t, "gzip", "-dc", p))
	case "xz":
		return []byte(imgCmd(t, "xz", "-dc", p))
	case "zstd":
		return []byte(imgCmd(t, "zstd", "-dcq", p))
	}
	t.Fatalf("unknown compression %q", compression)
	return nil
}

func TestTarRun(t *testing.T) {
	imgNeedRoot(t)
	imgNeedTools(t, "tar", "gzip", "xz", "zstd")
	osTree := imgRootTree(t)
	// A socket is left out, as tar does.
	sock := filepath.Join(osTree, "run.sock")
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: sock}); err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)

	var plain []byte
	for _, c := range []string{"", "gzip", "xz", "zstd"} {
		env := imgEnv(t, map[string]string{"os": osTree})
		start := time.Now()
		imgRun(t, env, "tar", `{"filename":"root.tar","source":{"pipeline":"os","path":"/"},"compression":"`+c+`"}`)
		t.Logf("compression %q: %v", c, time.Since(start).Round(time.Millisecond))
		imgLeftovers(t, env.Tree, "root.tar")
		b := imgDecompress(t, filepath.Join(env.Tree, "root.tar"), c)
		if plain == nil {
			plain = b
		} else if !bytes.Equal(b, plain) {
			t.Errorf("compression %q: decompressed tar differs from the uncompressed one", c)
		}
	}

	hdrs, data := imgTarHeaders(t, bytes.NewReader(plain))
	byName := map[string]*tar.Header{}
	var names []string
	for _, h := range hdrs {
		byName[h.Name] = h
		names = append(names, h.Name)
		if h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: owner names %q:%q", h.Name, h.Uname, h.Gname)
		}
		if h.ModTime.Unix() > imgEpoch {
			t.Errorf("%s: mtime %v after the epoch", h.Name, h.ModTime)
		}
		if !h.AccessTime.IsZero() || !h.ChangeTime.IsZero() {
			t.Errorf("%s: access/change times recorded", h.Name)
		}
	}
	// Member order: GNU tar --sort=name over the same tree, minus sockets.
	gnu := strings.Split(strings.TrimSpace(imgCmd(t, "sh", "-c", "tar --sort=name -C "+osTree+" -cf - . 2>/dev/null | tar -tf -")), "\n")
	var gnuNames []string
	for _, n := range gnu {
		if n != "./run.sock" {
			gnuNames = append(gnuNames, n)
		}
	}
	if strings.Join(names, "\n") != strings.Join(gnuNames, "\n") {
		t.Errorf("member order differs from tar --sort=name:\n%q\n%q", names[:10], gnuNames[:10])
	}
	if names[0] != "./" {
		t.Errorf("first member %q, want ./", names[0])
	}
	check := func(name string, f func(h *tar.Header) bool, what string) {
		t.Helper()
		h := byName[name]
		if h == nil {
			t.Errorf("no member %s", name)
			return
		}
		if !f(h) {
			t.Errorf("%s: %s: %+v", name, what, h)
		}
	}
	check("./etc/hostname", func(h *tar.Header) bool { return h.ModTime.Unix() == imgEpoch && h.Mode == 0o644 }, "mtime clamped, mode 0644")
	check("./etc/shadow", func(h *tar.Header) bool {
		return h.ModTime.Equal(time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)) && h.Gid == 42 && h.Mode == 0o640
	}, "old mtime kept, gid 42")
	check("./home/admin/.profile", func(h *tar.Header) bool { return h.Uid == 1000 && h.Gid == 1000 && h.Mode == 0o600 }, "owner 1000")
	check("./usr/bin/su", func(h *tar.Header) bool { return h.Mode == 0o4755 }, "setuid")
	check("./usr/bin/ping", func(h *tar.Header) bool {
		return h.PAXRecords["SCHILY.xattr.security.capability"] == "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x20\x00\x00"+strings.Repeat("\x00", 8)
	}, "security.capability")
	check("./usr/lib/one", func(h *tar.Header) bool { return h.Typeflag == tar.TypeReg && h.Size == 12 }, "regular")
	check("./usr/lib/two", func(h *tar.Header) bool { return h.Typeflag == tar.TypeLink && h.Linkname == "./usr/lib/one" }, "hard link")
	check("./dev/null", func(h *tar.Header) bool { return h.Typeflag == tar.TypeChar && h.Devmajor == 1 && h.Devminor == 3 }, "char 1:3")
	check("./dev/initctl", func(h *tar.Header) bool { return h.Typeflag == tar.TypeFifo }, "FIFO")
	check("./etc/long-link", func(h *tar.Header) bool { return h.Typeflag == tar.TypeSymlink && len(h.Linkname) == 157 }, "long symlink")
	check("./boot/efi/", func(h *tar.Header) bool { return h.Typeflag == tar.TypeDir && h.Mode == 0o700 }, "directory")
	if string(data["./usr/share/many/file-123"]) != "x" {
		t.Errorf("contents not kept")
	}

	// GNU tar extracts it with attributes.
	out := t.TempDir()
	tarPath := filepath.Join(t.TempDir(), "root.tar")
	if err := os.WriteFile(tarPath, plain, 0o644); err != nil {
		t.Fatal(err)
	}
	imgCmd(t, "tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf", tarPath, "-C", out)
	capb := make([]byte, 64)
	n, err := unix.Lgetxattr(filepath.Join(out, "usr/bin/ping"), "security.capability", capb)
	if err != nil || n != 20 {
		t.Errorf("extracted ping: security.capability %d %v", n, err)
	}
	var a, b syscall.Stat_t
	syscall.Stat(filepath.Join(out, "usr/lib/one"), &a)
	syscall.Stat(filepath.Join(out, "usr/lib/two"), &b)
	if a.Ino != b.Ino || a.Nlink != 2 {
		t.Errorf("extracted hard links: inodes %d %d, links %d", a.Ino, b.Ino, a.Nlink)
	}

	// A second tree made the same way gives the same bytes.
	time.Sleep(1100 * time.Millisecond)
	osTree2 := imgRootTree(t)
	env2 := imgEnv(t, map[string]string{"os": osTree2})
	imgRun(t, env2, "tar", `{"filename":"root.tar","source":{"pipeline":"os","path":"/"}}`)
	b2, err := os.ReadFile(filepath.Join(env2.Tree, "root.tar"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b2, plain) {
		t.Errorf("two runs differ")
	}
}

// TestTarXZNeedsTheBuildRoot: xz comes from the build root, and a build
// root without it fails the stage without leaving a file behind.
func TestTarXZNeedsTheBuildRoot(t *testing.T) {
	imgNeedRoot(t)
	osTree := imgRootTree(t)
	env := imgEnv(t, map[string]string{"os": osTree})
	env.BuildRoot = t.TempDir() // no xz in there
	err := imgRunErr(t, env, "tar", `{"filename":"root.tar.xz","source":{"pipeline":"os","path":"/"},"compression":"xz"}`)
	if err == nil || !strings.Contains(err.Error(), `"xz" not found`) {
		t.Errorf("error = %v, want xz not found", err)
	}
	imgLeftovers(t, env.Tree)
	env.BuildRoot = ""
	err = imgRunErr(t, env, "tar", `{"filename":"root.tar.xz","source":{"pipeline":"os","path":"/"},"compression":"xz"}`)
	if err == nil || !strings.Contains(err.Error(), "no build root") {
		t.Errorf("error = %v, want no build root", err)
	}
	imgLeftovers(t, env.Tree)
}
