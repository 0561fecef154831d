package stages

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"pault.ag/go/debian/version"

	"github.com/image-builder-action/image-builder-action/pkg/treepath"
)

func init() { register[Grub2]("grub2", 1) }

// Grub2 installs GRUB into the tree without touching a disk: it writes
// /boot/grub/grub.cfg and /etc/default/grub, and builds the boot images
// with the tree's grub-mkimage, each with an embedded early configuration
// that finds the boot file system by UUID. The disk stages put them in
// place (the ESP's files from /boot/efi, core.img and boot.img from
// /boot/grub/i386-pc).
type Grub2 struct {
	// RootFSUUID is the root file system's UUID (root=UUID= of the kernel).
	RootFSUUID string `json:"root_fs_uuid"`
	// RootDevice, when set, names the root on the kernel command line
	// instead of its UUID: /dev/mapper/VG-LV for a root on LVM, which
	// Debian's initramfs activates by that name.
	RootDevice string `json:"root_device,omitempty"`
	// BootFSUUID is a separate /boot file system's UUID, if any: GRUB then
	// finds its files there, without the /boot prefix.
	BootFSUUID string `json:"boot_fs_uuid,omitempty"`
	// KernelOpts follow "root=UUID=... ro" on the kernel command line.
	KernelOpts string `json:"kernel_opts,omitempty"`
	// BIOS, when set, builds core.img for legacy boot.
	BIOS *Grub2BIOS `json:"bios,omitempty"`
	// UEFI, when set, builds the EFI binary.
	UEFI *Grub2UEFI `json:"uefi,omitempty"`
	// Timeout is the menu's timeout in seconds.
	Timeout int `json:"timeout"`
	// Serial puts GRUB's menu on the first serial port as well as the
	// console.
	Serial bool `json:"serial,omitempty"`
}

// Grub2BIOS selects the BIOS platform.
type Grub2BIOS struct {
	// Platform is GRUB's BIOS platform: "i386-pc".
	Platform string `json:"platform"`
}

// Grub2UEFI names where the EFI binary goes on the ESP.
type Grub2UEFI struct {
	// Vendor is the directory under /boot/efi/EFI ("debian").
	Vendor string `json:"vendor"`
	// Removable also writes the binary to the removable-media path
	// (EFI/BOOT/BOOTX64.EFI) firmware boots without an NVRAM entry.
	Removable bool `json:"removable,omitempty"`
}

var (
	grubVendor    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	kernelVersion = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.+~-]*$`)
)

// grubModules are built into the images, so booting needs no module
// files; the tree's module directories are still copied for later
// update-grub configurations that insmod more.
var grubModules = map[string][]string{
	"x86_64-efi": {"part_gpt", "part_msdos", "ext2", "fat", "normal", "linux", "search", "search_fs_uuid",
		"configfile", "echo", "all_video", "gzio", "efi_gop", "serial", "terminal", "boot", "test", "ls",
		"cat", "reboot", "halt", "loadenv", "minicmd", "sleep"},
	"arm64-efi": {"part_gpt", "part_msdos", "ext2", "fat", "normal", "linux", "search", "search_fs_uuid",
		"configfile", "echo", "all_video", "gzio", "efi_gop", "serial", "terminal", "boot", "test", "ls",
		"cat", "reboot", "halt", "loadenv", "minicmd", "sleep"},
	"i386-pc": {"biosdisk", "part_gpt", "part_msdos", "ext2", "normal", "linux", "search", "search_fs_uuid",
		"configfile", "echo", "all_video", "gzio", "serial", "terminal", "boot", "test", "ls", "cat",
		"reboot", "halt", "loadenv", "minicmd", "sleep"},
}

// grubEFI is, per dpkg architecture, the EFI platform and file names.
var grubEFI = map[string]struct{ platform, removable, vendor, pkg string }{
	"amd64": {"x86_64-efi", "BOOTX64.EFI", "grubx64.efi", "grub-efi-amd64-bin"},
	"arm64": {"arm64-efi", "BOOTAA64.EFI", "grubaa64.efi", "grub-efi-arm64-bin"},
}

func (s *Grub2) validate() error {
	if !fsUUID.MatchString(s.RootFSUUID) {
		return fmt.Errorf("root_fs_uuid: %q is not a lower-case 8-4-4-4-12 UUID", s.RootFSUUID)
	}
	if s.RootDevice != "" && !rootDeviceRe.MatchString(s.RootDevice) {
		return fmt.Errorf("root_device: %q is not a /dev/mapper/NAME device", s.RootDevice)
	}
	if s.BootFSUUID != "" && !fsUUID.MatchString(s.BootFSUUID) {
		return fmt.Errorf("boot_fs_uuid: %q is not a lower-case 8-4-4-4-12 UUID", s.BootFSUUID)
	}
	if args, err := KernelArgs(s.KernelOpts); err != nil {
		return fmt.Errorf("kernel_opts: %w", err)
	} else if strings.Join(args, " ") != s.KernelOpts {
		return fmt.Errorf("kernel_opts: %q: separate the arguments by one space, without leading or trailing spaces", s.KernelOpts)
	}
	if s.BIOS == nil && s.UEFI == nil {
		return errors.New("bios, uefi: neither is set: nothing would boot")
	}
	if s.BIOS != nil && s.BIOS.Platform != "i386-pc" {
		return fmt.Errorf("bios.platform: %q is not i386-pc", s.BIOS.Platform)
	}
	if s.UEFI != nil && !grubVendor.MatchString(s.UEFI.Vendor) {
		return fmt.Errorf("uefi.vendor: %q is not a directory name such as debian", s.UEFI.Vendor)
	}
	if s.Timeout < 0 || s.Timeout > 3600 {
		return fmt.Errorf("timeout: %d is not within 0-3600 seconds", s.Timeout)
	}
	return nil
}

// Run writes the configuration and builds the images.
func (s *Grub2) Run(ctx context.Context, env *Env) error {
	kver, err := newestKernel(env.Tree)
	if err != nil {
		return err
	}
	if err := treeWriteConfig(env.Tree, "/boot/grub/grub.cfg", s.grubCfg(kver, osName(env.Tree)), 0o644); err != nil {
		return fmt.Errorf("writing grub.cfg: %w", err)
	}
	if err := s.defaultGrub(env.Tree); err != nil {
		return err
	}
	if s.UEFI != nil {
		if err := s.uefi(ctx, env); err != nil {
			return fmt.Errorf("uefi: %w", err)
		}
	}
	if s.BIOS != nil {
		if err := s.bios(ctx, env); err != nil {
			return fmt.Errorf("bios: %w", err)
		}
	}
	return nil
}

// newestKernel returns the version of the newest /boot/vmlinuz-* of the
// tree, in Debian version order.
func newestKernel(root string) (string, error) {
	boot, err := treepath.Resolve(root, "/boot", true)
	if err != nil {
		return "", err
	}
	ents, err := os.ReadDir(boot)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("finding the kernel: %w", err)
	}
	type kernel struct {
		name string
		ver  version.Version
	}
	var ks []kernel
	for _, e := range ents {
		v, ok := strings.CutPrefix(e.Name(), "vmlinuz-")
		if !ok || !kernelVersion.MatchString(v) {
			continue
		}
		pv, err := version.Parse(v)
		if err != nil {
			continue
		}
		ks = append(ks, kernel{v, pv})
	}
	if len(ks) == 0 {
		return "", errors.New("finding the kernel: no /boot/vmlinuz-* in the tree: install a linux-image package")
	}
	sort.Slice(ks, func(i, j int) bool { return version.Compare(ks[i].ver, ks[j].ver) < 0 })
	return ks[len(ks)-1].name, nil
}

// osName is the tree's PRETTY_NAME, for the menu entry.
func osName(root string) string {
	for _, p := range []string{"/etc/os-release", "/usr/lib/os-release"} {
		data, err := treeReadFile(root, p)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "PRETTY_NAME="); ok {
				v = strings.Trim(v, `"'`)
				v = strings.Map(func(r rune) rune {
					if r == '\'' || r == '\\' || r < ' ' || r > '~' {
						return -1
					}
					return r
				}, v)
				if v != "" {
					return v
				}
			}
		}
	}
	return "Linux"
}

// bootUUID and bootPrefix locate GRUB's files: the /boot file system when
// there is one, else the root's /boot.
func (s *Grub2) bootUUID() string {
	if s.BootFSUUID != "" {
		return s.BootFSUUID
	}
	return s.RootFSUUID
}

func (s *Grub2) bootPrefix() string {
	if s.BootFSUUID != "" {
		return ""
	}
	return "/boot"
}

// rootDeviceRe is a device-mapper device (LVM names: letters, digits,
// + _ . -).
var rootDeviceRe = regexp.MustCompile(`^/dev/mapper/[A-Za-z0-9+_.][A-Za-z0-9+_.-]*$`)

const grubSerial = "serial --unit=0 --speed=115200"

func (s *Grub2) grubCfg(kver, name string) []byte {
	var b strings.Builder
	b.WriteString("# Written by ibuild's grub2 stage; update-grub on the machine replaces it.\n")
	fmt.Fprintf(&b, "set timeout=%d\nset default=0\n", s.Timeout)
	if s.Serial {
		b.WriteString(grubSerial + "\nterminal_input serial console\nterminal_output serial console\n")
	}
	fmt.Fprintf(&b, "search --no-floppy --fs-uuid --set=root %s\n", s.bootUUID())
	cmdline := "root=UUID=" + s.RootFSUUID + " ro"
	if s.RootDevice != "" {
		cmdline = "root=" + s.RootDevice + " ro"
	}
	args, _ := KernelArgs(s.KernelOpts) // validate accepted them
	for _, a := range args {
		cmdline += " " + grubWord(a)
	}
	fmt.Fprintf(&b, "menuentry '%s' --id ibuild-%s {\n", name, kver)
	fmt.Fprintf(&b, "\tlinux %s/vmlinuz-%s %s\n", s.bootPrefix(), kver, cmdline)
	fmt.Fprintf(&b, "\tinitrd %s/initrd.img-%s\n}\n", s.bootPrefix(), kver)
	return []byte(b.String())
}

// earlyCfg is embedded in the images: it finds the boot file system and
// hands over to its grub.cfg.
func (s *Grub2) earlyCfg() []byte {
	return []byte(fmt.Sprintf("search --no-floppy --fs-uuid --set=root %s\nset prefix=($root)%s/grub\nconfigfile $prefix/grub.cfg\n",
		s.bootUUID(), s.bootPrefix()))
}

// defaultGrub keeps the options for a later update-grub on the machine.
func (s *Grub2) defaultGrub(root string) error {
	data, err := treeReadFile(root, "/etc/default/grub")
	if errors.Is(err, fs.ErrNotExist) {
		data = []byte("GRUB_DEFAULT=0\nGRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`\n")
	} else if err != nil {
		return fmt.Errorf("writing /etc/default/grub: %w", err)
	}
	kv := []string{"GRUB_TIMEOUT", fmt.Sprint(s.Timeout), "GRUB_CMDLINE_LINUX", shellQuote(s.KernelOpts)}
	if s.Serial {
		kv = append(kv, "GRUB_TERMINAL", shellQuote("serial console"), "GRUB_SERIAL_COMMAND", shellQuote(grubSerial))
	}
	if err := treeWriteConfig(root, "/etc/default/grub", setShellVars(data, kv...), 0o644); err != nil {
		return fmt.Errorf("writing /etc/default/grub: %w", err)
	}
	return nil
}

func (s *Grub2) uefi(ctx context.Context, env *Env) error {
	arch := env.Arch
	if arch == "" {
		arch = "amd64"
	}
	efi, ok := grubEFI[arch]
	if !ok {
		return fmt.Errorf("no GRUB EFI platform for architecture %s", arch)
	}
	img, err := s.mkimage(ctx, env, efi.platform, efi.pkg)
	if err != nil {
		return err
	}
	targets := []string{path.Join("/boot/efi/EFI", s.UEFI.Vendor, efi.vendor)}
	if s.UEFI.Removable {
		targets = append(targets, path.Join("/boot/efi/EFI/BOOT", efi.removable))
	}
	for _, t := range targets {
		dir, err := treeMkdirAll(env.Tree, path.Dir(t))
		if err != nil {
			return err
		}
		if err := treeWriteFile(filepath.Join(dir, path.Base(t)), img, 0o644, 0, 0); err != nil {
			return err
		}
	}
	return copyGrubModules(env.Tree, efi.platform)
}

func (s *Grub2) bios(ctx context.Context, env *Env) error {
	if env.Arch != "" && env.Arch != "amd64" {
		return fmt.Errorf("i386-pc needs an amd64 image, not %s", env.Arch)
	}
	const platform = "i386-pc"
	img, err := s.mkimage(ctx, env, platform, "grub-pc-bin")
	if err != nil {
		return err
	}
	dir, err := treeMkdirAll(env.Tree, "/boot/grub/"+platform)
	if err != nil {
		return err
	}
	if err := treeWriteFile(filepath.Join(dir, "core.img"), img, 0o644, 0, 0); err != nil {
		return err
	}
	boot, err := treeReadFile(env.Tree, "/usr/lib/grub/i386-pc/boot.img")
	if err != nil {
		return fmt.Errorf("reading boot.img: %w", err)
	}
	if err := treeWriteFile(filepath.Join(dir, "boot.img"), boot, 0o644, 0, 0); err != nil {
		return err
	}
	return copyGrubModules(env.Tree, platform)
}

// mkimage runs the tree's grub-mkimage for platform with the early
// configuration embedded, and returns the image.
func (s *Grub2) mkimage(ctx context.Context, env *Env, platform, pkg string) ([]byte, error) {
	if !treeExists(env.Tree, "/usr/bin/grub-mkimage") {
		return nil, errors.New("the tree has no grub-mkimage: install the grub-common package")
	}
	modDir := "/usr/lib/grub/" + platform
	for _, m := range grubModules[platform] {
		if !treeExists(env.Tree, path.Join(modDir, m+".mod")) {
			return nil, fmt.Errorf("the tree has no GRUB module %s/%s.mod: install the %s package", modDir, m, pkg)
		}
	}
	// Work files live in the tree's /boot/grub: the runner mounts a fresh
	// /tmp over the tree's.
	grubDir, err := treeMkdirAll(env.Tree, "/boot/grub")
	if err != nil {
		return nil, err
	}
	cfg := ".ibuild-early-" + platform + ".cfg"
	out := ".ibuild-" + platform + ".img"
	defer os.Remove(filepath.Join(grubDir, cfg))
	defer os.Remove(filepath.Join(grubDir, out))
	if err := treeWriteFile(filepath.Join(grubDir, cfg), s.earlyCfg(), 0o644, 0, 0); err != nil {
		return nil, err
	}
	args := []string{"grub-mkimage", "-O", platform, "-d", modDir, "-c", "/boot/grub/" + cfg,
		"-p", s.bootPrefix() + "/grub", "-o", "/boot/grub/" + out}
	if err := runInTree(ctx, env, append(args, grubModules[platform]...)...); err != nil {
		return nil, err
	}
	img, err := os.ReadFile(filepath.Join(grubDir, out))
	if err != nil {
		return nil, fmt.Errorf("reading grub-mkimage's output: %w", err)
	}
	return img, nil
}

// copyGrubModules copies the platform's modules and lists into
// /boot/grub/<platform>, as grub-install does.
func copyGrubModules(root, platform string) error {
	src, err := treepath.Resolve(root, "/usr/lib/grub/"+platform, true)
	if err != nil {
		return err
	}
	dst, err := treeMkdirAll(root, "/boot/grub/"+platform)
	if err != nil {
		return err
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return fmt.Errorf("copying GRUB modules: %w", err)
	}
	for _, e := range ents {
		n := e.Name()
		if !e.Type().IsRegular() || !(strings.HasSuffix(n, ".mod") || strings.HasSuffix(n, ".lst")) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(src, n))
		if err != nil {
			return fmt.Errorf("copying GRUB modules: %w", err)
		}
		if err := treeWriteFile(filepath.Join(dst, n), data, 0o644, 0, 0); err != nil {
			return fmt.Errorf("copying GRUB modules: %w", err)
		}
	}
	return nil
}
