// Package binfmt finds out whether this Linux kernel runs another
// architecture's programs through binfmt_misc (qemu-user), and registers
// Debian's qemu-user-static handler when asked to.
//
// A build for a foreign architecture runs the target's maintainer scripts,
// update-initramfs and the like inside namespaces and chroots: the handler
// must carry the F flag (the kernel opens the interpreter when the handler
// is registered, so it need not exist inside the chroot). Debian's
// qemu-user-static and docker/setup-qemu-action both register it so.
package binfmt

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// Dir is where the kernel's binfmt_misc file system is mounted.
const Dir = "/proc/sys/fs/binfmt_misc"

// ConfDir holds systemd-binfmt's configuration, where Debian's
// qemu-user-static puts one file per architecture.
const ConfDir = "/usr/lib/binfmt.d"

// machines maps the image definitions' architecture names to what the ELF
// header of a 64-bit little-endian executable of that architecture holds
// at e_machine, and the qemu-user name.
var machines = map[string]struct {
	elf  uint16
	qemu string
}{
	"x86_64":  {62, "x86_64"},
	"aarch64": {183, "aarch64"},
}

// HostArch is the machine's architecture in the image definitions' names
// (x86_64, aarch64), or GOARCH for others.
func HostArch() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	}
	return runtime.GOARCH
}

// Native reports whether arch's programs run on this machine without an
// interpreter.
func Native(arch string) bool { return arch == HostArch() }

// Handler is one registered binfmt_misc entry.
type Handler struct {
	Name        string
	Enabled     bool
	Interpreter string
	Flags       string
	Offset      int
	Magic, Mask []byte
}

// header is the start of an ELF executable for the architecture: class 64,
// little endian, version 1, type EXEC, machine.
func header(elf uint16) []byte {
	h := make([]byte, 20)
	copy(h, "\x7fELF\x02\x01\x01")
	h[16] = 2 // ET_EXEC
	h[18], h[19] = byte(elf), byte(elf>>8)
	return h
}

// matches reports whether the handler takes a file starting with data.
func (h *Handler) matches(data []byte) bool {
	if len(h.Magic) == 0 || h.Offset+len(h.Magic) > len(data) {
		return false
	}
	for i, m := range h.Magic {
		b := data[h.Offset+i]
		if i < len(h.Mask) {
			b &= h.Mask[i]
			m &= h.Mask[i]
		}
		if b != m {
			return false
		}
	}
	return true
}

// Fixed reports whether the interpreter was opened at registration (F),
// which running it in a chroot needs.
func (h *Handler) Fixed() bool { return strings.ContainsRune(h.Flags, 'F') }

// parseHandler reads one entry file of Dir.
func parseHandler(name string, data []byte) (*Handler, error) {
	h := &Handler{Name: name}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		l := sc.Text()
		switch {
		case l == "enabled":
			h.Enabled = true
		case strings.HasPrefix(l, "interpreter "):
			h.Interpreter = strings.TrimPrefix(l, "interpreter ")
		case strings.HasPrefix(l, "flags: "):
			h.Flags = strings.TrimPrefix(l, "flags: ")
		case strings.HasPrefix(l, "offset "):
			n, err := strconv.Atoi(strings.TrimPrefix(l, "offset "))
			if err != nil {
				return nil, fmt.Errorf("binfmt_misc entry %s: offset: %w", name, err)
			}
			h.Offset = n
		case strings.HasPrefix(l, "magic "):
			b, err := hex.DecodeString(strings.TrimPrefix(l, "magic "))
			if err != nil {
				return nil, fmt.Errorf("binfmt_misc entry %s: magic: %w", name, err)
			}
			h.Magic = b
		case strings.HasPrefix(l, "mask "):
			b, err := hex.DecodeString(strings.TrimPrefix(l, "mask "))
			if err != nil {
				return nil, fmt.Errorf("binfmt_misc entry %s: mask: %w", name, err)
			}
			h.Mask = b
		}
	}
	return h, sc.Err()
}

// NotRegisteredError says that no usable handler runs arch's programs,
// and how to get one.
type NotRegisteredError struct {
	Arch string
	// Why: binfmt_misc not mounted, no handler, a handler without F or
	// disabled.
	Why string
}

func (e *NotRegisteredError) Error() string {
	return fmt.Sprintf("this %s machine cannot run %s programs: %s. "+
		"As root with Debian's qemu-user-static installed, add --register-binfmt "+
		"(or run: mount -t binfmt_misc binfmt_misc %s; cat %s > %s/register); "+
		"in GitHub Actions, run docker/setup-qemu-action before the build, or build the entry on a runner of its architecture",
		HostArch(), e.Arch, e.Why, Dir, confFile(e.Arch), Dir)
}

func confFile(arch string) string {
	q := arch
	if m, ok := machines[arch]; ok {
		q = m.qemu
	}
	return filepath.Join(ConfDir, "qemu-"+q+".conf")
}

// mounted reports whether binfmt_misc is mounted at dir.
func mounted(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "register"))
	return err == nil
}

// Check returns nil when arch's programs run here: natively, or through an
// enabled binfmt_misc handler with the F flag; else a *NotRegisteredError.
// Architectures binfmt does not know are not checked: their programs
// fail when run if the machine cannot run them.
func Check(arch string) error {
	arch = canonical(arch)
	if _, known := machines[arch]; !known || Native(arch) {
		return nil
	}
	_, err := find(Dir, arch)
	return err
}

// canonical maps dpkg's names of the architectures to the image
// definitions'.
func canonical(arch string) string {
	switch arch {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	}
	return arch
}

// find returns the handler that runs arch's executables.
func find(dir, arch string) (*Handler, error) {
	m, ok := machines[arch]
	if !ok {
		return nil, fmt.Errorf("architecture %s: unknown to binfmt", arch)
	}
	if !mounted(dir) {
		return nil, &NotRegisteredError{Arch: arch, Why: "binfmt_misc is not mounted at " + dir}
	}
	if st, err := os.ReadFile(filepath.Join(dir, "status")); err == nil && strings.TrimSpace(string(st)) == "disabled" {
		return nil, &NotRegisteredError{Arch: arch, Why: "binfmt_misc is disabled (" + dir + "/status)"}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", dir, err)
	}
	hdr := header(m.elf)
	var unusable *Handler
	for _, e := range ents {
		if e.Name() == "register" || e.Name() == "status" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // removed meanwhile
		}
		h, err := parseHandler(e.Name(), data)
		if err != nil || !h.matches(hdr) {
			continue
		}
		if h.Enabled && h.Fixed() {
			return h, nil
		}
		unusable = h
	}
	switch {
	case unusable == nil:
		return nil, &NotRegisteredError{Arch: arch, Why: "no binfmt_misc handler is registered for it"}
	case !unusable.Enabled:
		return nil, &NotRegisteredError{Arch: arch, Why: "binfmt_misc handler " + unusable.Name + " is disabled"}
	default:
		return nil, &NotRegisteredError{Arch: arch, Why: "binfmt_misc handler " + unusable.Name + " has no F flag (flags " +
			strconv.Quote(unusable.Flags) + "), so its interpreter cannot run inside a chroot"}
	}
}

// Registration is what Register did, for Undo.
type Registration struct {
	dir     string
	name    string // the handler Register added, or ""
	mounted bool   // Register mounted binfmt_misc
}

// Register makes arch's programs run here when they do not yet: it mounts
// binfmt_misc if needed (a container sees the kernel's handlers then) and,
// when no usable handler is registered, registers the one of Debian's
// qemu-user-static (ConfDir/qemu-ARCH.conf). It needs root. Undo removes
// what it added.
func Register(arch string) (*Registration, error) {
	return register(Dir, arch)
}

func register(dir, arch string) (*Registration, error) {
	arch = canonical(arch)
	r := &Registration{dir: dir}
	if Native(arch) {
		return r, nil
	}
	if _, known := machines[arch]; !known {
		return nil, fmt.Errorf("architecture %s: unknown to binfmt", arch)
	}
	if !mounted(dir) {
		// A container sees the kernel's handlers once it mounts
		// binfmt_misc (docker/setup-qemu-action registers them outside).
		if err := syscall.Mount("binfmt_misc", dir, "binfmt_misc", 0, ""); err != nil {
			return nil, fmt.Errorf("mounting binfmt_misc at %s: %w (needs root)", dir, err)
		}
		r.mounted = true
	}
	_, err := find(dir, arch)
	if err == nil {
		return r, nil // already there: leave it as found
	}
	var nr *NotRegisteredError
	if !errors.As(err, &nr) {
		r.Undo()
		return nil, err
	}
	conf := confFile(arch)
	line, err := os.ReadFile(conf)
	if errors.Is(err, os.ErrNotExist) {
		r.Undo()
		return nil, fmt.Errorf("%w; and %s is missing: install qemu-user-static", nr, conf)
	}
	if err != nil {
		r.Undo()
		return nil, fmt.Errorf("registering a binfmt_misc handler for %s: %w", arch, err)
	}
	line = bytes.TrimSpace(line)
	fields := strings.Split(string(line), ":")
	if len(fields) < 8 || fields[1] == "" {
		r.Undo()
		return nil, fmt.Errorf("registering a binfmt_misc handler for %s: %s is not a binfmt_misc rule", arch, conf)
	}
	name := fields[1]
	if !strings.Contains(fields[len(fields)-1], "F") {
		r.Undo()
		return nil, fmt.Errorf("registering a binfmt_misc handler for %s: the rule in %s has no F flag", arch, conf)
	}
	if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
		// A handler of that name without F, or disabled: the kernel
		// refuses a second one with the same name.
		r.Undo()
		return nil, fmt.Errorf("registering a binfmt_misc handler for %s: %s", arch, nr.Why)
	}
	if err := os.WriteFile(filepath.Join(dir, "register"), line, 0o200); err != nil {
		r.Undo()
		return nil, fmt.Errorf("registering the binfmt_misc handler of %s: %w", conf, err)
	}
	r.name = name
	if _, err := find(dir, arch); err != nil {
		r.Undo()
		return nil, fmt.Errorf("registered %s, but: %w", conf, err)
	}
	return r, nil
}

// Added reports whether Register added a handler (it was not there).
func (r *Registration) Added() bool { return r != nil && r.name != "" }

// Undo removes the handler Register added and unmounts binfmt_misc if it
// mounted it. It does nothing for what was there before.
func (r *Registration) Undo() error {
	if r == nil {
		return nil
	}
	var errs []error
	if r.name != "" {
		if err := os.WriteFile(filepath.Join(r.dir, r.name), []byte("-1"), 0o200); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("removing binfmt_misc handler %s: %w", r.name, err))
		}
		r.name = ""
	}
	if r.mounted {
		if err := syscall.Unmount(r.dir, 0); err != nil {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", r.dir, err))
		}
		r.mounted = false
	}
	return errors.Join(errs...)
}
