package stages_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestMkfsExt4Validate(t *testing.T) {
	const (
		u   = `"uuid":"6a1b5f0e-2c3d-4e5f-8a9b-0c1d2e3f4a5b"`
		h   = `"hash_seed":"0b8c3a2e-6a4f-4a9f-8e2d-1c3b5a7d9e0f"`
		src = `"source":{"pipeline":"os","path":"/"}`
	)
	tests := []struct{ options, err string }{
		{`{"filename":"disk.raw","partition":3,` + u + `,"label":"root",` + h + `,` + src + `,"exclude":["/boot/efi/*"]}`, ""},
		{`{"filename":"disk.raw","partition":3,` + u + `,` + h + `,` + src + `}`, ""},
		{`{"filename":"/disk.raw","partition":3,` + u + `,` + h + `,` + src + `}`, "filename:"},
		{`{"filename":"disk.raw","partition":-1,` + u + `,` + h + `,` + src + `}`, "partition: -1"},
		{`{"filename":"disk.raw","partition":3,"uuid":"x",` + h + `,` + src + `}`, `uuid: "x" is not a GUID`},
		{`{"filename":"disk.raw","partition":3,` + u + `,` + src + `}`, `hash_seed: "" is not a GUID`},
		{`{"filename":"disk.raw","partition":3,` + u + `,"label":"seventeen-chars-x",` + h + `,` + src + `}`, "label: \"seventeen-chars-x\" is longer than 16 bytes"},
		{`{"filename":"disk.raw","partition":3,` + u + `,` + h + `}`, "source.pipeline: empty"},
		{`{"filename":"disk.raw","partition":3,` + u + `,` + h + `,` + src + `,"exclude":["/boot/efi"]}`, `exclude[0]: "/boot/efi" is not supported: only "<dir>/*"`},
		{`{"filename":"disk.raw","partition":3,` + u + `,` + h + `,` + src + `,"exclude":["/*"]}`, `exclude[0]: "/*" is not supported`},
		{`{"filename":"disk.raw","partition":3,` + u + `,` + h + `,` + src + `,"exclude":["boot/*"]}`, `exclude[0]: "boot/*": directory must be absolute`},
		{`{"filename":"disk.raw","partition":3,` + u + `,` + h + `,` + src + `,"exclude":["/boot//efi/*"]}`, `exclude[0]: "/boot//efi/*": directory must be absolute and clean`},
		{`{"filename":"disk.raw","partition":3,` + u + `,` + h + `,` + src + `,"exclude":["/var/*/cache/*"]}`, `exclude[0]: "/var/*/cache/*": wildcards`},
		{`{"filename":"disk.raw","partition":3,` + u + `,` + h + `,` + src + `,"exclude":["/tmp/*","/tmp/*"]}`, `exclude[1]: "/tmp/*" is listed twice`},
		{`{"filename":"disk.raw","partition":3,` + u + `,` + h + `,` + src + `,"features":[]}`, `unknown field "features"`},
	}
	imgValidate(t, "mkfs-ext4", tests)
}

// imgRootTree is a small root file system with what mkfs-ext4 must keep.
func imgRootTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(p, data string, mode uint32, uid, gid int) {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(full, uid, gid); err != nil {
			t.Fatal(err)
		}
		// After chown, which clears set-id bits; unix.Chmod takes them raw.
		if err := unix.Chmod(full, mode); err != nil {
			t.Fatal(err)
		}
	}
	write("etc/hostname", "vm\n", 0o644, 0, 0)
	write("etc/shadow", "root:*:19675:0:99999:7:::\n", 0o640, 0, 42)
	write("home/admin/.profile", "# profile\n", 0o600, 1000, 1000)
	write("usr/bin/su", "not really su", 0o4755, 0, 0)
	write("usr/bin/ping", strings.Repeat("\x7fELF", 1000), 0o755, 0, 0)
	// cap_net_raw=ep, as `setcap cap_net_raw+ep` writes it (VFS_CAP_REVISION_2).
	capability := []byte{0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0}
	if err := unix.Lsetxattr(filepath.Join(root, "usr/bin/ping"), "security.capability", capability, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lsetxattr(filepath.Join(root, "etc/hostname"), "user.ibuild", []byte("kept"), 0); err != nil {
		t.Fatal(err)
	}
	write("usr/lib/one", "hard linked\n", 0o644, 0, 0)
	if err := os.Link(filepath.Join(root, "usr/lib/one"), filepath.Join(root, "usr/lib/two")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(root, "dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(root, "dev/initctl"), unix.S_IFIFO|0o600, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/usr/lib/one", filepath.Join(root, "etc/short-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/"+strings.Repeat("long/", 30)+"target", filepath.Join(root, "etc/long-link")); err != nil {
		t.Fatal(err)
	}
	write(`etc/name with "quotes" and spaces`, "odd\n", 0o644, 0, 0)
	for i := 0; i < 400; i++ {
		write(fmt.Sprintf("usr/share/many/file-%03d", i), "x", 0o644, 0, 0)
	}
	write("boot/efi/EFI/BOOT/BOOTX64.EFI", "belongs to the ESP", 0o644, 0, 0)
	if err := os.Chmod(filepath.Join(root, "boot/efi"), 0o700); err != nil {
		t.Fatal(err)
	}
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := os.Chtimes(filepath.Join(root, "etc/shadow"), old, old); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(filepath.Join(root, "boot/efi"), old, old); err != nil {
		t.Fatal(err)
	}
	future := time.Unix(imgEpoch+86400*1000, 0)
	if err := os.Chtimes(filepath.Join(root, "etc/hostname"), future, future); err != nil {
		t.Fatal(err)
	}
	return root
}

const imgExt4Options = `{"filename":"disk.raw","partition":3,"uuid":"` + imgRootUUID + `","label":"root",
	"hash_seed":"0b8c3a2e-6a4f-4a9f-8e2d-1c3b5a7d9e0f","source":{"pipeline":"os","path":"/"},"exclude":["/boot/efi/*"]}`

func TestMkfsExt4Run(t *testing.T) {
	imgNeedRoot(t)
	imgNeedTools(t, "mkfs.ext4", "debugfs", "e2fsck", "dumpe2fs")
	osTree := imgRootTree(t)
	env := imgEnv(t, map[string]string{"os": osTree})
	img := imgNewDisk(t, env)
	imgRun(t, env, "mkfs-ext4", imgExt4Options)
	imgLeftovers(t, env.Tree, "disk.raw")
	part := imgExtract(t, img, imgRootStart, imgRootSize)

	out := imgCmd(t, "e2fsck", "-fn", part)
	t.Logf("e2fsck -fn:\n%s", out)

	debugfs := func(req string) string {
		t.Helper()
		cmd := exec.Command("debugfs", "-R", req, part)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		b, err := cmd.Output()
		if err != nil {
			t.Fatalf("debugfs -R %q: %v\n%s", req, err, stderr.String())
		}
		if e := strings.TrimSpace(regexp.MustCompile(`debugfs [0-9.]+ \([^)]*\)`).ReplaceAllString(stderr.String(), "")); e != "" {
			t.Errorf("debugfs -R %q: %s", req, e)
		}
		return string(b)
	}
	epoch := fmt.Sprintf("0x%08x:00000000", imgEpoch)
	tests := []struct {
		req  string
		want []string
	}{
		{"stat /etc/hostname", []string{"Mode:  0644", "User:     0   Group:     0", "mtime: " + epoch, "ctime: " + epoch, "atime: " + epoch, "crtime: " + epoch, "user.ibuild (4) = \"kept\""}},
		{"stat /etc/shadow", []string{"Mode:  0640", "Group:    42", fmt.Sprintf("mtime: 0x%08x:", time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC).Unix()), "ctime: " + epoch}},
		{"stat /home/admin/.profile", []string{"Mode:  0600", "User:  1000   Group:  1000"}},
		{"stat /usr/bin/su", []string{"Mode:  04755"}},
		{"ea_list /usr/bin/ping", []string{"security.capability (20) = 01 00 00 02 00 20 00 00 00 20 00 00 00 00 00 00 00 00 00 00"}},
		{"stat /usr/lib/one", []string{"Links: 2"}},
		{"stat /dev/null", []string{"Type: character special", "Device major/minor number: 01:03"}},
		{"stat /dev/initctl", []string{"Type: FIFO", "Mode:  0600"}},
		{"stat /etc/short-link", []string{"Type: symlink", `Fast link dest: "/usr/lib/one"`}},
		{"stat /etc/long-link", []string{"Type: symlink", "Size: 157"}},
		{"cat \"/etc/name with \"\"quotes\"\" and spaces\"", []string{"odd"}},
		{"stat /boot/efi", []string{"Type: directory", "Mode:  0700", fmt.Sprintf("mtime: 0x%08x:", time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC).Unix()), "ctime: " + epoch}},
		{"stat /", []string{"User:     0   Group:     0", "ctime: " + epoch}},
		{"cat /usr/share/many/file-399", []string{"x"}},
	}
	for _, tc := range tests {
		got := debugfs(tc.req)
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("debugfs %s: lacks %q in\n%s", tc.req, w, got)
			}
		}
	}
	// Hard links share an inode.
	if a, b := debugfs("stat /usr/lib/one"), debugfs("stat /usr/lib/two"); strings.SplitN(a, "\n", 2)[0] != strings.SplitN(b, "\n", 2)[0] {
		t.Errorf("hard links have different inodes:\n%s\n%s", a, b)
	}
	// The ESP's contents stay out, the mount point stays.
	if ls := debugfs("ls -p /boot/efi"); strings.Contains(ls, "EFI") {
		t.Errorf("/boot/efi is not empty: %s", ls)
	}

	super := imgCmd(t, "dumpe2fs", "-h", part)
	for _, want := range []string{
		"Filesystem UUID:          " + imgRootUUID,
		"Filesystem volume name:   root",
		"Directory Hash Seed:      0b8c3a2e-6a4f-4a9f-8e2d-1c3b5a7d9e0f",
		"Block size:               4096",
	} {
		if !strings.Contains(super, want) {
			t.Errorf("dumpe2fs lacks %q", want)
		}
	}
	if m := regexp.MustCompile(`Filesystem features:\s+(.*)`).FindStringSubmatch(super); m == nil || strings.Contains(m[1], "metadata_csum_seed") || strings.Contains(m[1], "orphan_file") || !strings.Contains(m[1], "extent") {
		t.Errorf("features: %v", m)
	}

	// Nothing outside the partition changed: the GPT is intact.
	if out := imgCmd(t, "sfdisk", "--verify", img); !strings.Contains(out, "No errors detected") {
		t.Errorf("sfdisk --verify: %s", out)
	}

	// A second tree made the same way (other inodes, other ctimes, other
	// directory order on disk) gives the same bytes.
	time.Sleep(1100 * time.Millisecond)
	osTree2 := imgRootTree(t)
	env2 := imgEnv(t, map[string]string{"os": osTree2})
	img2 := imgNewDisk(t, env2)
	imgRun(t, env2, "mkfs-ext4", imgExt4Options)
	if a, b := imgSHA256(t, img), imgSHA256(t, img2); a != b {
		t.Errorf("two runs differ: %s %s", a, b)
		t.Log(imgCmd(t, "sh", "-c", "cmp -l "+img+" "+img2+" | head -20"))
	}
	// The source is untouched by the exclusion's bind mount.
	if _, err := os.Stat(filepath.Join(osTree, "boot/efi/EFI/BOOT/BOOTX64.EFI")); err != nil {
		t.Errorf("source lost the ESP's contents: %v", err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(osTree, "boot/efi"), &st); err != nil || st.Mode&0o777 != 0o700 {
		t.Errorf("source /boot/efi changed: %v %o", err, st.Mode)
	}
}

func TestMkfsExt4RunErrors(t *testing.T) {
	imgNeedRoot(t)
	imgNeedTools(t, "mkfs.ext4", "debugfs")
	tests := []struct {
		name, options string
		tree          func(root string) error
		err           string
	}{
		{"no partition", strings.Replace(imgExt4Options, `"partition":3`, `"partition":5`, 1), nil, "disk.raw has no partition 5"},
		{"exclude a file", imgExt4Options, func(root string) error {
			if err := os.RemoveAll(filepath.Join(root, "boot/efi")); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(root, "boot/efi"), nil, 0o644)
		}, "exclude /boot/efi/*: /boot/efi is not a directory"},
		{"exclude through a symlink", imgExt4Options, func(root string) error {
			if err := os.Rename(filepath.Join(root, "boot"), filepath.Join(root, "realboot")); err != nil {
				return err
			}
			return os.Symlink("realboot", filepath.Join(root, "boot"))
		}, "is a symlink"},
		{"too small", strings.Replace(imgExt4Options, `"partition":3`, `"partition":1`, 1), nil, "Filesystem too small for a journal"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			osTree := imgRootTree(t)
			if tc.tree != nil {
				if err := tc.tree(osTree); err != nil {
					t.Fatal(err)
				}
			}
			env := imgEnv(t, map[string]string{"os": osTree})
			img := imgNewDisk(t, env)
			before := imgSHA256(t, img)
			err := imgRunErr(t, env, "mkfs-ext4", tc.options)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error = %v, want %q", err, tc.err)
			}
			t.Logf("error: %v", err)
			if imgSHA256(t, img) != before {
				t.Errorf("a failed run changed the image")
			}
			imgLeftovers(t, env.Tree, "disk.raw")
		})
	}
}

// TestMkfsExt4DebianTree makes the root file system of a real Debian tree
// twice, from two unpacked copies (other inode numbers, other ctimes,
// other on-disk directory order), and compares the bytes.
func TestMkfsExt4DebianTree(t *testing.T) {
	imgNeedTools(t, "mkfs.ext4", "debugfs", "e2fsck", "getcap")
	var sums []string
	var part string
	var tree string
	for run := 0; run < 2; run++ {
		tree = tcDebianTree(t)
		env := imgEnv(t, map[string]string{"os": tree})
		const disk = `{"filename":"disk.raw","size":4294967296,"uuid":"` + imgDiskUUID + `","partitions":[
			{"name":"bios","type":"21686148-6449-6e6f-744e-656564454649","uuid":"3a9c1c44-8f6e-4f0b-9d2a-1b2c3d4e5f60","start":2048,"size":2048},
			{"name":"esp","type":"c12a7328-f81f-11d2-ba4b-00a0c93ec93b","uuid":"7d2b8f4a-1c3e-4a5b-9c6d-7e8f9a0b1c2d","start":4096,"size":262144},
			{"name":"root","type":"4f68bce3-e8cd-4db1-96e7-fbcaf984b709","uuid":"` + imgRootUUID + `","start":266240,"size":0}]}`
		imgRun(t, env, "disk", disk)
		start := time.Now()
		imgRun(t, env, "mkfs-ext4", imgExt4Options)
		t.Logf("run %d: mkfs-ext4 of the Debian tree into a 4 GiB disk: %v", run, time.Since(start).Round(time.Millisecond))
		img := filepath.Join(env.Tree, "disk.raw")
		start = time.Now()
		sums = append(sums, imgSHA256(t, img))
		t.Logf("hashing the 4 GiB image: %v", time.Since(start).Round(time.Millisecond))
		if run == 0 {
			var st syscall.Stat_t
			syscall.Stat(img, &st)
			t.Logf("image uses %d MiB on disk", st.Blocks*512>>20)
			part = imgExtract(t, img, 266240*512, (8388608-33-266240)*512)
		}
	}
	if sums[0] != sums[1] {
		t.Errorf("two runs from two copies of the tree differ: %s %s", sums[0], sums[1])
	}
	start := time.Now()
	out := imgCmd(t, "e2fsck", "-fn", part)
	t.Logf("e2fsck -fn (%v):\n%s", time.Since(start).Round(time.Millisecond), out)

	// Every file with capabilities in the tree has them in the file system.
	caps := strings.TrimSpace(imgCmd(t, "getcap", "-r", tree))
	if caps == "" {
		t.Logf("the tree has no files with capabilities")
	}
	for _, line := range strings.Split(caps, "\n") {
		if line == "" {
			continue
		}
		p := strings.TrimPrefix(strings.Fields(line)[0], tree)
		got := imgCmd(t, "debugfs", "-R", "ea_list "+p, part)
		if !strings.Contains(got, "security.capability") {
			t.Errorf("%s (%s) lost its capabilities: %s", p, line, got)
		}
	}
	if got := imgCmd(t, "debugfs", "-R", "stat /etc/hostname", part); !strings.Contains(got, "User:     0   Group:     0") {
		t.Errorf("/etc/hostname: %s", got)
	}
}
