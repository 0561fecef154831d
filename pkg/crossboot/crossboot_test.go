package crossboot

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/binfmt"
	"github.com/image-builder-action/image-builder-action/pkg/build"
	"github.com/image-builder-action/image-builder-action/pkg/ibuild"
	"github.com/image-builder-action/image-builder-action/pkg/lock/locktest"
	"github.com/image-builder-action/image-builder-action/pkg/testutil"
	"github.com/image-builder-action/image-builder-action/pkg/testutil/boottest"
)

// testCache is the shared package and tree cache of the tests
// (IBUILD_TEST_CACHE), so a second run builds nothing again.
func testCache(t *testing.T) string { return testutil.Cache(t, "crossboot") }

// bootCase is one Debian 13 image built here and booted to its login
// prompt and first-boot marker.
type bootCase struct {
	arch, blueprint, host string
	timeout               time.Duration
}

// TestAarch64OnX86 locks testdata/arch/aarch64.toml (Debian 13, the cloud
// kernel, a first-boot marker) for aarch64, builds its qcow2 here with
// ibuild.Build registering qemu-user-static's handler for the build only,
// and boots it under qemu-system-aarch64 -M virt with AAVMF until the
// login prompt of the blueprint's host name and the marker, which reports
// what the running machine is. Measured on this loaded 2-core machine
// with a cold stage cache: 480 s of CPU for the build and the boot, most
// of it emulated (the essential set, the other packages' configuration,
// the initramfs before its tools ran natively), so about 8 minutes on two
// quiet cores.
func TestAarch64OnX86(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: skipped with -short")
	}
	needCross(t)
	buildAndBoot(t, bootCase{arch: "aarch64", blueprint: "aarch64.toml", host: "ibuild-arm", timeout: 15 * time.Minute})
}

// TestDebian13X86 builds testdata/arch/x86_64.toml (Debian 13, the cloud
// kernel, the same marker) for x86_64 and boots it with OVMF: Debian 13
// images boot clean on both architectures, the root checked by the
// initramfs's fsck.ext4 (boottest refuses fsck's complaints and any
// [FAILED] unit).
func TestDebian13X86(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: skipped with -short")
	}
	if binfmt.HostArch() != "x86_64" {
		t.Skip("an x86_64 image boots under TCG in minutes only on an x86_64 host's build")
	}
	buildAndBoot(t, bootCase{arch: "x86_64", blueprint: "x86_64.toml", host: "ibuild-x86", timeout: 8 * time.Minute})
}

// buildAndBoot locks c's blueprint for its arch and qcow2, builds it
// (registering qemu-user's handler for the build only when the arch is
// foreign) and boots it with UEFI until the login prompt and the marker,
// whose fields it checks.
func buildAndBoot(t *testing.T, c bootCase) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("building needs root")
	}
	boottest.Need(t, c.arch)
	locktest.NeedArchive(t)

	ctx := context.Background()
	dir := t.TempDir()
	cache := testCache(t)
	lockPath := filepath.Join(dir, c.arch+".lock.json")
	if _, err := ibuild.Lock(ctx, ibuild.LockRequest{
		Blueprint: filepath.Join("..", "..", "testdata", "arch", c.blueprint), Lockfile: lockPath,
		Arches: []string{c.arch}, Types: []string{"qcow2"},
		Repositories: ibuild.Repositories{CacheDir: cache},
	}); err != nil {
		t.Fatal(err)
	}

	var log strings.Builder
	start := time.Now()
	res, err := ibuild.Build(ctx, ibuild.BuildRequest{
		Lockfile: lockPath, One: true, OutputDir: filepath.Join(dir, "out"), CacheDir: cache,
		RegisterBinfmt: c.arch != binfmt.HostArch(), Log: &log,
		Events: func(e ibuild.BuildEvent) {
			if s, ok := e.Event.(build.StageDone); ok && !s.CacheHit {
				t.Logf("%s %d %s: %s", s.Pipeline, s.Index, s.Type, s.Duration.Round(100*time.Millisecond))
			}
		},
	})
	if err != nil {
		t.Fatalf("build: %v\n%s", err, tail(log.String(), 4000))
	}
	t.Logf("build %s qcow2: %s", c.arch, time.Since(start).Round(time.Second))
	disk := filepath.Join(res.Images[0].Dir, "disk.qcow2")

	r, err := boottest.Boot(ctx, boottest.Options{
		Arch: c.arch, Firmware: "uefi", Dir: dir, Label: c.arch,
		Disks:   []boottest.Disk{{Path: disk, Snapshot: true}},
		Host:    c.host,
		Marker:  "IBUILD-MARKER",
		Timeout: c.timeout,
	})
	if err != nil {
		t.Fatalf("boot: %v", err)
	}
	t.Logf("boot %s: login prompt and marker after %.1f s: %s", c.arch, r.Seconds, r.Marker)
	for _, want := range []string{"arch=" + c.arch, "host=" + c.host, "admin=1200", "root=ext4"} {
		if !strings.Contains(" "+r.Marker+" ", " "+want+" ") {
			t.Errorf("marker %q: want %s", r.Marker, want)
		}
	}
	// The initramfs checked the root before mounting it: fsck's "[...
	// fsck.ext4 ...] fsck.ext4 -a ..." and e2fsck's "DEVICE: clean, ...".
	console, err := os.ReadFile(r.ConsoleLog)
	if err != nil {
		t.Fatal(err)
	}
	if m := fsckRE.Find(console); m == nil {
		t.Errorf("the console shows no check of the root by fsck.ext4:\n%s", tail(string(console), 4000))
	} else {
		t.Logf("root checked at boot: %q", m)
	}
}

var fsckRE = regexp.MustCompile(`(fsck\.ext4 -a[^\r\n]*|[^\s]+: clean, [^\r\n]*)`)

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
