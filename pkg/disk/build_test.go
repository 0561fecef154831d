package disk_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/disk"
	"github.com/image-builder-action/image-builder-action/pkg/ibuild"
	"github.com/image-builder-action/image-builder-action/pkg/lock"
	"github.com/image-builder-action/image-builder-action/pkg/lock/locktest"
	"github.com/image-builder-action/image-builder-action/pkg/repo"
	"github.com/image-builder-action/image-builder-action/pkg/testutil"
	"github.com/image-builder-action/image-builder-action/pkg/testutil/boottest"
)

// builtLayout is one of composer's published plain layouts, adapted to
// what a small test disk holds, with the boots it must pass.
type builtLayout struct {
	name string
	// disk is the blueprint's layout (TOML after [customizations]).
	disk string
	// expect lists "MOUNTPOINT FSTYPE MINSIZE" the first-boot marker
	// checks ("swap swap MINSIZE" for a swap area).
	expect []string
	// firmware are the boots: "uefi", "bios".
	firmware   []string
	sectorSize int
}

var builtLayouts = []builtLayout{
	{
		// images-partitioning-plain: extra partitions, xfs, swap.
		name: "plain",
		disk: `
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
		expect:   []string{"/ ext4 0", "/var xfs 536870912", "/home ext4 134217728", "swap swap 67108864"},
		firmware: []string{"uefi", "bios"},
	},
	{
		// disk.type = "dos": an MBR, GRUB in the gap after it.
		name: "dos",
		disk: `
[customizations.disk]
type = "dos"

[[customizations.disk.partitions]]
mountpoint = "/var"
fs_type = "ext4"
minsize = "256 MiB"
`,
		expect:   []string{"/ ext4 0", "/var ext4 268435456"},
		firmware: []string{"bios"},
	},
	{
		// A separate /boot from customizations.filesystem (raw mode),
		// with /var/log beside it.
		name: "boot",
		disk: `
[[customizations.filesystem]]
mountpoint = "/boot"
minsize = "300 MiB"

[[customizations.filesystem]]
mountpoint = "/var/log"
minsize = "128 MiB"
`,
		expect:   []string{"/ ext4 0", "/boot ext4 314572800", "/var/log ext4 134217728"},
		firmware: []string{"uefi"},
	},
	{
		// 4096-byte sectors and a start offset: UEFI only (GRUB's
		// boot.img reads 512-byte sectors).
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
while read -r mp fs min; do
  if [ "$mp" = swap ]; then
    n=$(swapon --noheadings --show=TYPE | grep -c partition)
    [ "$n" -ge 1 ] || fail="$fail swap"
    continue
  fi
  [ "$mp" = /boot ] && ls /boot >/dev/null 2>&1
  got=$(findmnt -n -o FSTYPE --mountpoint "$mp")
  [ "$got" = "$fs" ] || { fail="$fail $mp:fstype=$got"; continue; }
  dev=$(findmnt -n -o SOURCE --mountpoint "$mp")
  size=$(blockdev --getsize64 "$dev")
  [ "$size" -ge "$min" ] || fail="$fail $mp:size=$size<$min"
  echo "IBUILD-DISK $mp $got $dev $size"
done < /etc/ibuild-disk-expect
if [ -z "$fail" ]; then msg="IBUILD-MARKER-OK"; else msg="IBUILD-MARKER-FAIL$fail"; fi
for i in $(seq 10); do echo "$msg" 2>/dev/null > /dev/ttyS0 && break; sleep 1; done
`

func (l builtLayout) blueprint() string {
	var b strings.Builder
	fmt.Fprintf(&b, "name = \"disk-%s\"\ndistro = \"debian-12\"\n\n[customizations]\nhostname = \"ibuild-disk\"\n\n", l.name)
	fmt.Fprintf(&b, "[customizations.services]\nenabled = [\"ibuild-disk-marker\"]\n\n")
	fmt.Fprintf(&b, "[[customizations.files]]\npath = \"/usr/local/bin/ibuild-disk-marker\"\nmode = \"0755\"\ndata = '''\n%s'''\n\n", markerScript)
	fmt.Fprintf(&b, "[[customizations.files]]\npath = \"/etc/ibuild-disk-expect\"\ndata = '''\n%s\n'''\n\n", strings.Join(l.expect, "\n"))
	b.WriteString("[[customizations.files]]\npath = \"/etc/systemd/system/ibuild-disk-marker.service\"\ndata = '''\n" +
		"[Unit]\nDescription=ibuild disk layout marker\nAfter=local-fs.target swap.target serial-getty@ttyS0.service\n\n" +
		"[Service]\nType=oneshot\nExecStart=/usr/local/bin/ibuild-disk-marker\n\n[Install]\nWantedBy=multi-user.target\n'''\n")
	b.WriteString(l.disk)
	return b.String()
}

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
	for _, tool := range []string{"sfdisk", "fsck.ext4", "fsck.vfat", "xfs_repair"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (.ci/deps installs it)", tool)
		}
	}
	ctx := context.Background()
	dir := t.TempDir()
	images := map[string]string{}
	for _, l := range builtLayouts {
		start := time.Now()
		bp := filepath.Join(dir, l.name+".toml")
		if err := os.WriteFile(bp, []byte(l.blueprint()), 0o644); err != nil {
			t.Fatal(err)
		}
		lf := filepath.Join(dir, l.name+".lock.json")
		if _, err := ibuild.Lock(ctx, ibuild.LockRequest{Blueprint: bp, Lockfile: lf, Arches: []string{"x86_64"}, Types: []string{"raw"},
			Options: []lock.Option{lock.WithSources(srcs...), lock.WithFetcher(&repo.Client{CacheDir: filepath.Join(testCache(t), "metadata")})}}); err != nil {
			t.Fatalf("%s: lock: %v", l.name, err)
		}
		out := filepath.Join(dir, l.name)
		res, err := ibuild.Build(ctx, ibuild.BuildRequest{Lockfile: lf, One: true, OutputDir: out, CacheDir: testCache(t)})
		if err != nil {
			t.Fatalf("%s: build: %v", l.name, err)
		}
		img := res.Images[0].Files[0].Path
		images[l.name] = img
		t.Logf("%s: built in %.0f s, %s", l.name, time.Since(start).Seconds(), res.Images[0].Files[0].SHA256)
		checkImage(t, l, img)
	}

	// Boots, two at a time (one vCPU each).
	type boot struct {
		l  builtLayout
		fw string
	}
	var boots []boot
	for _, l := range builtLayouts {
		for _, fw := range l.firmware {
			boots = append(boots, boot{l, fw})
		}
	}
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
	for i, p := range parts {
		part := filepath.Join(t.TempDir(), fmt.Sprintf("p%d", i+1))
		// A sparse copy of the partition: fsck reads a file, not an
		// offset.
		if out, err := exec.Command("dd", "if="+img, "of="+part, fmt.Sprintf("bs=%d", ss), fmt.Sprintf("skip=%d", p.start),
			fmt.Sprintf("count=%d", p.size), "conv=sparse", "status=none").CombinedOutput(); err != nil {
			t.Fatalf("dd: %v\n%s", err, out)
		}
		kind := fsKind(t, part)
		var cmd *exec.Cmd
		switch kind {
		case "ext4":
			cmd = exec.Command("fsck.ext4", "-n", "-f", part)
		case "vfat":
			cmd = exec.Command("fsck.vfat", "-n", part)
		case "xfs":
			cmd = exec.Command("xfs_repair", "-n", "-f", part)
		case "swap", "":
			os.Remove(part)
			continue
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s: partition %d (%s): %v\n%s", l.name, i+1, kind, err, out)
		}
		os.Remove(part)
	}
}

type sfPart struct{ start, size int64 }

func sfdiskParts(t *testing.T, js []byte) []sfPart {
	t.Helper()
	var parts []sfPart
	for _, ln := range strings.Split(string(js), "\n") {
		if !strings.Contains(ln, `"start":`) {
			continue
		}
		var p sfPart
		for _, f := range strings.Split(strings.Trim(strings.TrimSpace(ln), "{},"), ",") {
			k, v, _ := strings.Cut(strings.TrimSpace(f), ":")
			v = strings.TrimSpace(v)
			switch strings.Trim(k, `" `) {
			case "start":
				fmt.Sscan(v, &p.start)
			case "size":
				fmt.Sscan(v, &p.size)
			}
		}
		parts = append(parts, p)
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
	}
	return ""
}

var _ = disk.GPT
