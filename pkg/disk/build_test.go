package disk_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/build"
	"github.com/image-builder-action/image-builder-action/pkg/disk"
	"github.com/image-builder-action/image-builder-action/pkg/ibuild"
	"github.com/image-builder-action/image-builder-action/pkg/lock"
	"github.com/image-builder-action/image-builder-action/pkg/lock/locktest"
	"github.com/image-builder-action/image-builder-action/pkg/repo"
	"github.com/image-builder-action/image-builder-action/pkg/testutil"
	"github.com/image-builder-action/image-builder-action/pkg/testutil/boottest"
	"github.com/pelletier/go-toml/v2"
)

// builtLayout is one of composer's published plain layouts, adapted to
// what a small test disk holds, with the boots it must pass.
type builtLayout struct {
	name string
	// disk is the blueprint's layout (TOML after [customizations]).
	disk string
	// expect lists "MOUNTPOINT FSTYPE MINSIZE [FSROOT]" the first-boot
	// marker checks ("swap swap MINSIZE" for a swap area; FSROOT is the
	// btrfs subvolume findmnt shows).
	expect []string
	// firmware are the boots: "uefi", "bios".
	firmware   []string
	sectorSize int
	// vg names the layout's LVM volume group, checked with the lvm tools.
	vg string
	// distro is the blueprint's distro, debian-12 when empty.
	distro string
	// example names a blueprint of composer's published corpus whose
	// customizations.disk is the layout (disk is then empty).
	example string
	// subvolumes are the btrfs subvolumes btrfs subvolume list shows,
	// sorted.
	subvolumes []string
	// repro builds the image pipeline a second time from the same trees:
	// the disk assembly repeats its bytes.
	repro bool
}

var builtLayouts = []builtLayout{
	{
		// images-partitioning-plain: extra partitions, xfs, swap; and
		// a separate /boot (composer's "/boot on its own partition"),
		// which GRUB finds by UEFI and by BIOS.
		name: "plain",
		disk: `
[[customizations.disk.partitions]]
mountpoint = "/boot"
fs_type = "ext4"
minsize = "300 MiB"

[[customizations.disk.partitions]]
mountpoint = "/var"
fs_type = "xfs"
minsize = "512 MiB"

[[customizations.disk.partitions]]
mountpoint = "/home"
label = "home"
fs_type = "ext4"
minsize = "128 MiB"

[[customizations.disk.partitions]]
fs_type = "swap"
minsize = "64 MiB"
`,
		expect:   []string{"/ ext4 0", "/boot ext4 314572800", "/var xfs 536870912", "/home ext4 134217728", "swap swap 67108864"},
		firmware: []string{"uefi", "bios"},
	},
	{
		// images-partitioning-dos-lvm, smaller: an MBR (GRUB in the gap
		// after it), a plain /var, the root and /home on LVM; /boot is
		// added on a plain partition.
		name: "dos",
		disk: `
[customizations.disk]
type = "dos"

[[customizations.disk.partitions]]
mountpoint = "/var"
fs_type = "ext4"
minsize = "256 MiB"

[[customizations.disk.partitions]]
type = "lvm"
name = "dosvg"
minsize = "1 GiB"

[[customizations.disk.partitions.logical_volumes]]
name = "homelv"
mountpoint = "/home"
label = "home"
fs_type = "ext4"
minsize = "128 MiB"
`,
		expect:   []string{"/ ext4 0", "/boot ext4 536870912", "/var ext4 268435456", "/home ext4 134217728"},
		firmware: []string{"bios"},
		vg:       "dosvg",
	},
	{
		// images-partitioning-lvm, smaller: a volume group with the root,
		// an xfs /var/log and swap; /boot is added on a plain partition.
		name: "lvm",
		disk: `
[[customizations.disk.partitions]]
type = "lvm"
name = "mainvg"
minsize = "1 GiB"

[[customizations.disk.partitions.logical_volumes]]
name = "rootlv"
mountpoint = "/"
label = "root"
fs_type = "ext4"
minsize = "1 GiB"

[[customizations.disk.partitions.logical_volumes]]
name = "loglv"
mountpoint = "/var/log"
fs_type = "xfs"
minsize = "320 MiB"

[[customizations.disk.partitions.logical_volumes]]
name = "swaplv"
fs_type = "swap"
minsize = "64 MiB"
`,
		expect:   []string{"/ ext4 3221225472", "/boot ext4 536870912", "/var/log xfs 335544320", "swap swap 67108864"},
		firmware: []string{"uefi", "bios"},
		vg:       "mainvg",
		repro:    true,
	},
	{
		// composer's images-partitioning-btrfs as published, on
		// debian-12: its btrfs volume (eight subvolumes, / added as
		// "root") is made with debian-13's mkfs.btrfs from a build root
		// of its own, the rest with debian-12's tools; an xfs /data,
		// swap; /boot is added on a plain partition.
		name:    "btrfs",
		example: "images-partitioning-btrfs.json",
		expect: []string{"/ btrfs 10737418240 /root", "/home btrfs 10737418240 /subvol-home",
			"/home/shadowman btrfs 10737418240 /subvol-shadowman", "/foo btrfs 10737418240 /subvol-foo",
			"/usr btrfs 10737418240 /subvol-usr", "/opt btrfs 10737418240 /subvol-opt",
			"/media btrfs 10737418240 /subvol-media", "/root btrfs 10737418240 /subvol-root",
			"/srv btrfs 10737418240 /subvol-srv", "/data xfs 1073741824", "swap swap 1073741824",
			"/boot ext4 536870912"},
		firmware: []string{"uefi", "bios"},
		subvolumes: []string{"root", "subvol-foo", "subvol-home", "subvol-media", "subvol-opt", "subvol-root",
			"subvol-shadowman", "subvol-srv", "subvol-usr"},
		repro: true,
	},
	{
		// 4096-byte sectors and a start offset: UEFI only. SeaBIOS
		// cannot read the disk ("virtio-blk 00:02.0 block size 4096 is
		// unsupported" on its debug console), and GRUB's boot.img reads
		// 512-byte sectors.
		name: "4k",
		disk: `
[customizations.disk]
sector_size = 4096
start_offset = "8 MiB"

[[customizations.disk.partitions]]
mountpoint = "/"
fs_type = "ext4"
minsize = "2 GiB"

[[customizations.disk.partitions]]
mountpoint = "/home"
fs_type = "ext4"
minsize = "128 MiB"
`,
		expect:     []string{"/ ext4 2147483648", "/home ext4 134217728"},
		firmware:   []string{"uefi"},
		sectorSize: 4096,
	},
}

// markerScript checks, on the running machine, every mountpoint of
// /etc/ibuild-disk-expect: its file system type, and its device's size
// against the minsize asked for; swap areas are active.
const markerScript = `#!/bin/sh
fail=""
while read -r mp fs min subvol; do
  if [ "$mp" = swap ]; then
    n=$(swapon --noheadings --show=TYPE | grep -c partition)
    [ "$n" -ge 1 ] || fail="$fail swap"
    continue
  fi
  [ "$mp" = /boot ] && ls /boot >/dev/null 2>&1
  got=$(findmnt -n -o FSTYPE --mountpoint "$mp")
  [ "$got" = "$fs" ] || { fail="$fail $mp:fstype=$got"; continue; }
  if [ -n "$subvol" ]; then
    got=$(findmnt -n -o FSROOT --mountpoint "$mp")
    [ "$got" = "$subvol" ] || fail="$fail $mp:subvol=$got"
  fi
  dev=$(findmnt -n -o SOURCE --mountpoint "$mp")
  dev=${dev%%[[]*}
  size=$(blockdev --getsize64 "$dev")
  [ "$size" -ge "$min" ] || fail="$fail $mp:size=$size<$min"
  echo "IBUILD-DISK $mp $got $dev $size"
done < /etc/ibuild-disk-expect
if [ -z "$fail" ]; then msg="IBUILD-MARKER-OK"; else msg="IBUILD-MARKER-FAIL$fail"; fi
for i in $(seq 10); do echo "$msg" 2>/dev/null > /dev/ttyS0 && break; sleep 1; done
`

func (l builtLayout) blueprint() string {
	var b strings.Builder
	d := l.distro
	if d == "" {
		d = "debian-12"
	}
	fmt.Fprintf(&b, "name = \"disk-%s\"\ndistro = %q\n\n[customizations]\nhostname = \"ibuild-disk\"\n\n", l.name, d)
	fmt.Fprintf(&b, "[customizations.services]\nenabled = [\"ibuild-disk-marker\"]\n\n")
	fmt.Fprintf(&b, "[[customizations.files]]\npath = \"/usr/local/bin/ibuild-disk-marker\"\nmode = \"0755\"\ndata = '''\n%s'''\n\n", markerScript)
	fmt.Fprintf(&b, "[[customizations.files]]\npath = \"/etc/ibuild-disk-expect\"\ndata = '''\n%s\n'''\n\n", strings.Join(l.expect, "\n"))
	b.WriteString("[[customizations.files]]\npath = \"/etc/systemd/system/ibuild-disk-marker.service\"\ndata = '''\n" +
		"[Unit]\nDescription=ibuild disk layout marker\nAfter=local-fs.target swap.target serial-getty@ttyS0.service\n\n" +
		"[Service]\nType=oneshot\nExecStart=/usr/local/bin/ibuild-disk-marker\n\n[Install]\nWantedBy=multi-user.target\n'''\n")
	b.WriteString(bootTimeouts)
	b.WriteString(l.disk)
	return b.String()
}

// bootTimeouts lets systemd wait for the disk's devices as long as the
// boot test does. Under TCG on a loaded 2-core CI machine udev's coldplug
// took more than systemd's default 90 s to announce the btrfs volume: the
// mounts of /home and /var/log timed out and the boot fell into emergency
// mode, though nothing was wrong with the layout. DefaultDeviceTimeoutSec
// is the newer systemd's (debian-13); debian-12's takes a device's
// timeout from DefaultTimeoutStartSec.
const bootTimeouts = `[[customizations.directories]]
path = "/etc/systemd/system.conf.d"

[[customizations.files]]
path = "/etc/systemd/system.conf.d/ibuild-test.conf"
data = '''
[Manager]
DefaultTimeoutStartSec=15min
DefaultDeviceTimeoutSec=15min
'''

`

func testCache(t *testing.T) string { return testutil.Cache(t, "e2e") }

// TestBuiltLayouts builds each layout once from the shared cache (only the
// layout differs, so the os tree's packages come from it), checks the
// partition table and every file system with the real tools, and boots
// each image by the firmware its table serves, two at a time.
func TestBuiltLayouts(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and boots images: skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("builds need root")
	}
	srcs := locktest.NeedArchive(t)
	boottest.Need(t, "x86_64")
	for _, tool := range []string{"sfdisk", "fsck.ext4", "fsck.vfat", "xfs_repair", "lvm", "btrfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (.ci/deps installs it)", tool)
		}
	}
	ctx := context.Background()
	dir := t.TempDir()
	images := map[string]string{}
	// Each layout a subtest: -run 'TestBuiltLayouts/lvm' builds and boots
	// one.
	for _, l := range builtLayouts {
		t.Run(l.name, func(t *testing.T) {
			img, sum := buildLayout(ctx, t, srcs, dir, l)
			images[l.name] = img
			checkImage(t, l, img)
			if l.repro {
				rebuildLayout(ctx, t, dir, l, sum)
			}
		})
	}

	var boots []layoutBoot
	for _, l := range builtLayouts {
		for _, fw := range l.firmware {
			if images[l.name] != "" {
				boots = append(boots, layoutBoot{l, fw})
			}
		}
	}
	// A subtest of its own: -run 'TestBuiltLayouts/lvm$' builds and
	// checks without booting.
	t.Run("boot", func(t *testing.T) { bootLayouts(ctx, t, dir, images, boots) })
}

type layoutBoot struct {
	l  builtLayout
	fw string
}

// bootLayouts boots the images, two at a time (one vCPU each), and checks
// the first-boot marker.
func bootLayouts(ctx context.Context, t *testing.T, dir string, images map[string]string, boots []layoutBoot) {
	sem := make(chan struct{}, 2)
	var wg sync.WaitGroup
	for _, b := range boots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			res, err := boottest.Boot(ctx, boottest.Options{
				Arch: "x86_64", Firmware: b.fw,
				Disks: []boottest.Disk{{Path: images[b.l.name], Format: "raw", Snapshot: true, SectorSize: b.l.sectorSize}},
				Dir:   dir, Label: b.l.name + "-" + b.fw, Host: "ibuild-disk", Marker: "IBUILD-MARKER-",
				Timeout: 10 * time.Minute,
			})
			if err != nil {
				t.Errorf("%s by %s: %v", b.l.name, b.fw, err)
				return
			}
			if !strings.HasPrefix(res.Marker, "IBUILD-MARKER-OK") {
				log, _ := os.ReadFile(res.ConsoleLog)
				var lines []string
				for _, ln := range strings.Split(string(log), "\n") {
					if strings.Contains(ln, "IBUILD-DISK") {
						lines = append(lines, ln)
					}
				}
				t.Errorf("%s by %s: %s\n%s", b.l.name, b.fw, res.Marker, strings.Join(lines, "\n"))
				return
			}
			t.Logf("%s by %s: login prompt after %.0f s, marker %s", b.l.name, b.fw, res.Seconds, res.Marker)
		}()
	}
	wg.Wait()
}

// blueprintFile writes l's blueprint into dir and returns its path: TOML,
// or, for a published example, JSON with the example's disk
// customizations as published.
func (l builtLayout) blueprintFile(t *testing.T, dir string) string {
	t.Helper()
	if l.example == "" {
		p := filepath.Join(dir, l.name+".toml")
		if err := os.WriteFile(p, []byte(l.blueprint()), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var bp map[string]any
	if err := toml.Unmarshal([]byte(l.blueprint()), &bp); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join("../../testdata/blueprints/composer/published", l.example))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	var ex struct {
		Customizations struct {
			Disk any `json:"disk"`
		} `json:"customizations"`
	}
	if err := dec.Decode(&ex); err != nil {
		t.Fatalf("%s: %v", l.example, err)
	}
	bp["customizations"].(map[string]any)["disk"] = ex.Customizations.Disk
	if b, err = json.MarshalIndent(bp, "", "  "); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, l.name+".json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// buildLayout locks and builds layout l (raw, x86_64) in dir and
// returns the image's path and sha256.
func buildLayout(ctx context.Context, t *testing.T, srcs []repo.Source, dir string, l builtLayout) (img, sum string) {
	t.Helper()
	start := time.Now()
	bp := l.blueprintFile(t, dir)
	lf := filepath.Join(dir, l.name+".lock.json")
	opts := []lock.Option{lock.WithFetcher(&repo.Client{CacheDir: filepath.Join(testCache(t), "metadata")})}
	if l.distro == "" {
		opts = append(opts, lock.WithSources(srcs...))
	}
	// Another distro: the host's apt sources mapped onto its suites.
	if _, err := ibuild.Lock(ctx, ibuild.LockRequest{Blueprint: bp, Lockfile: lf, Arches: []string{"x86_64"}, Types: []string{"raw"}, Options: opts}); err != nil {
		t.Fatalf("%s: lock: %v", l.name, err)
	}
	out := filepath.Join(dir, l.name)
	res, err := ibuild.Build(ctx, ibuild.BuildRequest{Lockfile: lf, One: true, OutputDir: out, CacheDir: testCache(t)})
	if err != nil {
		t.Fatalf("%s: build: %v", l.name, err)
	}
	f := res.Images[0].Files[0]
	t.Logf("%s: built in %.0f s, %s", l.name, time.Since(start).Seconds(), f.SHA256)
	return f.Path, f.SHA256
}

// rebuildLayout runs the stages of layout l's image pipeline again (the
// trees they read come from the cache: their own reproducibility is
// tested where they are made) and wants the same bytes.
func rebuildLayout(ctx context.Context, t *testing.T, dir string, l builtLayout, sum string) {
	t.Helper()
	start := time.Now()
	ran := 0
	res, err := ibuild.Build(ctx, ibuild.BuildRequest{Lockfile: filepath.Join(dir, l.name+".lock.json"), One: true,
		OutputDir: filepath.Join(dir, l.name+"-again"), CacheDir: testCache(t),
		Events: func(e ibuild.BuildEvent) {
			if d, ok := e.Event.(build.StageDone); ok && (d.Pipeline == "image" || d.Pipeline == "btrfs") && !d.CacheHit {
				ran++
			}
		},
		// The btrfs volumes of a debian-12 layout are made in a pipeline
		// of their own (another release's mkfs.btrfs): again too.
		Options: []build.Option{build.WithRerun("image", "btrfs")}})
	if err != nil {
		t.Fatalf("%s: second build: %v", l.name, err)
	}
	f := res.Images[0].Files[0]
	if ran == 0 {
		t.Errorf("%s: the second build ran no stage of the image pipeline", l.name)
	}
	if f.SHA256 != sum {
		t.Errorf("%s: two builds differ: %s, then %s", l.name, sum, f.SHA256)
	}
	t.Logf("%s: %d image stages again in %.0f s: same sha256", l.name, ran, time.Since(start).Seconds())
	os.Remove(f.Path)
}

// checkImage verifies the partition table with sfdisk and each file
// system with its fsck, reading partitions at their offsets (no loop
// device).
func checkImage(t *testing.T, l builtLayout, img string) {
	t.Helper()
	ss := 512
	if l.sectorSize != 0 {
		ss = l.sectorSize
	}
	dev := img
	if ss != 512 {
		// sfdisk reads a file with 512-byte sectors: a read-only loop
		// device of the disk's sector size shows it as QEMU does (the
		// test's only loop device, detached at once).
		out, err := exec.Command("losetup", "--read-only", "--sector-size", fmt.Sprint(ss), "--find", "--show", img).Output()
		if err != nil {
			t.Fatalf("%s: losetup: %v", l.name, err)
		}
		dev = strings.TrimSpace(string(out))
		defer exec.Command("losetup", "-d", dev).Run()
	}
	out, err := exec.Command("sfdisk", "--verify", dev).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "No errors detected") {
		t.Errorf("%s: sfdisk --verify: %v\n%s", l.name, err, out)
	}
	js, err := exec.Command("sfdisk", "--json", dev).Output()
	if err != nil {
		t.Fatalf("%s: sfdisk --json: %v", l.name, err)
	}
	parts := sfdiskParts(t, js)
	vgs, btrfses := 0, 0
	for i, p := range parts {
		if strings.EqualFold(p.typ, disk.BIOSBootGUID) {
			// GRUB's core image, no file system.
			continue
		}
		// The first 8 KiB tell the partition's kind.
		part := filepath.Join(t.TempDir(), fmt.Sprintf("p%d", i+1))
		if out, err := exec.Command("dd", "if="+img, "of="+part, fmt.Sprintf("bs=%d", ss), fmt.Sprintf("skip=%d", p.start),
			fmt.Sprintf("count=%d", min(p.size, int64(8192/ss))), "status=none").CombinedOutput(); err != nil {
			t.Fatalf("dd: %v\n%s", err, out)
		}
		kind := fsKind(t, part)
		os.Remove(part)
		if kind == "lvm" {
			vgs++
			checkVG(t, l, img, p.start*int64(ss), p.size*int64(ss))
			continue
		}
		kind = fsck(t, fmt.Sprintf("%s: partition %d", l.name, i+1), img, p.start*int64(ss), p.size*int64(ss))
		if kind == "btrfs" {
			btrfses++
			checkSubvolumes(t, l, img, p.start*int64(ss), p.size*int64(ss))
		}
	}
	if want := min(len(l.vg), 1); vgs != want {
		t.Errorf("%s: %d LVM physical volumes, want %d", l.name, vgs, want)
	}
	if want := min(len(l.subvolumes), 1); btrfses != want {
		t.Errorf("%s: %d btrfs volumes, want %d", l.name, btrfses, want)
	}
}

// checkSubvolumes mounts the btrfs volume of size bytes at off in img
// read-only on a loop device of this test's own and compares the
// subvolumes btrfs subvolume list shows with the layout's.
func checkSubvolumes(t *testing.T, l builtLayout, img string, off, size int64) {
	t.Helper()
	mnt := t.TempDir()
	out, err := exec.Command("mount", "-t", "btrfs", "-o", fmt.Sprintf("ro,loop,offset=%d,sizelimit=%d", off, size), img, mnt).CombinedOutput()
	if err != nil {
		t.Errorf("%s: mounting the btrfs volume: %v\n%s", l.name, err, out)
		return
	}
	// umount releases the loop device mount made (autoclear).
	defer func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
	}()
	out, err = exec.Command("btrfs", "subvolume", "list", mnt).CombinedOutput()
	if err != nil {
		t.Errorf("%s: btrfs subvolume list: %v\n%s", l.name, err, out)
		return
	}
	var got []string
	for _, ln := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(ln)
		// ID N gen N top level 5 path NAME
		if len(f) != 9 || f[6] != "5" {
			t.Errorf("%s: btrfs subvolume list: %q", l.name, ln)
			continue
		}
		got = append(got, f[8])
	}
	sort.Strings(got)
	if strings.Join(got, " ") != strings.Join(l.subvolumes, " ") {
		t.Errorf("%s: subvolumes %q, want %q", l.name, got, l.subvolumes)
	}
	t.Logf("%s: btrfs subvolume list\n%s", l.name, out)
}

// fsck checks the file system of size bytes at off in img with its own
// checker, on a sparse copy (the checkers read a file, not an offset).
func fsck(t *testing.T, what, img string, off, size int64) (kind string) {
	t.Helper()
	part := filepath.Join(t.TempDir(), "fs")
	defer os.Remove(part)
	// 1 MiB blocks, offsets in bytes: 512-byte blocks made a syscall
	// pair per sector, minutes for a root of some GiB on a loaded
	// machine.
	if out, err := exec.Command("dd", "if="+img, "of="+part, "bs=1M", "iflag=skip_bytes,count_bytes", fmt.Sprintf("skip=%d", off),
		fmt.Sprintf("count=%d", size), "conv=sparse", "status=none").CombinedOutput(); err != nil {
		t.Fatalf("dd: %v\n%s", err, out)
	}
	kind = fsKind(t, part)
	var cmd *exec.Cmd
	switch kind {
	case "ext4":
		cmd = exec.Command("fsck.ext4", "-n", "-f", part)
	case "vfat":
		cmd = exec.Command("fsck.vfat", "-n", part)
	case "xfs":
		cmd = exec.Command("xfs_repair", "-n", "-f", part)
	case "btrfs":
		cmd = exec.Command("btrfs", "check", "--readonly", part)
	case "swap":
		return kind
	default:
		fi, _ := os.Stat(part)
		t.Errorf("%s: no file system known at %d (%d bytes copied)", what, off, fi.Size())
		return kind
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("%s (%s): %v\n%s", what, kind, err, out)
	}
	return kind
}

// checkVG checks the LVM2 physical volume of size bytes at off in img
// with the real lvm tools, on a read-only loop device of this test's own
// (this machine's kernel has no device-mapper, so the logical volumes are
// not activated): pvck, the volume group and the logical volumes lvs
// lists, then each logical volume's file system where lvs says it is.
func checkVG(t *testing.T, l builtLayout, img string, off, size int64) {
	t.Helper()
	out, err := exec.Command("losetup", "--read-only", "--find", "--show", "-o", fmt.Sprint(off), "--sizelimit", fmt.Sprint(size), img).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: losetup: %v\n%s", l.name, err, out)
	}
	loop := strings.TrimSpace(string(out))
	defer func() {
		if out, err := exec.Command("losetup", "-d", loop).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v\n%s", loop, err, out)
		}
	}()
	// The tools see this loop device alone: a volume group of the same
	// name elsewhere on the machine does not mix in.
	conf := fmt.Sprintf(`devices { filter=["a|^%s$|","r|.*|"] use_devicesfile=0 obtain_device_list_from_udev=0 } activation { udev_sync=0 udev_rules=0 }`, loop)
	lvm := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("lvm", append([]string{args[0], "--config", conf}, args[1:]...)...)
		cmd.Env = append(os.Environ(), "LVM_SUPPRESS_FD_WARNINGS=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: lvm %s: %v\n%s", l.name, strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	lvm("pvck", loop)
	report := []string{"--noheadings", "--units", "b", "--nosuffix", "--separator", ","}
	pv := strings.Split(lvm(append([]string{"pvs"}, append(report, "-o", "vg_name,pe_start,vg_extent_size", loop)...)...), ",")
	if len(pv) != 3 || pv[0] != l.vg {
		t.Fatalf("%s: pvs %q, want volume group %s", l.name, pv, l.vg)
	}
	peStart, _ := strconv.ParseInt(pv[1], 10, 64)
	extent, _ := strconv.ParseInt(pv[2], 10, 64)
	lvs := lvm(append([]string{"lvs"}, append(report, "-o", "lv_name,lv_size,seg_pe_ranges", l.vg)...)...)
	t.Logf("%s: lvs\n%s", l.name, lvs)
	n := 0
	for _, line := range strings.Split(lvs, "\n") {
		f := strings.Split(strings.TrimSpace(line), ",")
		m := regexp.MustCompile(`:(\d+)-(\d+)$`).FindStringSubmatch(f[len(f)-1])
		if len(f) != 3 || m == nil {
			t.Fatalf("%s: lvs line %q", l.name, line)
		}
		first, _ := strconv.ParseInt(m[1], 10, 64)
		lvSize, _ := strconv.ParseInt(f[1], 10, 64)
		fsck(t, fmt.Sprintf("%s: logical volume %s", l.name, f[0]), img, off+peStart+first*extent, lvSize)
		n++
	}
	if n == 0 {
		t.Errorf("%s: volume group %s has no logical volumes", l.name, l.vg)
	}
}

type sfPart struct {
	start, size int64
	typ         string
}

// sfdiskParts reads sfdisk --json's partitions (in sectors).
func sfdiskParts(t *testing.T, js []byte) []sfPart {
	t.Helper()
	var doc struct {
		PartitionTable struct {
			Partitions []struct {
				Start int64  `json:"start"`
				Size  int64  `json:"size"`
				Type  string `json:"type"`
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal(js, &doc); err != nil {
		t.Fatalf("sfdisk --json: %v\n%s", err, js)
	}
	var parts []sfPart
	for _, p := range doc.PartitionTable.Partitions {
		if p.Size <= 0 {
			t.Fatalf("sfdisk --json: a partition of %d sectors\n%s", p.Size, js)
		}
		parts = append(parts, sfPart{p.Start, p.Size, strings.ToUpper(p.Type)})
	}
	if len(parts) == 0 {
		t.Fatalf("no partitions in %s", js)
	}
	return parts
}

// fsKind tells a file system by its magic.
func fsKind(t *testing.T, p string) string {
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 8192)
	f.ReadAt(b, 0)
	switch {
	case string(b[0:4]) == "XFSB":
		return "xfs"
	case binary.LittleEndian.Uint16(b[1024+56:]) == 0xef53:
		return "ext4"
	case string(b[82:87]) == "FAT32" || string(b[54:59]) == "FAT16":
		return "vfat"
	case string(b[4096-10:4096]) == "SWAPSPACE2":
		return "swap"
	case string(b[512:520]) == "LABELONE" && string(b[536:544]) == "LVM2 001":
		return "lvm"
	}
	// btrfs's superblock is at 64 KiB.
	if f.ReadAt(b[:8], 65536+64); string(b[:8]) == "_BHRfS_M" {
		return "btrfs"
	}
	return ""
}
