package main

// The end-to-end test: the real ibuild binary locks testdata/e2e/boot.toml
// against the host's repositories, builds it, the image is checked with
// tools nobody here wrote (sfdisk, fsck, qemu-img, debugfs), and QEMU boots
// it by UEFI and by BIOS until the first-boot marker reports what it found.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/lock/locktest"
	"github.com/image-builder-action/image-builder-action/pkg/publish/publishtest"
)

func testCache(t *testing.T) string {
	d := os.Getenv("IBUILD_TEST_CACHE")
	if d == "" {
		d = filepath.Join(os.TempDir(), "ibuild-test-cache")
	}
	d = filepath.Join(d, "e2e")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (make deps installs it)", tool)
		}
	}
}

// needArchive skips unless the host's apt sources name a Debian mirror
// that answers.
func needArchive(t *testing.T) { locktest.NeedArchive(t) }

// run runs a command, failing the test with its output on error.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	return runEnv(t, nil, "", name, args...)
}

func TestBuildAndBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("building needs root")
	}
	need(t, "sfdisk", "fsck.vfat", "e2fsck", "debugfs", "qemu-img", "qemu-system-x86_64")
	needArchive(t)
	dir := t.TempDir()
	cache := testCache(t)

	bin := filepath.Join(dir, "ibuild")
	run(t, "go", "build", "-o", bin, ".")
	lockPath := filepath.Join(dir, "boot.lock.json")
	run(t, bin, "lock", "../../testdata/e2e/boot.toml", "--type", "qcow2,raw", "--arch", "x86_64", "-o", lockPath, "--cache", cache)
	out := filepath.Join(dir, "out")
	for _, typ := range []string{"raw", "qcow2"} {
		start := time.Now()
		log := run(t, bin, "build", lockPath, "--type", typ, "-o", out, "--cache", cache)
		t.Logf("build %s: %s\n%s", typ, time.Since(start).Round(time.Second), log)
	}
	raw, qcow2 := filepath.Join(out, "disk.raw"), filepath.Join(out, "disk.qcow2")

	t.Run("disk", func(t *testing.T) {
		run(t, "sfdisk", "--verify", raw)
		var table struct {
			PartitionTable struct {
				Label      string `json:"label"`
				Partitions []struct {
					Start int64  `json:"start"`
					Size  int64  `json:"size"`
					Type  string `json:"type"`
				} `json:"partitions"`
			} `json:"partitiontable"`
		}
		if err := json.Unmarshal([]byte(run(t, "sfdisk", "--json", raw)), &table); err != nil {
			t.Fatal(err)
		}
		if table.PartitionTable.Label != "gpt" || len(table.PartitionTable.Partitions) != 3 {
			t.Fatalf("partition table: %+v", table.PartitionTable)
		}
		esp, root := table.PartitionTable.Partitions[1], table.PartitionTable.Partitions[2]
		espImg := extract(t, raw, esp.Start, esp.Size)
		run(t, "fsck.vfat", "-n", espImg)
		if l := run(t, "mdir", "-i", espImg, "-b", "::/EFI/BOOT"); !strings.Contains(strings.ToUpper(l), "BOOTX64.EFI") {
			t.Errorf("no removable-path EFI loader on the ESP:\n%s", l)
		}
		rootImg := extract(t, raw, root.Start, root.Size)
		run(t, "e2fsck", "-fn", rootImg)
		checkRoot(t, rootImg)

		info := run(t, "qemu-img", "info", "--output=json", qcow2)
		if !strings.Contains(info, `"format": "qcow2"`) {
			t.Errorf("qemu-img info: %s", info)
		}
		run(t, "qemu-img", "check", qcow2)
		if c := run(t, "qemu-img", "compare", "-f", "raw", "-F", "qcow2", raw, qcow2); !strings.Contains(c, "identical") {
			t.Errorf("qcow2 and raw differ: %s", c)
		}
	})

	t.Run("publish", func(t *testing.T) {
		tools := publishtest.RequireTools(t, "oras", "cosign", "docker-registry")
		host := publishtest.DockerRegistry(t)
		keys := filepath.Join(dir, "keys")
		if err := os.MkdirAll(keys, 0o700); err != nil {
			t.Fatal(err)
		}
		env := append(os.Environ(), "COSIGN_PASSWORD=e2e-password")
		runEnv(t, env, keys, tools["cosign"], "generate-key-pair")
		ref := host + "/ibuild/boot"
		start := time.Now()
		runEnv(t, env, "", bin, "publish", lockPath, "--from", out, ref, "--type", "qcow2", "--tag", "e2e",
			"--key", filepath.Join(keys, "cosign.key"))
		t.Logf("publish qcow2: %s", time.Since(start).Round(100*time.Millisecond))

		pulled := filepath.Join(dir, "pulled")
		runEnv(t, env, "", tools["oras"], "pull", "--plain-http", "--platform", "linux/amd64", "-o", pulled, ref+":e2e")
		if a, b := sha256File(t, qcow2), sha256File(t, filepath.Join(pulled, "disk.qcow2")); a != b {
			t.Fatalf("oras pull gave sha256 %s, built %s", b, a)
		}
		verify := []string{"--key", filepath.Join(keys, "cosign.pub"), "--insecure-ignore-tlog=true", "--allow-http-registry", "--allow-insecure-registry"}
		runEnv(t, env, "", tools["cosign"], append(append([]string{"verify"}, verify...), ref+":e2e")...)
		for _, typ := range []string{"spdxjson", "slsaprovenance1"} {
			runEnv(t, env, "", tools["cosign"], append(append([]string{"verify-attestation", "--type", typ}, verify...), ref+":e2e")...)
		}
	})

	t.Run("boot", func(t *testing.T) {
		need(t, "qemu-system-x86_64")
		ovmf := "/usr/share/OVMF/OVMF_CODE_4M.fd"
		if _, err := os.Stat(ovmf); err != nil {
			t.Skip("ovmf is not installed")
		}
		// Both boots at once, one core each: TCG is single-threaded per vCPU.
		var wg sync.WaitGroup
		for _, b := range []struct{ name, disk, format string }{{"uefi", qcow2, "qcow2"}, {"bios", raw, "raw"}} {
			b := b
			wg.Add(1)
			go func() {
				defer wg.Done()
				secs, err := boot(dir, b.name, b.disk, b.format)
				if err != nil {
					t.Errorf("boot %s: %v", b.name, err)
					return
				}
				t.Logf("boot %s: marker and login prompt after %.1f s", b.name, secs)
			}()
		}
		wg.Wait()
	})
}

// runEnv runs a command with env (nil: this process's) in dir ("" for
// the current directory), failing the test with its output on error.
func runEnv(t *testing.T, env []string, dir, name string, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Env, cmd.Dir = env, dir
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// extract copies a partition (start and size in sectors) to its own file.
func extract(t *testing.T, disk string, start, size int64) string {
	t.Helper()
	f, err := os.CreateTemp(filepath.Dir(disk), "part-*.img")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	run(t, "dd", "if="+disk, "of="+f.Name(), "bs=512", "skip="+strconv.FormatInt(start, 10), "count="+strconv.FormatInt(size, 10), "conv=sparse", "status=none")
	t.Cleanup(func() { os.Remove(f.Name()) })
	return f.Name()
}

// checkRoot reads the blueprint back from the root file system image.
func checkRoot(t *testing.T, img string) {
	t.Helper()
	debugfs := func(req string) string {
		// debugfs prints its banner on stderr: read stdout alone.
		out, err := exec.Command("debugfs", "-R", req, img).Output()
		if err != nil {
			t.Fatalf("debugfs -R %q: %v", req, err)
		}
		return string(out)
	}
	if h := strings.TrimSpace(debugfs("cat /etc/hostname")); h != "ibuild-boot" {
		t.Errorf("hostname %q", h)
	}
	if m := debugfs("cat /etc/machine-id"); strings.TrimSpace(m) != "" {
		t.Errorf("machine-id baked in: %q", m)
	}
	if l := debugfs("ls -l /etc/ssh"); strings.Contains(l, "ssh_host_") {
		t.Errorf("SSH host keys baked in:\n%s", l)
	}
	if p := debugfs("cat /etc/passwd"); !strings.Contains(p, "admin:x:1200:") {
		t.Errorf("no admin with uid 1200 in /etc/passwd:\n%s", p)
	}
	st := debugfs("stat /home/admin/.ssh/authorized_keys")
	if !strings.Contains(st, "Mode:  0600") || !strings.Contains(st, "User:  1200") {
		t.Errorf("authorized_keys owner or mode:\n%s", st)
	}
	if k := debugfs("cat /home/admin/.ssh/authorized_keys"); !strings.Contains(k, "admin@ibuild-boot") {
		t.Errorf("authorized_keys: %q", k)
	}
	if s := debugfs("stat /srv/data"); !strings.Contains(s, "Mode:  0750") || !strings.Contains(s, "User:  1200") {
		t.Errorf("/srv/data owner or mode:\n%s", s)
	}
	if m := debugfs("cat /etc/motd"); m != "Built by ibuild.\n" {
		t.Errorf("motd %q", m)
	}
	for _, unit := range []string{"ssh.service", "ibuild-marker.service"} {
		if l := debugfs("ls /etc/systemd/system/multi-user.target.wants"); !strings.Contains(l, unit) {
			t.Errorf("%s is not enabled:\n%s", unit, l)
		}
	}
	if l := debugfs("stat /etc/localtime"); !strings.Contains(l, "Europe/Berlin") {
		t.Errorf("/etc/localtime:\n%s", l)
	}
	if g := debugfs("cat /boot/grub/grub.cfg"); !strings.Contains(g, "ibuild.test=1") {
		t.Errorf("kernel command line not in grub.cfg:\n%s", g)
	}
	if l := debugfs("ls /var/lib/apt/lists"); strings.Contains(l, "_Packages") {
		t.Errorf("apt lists left in the image:\n%s", l)
	}
}

// boot starts QEMU on a throw-away overlay of disk and waits for the
// marker and a login prompt on the serial console. It returns the seconds
// it took; QEMU is killed by its PID in every case.
func boot(dir, name, disk, format string) (float64, error) {
	return bootDisk(dir, bootOpts{firmware: name, disk: disk, format: format})
}

// bootOpts says how bootDisk boots a disk: firmware "uefi" or "bios", the
// disk's QEMU format, the bus ("virtio", the default, or "sata": the AHCI
// controller of q35) and a label naming the console log and the UEFI
// variables (default: the firmware), so boots can run side by side.
type bootOpts struct {
	firmware, disk, format, bus, label string
}

// bootDisk is boot with the choices of bootOpts.
func bootDisk(dir string, o bootOpts) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	name := o.firmware
	if o.label == "" {
		o.label = name
	}
	args := []string{"-machine", "q35", "-m", "1024", "-smp", "1", "-nographic", "-no-reboot"}
	switch o.bus {
	case "", "virtio":
		args = append(args, "-drive", fmt.Sprintf("file=%s,if=virtio,format=%s,snapshot=on", o.disk, o.format))
	case "sata":
		args = append(args, "-drive", fmt.Sprintf("file=%s,if=none,id=disk0,format=%s,snapshot=on", o.disk, o.format),
			"-device", "ide-hd,drive=disk0,bus=ide.0")
	default:
		return 0, fmt.Errorf("unknown bus %q", o.bus)
	}
	args = append(args, "-nic", "user,restrict=on,model=virtio-net-pci")
	if name == "uefi" {
		varsName := "OVMF_VARS_4M.fd"
		if o.label != name {
			varsName = "OVMF_VARS_4M-" + o.label + ".fd"
		}
		vars := filepath.Join(dir, varsName)
		b, err := os.ReadFile("/usr/share/OVMF/OVMF_VARS_4M.fd")
		if err != nil {
			return 0, err
		}
		if err := os.WriteFile(vars, b, 0o644); err != nil {
			return 0, err
		}
		args = append(args,
			"-drive", "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
			"-drive", "if=pflash,format=raw,file="+vars)
	}
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	cmd.Stderr = cmd.Stdout
	logPath := filepath.Join(dir, "console-"+o.label+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	var marker string
	var login bool
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	sc.Split(consoleLines)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(logf, line)
		if i := strings.Index(line, "IBUILD-MARKER-"); i >= 0 {
			marker = line[i:]
			if !strings.HasPrefix(marker, "IBUILD-MARKER-OK firmware="+name) {
				return 0, fmt.Errorf("marker: %s (console in %s)", marker, logPath)
			}
		}
		if strings.Contains(line, "ibuild-boot login:") {
			login = true
		}
		if marker != "" && login {
			return time.Since(start).Seconds(), nil
		}
	}
	tail, _ := os.ReadFile(logPath)
	if len(tail) > 3000 {
		tail = tail[len(tail)-3000:]
	}
	return 0, fmt.Errorf("no marker and login prompt within the time limit (marker %q); console ends:\n%s", marker, tail)
}

// consoleLines splits console output into lines like bufio.ScanLines, but
// hands over a partial line as soon as it holds a login prompt: getty
// prints "host login: " without a newline, and when the marker came first
// nothing follows it.
func consoleLines(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, bytes.TrimSuffix(data[:i], []byte("\r")), nil
	}
	if len(data) > 0 && (atEOF || bytes.Contains(data, []byte("login:"))) {
		return len(data), data, nil
	}
	return 0, nil, nil
}
