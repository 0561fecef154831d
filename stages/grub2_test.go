package stages_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/image-builder-action/image-builder-action/stages"
)

const (
	tcRootUUID = "6e3f1a2b-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
	tcBootUUID = "0b9c1a7e-1111-4222-8333-444455556666"
)

func TestGrub2Validate(t *testing.T) {
	const base = `"root_fs_uuid":"` + tcRootUUID + `"`
	tests := []struct{ options, err string }{
		{`{` + base + `,"kernel_opts":"console=ttyS0,115200n8 quiet","bios":{"platform":"i386-pc"},"uefi":{"vendor":"debian","removable":true},"timeout":1,"serial":true}`, ""},
		{`{` + base + `,"boot_fs_uuid":"` + tcBootUUID + `","bios":null,"uefi":{"vendor":"debian"},"timeout":0}`, ""},
		{`{` + base + `,"bios":{"platform":"i386-pc"},"uefi":null}`, ""},
		{`{"root_fs_uuid":"ABCD-1234","uefi":{"vendor":"debian"}}`, `root_fs_uuid: "ABCD-1234" is not a lower-case 8-4-4-4-12 UUID`},
		{`{` + base + `,"boot_fs_uuid":"x","uefi":{"vendor":"debian"}}`, `boot_fs_uuid: "x" is not`},
		{`{` + base + `,"bios":null,"uefi":null}`, `bios, uefi: neither is set`},
		{`{` + base + `,"bios":{"platform":"i386-efi"}}`, `bios.platform: "i386-efi" is not i386-pc`},
		{`{` + base + `,"uefi":{"vendor":"../x"}}`, `uefi.vendor: "../x" is not a directory name`},
		{`{` + base + `,"uefi":{"vendor":""}}`, `uefi.vendor: "" is not a directory name`},
		{`{` + base + `,"uefi":{"vendor":"debian"},"kernel_opts":"quiet; reboot"}`, `kernel_opts: "quiet;": ';' would be interpreted`},
		{`{` + base + `,"uefi":{"vendor":"debian"},"kernel_opts":"quiet console=\"ttyS0\" dyndbg=\"file a.c +p\""}`, ``},
		{`{` + base + `,"uefi":{"vendor":"debian"},"kernel_opts":"a=\"b"}`, `kernel_opts: "a=\"b": the double quote is not closed`},
		{`{` + base + `,"uefi":{"vendor":"debian"},"kernel_opts":"$x"}`, `kernel_opts:`},
		{`{` + base + `,"uefi":{"vendor":"debian"},"kernel_opts":"quiet  ro"}`, `kernel_opts: "quiet  ro": separate the arguments by one space`},
		{`{` + base + `,"uefi":{"vendor":"debian"},"timeout":-1}`, `timeout: -1 is not within`},
		{`{` + base + `,"uefi":{"vendor":"debian","secure_boot":true}}`, `unknown field "secure_boot"`},
	}
	for _, tc := range tests {
		_, err := stages.New("grub2", json.RawMessage(tc.options))
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("New(grub2, %s) = %v, want error %q", tc.options, err, tc.err)
		}
	}
}

func TestGrub2MissingParts(t *testing.T) {
	root := tcEmptyTree(t)
	env := tcEnv(t, root)
	s := tcStage(t, "grub2", `{"root_fs_uuid":"`+tcRootUUID+`","uefi":{"vendor":"debian"}}`)
	if err := s.Run(context.Background(), env); err == nil || !strings.Contains(err.Error(), "no /boot/vmlinuz-* in the tree: install a linux-image package") {
		t.Errorf("no kernel: %v", err)
	}
	tcWrite(t, root, "/boot/vmlinuz-6.1.0-28-amd64", "kernel")
	if err := s.Run(context.Background(), env); err == nil || !strings.Contains(err.Error(), "uefi: the tree has no grub-mkimage: install the grub-common package") {
		t.Errorf("no grub-mkimage: %v", err)
	}
}

// tcGrubFiles reads the images the stage made.
func tcGrubFiles(t *testing.T, root string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, p := range []string{"/boot/efi/EFI/BOOT/BOOTX64.EFI", "/boot/efi/EFI/debian/grubx64.efi",
		"/boot/grub/i386-pc/core.img", "/boot/grub/i386-pc/boot.img"} {
		out[p] = []byte(tcRead(t, root, p))
	}
	return out
}

func TestGrub2Run(t *testing.T) {
	root := tcDebianTree(t)
	env := tcEnv(t, root)
	// 6.1.0-28 is newer than 6.1.0-9, though not in byte order.
	for _, k := range []string{"6.1.0-9-amd64", "6.1.0-28-amd64"} {
		tcWrite(t, root, "/boot/vmlinuz-"+k, "kernel "+k)
	}
	options := `{"root_fs_uuid":"` + tcRootUUID + `","kernel_opts":"console=tty0 console=ttyS0,115200n8",
		"bios":{"platform":"i386-pc"},"uefi":{"vendor":"debian","removable":true},"timeout":1,"serial":true}`
	tcRun(t, env, "grub2", options)

	wantCfg := "# Written by ibuild's grub2 stage; update-grub on the machine replaces it.\n" +
		"set timeout=1\nset default=0\n" +
		"serial --unit=0 --speed=115200\nterminal_input serial console\nterminal_output serial console\n" +
		"search --no-floppy --fs-uuid --set=root " + tcRootUUID + "\n" +
		"menuentry 'Debian GNU/Linux 12 (bookworm)' --id ibuild-6.1.0-28-amd64 {\n" +
		"\tlinux /boot/vmlinuz-6.1.0-28-amd64 root=UUID=" + tcRootUUID + " ro console=tty0 console=ttyS0,115200n8\n" +
		"\tinitrd /boot/initrd.img-6.1.0-28-amd64\n}\n"
	if got := tcRead(t, root, "/boot/grub/grub.cfg"); got != wantCfg {
		t.Errorf("grub.cfg:\n%s\nwant:\n%s", got, wantCfg)
	}
	def := tcRead(t, root, "/etc/default/grub")
	for _, want := range []string{"\nGRUB_CMDLINE_LINUX=\"console=tty0 console=ttyS0,115200n8\"\n", "\nGRUB_TIMEOUT=1\n",
		"\nGRUB_TERMINAL=\"serial console\"\n", "\nGRUB_SERIAL_COMMAND=\"serial --unit=0 --speed=115200\"\n"} {
		if !strings.Contains("\n"+def, want) {
			t.Errorf("/etc/default/grub lacks %q:\n%s", want, def)
		}
	}

	files := tcGrubFiles(t, root)
	efi := files["/boot/efi/EFI/BOOT/BOOTX64.EFI"]
	if !bytes.HasPrefix(efi, []byte("MZ")) || !bytes.Equal(efi, files["/boot/efi/EFI/debian/grubx64.efi"]) {
		t.Errorf("EFI binaries: not PE or not the same (%d and %d bytes)", len(efi), len(files["/boot/efi/EFI/debian/grubx64.efi"]))
	}
	// EFI images are not compressed: the early configuration is there.
	early := "search --no-floppy --fs-uuid --set=root " + tcRootUUID + "\nset prefix=($root)/boot/grub\nconfigfile $prefix/grub.cfg\n"
	if !bytes.Contains(efi, []byte(early)) {
		t.Errorf("BOOTX64.EFI does not embed the early configuration %q", early)
	}
	// core.img starts with diskboot.img, whose block list grub-mkimage
	// filled with the number of sectors that follow; boot.img is the tree's.
	diskboot := []byte(tcRead(t, root, "/usr/lib/grub/i386-pc/diskboot.img"))
	core := files["/boot/grub/i386-pc/core.img"]
	if len(core) < 10000 || !bytes.Equal(core[:508], diskboot[:508]) {
		t.Errorf("core.img (%d bytes) does not start with diskboot.img", len(core))
	} else if n, want := int(core[508])|int(core[509])<<8, (len(core)-512+511)/512; n != want {
		t.Errorf("core.img block list: %d sectors, want %d", n, want)
	}
	if !bytes.Equal(files["/boot/grub/i386-pc/boot.img"], []byte(tcRead(t, root, "/usr/lib/grub/i386-pc/boot.img"))) {
		t.Error("boot.img differs from the tree's")
	}
	for _, p := range []string{"/boot/grub/i386-pc/normal.mod", "/boot/grub/x86_64-efi/normal.mod", "/boot/grub/x86_64-efi/command.lst"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Errorf("module not copied: %v", err)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(root, "boot/grub"))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".ibuild") {
			t.Errorf("work file left: /boot/grub/%s", e.Name())
		}
	}

	// Deterministic: a second run gives the same bytes.
	tcRun(t, env, "grub2", options)
	for p, b := range tcGrubFiles(t, root) {
		if !bytes.Equal(b, files[p]) {
			t.Errorf("%s differs between two runs", p)
		}
	}

	t.Run("boots in OVMF", func(t *testing.T) { tcBootEFI(t, efi, tcRootUUID) })

	// A separate /boot: paths lose the /boot prefix, GRUB searches /boot's
	// file system.
	tcRun(t, env, "grub2", `{"root_fs_uuid":"`+tcRootUUID+`","boot_fs_uuid":"`+tcBootUUID+`","uefi":{"vendor":"debian"},"timeout":5}`)
	cfg := tcRead(t, root, "/boot/grub/grub.cfg")
	for _, want := range []string{"set timeout=5\n", "search --no-floppy --fs-uuid --set=root " + tcBootUUID + "\n",
		"\tlinux /vmlinuz-6.1.0-28-amd64 root=UUID=" + tcRootUUID + " ro\n", "\tinitrd /initrd.img-6.1.0-28-amd64\n"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("grub.cfg with a /boot file system lacks %q:\n%s", want, cfg)
		}
	}
	if strings.Contains(cfg, "serial") {
		t.Errorf("grub.cfg without serial mentions it:\n%s", cfg)
	}
	efi = []byte(tcRead(t, root, "/boot/efi/EFI/debian/grubx64.efi"))
	if !bytes.Contains(efi, []byte("--set=root "+tcBootUUID+"\nset prefix=($root)/grub\n")) {
		t.Error("grubx64.efi does not search the /boot file system")
	}

	// arm64 needs the arm64 modules, which this tree lacks.
	env.Arch = "arm64"
	err := tcStage(t, "grub2", `{"root_fs_uuid":"`+tcRootUUID+`","uefi":{"vendor":"debian"}}`).Run(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), "/usr/lib/grub/arm64-efi/part_gpt.mod: install the grub-efi-arm64-bin package") {
		t.Errorf("arm64 without its modules: %v", err)
	}
}

// tcBootEFI boots an EFI binary from the removable path of an ESP in
// OVMF, with an ext4 root of the given UUID whose /boot/grub/grub.cfg
// prints a marker: the binary must find that file system by UUID alone.
func tcBootEFI(t *testing.T, efi []byte, uuid string) {
	const code, vars = "/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"
	for _, tool := range []string{"qemu-system-x86_64", "mkfs.ext4", "mkfs.vfat", "mmd", "mcopy", "sfdisk"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	if _, err := os.Stat(code); err != nil {
		t.Skipf("no OVMF: %v", err)
	}
	dir := t.TempDir()
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	const marker = "IBUILD-GRUB-OK"
	tcWrite(t, dir, "/root/boot/grub/grub.cfg", "serial --unit=0 --speed=115200\nterminal_output serial\necho "+marker+" prefix=$prefix\nhalt\n")
	os.WriteFile(filepath.Join(dir, "BOOTX64.EFI"), efi, 0o644)
	rootImg, espImg, disk := filepath.Join(dir, "root.img"), filepath.Join(dir, "esp.img"), filepath.Join(dir, "disk.raw")
	run("mkfs.ext4", "-q", "-U", uuid, "-d", filepath.Join(dir, "root"), rootImg, "32M")
	run("mkfs.vfat", "-C", espImg, "32768")
	run("mmd", "-i", espImg, "::/EFI", "::/EFI/BOOT")
	run("mcopy", "-i", espImg, filepath.Join(dir, "BOOTX64.EFI"), "::/EFI/BOOT/BOOTX64.EFI")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 80<<20); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sfdisk", "-q", disk)
	cmd.Stdin = strings.NewReader("label: gpt\nstart=2048, size=65536, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\n" +
		"start=67584, size=65536, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	f, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for img, sector := range map[string]int64{espImg: 2048, rootImg: 67584} {
		b, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(b, sector*512); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	varsCopy := filepath.Join(dir, "vars.fd")
	b, err := os.ReadFile(vars)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(varsCopy, b, 0o644)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	var out bytes.Buffer
	q := exec.CommandContext(ctx, "qemu-system-x86_64", "-m", "512", "-nographic", "-net", "none",
		"-drive", "if=pflash,format=raw,readonly=on,file="+code, "-drive", "if=pflash,format=raw,file="+varsCopy,
		"-drive", "file="+disk+",format=raw,if=virtio", "-serial", "stdio", "-monitor", "none")
	q.Stdout, q.Stderr = &out, &out
	err = q.Run()
	t.Logf("qemu ran %v: %v", time.Since(start).Round(time.Millisecond), err)
	if want := marker + " prefix=(hd0,gpt2)/boot/grub"; !strings.Contains(out.String(), want) {
		t.Errorf("GRUB did not load the root's grub.cfg (want %q); serial output ends:\n%s", want, tcTail(out.String(), 1500))
	}
}

func tcTail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
