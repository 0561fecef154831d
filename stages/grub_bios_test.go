package stages_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestGrubBIOSValidate(t *testing.T) {
	const src = `"source":{"pipeline":"os","path":"/boot/grub/i386-pc"}`
	tests := []struct{ options, err string }{
		{`{"filename":"disk.raw","core_partition":1,` + src + `}`, ""},
		{`{"filename":"disk.raw","core_partition":0,` + src + `}`, "core_partition: 0 is not a partition number"},
		{`{"filename":"x/disk.raw","core_partition":1,` + src + `}`, "filename:"},
		{`{"filename":"disk.raw","core_partition":1}`, "source.pipeline: empty"},
		{`{"filename":"disk.raw","core_partition":1,"source":{"pipeline":"os","path":""}}`, "source.path: empty"},
		{`{"filename":"disk.raw","core_partition":1,` + src + `,"device":"/dev/sda"}`, `unknown field "device"`},
	}
	imgValidate(t, "grub-bios", tests)
}

const imgGrubDir = "/usr/lib/grub/i386-pc"

// imgGrubTree is an os tree with /boot/grub/i386-pc/{boot,core}.img made
// by the host's grub-mkimage, with an embedded config when config is set.
func imgGrubTree(t *testing.T, config string) string {
	t.Helper()
	imgNeedTools(t, "grub-mkimage")
	if _, err := os.Stat(filepath.Join(imgGrubDir, "boot.img")); err != nil {
		t.Skipf("needs grub-pc-bin on the host: %v", err)
	}
	root := t.TempDir()
	dir := filepath.Join(root, "boot/grub/i386-pc")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	boot, err := os.ReadFile(filepath.Join(imgGrubDir, "boot.img"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "boot.img"), boot, 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-O", "i386-pc", "-d", imgGrubDir, "-o", filepath.Join(dir, "core.img"), "-p", "(hd0,gpt3)/boot/grub"}
	mods := []string{"biosdisk", "part_gpt", "ext2"}
	if config != "" {
		cfg := filepath.Join(t.TempDir(), "early.cfg")
		if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-c", cfg)
		mods = append(mods, "serial", "terminal", "echo", "halt", "sleep")
	}
	imgCmd(t, "grub-mkimage", append(args, mods...)...)
	return root
}

const imgGrubOptions = `{"filename":"disk.raw","core_partition":1,"source":{"pipeline":"os","path":"/boot/grub/i386-pc"}}`

func TestGrubBIOSRun(t *testing.T) {
	imgNeedTools(t, "sfdisk", "sgdisk")
	osTree := imgGrubTree(t, "")
	env := imgEnv(t, map[string]string{"os": osTree})
	img := imgNewDisk(t, env)
	orig, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	imgRun(t, env, "grub-bios", imgGrubOptions)
	imgLeftovers(t, env.Tree, "disk.raw")
	got, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	boot, _ := os.ReadFile(filepath.Join(osTree, "boot/grub/i386-pc/boot.img"))
	core, _ := os.ReadFile(filepath.Join(osTree, "boot/grub/i386-pc/core.img"))

	// The partition table and the GPT survive.
	if !bytes.Equal(got[0x1b8:0x200], orig[0x1b8:0x200]) {
		t.Errorf("MBR partition table changed")
	}
	if !bytes.Equal(got[512:2048*512], orig[512:2048*512]) {
		t.Errorf("GPT changed")
	}
	if out := imgCmd(t, "sfdisk", "--verify", img); !strings.Contains(out, "No errors detected") {
		t.Errorf("sfdisk --verify: %s", out)
	}
	if out := imgCmd(t, "sgdisk", "-v", img); !strings.Contains(out, "No problems found") {
		t.Errorf("sgdisk -v: %s", out)
	}
	// boot.img's code, with the kernel sector and the drive check patched.
	if !bytes.Equal(got[0x68:0x1b8], boot[0x68:0x1b8]) || !bytes.Equal(got[:3], boot[:3]) {
		t.Errorf("boot.img code not in the MBR")
	}
	if ks := got[0x5c : 0x5c+8]; !bytes.Equal(ks, []byte{0x00, 0x08, 0, 0, 0, 0, 0, 0}) {
		t.Errorf("kernel sector = % x, want 2048", ks)
	}
	if got[0x66] != 0x90 || got[0x67] != 0x90 || got[0x64] != 0xff {
		t.Errorf("drive check/boot drive = % x % x", got[0x66:0x68], got[0x64])
	}
	// core.img at sector 2048 with its block list: sector 2049, n-1 sectors.
	n := (len(core) + 511) / 512
	at := got[2048*512 : 2048*512+n*512]
	if !bytes.Equal(at[512:len(core)], core[512:]) {
		t.Errorf("core.img body not at the BIOS boot partition")
	}
	wantBL := []byte{0x01, 0x08, 0, 0, 0, 0, 0, 0, byte(n - 1), byte((n - 1) >> 8), 0x20, 0x08}
	if bl := at[500:512]; !bytes.Equal(bl, wantBL) {
		t.Errorf("block list = % x, want % x", bl, wantBL)
	}

	// The same bytes as grub-bios-setup --no-rs-codes, when the host can
	// run it (it needs the boot directory on a block device it can map).
	imgCompareGrubBIOSSetup(t, orig, got, filepath.Join(osTree, "boot/grub/i386-pc"))
}

// imgCompareGrubBIOSSetup runs the host's grub-bios-setup on a copy of the
// original image and compares its result with want.
func imgCompareGrubBIOSSetup(t *testing.T, orig, want []byte, grubDir string) {
	t.Helper()
	setup := filepath.Join(imgGrubDir, "grub-bios-setup")
	if _, err := os.Stat(setup); err != nil {
		t.Logf("no comparison with grub-bios-setup: %v", err)
		return
	}
	if os.Geteuid() != 0 {
		t.Logf("no comparison with grub-bios-setup: needs root for a loop mount")
		return
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(img, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	// grub-bios-setup maps the directory holding the images to a GRUB
	// drive: put them on a small loop-mounted file system.
	fsImg := filepath.Join(dir, "grubdir.img")
	if err := os.WriteFile(fsImg, make([]byte, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	imgCmd(t, "mkfs.ext4", "-q", "-F", fsImg)
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-o", "loop", fsImg, mnt).CombinedOutput(); err != nil {
		t.Logf("no comparison with grub-bios-setup: loop mount: %v %s", err, out)
		return
	}
	defer exec.Command("umount", "-d", mnt).Run()
	for _, f := range []string{"boot.img", "core.img"} {
		b, err := os.ReadFile(filepath.Join(grubDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(mnt, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	loop := strings.TrimSpace(imgCmd(t, "findmnt", "-n", "-o", "SOURCE", "--target", mnt))
	devMap := filepath.Join(dir, "device.map")
	if err := os.WriteFile(devMap, []byte("(hd0) "+img+"\n(hd1) "+loop+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	imgCmd(t, setup, "--no-rs-codes", "-d", mnt, "-m", devMap, img)
	got, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("differs from grub-bios-setup at byte %#x: %#02x, grub-bios-setup wrote %#02x", i, want[i], got[i])
				break
			}
		}
		return
	}
	t.Logf("identical to grub-bios-setup --no-rs-codes")
}

// TestGrubBIOSBoot boots the image with SeaBIOS: GRUB's embedded config
// prints a marker on the serial console.
func TestGrubBIOSBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("boots qemu")
	}
	imgNeedTools(t, "qemu-system-x86_64")
	const marker = "IBUILD-GRUB-BIOS-BOOTED"
	osTree := imgGrubTree(t, "serial --unit=0 --speed=115200\nterminal_output serial\necho "+marker+"\nsleep 1\nhalt\n")
	env := imgEnv(t, map[string]string{"os": osTree})
	img := imgNewDisk(t, env)
	imgRun(t, env, "grub-bios", imgGrubOptions)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", "-machine", "pc", "-m", "256", "-nodefaults",
		"-display", "none", "-serial", "stdio", "-no-reboot",
		"-drive", "file="+img+",format=raw,if=ide")
	cmd.Stdout = &out
	cmd.Stderr = &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case <-done:
			if !strings.Contains(out.String(), marker) {
				t.Fatalf("qemu ended without the marker:\n%s", out.String())
			}
			t.Logf("GRUB ran from the MBR in %v", time.Since(start).Round(time.Millisecond))
			return
		case <-time.After(200 * time.Millisecond):
			if strings.Contains(out.String(), marker) {
				t.Logf("GRUB ran from the MBR in %v", time.Since(start).Round(time.Millisecond))
				cmd.Process.Kill()
				<-done
				return
			}
		case <-ctx.Done():
			cmd.Process.Kill()
			<-done
			t.Fatalf("no marker after 90 s:\n%s", out.String())
		}
	}
}

func TestGrubBIOSRunErrors(t *testing.T) {
	tests := []struct {
		name, options string
		tree          func(dir string) error
		err           string
	}{
		{"not a BIOS boot partition", strings.Replace(imgGrubOptions, `"core_partition":1`, `"core_partition":2`, 1), nil,
			"core_partition 2: type C12A7328-F81F-11D2-BA4B-00A0C93EC93B is not a BIOS boot partition"},
		{"no core.img", imgGrubOptions, func(dir string) error { return os.Remove(filepath.Join(dir, "core.img")) }, "reading core.img"},
		{"core.img too big", imgGrubOptions, func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "core.img"), make([]byte, 2049*512), 0o644)
		}, "core.img: 2049 sectors do not fit in the BIOS boot partition of 2048 sectors"},
		{"bad boot.img", imgGrubOptions, func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "boot.img"), make([]byte, 512), 0o644)
		}, "boot.img: 512 bytes, want one boot sector ending 55 aa"},
		{"not a core.img", imgGrubOptions, func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "core.img"), bytes.Repeat([]byte{0xff}, 4096), 0o644)
		}, "version mismatch"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			osTree := imgGrubTree(t, "")
			if tc.tree != nil {
				if err := tc.tree(filepath.Join(osTree, "boot/grub/i386-pc")); err != nil {
					t.Fatal(err)
				}
			}
			env := imgEnv(t, map[string]string{"os": osTree})
			img := imgNewDisk(t, env)
			before := imgSHA256(t, img)
			err := imgRunErr(t, env, "grub-bios", tc.options)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error = %v, want %q", err, tc.err)
			}
			if imgSHA256(t, img) != before {
				t.Errorf("a failed run changed the image")
			}
			imgLeftovers(t, env.Tree, "disk.raw")
		})
	}
}
