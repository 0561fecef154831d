package main

// The end-to-end test: the real ibuild binary locks testdata/e2e/boot.toml
// against the host's repositories, builds it, the image is checked with
// tools nobody here wrote (sfdisk, fsck, qemu-img, debugfs), and QEMU boots
// it by UEFI and by BIOS until the first-boot marker reports what it found.
// The README's example blueprint (testdata/blueprints/example.toml, what
// `make example` builds) is built too, read back and booted by UEFI beside
// them.

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/lock/locktest"
	"github.com/image-builder-action/image-builder-action/pkg/publish/publishtest"
	"github.com/image-builder-action/image-builder-action/pkg/testutil"
	"github.com/image-builder-action/image-builder-action/pkg/testutil/boottest"
)

func testCache(t *testing.T) string { return testutil.Cache(t, "e2e") }

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

	// The README's example, as `make example` builds it (qcow2, this
	// machine's architecture); its build root is boot.toml's, from the cache.
	exampleLock := filepath.Join(dir, "example.lock.json")
	run(t, bin, "lock", "../../testdata/blueprints/example.toml", "--type", "qcow2", "--arch", "x86_64", "-o", exampleLock, "--cache", cache)
	start := time.Now()
	log := run(t, bin, "build", exampleLock, "--type", "qcow2", "-o", filepath.Join(dir, "out-example"), "--cache", cache)
	t.Logf("build example qcow2: %s\n%s", time.Since(start).Round(time.Second), log)
	example := filepath.Join(dir, "out-example", "disk.qcow2")

	t.Run("disk", func(t *testing.T) {
		run(t, "sfdisk", "--verify", raw)
		esp, root := diskPartitions(t, raw)
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

	t.Run("example", func(t *testing.T) {
		run(t, "qemu-img", "check", example)
		exampleRaw := filepath.Join(dir, "out-example", "disk.raw")
		run(t, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", example, exampleRaw)
		defer os.Remove(exampleRaw)
		run(t, "sfdisk", "--verify", exampleRaw)
		_, root := diskPartitions(t, exampleRaw)
		rootImg := extract(t, exampleRaw, root.Start, root.Size)
		run(t, "e2fsck", "-fn", rootImg)
		checkExampleRoot(t, rootImg)
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
		// The boots at once, one vCPU each: TCG is single-threaded per
		// vCPU. The example has no first-boot marker: its login prompt
		// shows the blueprint's host name, no unit fails, and the SSH
		// server it installs and enables answers.
		var wg sync.WaitGroup
		for _, b := range []bootOpts{
			{firmware: "uefi", disk: qcow2, format: "qcow2"},
			{firmware: "bios", disk: raw, format: "raw"},
			{firmware: "uefi", disk: example, format: "qcow2", label: "example-uefi",
				host: "ibuild-example", noMarker: true, ssh: true},
		} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				name := cmp.Or(b.label, b.firmware)
				secs, err := bootDisk(dir, b)
				if err != nil {
					t.Errorf("boot %s: %v", name, err)
					return
				}
				t.Logf("boot %s: ready after %.1f s", name, secs)
			}()
		}
		wg.Wait()
	})
}

// partition is a partition's place on a disk, in sectors, and its type.
type partition struct {
	Start int64  `json:"start"`
	Size  int64  `json:"size"`
	Type  string `json:"type"`
}

// diskPartitions reads a raw disk's GPT with sfdisk: a BIOS boot
// partition, the ESP and the root, as the debian-12 x86_64 images have.
func diskPartitions(t *testing.T, raw string) (esp, root partition) {
	t.Helper()
	var table struct {
		PartitionTable struct {
			Label      string      `json:"label"`
			Partitions []partition `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal([]byte(run(t, "sfdisk", "--json", raw)), &table); err != nil {
		t.Fatal(err)
	}
	if table.PartitionTable.Label != "gpt" || len(table.PartitionTable.Partitions) != 3 {
		t.Fatalf("partition table of %s: %+v", raw, table.PartitionTable)
	}
	return table.PartitionTable.Partitions[1], table.PartitionTable.Partitions[2]
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
// dd counts in bytes with 1 MiB blocks: in 512-byte blocks, a 4 GiB root
// took 8 million reads and writes (minutes of a loaded CI machine).
func extract(t *testing.T, disk string, start, size int64) string {
	t.Helper()
	f, err := os.CreateTemp(filepath.Dir(disk), "part-*.img")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	run(t, "dd", "if="+disk, "of="+f.Name(), "bs=1M", "iflag=skip_bytes,count_bytes",
		"skip="+strconv.FormatInt(start*512, 10), "count="+strconv.FormatInt(size*512, 10), "conv=sparse", "status=none")
	t.Cleanup(func() { os.Remove(f.Name()) })
	return f.Name()
}

// debugfsOf returns a function running a debugfs request on a file
// system image and returning its output.
func debugfsOf(t *testing.T, img string) func(req string) string {
	return func(req string) string {
		t.Helper()
		// debugfs prints its banner on stderr: read stdout alone.
		out, err := exec.Command("debugfs", "-R", req, img).Output()
		if err != nil {
			t.Fatalf("debugfs -R %q: %v", req, err)
		}
		return string(out)
	}
}

// checkExampleRoot reads testdata/blueprints/example.toml back from its
// image's root file system: what its boot cannot show (it has no
// first-boot marker).
func checkExampleRoot(t *testing.T, img string) {
	t.Helper()
	debugfs := debugfsOf(t, img)
	if h := strings.TrimSpace(debugfs("cat /etc/hostname")); h != "ibuild-example" {
		t.Errorf("hostname %q", h)
	}
	passwd := debugfs("cat /etc/passwd")
	var uid string
	for _, l := range strings.Split(passwd, "\n") {
		if f := strings.Split(l, ":"); len(f) == 7 && f[0] == "admin" {
			uid = f[2]
			if f[4] != "Administrator" || f[5] != "/home/admin" {
				t.Errorf("admin in /etc/passwd: %s", l)
			}
		}
	}
	if uid == "" {
		t.Fatalf("no admin in /etc/passwd:\n%s", passwd)
	}
	if g := debugfs("cat /etc/group"); !regexp.MustCompile(`(?m)^sudo:x:\d+:(.*,)?admin(,|$)`).MatchString(g) {
		t.Errorf("admin is not in the sudo group:\n%s", g)
	}
	st := debugfs("stat /home/admin/.ssh/authorized_keys")
	if !strings.Contains(st, "Mode:  0600") || !strings.Contains(st, "User:  "+uid) {
		t.Errorf("authorized_keys owner or mode:\n%s", st)
	}
	if k := debugfs("cat /home/admin/.ssh/authorized_keys"); !strings.Contains(k, "admin@ibuild-example") {
		t.Errorf("authorized_keys: %q", k)
	}
	if s := debugfs("stat /srv/data"); !strings.Contains(s, "Mode:  0750") || !strings.Contains(s, "User:  "+uid) {
		t.Errorf("/srv/data owner or mode:\n%s", s)
	}
	if m := debugfs("cat /etc/motd"); m != "Built by ibuild from the example blueprint.\n" {
		t.Errorf("motd %q", m)
	}
	if l := debugfs("stat /etc/localtime"); !strings.Contains(l, "Europe/Berlin") {
		t.Errorf("/etc/localtime:\n%s", l)
	}
	if l := debugfs("cat /etc/default/locale"); !strings.Contains(l, "LANG=en_US.UTF-8") {
		t.Errorf("/etc/default/locale: %q", l)
	}
	if l := debugfs("ls /etc/systemd/system/multi-user.target.wants"); !strings.Contains(l, "ssh.service") {
		t.Errorf("ssh.service is not enabled:\n%s", l)
	}
	if s := debugfs("cat /var/lib/dpkg/status"); !regexp.MustCompile(`(?m)^Package: curl\nStatus: install ok installed\n(.+\n)*?Version: 7\.88\.`).MatchString(s) {
		t.Errorf("curl 7.88.* is not installed")
	}
}

// checkRoot reads the blueprint back from the root file system image.
func checkRoot(t *testing.T, img string) {
	t.Helper()
	debugfs := debugfsOf(t, img)
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

// bootOpts says how bootDisk boots a disk: firmware "uefi" or "bios", the
// disk's QEMU format, the bus ("virtio", the default, or "sata": the AHCI
// controller of q35) and a label naming the console log and the UEFI
// variables (default: the firmware), so boots can run side by side.
//
// For images of other blueprints than testdata/e2e's: host is the host
// name the login prompt shows (default ibuild-boot); with noMarker the
// image has no first-boot marker, and a unit failing before the login
// prompt ([FAILED] on the console) fails the boot; with ssh, the boot
// counts once the guest's SSH server sends its banner through a port
// forwarded by QEMU.
type bootOpts struct {
	firmware, disk, format, bus, label string
	host                               string
	noMarker, ssh                      bool
	// seed is a NoCloud seed (a vfat file system labelled CIDATA)
	// attached as a second disk; want are console texts the boot must
	// show before it counts, refuse texts it must not show.
	seed         string
	want, refuse []string
}

// bootDisk boots the disk with pkg/testutil/boottest on a throw-away
// overlay and waits for the marker and a login prompt on the serial
// console (and the SSH banner). It returns the seconds it took.
func bootDisk(dir string, o bootOpts) (float64, error) {
	name := o.firmware
	bo := boottest.Options{
		Firmware: name,
		Disks:    []boottest.Disk{{Path: o.disk, Format: o.format, Bus: o.bus, Snapshot: true}},
		Dir:      dir,
		Label:    cmp.Or(o.label, name),
		Host:     cmp.Or(o.host, "ibuild-boot"),
		Want:     o.want,
		Refuse:   o.refuse,
		SSH:      o.ssh,
		// Images with the marker report what they found; those without
		// (the README's example) must show no failed unit.
		AllowFailures: !o.noMarker,
	}
	if !o.noMarker {
		bo.Marker = "IBUILD-MARKER-"
	}
	if o.seed != "" {
		bo.Disks = append(bo.Disks, boottest.Disk{Path: o.seed, Format: "raw", ReadOnly: true})
	}
	res, err := boottest.Boot(context.Background(), bo)
	if err != nil {
		return 0, err
	}
	if !o.noMarker && !strings.HasPrefix(res.Marker, "IBUILD-MARKER-OK firmware="+name) {
		return 0, fmt.Errorf("marker: %s (console in %s)", res.Marker, res.ConsoleLog)
	}
	return res.Seconds, nil
}

// noCloudSeed makes a NoCloud seed for cloud-init: a vfat file system
// labelled CIDATA with meta-data naming the instance and its hostname.
func noCloudSeed(t *testing.T, dir, hostname string) string {
	t.Helper()
	need(t, "mkfs.vfat", "mcopy")
	files := map[string]string{
		"meta-data": "instance-id: ibuild-test\nlocal-hostname: " + hostname + "\n",
		"user-data": "#cloud-config\n{}\n",
	}
	args := []string{"-i", filepath.Join(dir, "seed.img")}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, p)
	}
	img := filepath.Join(dir, "seed.img")
	run(t, "mkfs.vfat", "-n", "CIDATA", "-C", img, "2048")
	cmd := exec.Command("mcopy", append(args, "::/")...)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mcopy: %v\n%s", err, out)
	}
	return img
}
