package build

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestStoreRoundTrip commits trees in both formats and checks what comes
// back: contents, modes, owners, hard links, symlinks, devices, xattrs,
// mtimes.
func TestStoreRoundTrip(t *testing.T) {
	for _, files := range []int{3, dirFormatMax + 10} {
		t.Run(fmt.Sprint(files), func(t *testing.T) {
			st, err := OpenStore(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			src := filepath.Join(t.TempDir(), "tree")
			must := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			must(os.MkdirAll(filepath.Join(src, "usr/bin"), 0o755))
			for i := 0; i < files; i++ {
				must(os.WriteFile(filepath.Join(src, "usr", fmt.Sprintf("f%03d", i)), []byte(fmt.Sprint(i)), 0o644))
			}
			must(os.WriteFile(filepath.Join(src, "usr/bin/su"), []byte("suid"), 0o644))
			must(os.Chmod(filepath.Join(src, "usr/bin/su"), os.ModeSetuid|0o755))
			must(os.Link(filepath.Join(src, "usr/bin/su"), filepath.Join(src, "usr/bin/su2")))
			must(os.Symlink("usr/bin", filepath.Join(src, "bin")))
			mtime := time.Unix(1700000000, 123456789)
			must(os.Chtimes(filepath.Join(src, "usr/f000"), mtime, mtime))
			root := os.Geteuid() == 0
			if root {
				must(os.Lchown(filepath.Join(src, "usr/f001"), 1234, 5678))
				must(unix.Mknod(filepath.Join(src, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
				// File capabilities (as ping has; no file is setuid too:
				// restoring the xattr would clear the bit).
				must(os.WriteFile(filepath.Join(src, "usr/bin/ping"), []byte("ping"), 0o755))
				must(unix.Lsetxattr(filepath.Join(src, "usr/bin/ping"), "security.capability",
					[]byte{1, 0, 0, 2, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0))
			}
			must(st.Commit(context.Background(), "k1", src, objectMeta{Pipeline: "p"}))
			m, err := st.meta("k1")
			must(err)
			wantFormat := "dir"
			if files > dirFormatMax {
				wantFormat = "tar.zst"
			}
			if m.Format != wantFormat || m.Size <= 0 {
				t.Errorf("meta %+v, want format %s", m, wantFormat)
			}
			if wantFormat == "tar.zst" {
				data, err := os.ReadFile(filepath.Join(st.objectDir("k1"), "tree.tar.zst"))
				must(err)
				if int64(len(data)) != m.Size || !bytes.HasPrefix(data, []byte{0x28, 0xb5, 0x2f, 0xfd}) {
					t.Errorf("tree.tar.zst: %d bytes starting %x, meta says %d bytes", len(data), data[:min(4, len(data))], m.Size)
				}
			}
			dst := filepath.Join(t.TempDir(), "out")
			must(st.Materialize(context.Background(), "k1", dst))
			fi, err := os.Stat(filepath.Join(dst, "usr/bin/su"))
			must(err)
			if fi.Mode()&os.ModeSetuid == 0 || fi.Mode().Perm() != 0o755 {
				t.Errorf("su mode %v", fi.Mode())
			}
			fi2, err := os.Stat(filepath.Join(dst, "usr/bin/su2"))
			must(err)
			if !os.SameFile(fi, fi2) {
				t.Errorf("hard link lost")
			}
			if l, err := os.Readlink(filepath.Join(dst, "bin")); err != nil || l != "usr/bin" {
				t.Errorf("symlink: %q %v", l, err)
			}
			fi, err = os.Stat(filepath.Join(dst, "usr/f000"))
			must(err)
			if !fi.ModTime().Equal(mtime) {
				t.Errorf("mtime %v, want %v", fi.ModTime(), mtime)
			}
			if b, _ := os.ReadFile(filepath.Join(dst, "usr", fmt.Sprintf("f%03d", files-1))); string(b) != fmt.Sprint(files-1) {
				t.Errorf("content %q", b)
			}
			if root {
				fi, _ = os.Lstat(filepath.Join(dst, "usr/f001"))
				if s := fi.Sys().(*syscall.Stat_t); s.Uid != 1234 || s.Gid != 5678 {
					t.Errorf("owner %d:%d", s.Uid, s.Gid)
				}
				fi, _ = os.Lstat(filepath.Join(dst, "null"))
				if s := fi.Sys().(*syscall.Stat_t); fi.Mode()&os.ModeCharDevice == 0 || s.Rdev != unix.Mkdev(1, 3) {
					t.Errorf("device node %v", fi.Mode())
				}
				buf := make([]byte, 64)
				if n, err := unix.Lgetxattr(filepath.Join(dst, "usr/bin/ping"), "security.capability", buf); err != nil || n != 20 {
					t.Errorf("capability xattr: %d %v", n, err)
				}
			}
		})
	}
}

// TestStoreReadsTarObjects: caches written before objects were compressed
// hold tree.tar, which must still materialize.
func TestStoreReadsTarObjects(t *testing.T) {
	st, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	stage, err := st.TempDir("commit-")
	if err != nil {
		t.Fatal(err)
	}
	if err := runTar(context.Background(), "--create", "--file", filepath.Join(stage, "tree.tar"), "--directory", src, "."); err != nil {
		t.Fatal(err)
	}
	if err := st.publish("old", stage, objectMeta{Pipeline: "os", Format: "tar", Size: 1}); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "out")
	if err := st.Materialize(context.Background(), "old", dst); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "f")); err != nil || string(b) != "old" {
		t.Errorf("materialized f: %q %v", b, err)
	}
}

func TestWorkAreaCleansDeadBuilds(t *testing.T) {
	st, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	root := t.TempDir()
	live, err := openWorkArea(st, root)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	// A killed build: lock file nobody holds, and its directory.
	dead := filepath.Join(root, "ibuild-work", "build-123")
	os.MkdirAll(filepath.Join(dead, "tree"), 0o755)
	os.WriteFile(dead+".lock", nil, 0o600)
	// A directory without a lock file.
	orphan := filepath.Join(root, "ibuild-work", "build-456")
	os.MkdirAll(orphan, 0o755)

	other, err := openWorkArea(st, root)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dead, dead + ".lock", orphan} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s survived: %v", p, err)
		}
	}
	if _, err := os.Stat(live.dir); err != nil {
		t.Errorf("a running build's work directory was removed: %v", err)
	}
	other.Close()
	if _, err := os.Stat(other.dir); err == nil {
		t.Errorf("closed work area still there")
	}
}

// hostToolEnv makes the test binary a stand-in for ibuild that runs a host
// tool through hostOutput (TestHostToolDiesWithIbuild).
const hostToolEnv = "IBUILD_TEST_HOST_TOOL"

func init() {
	if arg := os.Getenv(hostToolEnv); arg != "" {
		hostOutput(context.Background(), "sleep", arg)
		os.Exit(0)
	}
}

// A host tool (tar, cp) does not outlive ibuild killed alone (SIGKILL,
// the OOM killer): it would write into the cache or the work area while
// the next build cleans them.
func TestHostToolDiesWithIbuild(t *testing.T) {
	// A sleep nobody else runs: its argument names this test's process.
	arg := fmt.Sprintf("3%d.5", os.Getpid())
	ibuild := exec.Command(os.Args[0], "-test.run=^$")
	ibuild.Env = append(os.Environ(), hostToolEnv+"="+arg)
	if err := ibuild.Start(); err != nil {
		t.Fatal(err)
	}
	tool := func() int {
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			if b, _ := os.ReadFile(p); string(b) == "sleep\x00"+arg+"\x00" {
				pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
				return pid
			}
		}
		return 0
	}
	deadline := time.Now().Add(10 * time.Second)
	for tool() == 0 {
		if time.Now().After(deadline) {
			ibuild.Process.Kill()
			t.Fatal("the host tool did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ibuild.Process.Kill()
	ibuild.Wait()
	for deadline := time.Now().Add(2 * time.Second); tool() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			pid := tool()
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("the host tool (pid %d) outlived ibuild by 2 s", pid)
		}
	}
}

// A signal does not wait for a commit: the host tool is killed when the
// context ends, and nothing is stored.
func TestCommitCancelled(t *testing.T) {
	st, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := st.Commit(ctx, "k1", src, objectMeta{Pipeline: "p"}); !errors.Is(err, context.Canceled) {
		t.Errorf("commit with an ended context: %v", err)
	}
	if st.Lookup("k1") {
		t.Error("the object was stored")
	}
	// tmp/build-*: this open store's temp area.
	if left, _ := filepath.Glob(filepath.Join(st.Dir(), "tmp", "*", "*")); len(left) != 0 {
		t.Errorf("left in the store's temp area: %v", left)
	}

	ctx, cancel = context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := hostOutput(ctx, "sleep", "60"); done <- err }()
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("host tool after cancel: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the host tool still runs 30 s after its context ended")
	}
}

// TestWriteTarZstSaysWhyItFailed: a full disk under the archive is the
// error, not the SIGPIPE tar dies of.
func TestWriteTarZstSaysWhyItFailed(t *testing.T) {
	tree := t.TempDir()
	big := make([]byte, 4<<20)
	rand.Read(big) // incompressible: the encoder must write
	if err := os.WriteFile(filepath.Join(tree, "f"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	err := writeTarZst(context.Background(), tree, fullDisk{})
	if !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("writeTarZst to a full disk: %v, want %v", err, syscall.ENOSPC)
	}
}

type fullDisk struct{}

func (fullDisk) Write([]byte) (int, error) { return 0, syscall.ENOSPC }
