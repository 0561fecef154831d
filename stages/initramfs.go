package stages

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"pault.ag/go/debian/version"

	"github.com/image-builder-action/image-builder-action/pkg/treepath"
)

func init() { register[Initramfs]("initramfs", 1) }

// Initramfs configures initramfs-tools and builds the initramfs of every
// kernel in the tree once, with the tree's own update-initramfs. With a
// module list, only those modules (and what they need) go in, which makes
// the image small and the build fast; they go in by a hook, not
// /etc/initramfs-tools/modules, so udev loads those the machine has
// instead of init loading every one of them at each boot. FSTYPE names the
// root's file system, which a chroot cannot detect.
type Initramfs struct {
	// Modules are kernel modules to include (MODULES=list), loaded when
	// the hardware needs them; empty keeps initramfs-tools' default
	// (MODULES=most).
	Modules []string `json:"modules,omitempty"`
	// Compress is the compressor (COMPRESS=); its tool must be in the tree.
	Compress string `json:"compress,omitempty"`
	// Fstype is the root file system's type (FSTYPE=).
	Fstype string `json:"fstype,omitempty"`
}

var (
	initramfsModuleRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	initramfsFstypeRE = regexp.MustCompile(`^[a-z0-9]+$`)
)

// initramfsCompressors maps COMPRESS= values to the tool mkinitramfs runs
// and the package that has it.
var initramfsCompressors = map[string][2]string{
	"gzip":  {"gzip", "gzip"},
	"bzip2": {"bzip2", "bzip2"},
	"lz4":   {"lz4", "lz4"},
	"lzma":  {"lzma", "xz-utils"},
	"lzop":  {"lzop", "lzop"},
	"xz":    {"xz", "xz-utils"},
	"zstd":  {"zstd", "zstd"},
}

func (s *Initramfs) validate() error {
	seen := map[string]bool{}
	for i, m := range s.Modules {
		if !initramfsModuleRE.MatchString(m) {
			return fmt.Errorf("modules[%d]: %q is not a module name", i, m)
		}
		if seen[m] {
			return fmt.Errorf("modules[%d]: %q listed twice", i, m)
		}
		seen[m] = true
	}
	if s.Compress != "" {
		if _, ok := initramfsCompressors[s.Compress]; !ok {
			var names []string
			for k := range initramfsCompressors {
				names = append(names, k)
			}
			sort.Strings(names)
			return fmt.Errorf("compress: %q is not one of %s", s.Compress, strings.Join(names, ", "))
		}
	}
	if s.Fstype != "" && !initramfsFstypeRE.MatchString(s.Fstype) {
		return fmt.Errorf("fstype: %q is not a file system type", s.Fstype)
	}
	return nil
}

const (
	initramfsConf = "/etc/initramfs-tools/conf.d/ibuild.conf"
	initramfsHook = "/etc/initramfs-tools/hooks/ibuild-modules"
)

// Run writes the configuration and builds the initramfs images.
func (s *Initramfs) Run(ctx context.Context, env *Env) error {
	tree := env.Tree
	hostPath := func(p string) (string, error) { return treepath.Resolve(tree, p, true) }
	if !initramfsExecutable(tree, "/usr/sbin/update-initramfs") {
		return errors.New("the tree has no /usr/sbin/update-initramfs: install initramfs-tools")
	}
	if s.Compress != "" {
		tool := initramfsCompressors[s.Compress]
		if !initramfsExecutable(tree, "/usr/bin/"+tool[0]) && !initramfsExecutable(tree, "/bin/"+tool[0]) {
			// mkinitramfs would silently fall back to gzip.
			return fmt.Errorf("compress %s: the tree has no %s: install %s", s.Compress, tool[0], tool[1])
		}
	}
	if s.Fstype != "" && initramfsExecutable(tree, "/usr/sbin/fsck") && !initramfsExecutable(tree, "/usr/sbin/fsck."+s.Fstype) &&
		!initramfsExecutable(tree, "/sbin/fsck."+s.Fstype) {
		// The fsck hook would only warn, and every boot would say
		// "fsck: error 2 … while executing fsck.TYPE" and mount the root
		// unchecked.
		return fmt.Errorf("fstype %s: the tree has no fsck.%s to check the root at boot: install its package (e2fsprogs for ext4)", s.Fstype, s.Fstype)
	}
	kernels, err := initramfsKernels(tree)
	if err != nil {
		return err
	}
	if len(kernels) == 0 {
		return errors.New("the tree has no kernel (/boot/vmlinuz-* with /lib/modules/<version>)")
	}

	var conf strings.Builder
	conf.WriteString("# Written by ibuild.\n")
	if len(s.Modules) > 0 {
		conf.WriteString("MODULES=list\n")
	}
	if s.Compress != "" {
		conf.WriteString("COMPRESS=" + s.Compress + "\n")
	}
	if s.Fstype != "" {
		conf.WriteString("FSTYPE=" + s.Fstype + "\n")
	}
	p, err := hostPath(initramfsConf)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("writing %s: %w", initramfsConf, err)
	}
	if err := os.WriteFile(p, []byte(conf.String()), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", initramfsConf, err)
	}
	if err := s.writeHook(tree); err != nil {
		return err
	}

	var native []Bind
	if s.Compress == "" || s.Compress == "zstd" || s.Compress == "gzip" {
		// initramfsHostProgram reads these.
		tmp, err := os.MkdirTemp(env.TempDir, "initramfs-native-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		if native, err = initramfsNative(env, tmp); err != nil {
			return err
		}
	}
	if native != nil && env.Log != nil {
		fmt.Fprintf(env.Log, "initramfs: %d of the tree's programs run natively (the build root's, same versions)\n", len(native)-2)
	}
	for _, k := range kernels {
		initrd, err := hostPath("/boot/initrd.img-" + k)
		if err != nil {
			return err
		}
		if err := s.build(ctx, env, k, initrd, native); err != nil {
			return err
		}
		if native == nil {
			continue
		}
		host, err := initramfsHostProgram(initrd)
		if err != nil {
			return fmt.Errorf("checking the initramfs of %s: %w", k, err)
		}
		if host != "" {
			// A hook copied a stand-in: build it again with the tree's
			// own programs only.
			if env.Log != nil {
				fmt.Fprintf(env.Log, "initramfs: %d of the tree's programs ran natively, but the initramfs of %s holds the host's %s: building it again with the tree's programs\n", len(native)-2, k, host)
			}
			if err := s.build(ctx, env, k, initrd, nil); err != nil {
				return err
			}
		}
	}
	// The kernel's postinst skipped /vmlinuz and /initrd.img (INITRD=No
	// while installing): point them at the newest kernel, and .old at the
	// one before, as it would have.
	if !initramfsExecutable(tree, "/usr/bin/linux-update-symlinks") {
		return nil
	}
	for _, k := range kernels { // oldest first
		cmd := &Cmd{
			Root:   tree,
			Args:   []string{"linux-update-symlinks", "install", k, "/boot/vmlinuz-" + k},
			Stdout: env.Log,
			Stderr: env.Log,
		}
		if err := env.Runner.Run(ctx, cmd); err != nil {
			return fmt.Errorf("linking /vmlinuz and /initrd.img to %s: %w", k, err)
		}
	}
	return nil
}

// build builds the initramfs of kernel k at initrd (a host path) with the
// tree's update-initramfs, some of whose programs are the native ones
// binds mount over the tree's.
func (s *Initramfs) build(ctx context.Context, env *Env, k, initrd string, binds []Bind) error {
	// -c refuses to overwrite; the image is rebuilt from scratch.
	if err := os.Remove(initrd); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	cmd := &Cmd{
		Root:   env.Tree,
		Args:   []string{"update-initramfs", "-c", "-k", k},
		Env:    []string{fmt.Sprintf("SOURCE_DATE_EPOCH=%d", env.SourceDateEpoch)},
		Binds:  binds,
		Stdout: env.Log,
		Stderr: env.Log,
	}
	if err := env.Runner.Run(ctx, cmd); err != nil {
		return fmt.Errorf("building the initramfs of %s: %w", k, err)
	}
	fi, err := os.Stat(initrd)
	if err != nil || fi.Size() == 0 {
		return fmt.Errorf("building the initramfs of %s: no /boot/initrd.img-%s afterwards", k, k)
	}
	return nil
}

// writeHook writes the hook that puts the modules in the initramfs, or
// removes it when there are none.
func (s *Initramfs) writeHook(tree string) error {
	if len(s.Modules) == 0 {
		p, err := treepath.Resolve(tree, initramfsHook, true)
		if err != nil {
			return err
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("removing %s: %w", initramfsHook, err)
		}
		return nil
	}
	hook := "#!/bin/sh\n" +
		"# Written by ibuild: the modules this initramfs carries; udev loads\n" +
		"# the ones the machine's hardware needs.\n" +
		"case \"$1\" in prereqs) exit 0 ;; esac\n" +
		". /usr/share/initramfs-tools/hook-functions\n" +
		"manual_add_modules " + strings.Join(s.Modules, " ") + "\n"
	dir, err := treeMkdirAll(tree, path.Dir(initramfsHook))
	if err != nil {
		return err
	}
	return treeWriteFile(filepath.Join(dir, path.Base(initramfsHook)), []byte(hook), 0o755, 0, 0)
}

// initramfsKernels lists the kernel versions that have both an image in /boot
// and modules, oldest first (dpkg's version order).
func initramfsKernels(tree string) ([]string, error) {
	boot, err := treepath.Resolve(tree, "/boot", true)
	if err != nil {
		return nil, err
	}
	images, err := filepath.Glob(filepath.Join(boot, "vmlinuz-*"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, img := range images {
		v := strings.TrimPrefix(filepath.Base(img), "vmlinuz-")
		mods, err := treepath.Resolve(tree, "/lib/modules/"+v, true)
		if err != nil {
			return nil, err
		}
		if fi, err := os.Stat(mods); err == nil && fi.IsDir() {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return debVersionLess(out[i], out[j]) })
	return out, nil
}

// debVersionLess orders kernel releases as dpkg orders versions
// (6.1.0-9 before 6.1.0-10).
func debVersionLess(a, b string) bool {
	va, erra := version.Parse(a)
	vb, errb := version.Parse(b)
	if erra != nil || errb != nil {
		return a < b
	}
	return version.Compare(va, vb) < 0
}

// initramfsExecutable reports whether p (inside the tree) is an executable file.
func initramfsExecutable(tree, p string) bool {
	hp, err := treepath.Resolve(tree, p, true)
	if err != nil {
		return false
	}
	fi, err := os.Stat(hp)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}
