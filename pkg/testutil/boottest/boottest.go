// Package boottest boots disk images and ISOs under QEMU for the tests of
// every package that builds one: x86_64 (q35, OVMF or SeaBIOS) and
// aarch64 (virt, AAVMF), on the serial console, until a login prompt, a
// first-boot marker and the texts a test wants were seen, or until the
// guest powers off. QEMU is always ended by its PID.
//
// The tests run under TCG (no KVM here): one vCPU per VM, since TCG runs
// each vCPU on a host thread and the CI machine has two cores.
package boottest

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// Firmware files of Debian's ovmf and qemu-efi-aarch64 packages: code
// and the template of the variables, which each boot copies (the pair
// must match).
const (
	OVMFCode  = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVars  = "/usr/share/OVMF/OVMF_VARS_4M.fd"
	AAVMFCode = "/usr/share/AAVMF/AAVMF_CODE.fd"
	AAVMFVars = "/usr/share/AAVMF/AAVMF_VARS.fd"
)

// Disk is a disk attached to the VM, in the order given (the first one is
// the one booted when there is no CD-ROM).
type Disk struct {
	Path string
	// Format is QEMU's name for it; default qcow2 for a .qcow2 file, raw
	// otherwise.
	Format string
	// Bus is "virtio" (the default), "sata" (q35's AHCI controller; x86_64
	// only) or "nvme".
	Bus string
	// Snapshot sends writes to a throw-away overlay: set it when booting a
	// built image, leave it unset for a disk an installer writes.
	Snapshot bool
	ReadOnly bool
	// SectorSize is the logical and physical block size the guest sees
	// (0: QEMU's 512); 4096 for 4Kn disks. virtio and nvme only.
	SectorSize int
}

// Options say what to boot and what counts as booted.
type Options struct {
	// Arch is "x86_64" (the default) or "aarch64" (UEFI only).
	Arch string
	// Firmware is "uefi" (the default) or "bios".
	Firmware string
	Disks    []Disk
	// CDROM is an ISO attached as a CD-ROM and booted first.
	CDROM string
	// Dir receives the console log (console-LABEL.log) and the UEFI
	// variables of this boot; Label names them (default: the firmware),
	// so boots can run side by side in one Dir.
	Dir, Label string
	// Host is the host name of the login prompt that must be seen
	// ("HOST login:"); empty accepts any login prompt.
	Host string
	// Marker is a console text that must be seen (a first-boot marker,
	// e.g. "IBUILD-MARKER-"); Result.Marker is the line from there on.
	Marker string
	// Want are console texts that must all be seen; Refuse are texts that
	// fail the boot at once, on top of ConsoleFailures unless
	// AllowFailures.
	Want, Refuse  []string
	AllowFailures bool
	// NoLogin: the boot counts without a login prompt (with a Marker or
	// Want, say).
	NoLogin bool
	// UntilPowerOff: the boot counts when the guest powers off (QEMU
	// exits 0; reboots end QEMU too: -no-reboot), after what Want and
	// Marker ask; no login prompt is waited for.
	UntilPowerOff bool
	// SSH: the boot counts once the guest's SSH server sends its banner
	// through a port QEMU forwards from 127.0.0.1.
	SSH bool
	// Memory in MiB (default 1024); Timeout of the whole boot (default 8
	// minutes on x86_64, 20 on aarch64).
	Memory  int
	Timeout time.Duration
}

// Result is what a boot showed.
type Result struct {
	// Seconds from QEMU's start until the boot counted.
	Seconds float64
	// Marker is the console line from Options.Marker on, if one was asked.
	Marker string
	// ConsoleLog is the path of the whole console output.
	ConsoleLog string
}

// ConsoleFailures are console texts that fail every boot unless
// AllowFailures: a unit that failed or timed out, and an initramfs that could not check
// the root file system (Debian 13 without e2fsprogs said "fsck: error 2
// (No such file or directory) while executing fsck.ext4" and "File system
// check failed but did not detect errors", and booted on).
var ConsoleFailures = []string{
	"[FAILED]",
	"while executing fsck",
	"fsck not present",
	"File system check failed",
	"fsck exited with status code",
	"Kernel panic",
	// A device or unit that timed out, a mount whose dependency failed,
	// and the emergency shell they lead to: fail now with the console
	// rather than wait for a login prompt that never comes.
	"[ TIME ]",
	"[DEPEND]",
	"You are in emergency mode",
}

// Need skips the test unless QEMU and the firmware for arch are installed
// (make deps installs them).
func Need(t testing.TB, arch string) {
	t.Helper()
	qemu, code, vars := machine(arch)
	if _, err := exec.LookPath(qemu); err != nil {
		t.Skipf("%s is not installed (make deps installs it)", qemu)
	}
	for _, f := range []string{code, vars} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("%s is missing (make deps installs the firmware)", f)
		}
	}
}

func machine(arch string) (qemu, code, vars string) {
	if arch == "aarch64" {
		return "qemu-system-aarch64", AAVMFCode, AAVMFVars
	}
	return "qemu-system-x86_64", OVMFCode, OVMFVars
}

// Args are QEMU's arguments for o, after the binary; vars is the path of
// this boot's copy of the UEFI variables ("" for BIOS), written by Boot.
func Args(o Options, vars string) ([]string, error) {
	arch := cmp.Or(o.Arch, "x86_64")
	fw := cmp.Or(o.Firmware, "uefi")
	var args []string
	switch arch {
	case "x86_64":
		// No display and no parallel port: under TCG the emulated CPU
		// draws every console line into the VGA framebuffer (the images
		// say console=tty0 too) and probes devices nobody uses, which
		// slows every boot; the serial console is what we read.
		args = []string{"-machine", "q35", "-vga", "none", "-parallel", "none"}
	case "aarch64":
		if fw != "uefi" {
			return nil, fmt.Errorf("aarch64 boots by UEFI only, not %s", fw)
		}
		// cortex-a72: TCG emulates it faster than -cpu max, whose pointer
		// authentication costs much.
		args = []string{"-machine", "virt", "-cpu", "cortex-a72"}
	default:
		return nil, fmt.Errorf("unknown architecture %q", arch)
	}
	if fw != "uefi" && fw != "bios" {
		return nil, fmt.Errorf("unknown firmware %q", fw)
	}
	args = append(args, "-m", fmt.Sprint(cmp.Or(o.Memory, 1024)), "-smp", "1",
		"-nographic", "-no-reboot", "-device", "virtio-rng-pci")
	if fw == "uefi" {
		_, code, _ := machine(arch)
		args = append(args,
			"-drive", "if=pflash,format=raw,readonly=on,file="+code,
			"-drive", "if=pflash,format=raw,file="+vars)
	}
	// Boot order by bootindex, which SeaBIOS and OVMF/AAVMF both honour:
	// the CD-ROM first, then the disks in order.
	index := 0
	if o.CDROM != "" {
		args = append(args, "-drive", "file="+o.CDROM+",if=none,id=cd0,media=cdrom,readonly=on,format=raw")
		if arch == "x86_64" {
			args = append(args, "-device", "ide-cd,drive=cd0,bus=ide.0,bootindex=0")
		} else {
			args = append(args, "-device", "virtio-scsi-pci,id=scsi0", "-device", "scsi-cd,drive=cd0,bus=scsi0.0,bootindex=0")
		}
		index++
	}
	for i, d := range o.Disks {
		format := d.Format
		if format == "" {
			format = "raw"
			if strings.HasSuffix(d.Path, ".qcow2") {
				format = "qcow2"
			}
		}
		id := fmt.Sprintf("disk%d", i)
		drive := fmt.Sprintf("file=%s,if=none,id=%s,format=%s", d.Path, id, format)
		if d.Snapshot {
			drive += ",snapshot=on"
		}
		if d.ReadOnly {
			drive += ",readonly=on"
		} else {
			// The guest's discards and zeroings (blkdiscard -z, fstrim)
			// punch holes in the file instead of allocating it: an
			// installer that zeroes a 4 GiB span leaves the file sparse.
			drive += ",discard=unmap"
		}
		var dev string
		switch d.Bus {
		case "", "virtio":
			dev = "virtio-blk-pci,drive=" + id
		case "nvme":
			dev = fmt.Sprintf("nvme,drive=%s,serial=ibuild%d", id, i)
		case "sata":
			if arch != "x86_64" {
				return nil, fmt.Errorf("disk %s: bus sata is q35's (x86_64 only)", d.Path)
			}
			if d.SectorSize != 0 {
				return nil, fmt.Errorf("disk %s: sector size on the sata bus is not supported here", d.Path)
			}
			dev = fmt.Sprintf("ide-hd,drive=%s,bus=ide.%d", id, i+1)
		default:
			return nil, fmt.Errorf("disk %s: unknown bus %q", d.Path, d.Bus)
		}
		if d.SectorSize != 0 {
			dev += fmt.Sprintf(",logical_block_size=%d,physical_block_size=%d", d.SectorSize, d.SectorSize)
		}
		dev += fmt.Sprintf(",bootindex=%d", index)
		index++
		args = append(args, "-drive", drive, "-device", dev)
	}
	return args, nil
}

// Boot starts QEMU and waits until the boot counts (see Options), the
// console shows a failure, QEMU ends, or the time is up. QEMU is killed by
// its PID in every case.
func Boot(ctx context.Context, o Options) (Result, error) {
	arch := cmp.Or(o.Arch, "x86_64")
	fw := cmp.Or(o.Firmware, "uefi")
	o.Label = cmp.Or(o.Label, fw)
	if o.Dir == "" {
		return Result{}, errors.New("boottest: Options.Dir is empty")
	}
	timeout := o.Timeout
	if timeout == 0 {
		timeout = 8 * time.Minute
		if arch == "aarch64" {
			timeout = 20 * time.Minute
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var vars string
	if fw == "uefi" {
		_, _, template := machine(arch)
		b, err := os.ReadFile(template)
		if err != nil {
			return Result{}, err
		}
		vars = filepath.Join(o.Dir, "VARS-"+o.Label+".fd")
		if err := os.WriteFile(vars, b, 0o644); err != nil {
			return Result{}, err
		}
	}
	args, err := Args(o, vars)
	if err != nil {
		return Result{}, err
	}
	nic := "user,restrict=on,model=virtio-net-pci"
	var sshAddr string
	if o.SSH {
		// A free port now; QEMU binds it a moment later.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return Result{}, err
		}
		sshAddr = l.Addr().String()
		l.Close()
		nic += ",hostfwd=tcp:" + sshAddr + "-:22"
	}
	args = append(args, "-nic", nic)

	qemu, _, _ := machine(arch)
	cmd := exec.Command(qemu, args...)
	// A pipe of our own rather than StdoutPipe: Wait would close its read
	// end while the console is still being read.
	r, w, err := os.Pipe()
	if err != nil {
		return Result{}, err
	}
	defer r.Close()
	cmd.Stdout, cmd.Stderr = w, w
	res := Result{ConsoleLog: filepath.Join(o.Dir, "console-"+o.Label+".log")}
	logf, err := os.Create(res.ConsoleLog)
	if err != nil {
		w.Close()
		return Result{}, err
	}
	defer logf.Close()
	start := time.Now()
	err = cmd.Start()
	w.Close()
	if err != nil {
		return Result{}, fmt.Errorf("starting %s: %w", qemu, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	reaped := false
	defer func() {
		if !reaped {
			cmd.Process.Kill()
			<-exited
		}
	}()
	lines := make(chan string, 256)
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sc.Split(ConsoleLines)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// Whatever is still on its way once Boot returned is dropped, so the
	// reader above ends when QEMU does.
	defer func() {
		go func() {
			for range lines {
			}
		}()
	}()

	refuse := slices.Clone(o.Refuse)
	if !o.AllowFailures {
		refuse = append(refuse, ConsoleFailures...)
	}
	want := slices.Clone(o.Want) // ticked off below
	var login bool
	prompt := regexp.MustCompile(`\S+ login:`)
	if o.Host != "" {
		prompt = regexp.MustCompile(regexp.QuoteMeta(o.Host + " login:"))
	}
	fail := func(format string, a ...any) (Result, error) {
		return res, fmt.Errorf("%s (console in %s)", fmt.Sprintf(format, a...), res.ConsoleLog)
	}
	done := func() bool {
		if o.Marker != "" && res.Marker == "" {
			return false
		}
		if strings.Join(want, "") != "" {
			return false
		}
		return o.NoLogin || login
	}
	for {
		select {
		case <-ctx.Done():
			return fail("%s after %.0f s: marker %q, login prompt %v, not seen %q; console ends:\n%s", ctx.Err(),
				time.Since(start).Seconds(), res.Marker, login, slices.DeleteFunc(want, func(w string) bool { return w == "" }), tail(res.ConsoleLog))
		case line, ok := <-lines:
			if !ok {
				// QEMU ended: the guest powered off or rebooted, or QEMU failed.
				err := <-exited
				reaped = true
				logf.Sync()
				if o.UntilPowerOff && err == nil {
					if o.Marker != "" && res.Marker == "" || strings.Join(want, "") != "" {
						return fail("the guest powered off before marker %q and %q were seen; console ends:\n%s", o.Marker, want, tail(res.ConsoleLog))
					}
					res.Seconds = time.Since(start).Seconds()
					return res, nil
				}
				return fail("QEMU ended (%v) before the boot counted; console ends:\n%s", err, tail(res.ConsoleLog))
			}
			fmt.Fprintln(logf, line)
			plain := ansiEscape.ReplaceAllString(line, "")
			for _, r := range refuse {
				if strings.Contains(plain, r) {
					logf.Sync()
					return fail("the console shows %q: %s", r, strings.TrimSpace(plain))
				}
			}
			if o.Marker != "" && res.Marker == "" {
				if i := strings.Index(plain, o.Marker); i >= 0 {
					res.Marker = strings.TrimSpace(plain[i:])
				}
			}
			for i, w := range want {
				if w != "" && strings.Contains(plain, w) {
					want[i] = ""
				}
			}
			if prompt.MatchString(plain) {
				login = true
			}
			if o.UntilPowerOff || !done() {
				continue
			}
			res.Seconds = time.Since(start).Seconds()
			if !o.SSH {
				return res, nil
			}
			// The console must not fill its pipe while we wait.
			go func() {
				for l := range lines {
					fmt.Fprintln(logf, l)
				}
			}()
			if err := SSHBanner(ctx, sshAddr); err != nil {
				return fail("login prompt after %.1f s, but %v", res.Seconds, err)
			}
			res.Seconds = time.Since(start).Seconds()
			return res, nil
		}
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// SSHBanner waits until an SSH server answers at addr (QEMU's forwarded
// port: it accepts at once and closes while the guest does not listen).
func SSHBanner(ctx context.Context, addr string) error {
	var last string
	for {
		d := net.Dialer{Timeout: 5 * time.Second}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.SetDeadline(time.Now().Add(10 * time.Second))
			last, err = bufio.NewReader(c).ReadString('\n')
			c.Close()
			if err == nil && strings.HasPrefix(last, "SSH-2.0-") {
				return nil
			}
		}
		if err != nil {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no SSH server answered on %s within the time limit (last: %q)", addr, strings.TrimSpace(last))
		case <-time.After(2 * time.Second):
		}
	}
}

// ansiEscape matches the colour and cursor sequences systemd writes to
// the console.
var ansiEscape = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// ConsoleLines splits console output into lines like bufio.ScanLines, but
// hands over a partial line as soon as it holds a login prompt: getty
// prints "host login: " without a newline, and when the marker came first
// nothing follows it.
func ConsoleLines(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, bytes.TrimSuffix(data[:i], []byte("\r")), nil
	}
	if len(data) > 0 && (atEOF || bytes.Contains(data, []byte("login:"))) {
		return len(data), data, nil
	}
	return 0, nil, nil
}
