package stages_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const btrfsOptions = `{"filename":"disk.raw","partition":2,"uuid":"6a1b5f0e-2c3d-4e5f-8a9b-0c1d2e3f4a5b","device_uuid":"0d9f3c1e-5b7a-4c2d-8e6f-1a2b3c4d5e6f",
	"label":"root","source":{"pipeline":"os","path":"/"},"subvolumes":[{"name":"root","path":"/"},{"name":"home","path":"/home"},{"name":"var-log","path":"/var/log"}]}`

// btrfsDisk is a 256 MiB disk with a BIOS boot partition and the btrfs one.
const btrfsDisk = `{"filename":"disk.raw","size":268435456,"uuid":"` + imgDiskUUID + `","partitions":[
	{"name":"bios","type":"21686148-6449-6e6f-744e-656564454649","uuid":"3a9c1c44-8f6e-4f0b-9d2a-1b2c3d4e5f60","start":2048,"size":2048},
	{"name":"root","type":"4f68bce3-e8cd-4db1-96e7-fbcaf984b709","uuid":"` + imgRootUUID + `","start":4096,"size":0}]}`

func TestMkfsBtrfsValidate(t *testing.T) {
	ok := btrfsOptions
	tests := []struct{ options, err string }{
		{ok, ""},
		{strings.Replace(ok, `"name":"home"`, `"name":"a/b"`, 1), `subvolumes[1].name: "a/b" is not a subvolume name`},
		{strings.Replace(ok, `"name":"home"`, `"name":"root"`, 1), `subvolumes[1].name: "root" is subvolumes[0]'s name too`},
		{strings.Replace(ok, `"path":"/home"`, `"path":"/"`, 1), `subvolumes[1].path: "/" is subvolumes[0]'s path too`},
		{strings.Replace(ok, `"path":"/home"`, `"path":"home"`, 1), `subvolumes[1].path: "home" must be absolute`},
		{strings.Replace(ok, `"path":"/home"`, `"path":"/home/../etc"`, 1), `must be absolute and clean`},
		{strings.Replace(ok, `0d9f3c1e-5b7a-4c2d-8e6f-1a2b3c4d5e6f`, `6a1b5f0e-2c3d-4e5f-8a9b-0c1d2e3f4a5b`, 1), `device_uuid: 6a1b5f0e-2c3d-4e5f-8a9b-0c1d2e3f4a5b is the file system's uuid too`},
		{strings.Replace(ok, `"uuid":"6a1b5f0e`, `"uuid":"x6a1b5f0e`, 1), `uuid:`},
		{`{"filename":"disk.raw","partition":2,"uuid":"6a1b5f0e-2c3d-4e5f-8a9b-0c1d2e3f4a5b","device_uuid":"0d9f3c1e-5b7a-4c2d-8e6f-1a2b3c4d5e6f","source":{"pipeline":"os","path":"/"},"subvolumes":[]}`, `subvolumes: none`},
		{strings.Replace(ok, `"label"`, `"compress":"zstd","label"`, 1), `unknown field "compress"`},
		// A volume made in a file of the pipeline's own tree.
		{strings.Replace(ok, `"filename":"disk.raw","partition":2`, `"output":"volume.img","size":268435456`, 1), ""},
		{strings.Replace(ok, `"filename":"disk.raw"`, `"output":"volume.img","size":268435456`, 1), `output: set with filename or partition`},
		{strings.Replace(ok, `"filename":"disk.raw","partition":2`, `"output":"volume.img","size":1048576`, 1), `size: 1048576 bytes are too few for btrfs`},
		{strings.Replace(ok, `"filename":"disk.raw","partition":2`, `"output":"a/volume.img","size":268435456`, 1), `output: "a/volume.img" must be a base name`},
		{strings.Replace(ok, `"filename":"disk.raw","partition":2`, `"size":268435456`, 1), `output: empty`},
	}
	imgValidate(t, "mkfs-btrfs", tests)
}

func TestWritePartitionValidate(t *testing.T) {
	ok := `{"filename":"disk.raw","partition":2,"source":{"pipeline":"btrfs","path":"/volume.img"}}`
	imgValidate(t, "write-partition", []struct{ options, err string }{
		{ok, ""},
		{strings.Replace(ok, `"partition":2`, `"partition":0`, 1), `partition`},
		{strings.Replace(ok, `"path":"/volume.img"`, `"path":"volume.img"`, 1), `source.path: "volume.img" is not absolute`},
		{strings.Replace(ok, `"filename":"disk.raw"`, `"filename":"../disk.raw"`, 1), `filename:`},
	})
}

// btrfsBuildRoot returns a build root whose mkfs.btrfs can make
// subvolumes: the host when its btrfs-progs can, else a Debian 13 tree
// with btrfs-progs, made by mmdebstrap once and cached as a tarball.
func btrfsBuildRoot(t *testing.T) string {
	t.Helper()
	if out, _ := exec.Command("mkfs.btrfs", "--help").CombinedOutput(); bytes.Contains(out, []byte("--subvol")) {
		return "/"
	}
	if testing.Short() {
		t.Skip("short mode: no Debian 13 build root")
	}
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		t.Skip("the host's mkfs.btrfs has no --subvol and mmdebstrap is not installed")
	}
	// The host's archive, for trixie.
	f, err := os.Open(tcHostSources)
	if err != nil {
		t.Skipf("no host apt sources: %v", err)
	}
	defer f.Close()
	var uri string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if u, ok := strings.CutPrefix(sc.Text(), "URIs: "); ok && !strings.Contains(u, "security") {
			uri = strings.TrimSpace(u)
			break
		}
	}
	if uri == "" {
		t.Skipf("no archive URI in %s", tcHostSources)
	}
	sources := fmt.Sprintf("Types: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n", uri)
	cache := os.Getenv("IBUILD_TEST_CACHE")
	if cache == "" {
		cache = filepath.Join(os.TempDir(), "ibuild-test-cache")
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"--variant=essential", "--include=btrfs-progs,libfaketime", "trixie"}
	h := sha256.New()
	h.Write([]byte(strings.Join(args, "\x00") + "\x00" + sources))
	tarball := filepath.Join(cache, "stages-btrfs-root-"+hex.EncodeToString(h.Sum(nil))[:16]+".tar")
	lock, err := os.OpenFile(tarball+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tarball); err != nil {
		start := time.Now()
		srcFile := filepath.Join(t.TempDir(), "trixie.sources")
		if err := os.WriteFile(srcFile, []byte(sources), 0o644); err != nil {
			t.Fatal(err)
		}
		tmp := tarball + ".tmp.tar"
		if out, err := exec.Command("mmdebstrap", append(args, tmp, srcFile)...).CombinedOutput(); err != nil {
			os.Remove(tmp)
			t.Fatalf("mmdebstrap: %v\n%s", err, out)
		}
		if err := os.Rename(tmp, tarball); err != nil {
			t.Fatal(err)
		}
		t.Logf("made the Debian 13 build root tarball in %v", time.Since(start).Round(time.Second))
	}
	root := t.TempDir()
	if out, err := exec.Command("tar", "-C", root, "--numeric-owner", "-xpf", tarball).CombinedOutput(); err != nil {
		t.Fatalf("unpacking %s: %v\n%s", tarball, err, out)
	}
	return root
}

// btrfsBuild makes the disk and the btrfs file system in it and returns
// the image's path.
func btrfsBuild(t *testing.T, buildRoot string) string {
	t.Helper()
	osTree := imgRootTree(t)
	if err := os.MkdirAll(filepath.Join(osTree, "var/log/apt"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(osTree, "var/log/apt/history.log"), []byte("log\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	env := imgEnv(t, map[string]string{"os": osTree})
	env.BuildRoot = buildRoot
	imgRun(t, env, "disk", btrfsDisk)
	imgRun(t, env, "mkfs-btrfs", btrfsOptions)
	imgLeftovers(t, env.Tree, "disk.raw")
	return filepath.Join(env.Tree, "disk.raw")
}

// TestMkfsBtrfsRun makes a btrfs file system with three subvolumes and
// checks it with the host's btrfs check, then mounts it read-only on a
// loop device of its own to list the subvolumes and read files back.
func TestMkfsBtrfsRun(t *testing.T) {
	imgNeedRoot(t)
	imgNeedTools(t, "btrfs", "losetup", "mount", "umount", "sfdisk")
	buildRoot := btrfsBuildRoot(t)
	img := btrfsBuild(t, buildRoot)
	if out := imgCmd(t, "sfdisk", "--verify", img); !strings.Contains(out, "No errors detected") {
		t.Errorf("sfdisk --verify: %s", out)
	}
	// Same options, a tree made again a second later (other ctimes and
	// atimes, directories written anew): the same bytes.
	time.Sleep(time.Second)
	img2 := btrfsBuild(t, buildRoot)
	if a, b := imgSHA256(t, img), imgSHA256(t, img2); a != b {
		t.Errorf("two builds from two copies of the tree differ: %s %s", a, b)
	}
	const partStart, partSize = 4096 * 512, 268435456 - 4096*512 - 33*512
	part := imgExtract(t, img, partStart, partSize)
	t.Logf("btrfs check:\n%s", imgCmd(t, "btrfs", "check", "--readonly", part))
	super := imgCmd(t, "btrfs", "inspect-internal", "dump-super", part)
	for _, want := range []string{"fsid\t\t\t6a1b5f0e-2c3d-4e5f-8a9b-0c1d2e3f4a5b", "label\t\t\troot", "dev_item.uuid\t\t0d9f3c1e-5b7a-4c2d-8e6f-1a2b3c4d5e6f"} {
		if !strings.Contains(super, want) {
			t.Errorf("dump-super lacks %q:\n%s", want, super)
		}
	}

	loop := strings.TrimSpace(imgCmd(t, "losetup", "-f", "--show", "-r", "-o", strconv.Itoa(partStart), "--sizelimit", strconv.Itoa(partSize), img))
	mnt := t.TempDir()
	mounted := false
	t.Cleanup(func() {
		if mounted {
			if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
				t.Errorf("umount %s: %v\n%s", mnt, err, out)
			}
		}
		if out, err := exec.Command("losetup", "-d", loop).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v\n%s", loop, err, out)
		}
	})
	imgCmd(t, "mount", "-t", "btrfs", "-o", "ro", loop, mnt)
	mounted = true
	list := imgCmd(t, "btrfs", "subvolume", "list", mnt)
	t.Logf("btrfs subvolume list:\n%s", list)
	for _, name := range []string{"root", "home", "var-log"} {
		if !strings.Contains(list, "top level 5 path "+name+"\n") {
			t.Errorf("subvolume %s is not at the top level:\n%s", name, list)
		}
	}
	for p, want := range map[string]string{
		"root/etc/hostname":            "vm\n",
		"home/admin/.profile":          "# profile\n",
		"var-log/apt/history.log":      "log\n",
		"root/usr/share/many/file-399": "x",
	} {
		b, err := os.ReadFile(filepath.Join(mnt, p))
		if err != nil || !strings.HasPrefix(string(b), want) {
			t.Errorf("%s: %q, %v; want %q", p, b, err, want)
		}
	}
	// Nested subvolumes' mount points are left empty in their parent.
	for _, dir := range []string{"root/home", "root/var/log"} {
		ents, err := os.ReadDir(filepath.Join(mnt, dir))
		if err != nil || len(ents) != 0 {
			t.Errorf("%s: %d entries, %v; want an empty mount point", dir, len(ents), err)
		}
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(mnt, "home/admin/.profile"), &st); err != nil || st.Uid != 1000 || st.Mode&0o777 != 0o600 {
		t.Errorf("home/admin/.profile: uid %d mode %o, %v", st.Uid, st.Mode&0o777, err)
	}
}
