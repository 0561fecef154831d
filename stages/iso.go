package stages

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/ctxio"
)

func init() { register[ISO]("iso", 2) }

// ISO writes a hybrid ISO 9660 image that boots a live system: the root
// tree squashed into /live/filesystem.squashfs (Debian's live-boot mounts
// it with a writable overlay), the tree's newest kernel and initramfs, and
// GRUB for UEFI (an El Torito EFI image, also a GPT partition for USB
// sticks) and, on x86_64, BIOS (El Torito, and GRUB's hybrid MBR for
// sticks). Everything runs from the build root (mksquashfs, grub-mkimage,
// mkfs.fat and mtools, xorriso) on files: no loop device, no mount. Dates
// come from the source epoch and inputs are walked in name order, so the
// same inputs give the same bytes.
type ISO struct {
	// Filename is the image's name in the output directory.
	Filename string `json:"filename"`
	// VolumeID is the ISO 9660 volume id: 1-32 of A-Z, 0-9 and _.
	VolumeID string `json:"volume_id"`
	// Publisher and ApplicationID are optional ISO 9660 metadata.
	Publisher     string `json:"publisher,omitempty"`
	ApplicationID string `json:"application_id,omitempty"`
	// Root is the tree the live system runs: it is squashed, and the
	// newest /boot/vmlinuz-* with its initrd.img boots it.
	Root Source `json:"root"`
	// KernelOpts follow "boot=live" on every entry's command line.
	KernelOpts string `json:"kernel_opts,omitempty"`
	// Menu is GRUB's menu, the first entry the default.
	Menu []ISOMenuEntry `json:"menu"`
	// Timeout is the menu's timeout in seconds.
	Timeout int `json:"timeout"`
	// BIOS also makes the image boot on PC BIOS (x86_64 only).
	BIOS bool `json:"bios,omitempty"`
	// Payload is a file carried on the image besides the live system.
	Payload *ISOPayload `json:"payload,omitempty"`
}

// ISOMenuEntry is one boot entry of the image's GRUB menu.
type ISOMenuEntry struct {
	Title string `json:"title"`
	// KernelOpts are added after the image's kernel_opts.
	KernelOpts string `json:"kernel_opts,omitempty"`
}

// ISOPayload is an earlier pipeline's file, compressed with zstd onto the
// image at Path; Path's directory also gets SHA256SUMS, in sha256sum's
// format, with the digests of the compressed file and of the original
// (named as Path without ".zst").
type ISOPayload struct {
	Source Source `json:"source"`
	// Path is where the compressed file goes, ending in ".zst"
	// ("/install/disk.raw.zst").
	Path string `json:"path"`
}

var (
	isoVolumeID = regexp.MustCompile(`^[A-Z0-9_]{1,32}$`)
	// isoText is what the ISO 9660 metadata fields and menu titles take
	// without quoting troubles: printable ASCII without quotes or
	// backslashes.
	isoText = regexp.MustCompile(`^[ -!#-&(-\[\]-~]*$`)
)

// isoGrubModules are built into the ISO's GRUB images.
var isoGrubModules = map[string][]string{
	"x86_64-efi": {"iso9660", "part_gpt", "part_msdos", "fat", "normal", "linux", "search", "search_fs_file",
		"configfile", "echo", "all_video", "gzio", "efi_gop", "serial", "terminal", "boot", "test", "ls",
		"cat", "reboot", "halt", "minicmd", "sleep"},
	"arm64-efi": {"iso9660", "part_gpt", "part_msdos", "fat", "normal", "linux", "search", "search_fs_file",
		"configfile", "echo", "all_video", "gzio", "efi_gop", "serial", "terminal", "boot", "test", "ls",
		"cat", "reboot", "halt", "minicmd", "sleep"},
	"i386-pc": {"biosdisk", "iso9660", "part_gpt", "part_msdos", "normal", "linux", "search", "search_fs_file",
		"configfile", "echo", "gzio", "serial", "terminal", "boot", "test", "ls", "cat", "reboot", "halt",
		"minicmd", "sleep"},
}

// isoGrubPackages have each platform's modules.
var isoGrubPackages = map[string]string{"x86_64-efi": "grub-efi-amd64-bin", "arm64-efi": "grub-efi-arm64-bin", "i386-pc": "grub-pc-bin"}

func (s *ISO) validate() error {
	if err := checkFilename("filename", s.Filename); err != nil {
		return err
	}
	if !isoVolumeID.MatchString(s.VolumeID) {
		return fmt.Errorf("volume_id: %q is not 1-32 of A-Z, 0-9 and _", s.VolumeID)
	}
	for _, f := range []struct{ name, v string }{{"publisher", s.Publisher}, {"application_id", s.ApplicationID}} {
		if len(f.v) > 128 || !isoText.MatchString(f.v) {
			return fmt.Errorf("%s: %q is not up to 128 printable ASCII characters without quotes or backslashes", f.name, f.v)
		}
	}
	if err := s.Root.validate("root"); err != nil {
		return err
	}
	if err := checkArgs("kernel_opts", s.KernelOpts); err != nil {
		return err
	}
	if len(s.Menu) == 0 {
		return errors.New("menu: no entry")
	}
	for i, e := range s.Menu {
		if e.Title == "" || len(e.Title) > 128 || !isoText.MatchString(e.Title) {
			return fmt.Errorf("menu[%d].title: %q is not 1-128 printable ASCII characters without quotes or backslashes", i, e.Title)
		}
		if err := checkArgs(fmt.Sprintf("menu[%d].kernel_opts", i), e.KernelOpts); err != nil {
			return err
		}
	}
	if s.Timeout < 0 || s.Timeout > 3600 {
		return fmt.Errorf("timeout: %d is not within 0-3600 seconds", s.Timeout)
	}
	if p := s.Payload; p != nil {
		if err := p.Source.validate("payload.source"); err != nil {
			return err
		}
		if err := checkTreePath("payload.path", p.Path); err != nil {
			return err
		}
		dir, base := path.Split(p.Path)
		switch {
		case !strings.HasSuffix(base, ".zst") || base == ".zst":
			return fmt.Errorf("payload.path: %q does not end in .zst", p.Path)
		case dir == "/" || strings.HasPrefix(p.Path, "/live/") || strings.HasPrefix(p.Path, "/boot/") || strings.HasPrefix(p.Path, "/EFI/"):
			return fmt.Errorf("payload.path: %q: put the payload in a directory of its own, not / or /live, /boot, /EFI", p.Path)
		}
	}
	return nil
}

// checkArgs checks a kernel command line fragment as the grub2 stage does.
func checkArgs(field, opts string) error {
	args, err := KernelArgs(opts)
	if err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	if strings.Join(args, " ") != opts {
		return fmt.Errorf("%s: %q: separate the arguments by one space, without leading or trailing spaces", field, opts)
	}
	return nil
}

// In-sandbox paths of the staging directory.
const isoStage = "/run/ibuild/iso"

// Run stages the image's tree in a temporary directory, then writes the
// image under a temporary name and renames it into place.
func (s *ISO) Run(ctx context.Context, env *Env) error {
	root, err := s.Root.sourceDir(env)
	if err != nil {
		return err
	}
	if err := needTools(env, "xorriso"); err != nil {
		return err
	}
	efi, ok := grubEFI[cmpOr(env.Arch, "amd64")]
	if !ok {
		return fmt.Errorf("no GRUB EFI platform for architecture %s", env.Arch)
	}
	if s.BIOS && cmpOr(env.Arch, "amd64") != "amd64" {
		return fmt.Errorf("bios: PC BIOS needs an amd64 image, not %s", env.Arch)
	}
	for _, tool := range []string{"/usr/bin/mksquashfs", "/usr/bin/xorriso", "/usr/bin/grub-mkimage", "/usr/bin/mcopy", "/sbin/mkfs.fat"} {
		if !treeExists(env.BuildRoot, tool) {
			return fmt.Errorf("the build root has no %s: the lockfile's build pipeline must install squashfs-tools, xorriso, grub-common, mtools and dosfstools", tool)
		}
	}
	staging, err := os.MkdirTemp(env.TempDir, "ibuild-iso-")
	if err != nil {
		return fmt.Errorf("staging the ISO: %w", err)
	}
	defer os.RemoveAll(staging)
	tree, work := filepath.Join(staging, "tree"), filepath.Join(staging, "work")
	for _, d := range []string{work, filepath.Join(tree, "live"), filepath.Join(tree, "boot/grub/i386-pc"), filepath.Join(tree, ".disk")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("staging the ISO: %w", err)
		}
	}
	binds := []Bind{{Src: staging, Dst: isoStage}, outputBind(env)}
	tz := []string{"TZ=UTC", fmt.Sprintf("SOURCE_DATE_EPOCH=%d", env.SourceDateEpoch)}

	// The kernel and initramfs the firmware's GRUB loads.
	kver, err := newestKernel(root)
	if err != nil {
		return err
	}
	for src, dst := range map[string]string{"/boot/vmlinuz-" + kver: "live/vmlinuz", "/boot/initrd.img-" + kver: "live/initrd.img"} {
		data, err := treeReadFile(root, src)
		if err != nil {
			return fmt.Errorf("reading %s of %s: %w", src, s.Root.Pipeline, err)
		}
		if err := os.WriteFile(filepath.Join(tree, dst), data, 0o644); err != nil {
			return fmt.Errorf("staging %s: %w", dst, err)
		}
	}

	// The root, squashed. mksquashfs sorts directories itself and, since
	// 4.4, writes the same bytes whatever its thread count. Its
	// SOURCE_DATE_EPOCH sets the file system's time only, and it refuses
	// -all-time beside it: the options pin both, without the variable.
	// zstd at level 6, not mksquashfs's 15: on a tree of libraries and
	// modules, level 15 took 14 times the CPU (40.7 s against 2.9 s on
	// 251 MiB) for a file 8% smaller.
	epoch := strconv.FormatInt(env.SourceDateEpoch, 10)
	sq := []string{"env", "-u", "SOURCE_DATE_EPOCH", "mksquashfs", inMount, isoStage + "/tree/live/filesystem.squashfs",
		"-noappend", "-no-progress", "-quiet", "-comp", "zstd", "-Xcompression-level", "6", "-mkfs-time", epoch, "-all-time", epoch}
	if err := runTool(ctx, env, append(binds, Bind{Src: root, Dst: inMount, ReadOnly: true}), tz, toolIO{}, sq...); err != nil {
		return err
	}

	if s.Payload != nil {
		if err := s.writePayload(ctx, env, tree); err != nil {
			return err
		}
	}

	// GRUB finds the image's file system by a file only this image has.
	marker := fmt.Sprintf("/.disk/ibuild-%s-%d", strings.ToLower(s.VolumeID), env.SourceDateEpoch)
	if err := os.WriteFile(filepath.Join(tree, marker), []byte(s.VolumeID+"\n"), 0o644); err != nil {
		return fmt.Errorf("staging the ISO: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tree, "boot/grub/grub.cfg"), s.grubCfg(), 0o644); err != nil {
		return fmt.Errorf("staging grub.cfg: %w", err)
	}
	early := fmt.Sprintf("search --no-floppy --file --set=root %s\nset prefix=($root)/boot/grub\nconfigfile $prefix/grub.cfg\n", marker)
	if err := os.WriteFile(filepath.Join(work, "early.cfg"), []byte(early), 0o644); err != nil {
		return fmt.Errorf("staging GRUB: %w", err)
	}
	mkimage := func(platform, format, out string) error {
		dir := "/usr/lib/grub/" + platform
		for _, m := range isoGrubModules[platform] {
			if !treeExists(env.BuildRoot, path.Join(dir, m+".mod")) {
				return fmt.Errorf("the build root has no GRUB module %s/%s.mod: install %s in the build pipeline", dir, m, isoGrubPackages[platform])
			}
		}
		args := append([]string{"grub-mkimage", "-O", format, "-d", dir, "-c", isoStage + "/work/early.cfg", "-p", "/boot/grub", "-o", out}, isoGrubModules[platform]...)
		return runTool(ctx, env, binds, tz, toolIO{}, args...)
	}
	if err := mkimage(efi.platform, efi.platform, isoStage+"/work/"+efi.removable); err != nil {
		return err
	}
	if err := s.efiImage(ctx, env, binds, tz, work, efi.removable, filepath.Join(tree, "boot/grub/efi.img")); err != nil {
		return err
	}
	if s.BIOS {
		if err := mkimage("i386-pc", "i386-pc-eltorito", isoStage+"/tree/boot/grub/i386-pc/eltorito.img"); err != nil {
			return err
		}
	}
	if err := clampTimes(tree, env.SourceDateEpoch); err != nil {
		return err
	}

	tmp, err := outputTemp(env.Tree, "iso")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	date := time.Unix(env.SourceDateEpoch, 0).UTC().Format("2006010215040500")
	args := []string{"xorriso", "-as", "mkisofs", "-o", path.Join(outMount, filepath.Base(tmp), s.Filename),
		"-V", s.VolumeID, "-iso-level", "3", "-r",
		"--modification-date=" + date}
	if s.Publisher != "" {
		args = append(args, "-publisher", s.Publisher)
	}
	if s.ApplicationID != "" {
		args = append(args, "-A", s.ApplicationID)
	}
	if s.BIOS {
		args = append(args, "-b", "boot/grub/i386-pc/eltorito.img", "-no-emul-boot", "-boot-load-size", "4",
			"-boot-info-table", "--grub2-boot-info", "--grub2-mbr", "/usr/lib/grub/i386-pc/boot_hybrid.img",
			"-eltorito-alt-boot")
	}
	// The EFI image is El Torito's EFI entry and, for sticks, a GPT
	// partition of its own.
	args = append(args, "-e", "boot/grub/efi.img", "-no-emul-boot", "-efi-boot-part", "--efi-boot-image",
		"--protective-msdos-label", isoStage+"/tree")
	if err := runTool(ctx, env, binds, tz, toolIO{}, args...); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(tmp, s.Filename), filepath.Join(env.Tree, s.Filename)); err != nil {
		return fmt.Errorf("writing %s: %w", s.Filename, err)
	}
	return nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// grubCfg is the menu both GRUBs read from the image.
func (s *ISO) grubCfg() []byte {
	var b strings.Builder
	b.WriteString("# Written by ibuild's iso stage.\n")
	fmt.Fprintf(&b, "set timeout=%d\nset default=0\n", s.Timeout)
	b.WriteString(grubSerial + "\nterminal_input serial console\nterminal_output serial console\n")
	for _, e := range s.Menu {
		cmdline := "boot=live"
		for _, o := range []string{s.KernelOpts, e.KernelOpts} {
			args, _ := KernelArgs(o) // validate accepted them
			for _, a := range args {
				cmdline += " " + grubWord(a)
			}
		}
		fmt.Fprintf(&b, "menuentry '%s' {\n\tlinux /live/vmlinuz %s\n\tinitrd /live/initrd.img\n}\n", e.Title, cmdline)
	}
	return []byte(b.String())
}

// efiImage makes the FAT image El Torito's EFI entry points at, holding
// GRUB at the removable-media path, without mounting it.
func (s *ISO) efiImage(ctx context.Context, env *Env, binds []Bind, tz []string, work, name, out string) error {
	bin := filepath.Join(work, name)
	fi, err := os.Stat(bin)
	if err != nil {
		return fmt.Errorf("reading grub-mkimage's output: %w", err)
	}
	t := time.Unix(env.SourceDateEpoch, 0)
	if err := os.Chtimes(bin, t, t); err != nil {
		return err
	}
	// Room for the binary, the FAT and the directories, in whole MiB.
	size := (fi.Size() + 1<<20 + 1<<20 - 1) &^ (1<<20 - 1)
	img := isoStage + "/work/efi.img"
	h := sha256.Sum256([]byte(s.VolumeID + "\x00" + strconv.FormatInt(env.SourceDateEpoch, 10)))
	volID := strings.ToUpper(hex.EncodeToString(h[:4]))
	steps := [][]string{
		{"mkfs.fat", "-C", "--invariant", "-i", volID, "-n", "EFIBOOT", img, strconv.FormatInt(size/1024, 10)},
		{"mmd", "-i", img, "::/EFI", "::/EFI/BOOT"},
		{"mcopy", "-p", "-m", "-i", img, isoStage + "/work/" + name, "::/EFI/BOOT/" + name},
	}
	for _, args := range steps {
		if err := runTool(ctx, env, binds, tz, toolIO{}, args...); err != nil {
			return err
		}
	}
	if err := os.Rename(filepath.Join(work, "efi.img"), out); err != nil {
		return fmt.Errorf("staging efi.img: %w", err)
	}
	return nil
}

// writePayload compresses the payload onto the staged tree and writes the
// digests of both forms beside it.
func (s *ISO) writePayload(ctx context.Context, env *Env, tree string) error {
	p := s.Payload
	src, _, err := p.Source.sourceFile(env)
	if err != nil {
		return err
	}
	dst := filepath.Join(tree, filepath.FromSlash(p.Path))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("staging %s: %w", p.Path, err)
	}
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("reading payload: %w", err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("staging %s: %w", p.Path, err)
	}
	defer out.Close()
	rawSum, zstSum := sha256.New(), sha256.New()
	zw, err := compressor(io.MultiWriter(out, zstSum), "zstd")
	if err != nil {
		return err
	}
	if _, err := io.Copy(io.MultiWriter(zw, rawSum), ctxio.Reader(ctx, in)); err != nil {
		return fmt.Errorf("compressing %s:%s: %w", p.Source.Pipeline, p.Source.Path, err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("compressing %s:%s: %w", p.Source.Pipeline, p.Source.Path, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("staging %s: %w", p.Path, err)
	}
	base := path.Base(p.Path)
	sums := fmt.Sprintf("%x  %s\n%x  %s\n", zstSum.Sum(nil), base, rawSum.Sum(nil), strings.TrimSuffix(base, ".zst"))
	if err := os.WriteFile(filepath.Join(filepath.Dir(dst), "SHA256SUMS"), []byte(sums), 0o644); err != nil {
		return fmt.Errorf("staging SHA256SUMS: %w", err)
	}
	return nil
}

// clampTimes sets every staged file's and directory's times to epoch,
// which xorriso records.
func clampTimes(root string, epoch int64) error {
	t := time.Unix(epoch, 0)
	return filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, t, t)
	})
}
