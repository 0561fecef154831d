package crossboot

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/binfmt"
	"github.com/image-builder-action/image-builder-action/pkg/ibuild"
	"github.com/image-builder-action/image-builder-action/pkg/lock/locktest"
)

// aarch64Type is one image type built for aarch64 and checked with a tool
// that reads its format.
type aarch64Type struct {
	name string
	// own is set for a type whose os tree is not the qcow2's (other
	// packages: cloud-init, no kernel, a container's set), so it costs a
	// whole emulated install; those run only with IBUILD_TEST_AARCH64_TYPES=all.
	own   bool
	check func(t *testing.T, dir, file string)
}

// TestAarch64Types builds testdata/arch/aarch64.toml's other image types for
// aarch64 and reads each output back with the tool made for its format:
// qemu-img (check, info, compare against the raw disk), sfdisk, mtools for
// the ESP's BOOTAA64.EFI, tar, and skopeo for the container's config. raw
// and vmdk are the qcow2's disk converted, from TestAarch64OnX86's trees in
// the shared cache, so make check runs them; the types with a tree of their
// own (ami, gce and vhd with cloud-init; tar and wsl without a kernel; the
// container) each cost minutes of emulated dpkg and run only with
// IBUILD_TEST_AARCH64_TYPES=all.
func TestAarch64Types(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: skipped with -short")
	}
	needCross(t)
	if os.Geteuid() != 0 {
		t.Skip("building needs root")
	}
	locktest.NeedArchive(t)
	all := os.Getenv("IBUILD_TEST_AARCH64_TYPES") == "all"

	types := []aarch64Type{
		{name: "qcow2", check: checkQcow2},
		{name: "raw", check: checkRaw},
		{name: "vmdk", check: checkConverted("vmdk", "vmdk")},
		{name: "ami", own: true, check: checkRaw},
		{name: "vhd", own: true, check: checkConverted("vpc", "vpc")},
		{name: "gce", own: true, check: checkGCE},
		{name: "tar", own: true, check: checkRootTar("zstd")},
		{name: "wsl", own: true, check: checkRootTar("gzip")},
		{name: "container", own: true, check: checkContainer},
	}
	var names []string
	for _, c := range types {
		if !c.own || all {
			names = append(names, c.name)
		}
	}

	ctx := context.Background()
	dir := t.TempDir()
	cache := testCache(t)
	lockPath := filepath.Join(dir, "types.lock.json")
	if _, err := ibuild.Lock(ctx, ibuild.LockRequest{
		Blueprint: filepath.Join("..", "..", "testdata", "arch", "aarch64.toml"), Lockfile: lockPath,
		Arches: []string{"aarch64"}, Types: names,
		Repositories: ibuild.Repositories{CacheDir: cache},
	}); err != nil {
		t.Fatal(err)
	}
	raw := ""
	for _, c := range types {
		if c.own && !all {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			var log strings.Builder
			start := time.Now()
			res, err := ibuild.Build(ctx, ibuild.BuildRequest{
				Lockfile: lockPath, Arches: []string{"aarch64"}, Types: []string{c.name}, One: true,
				OutputDir: filepath.Join(dir, c.name), CacheDir: cache, RegisterBinfmt: true, Log: &log,
			})
			if err != nil {
				t.Fatalf("build: %v\n%s", err, tail(log.String(), 4000))
			}
			img := res.Images[0]
			file := filepath.Join(img.Dir, img.Entry.Filename)
			t.Logf("build aarch64 %s: %s, %s", c.name, time.Since(start).Round(100*time.Millisecond), file)
			if c.name == "raw" {
				raw = file
			}
			c.check(t, raw, file)
		})
	}
}

// needCross skips without an x86_64 host and qemu-user-static, and removes
// a handler that a build (or a killed one) left registered, keeping one
// that was there before the test.
func needCross(t *testing.T) {
	t.Helper()
	if binfmt.HostArch() != "x86_64" {
		t.Skip("the cross build is tested from an x86_64 host")
	}
	if _, err := os.Stat(filepath.Join(binfmt.ConfDir, "qemu-aarch64.conf")); err != nil {
		t.Skipf("qemu-user-static is not installed (make deps installs it): %v", err)
	}
	if binfmt.Check("aarch64") == nil {
		return
	}
	t.Cleanup(func() {
		p := filepath.Join(binfmt.Dir, "qemu-aarch64")
		if _, err := os.Stat(p); err == nil {
			t.Error("the build left its binfmt_misc handler registered")
		}
		if err := os.WriteFile(p, []byte("-1"), 0o200); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("removing %s: %v", p, err)
		}
	})
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// imgInfo is what qemu-img info --output=json says of an image.
type imgInfo struct {
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual-size"`
	FormatData  struct {
		Data struct {
			CreateType string `json:"create-type"`
		} `json:"data"`
	} `json:"format-specific"`
}

func info(t *testing.T, format, file string) imgInfo {
	t.Helper()
	var i imgInfo
	if err := json.Unmarshal([]byte(run(t, "qemu-img", "info", "--output=json", "-f", format, file)), &i); err != nil {
		t.Fatal(err)
	}
	return i
}

func checkQcow2(t *testing.T, _, file string) {
	run(t, "qemu-img", "check", "-f", "qcow2", file)
	if i := info(t, "qcow2", file); i.Format != "qcow2" {
		t.Errorf("qemu-img info: format %q", i.Format)
	}
}

// checkRaw reads the disk's GPT with sfdisk and the ESP with mtools: an
// aarch64 UEFI disk boots from EFI/BOOT/BOOTAA64.EFI.
func checkRaw(t *testing.T, _, file string) {
	var pt struct {
		PartitionTable struct {
			Label      string `json:"label"`
			SectorSize int64  `json:"sectorsize"`
			Partitions []struct {
				Start int64  `json:"start"`
				Type  string `json:"type"`
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal([]byte(run(t, "sfdisk", "--json", file)), &pt); err != nil {
		t.Fatal(err)
	}
	if pt.PartitionTable.Label != "gpt" {
		t.Fatalf("sfdisk: label %q, want gpt", pt.PartitionTable.Label)
	}
	esp := int64(-1)
	for _, p := range pt.PartitionTable.Partitions {
		if strings.EqualFold(p.Type, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B") {
			esp = p.Start * 512
		}
	}
	if esp < 0 {
		t.Fatalf("sfdisk: no EFI system partition in %+v", pt.PartitionTable.Partitions)
	}
	cmd := exec.Command("mdir", "-b", "-i", file+"@@"+strconv.FormatInt(esp, 10), "::/EFI/BOOT")
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(strings.ToUpper(string(out)), "BOOTAA64.EFI") {
		t.Errorf("mdir ::/EFI/BOOT of the ESP: %v\n%s", err, out)
	}
}

// checkConverted checks a conversion of the raw disk: qemu-img reads it as
// FORMAT and, for the qcow2's own tree, finds the same contents as the raw
// disk (qemu-img compare).
func checkConverted(format, want string) func(t *testing.T, raw, file string) {
	return func(t *testing.T, raw, file string) {
		i := info(t, format, file)
		if i.Format != want {
			t.Errorf("qemu-img info: format %q, want %q", i.Format, want)
		}
		if format == "vmdk" && i.FormatData.Data.CreateType != "streamOptimized" {
			t.Errorf("qemu-img info: vmdk create type %q, want streamOptimized", i.FormatData.Data.CreateType)
		}
		if format == "vpc" && i.VirtualSize%(1<<20) != 0 {
			t.Errorf("vhd virtual size %d is not a whole number of MiB (Azure refuses it)", i.VirtualSize)
		}
		if format == "vmdk" || format == "qcow2" {
			run(t, "qemu-img", "check", "-f", format, file)
		}
		if raw != "" && format == "vmdk" {
			run(t, "qemu-img", "compare", "-f", "raw", "-F", format, raw, file)
		}
	}
}

// checkGCE reads the tarball GCE imports: one file, disk.raw, itself a
// GPT disk with an arm64 ESP.
func checkGCE(t *testing.T, _, file string) {
	names := strings.Fields(run(t, "tar", "-tzf", file))
	if len(names) != 1 || names[0] != "disk.raw" {
		t.Fatalf("tar -tzf %s: %q, want [disk.raw]", file, names)
	}
	dir := t.TempDir()
	run(t, "tar", "-xzf", file, "-C", dir)
	checkRaw(t, "", filepath.Join(dir, "disk.raw"))
}

// checkRootTar lists a root file system tarball with tar and reads
// /usr/bin/dash from it: an aarch64 ELF file.
func checkRootTar(compression string) func(t *testing.T, _, file string) {
	return func(t *testing.T, _, file string) {
		flag := "--zstd"
		if compression == "gzip" {
			flag = "--gzip"
		}
		list := run(t, "tar", flag, "-tf", file)
		for _, want := range []string{"./etc/os-release", "./usr/bin/dash", "./etc/hostname"} {
			if !strings.Contains("\n"+list, "\n"+want+"\n") {
				t.Errorf("tar -tf %s has no %s", file, want)
			}
		}
		out, err := exec.Command("tar", flag, "-xOf", file, "./usr/bin/dash").Output()
		if err != nil {
			t.Fatalf("tar -xOf %s ./usr/bin/dash: %v", file, err)
		}
		checkELF(t, "/usr/bin/dash", out)
	}
}

func checkELF(t *testing.T, name string, b []byte) {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if f.Machine != elf.EM_AARCH64 {
		t.Errorf("%s is an ELF file for %s, want EM_AARCH64", name, f.Machine)
	}
}

// checkContainer inspects the OCI archive with skopeo: its config says
// arm64, linux, and the layer holds an aarch64 /usr/bin/dash.
func checkContainer(t *testing.T, _, file string) {
	var cfg struct {
		Architecture string `json:"architecture"`
		OS           string `json:"os"`
		RootFS       struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal([]byte(run(t, "skopeo", "inspect", "--config", "oci-archive:"+file)), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Architecture != "arm64" || cfg.OS != "linux" {
		t.Errorf("skopeo inspect --config: architecture %q, os %q; want arm64, linux", cfg.Architecture, cfg.OS)
	}
	dir := t.TempDir()
	run(t, "skopeo", "copy", "oci-archive:"+file, "dir:"+dir)
	var m struct {
		Layers []struct {
			Digest string `json:"digest"`
		} `json:"layers"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &m); err != nil || len(m.Layers) == 0 {
		t.Fatalf("manifest %s: %v", b, err)
	}
	for _, l := range m.Layers {
		p := filepath.Join(dir, strings.TrimPrefix(l.Digest, "sha256:"))
		out, err := exec.Command("sh", "-c", `tar -xOf "$1" ./usr/bin/dash 2>/dev/null || tar -xOf "$1" usr/bin/dash`, "sh", p).Output()
		if err == nil && len(out) > 0 {
			checkELF(t, "/usr/bin/dash", out)
			return
		}
	}
	t.Errorf("no layer of %s holds /usr/bin/dash", file)
}
