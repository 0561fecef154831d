package stages_test

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestISOValidate(t *testing.T) {
	const ok = `"filename": "live.iso", "volume_id": "DEBIAN_LIVE", "root": {"pipeline": "os", "path": "/"}, "menu": [{"title": "Live"}], "timeout": 1`
	imgValidate(t, "iso", []struct{ options, err string }{
		{`{` + ok + `}`, ""},
		{`{` + ok + `, "bios": true, "kernel_opts": "console=ttyS0,115200", "publisher": "ACME", "application_id": "demo"}`, ""},
		{`{` + ok + `, "payload": {"source": {"pipeline": "image", "path": "/disk.raw"}, "path": "/install/disk.raw.zst"}}`, ""},
		{`{` + strings.Replace(ok, "DEBIAN_LIVE", "debian live", 1) + `}`, "volume_id"},
		{`{` + strings.Replace(ok, "DEBIAN_LIVE", strings.Repeat("A", 33), 1) + `}`, "volume_id"},
		{`{` + strings.Replace(ok, `"live.iso"`, `"a/b.iso"`, 1) + `}`, "filename"},
		{`{` + strings.Replace(ok, `[{"title": "Live"}]`, `[]`, 1) + `}`, "menu: no entry"},
		{`{` + strings.Replace(ok, `"Live"`, `"it's"`, 1) + `}`, "menu[0].title"},
		{`{` + ok + `, "kernel_opts": " quiet"}`, "kernel_opts"},
		{`{` + ok + `, "publisher": "a\"b"}`, "publisher"},
		{`{` + strings.Replace(ok, `"timeout": 1`, `"timeout": -1`, 1) + `}`, "timeout"},
		{`{` + ok + `, "payload": {"source": {"pipeline": "image", "path": "/disk.raw"}, "path": "/install/disk.raw"}}`, "does not end in .zst"},
		{`{` + ok + `, "payload": {"source": {"pipeline": "image", "path": "/disk.raw"}, "path": "/disk.raw.zst"}}`, "directory of its own"},
		{`{` + ok + `, "payload": {"source": {"pipeline": "image", "path": "/disk.raw"}, "path": "/live/disk.raw.zst"}}`, "directory of its own"},
		{`{` + ok + `, "unknown": 1}`, "unknown field"},
	})
}

// isoTree is a small stand-in for a live tree: a kernel and an initramfs
// (any bytes: nothing boots here) and a few files to squash.
func isoTree(t *testing.T, mtime time.Time) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"boot/vmlinuz-6.1.0-9-amd64":     "old kernel",
		"boot/initrd.img-6.1.0-9-amd64":  "old initrd",
		"boot/vmlinuz-6.1.0-10-amd64":    strings.Repeat("kernel", 1000),
		"boot/initrd.img-6.1.0-10-amd64": strings.Repeat("initrd", 1000),
		"etc/hostname":                   "live\n",
		"usr/bin/hello":                  "#!/bin/sh\necho hello\n",
	}
	for name, data := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// TestISORun makes an ISO with the host's tools, as a build root's,
// reads it back with xorriso, and makes it again from a copy of the tree
// with other times: the same bytes.
func TestISORun(t *testing.T) {
	imgNeedRoot(t)
	imgNeedTools(t, "xorriso", "mksquashfs", "unsquashfs", "grub-mkimage", "mkfs.fat", "mcopy", "mdir")
	for _, d := range []string{"/usr/lib/grub/x86_64-efi", "/usr/lib/grub/i386-pc"} {
		if _, err := os.Stat(d); err != nil {
			t.Skipf("needs GRUB's modules in %s (grub-efi-amd64-bin, grub-pc-bin)", d)
		}
	}
	image := t.TempDir()
	raw := []byte(strings.Repeat("disk", 1<<16))
	if err := os.WriteFile(filepath.Join(image, "disk.raw"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	const opts = `{"filename": "live.iso", "volume_id": "IBUILD_TEST", "publisher": "ibuild tests",
		"root": {"pipeline": "os", "path": "/"}, "kernel_opts": "console=ttyS0,115200",
		"menu": [{"title": "Live"}, {"title": "Live, other", "kernel_opts": "x=1"}], "timeout": 3, "bios": true,
		"payload": {"source": {"pipeline": "image", "path": "/disk.raw"}, "path": "/install/disk.raw.zst"}}`
	env := imgEnv(t, map[string]string{"os": isoTree(t, time.Unix(imgEpoch-5000, 0)), "image": image})
	imgRun(t, env, "iso", opts)
	imgLeftovers(t, env.Tree, "live.iso")
	iso := filepath.Join(env.Tree, "live.iso")

	// El Torito: BIOS and EFI entries; the EFI image is also a GPT
	// partition (for sticks), after GRUB's hybrid MBR.
	report := imgCmd(t, "xorriso", "-indev", iso, "-pvd_info", "-report_el_torito", "plain", "-report_system_area", "plain")
	t.Logf("xorriso report:\n%s", report)
	for _, want := range []string{"El Torito boot img :   1  BIOS  y   none", "El Torito boot img :   2  UEFI  y   none",
		"/boot/grub/i386-pc/eltorito.img", "/boot/grub/efi.img", "Volume Id    : IBUILD_TEST", "GPT partname local :   1"} {
		if !strings.Contains(report, want) {
			t.Errorf("xorriso's report lacks %q", want)
		}
	}
	extract := func(name string) string {
		dst := filepath.Join(t.TempDir(), filepath.Base(name))
		imgCmd(t, "xorriso", "-osirrox", "on", "-indev", iso, "-extract", name, dst)
		data, err := os.ReadFile(dst)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	if got := extract("/live/vmlinuz"); got != strings.Repeat("kernel", 1000) {
		t.Errorf("/live/vmlinuz is not the newest kernel (%d bytes)", len(got))
	}
	cfg := extract("/boot/grub/grub.cfg")
	for _, want := range []string{"set timeout=3", "menuentry 'Live' {\n\tlinux /live/vmlinuz boot=live console=ttyS0,115200\n\tinitrd /live/initrd.img\n}",
		"linux /live/vmlinuz boot=live console=ttyS0,115200 x=1"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("grub.cfg lacks %q:\n%s", want, cfg)
		}
	}
	sums := extract("/install/SHA256SUMS")
	if want := fmt.Sprintf("%x  disk.raw\n", sha256.Sum256(raw)); !strings.Contains(sums, want) {
		t.Errorf("SHA256SUMS lacks %q:\n%s", want, sums)
	}
	sq := filepath.Join(t.TempDir(), "filesystem.squashfs")
	imgCmd(t, "xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/live/filesystem.squashfs", sq)
	if l := imgCmd(t, "unsquashfs", "-l", sq); !strings.Contains(l, "squashfs-root/usr/bin/hello") {
		t.Errorf("the squashfs lacks /usr/bin/hello:\n%s", l)
	}
	efi := filepath.Join(t.TempDir(), "efi.img")
	imgCmd(t, "xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/boot/grub/efi.img", efi)
	if l := imgCmd(t, "mdir", "-i", efi, "-b", "::/EFI/BOOT"); !strings.Contains(l, "BOOTX64.EFI") {
		t.Errorf("the EFI image has no EFI/BOOT/BOOTX64.EFI:\n%s", l)
	}

	// Again, from a copy with other times: the same bytes.
	env2 := imgEnv(t, map[string]string{"os": isoTree(t, time.Unix(imgEpoch-9000, 0)), "image": image})
	imgRun(t, env2, "iso", opts)
	if a, b := imgSHA256(t, iso), imgSHA256(t, filepath.Join(env2.Tree, "live.iso")); a != b {
		t.Errorf("two runs differ: %s %s", a, b)
	}
}
