package stages_test

// Test helpers of the disk and export stages (names prefixed "img" so they
// do not collide with other stages' helpers in this package).

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/build"
	"github.com/image-builder-action/image-builder-action/pkg/testutil"
	"github.com/image-builder-action/image-builder-action/stages"
)

// imgEpoch is the SOURCE_DATE_EPOCH of these tests (2023-11-14 22:13:20 UTC).
const imgEpoch = 1700000000

// imgLog sends tool output to the test log.
type imgLog struct{ t *testing.T }

func (l imgLog) Write(p []byte) (int, error) {
	l.t.Helper()
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// imgEnv is an environment whose build root is the host ("/") and whose
// output directory is a fresh temporary directory.
func imgEnv(t *testing.T, inputs map[string]string) *stages.Env {
	t.Helper()
	return &stages.Env{
		Tree:            t.TempDir(),
		Inputs:          inputs,
		BuildRoot:       "/",
		Runner:          build.NewRunner(build.WithRunnerLog(imgLog{t}), build.WithSourceDateEpoch(imgEpoch)),
		Arch:            "amd64",
		SourceDateEpoch: imgEpoch,
		Log:             imgLog{t},
	}
}

// imgRun makes a stage from options through the registry and runs it.
func imgRun(t *testing.T, env *stages.Env, typ, options string) {
	t.Helper()
	s, err := stages.New(typ, json.RawMessage(options))
	if err != nil {
		t.Fatalf("stages.New(%s, %s): %v", typ, options, err)
	}
	start := time.Now()
	if err := s.Run(context.Background(), env); err != nil {
		t.Fatalf("running %s: %v", typ, err)
	}
	t.Logf("%s ran in %v", typ, time.Since(start).Round(time.Millisecond))
}

// imgRunErr runs a stage and returns its error.
func imgRunErr(t *testing.T, env *stages.Env, typ, options string) error {
	t.Helper()
	s, err := stages.New(typ, json.RawMessage(options))
	if err != nil {
		t.Fatalf("stages.New(%s, %s): %v", typ, options, err)
	}
	return s.Run(context.Background(), env)
}

// imgValidate checks stages.New against a table of options and error
// fragments ("" = valid).
func imgValidate(t *testing.T, typ string, tests []struct{ options, err string }) {
	t.Helper()
	for _, tc := range tests {
		_, err := stages.New(typ, json.RawMessage(tc.options))
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("New(%s, %s) = %v, want error containing %q", typ, tc.options, err, tc.err)
		}
	}
}

// imgNeedRoot skips tests that need namespaces and mounts.
func imgNeedRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (namespaces, mounts, file owners)")
	}
}

// imgNeedTools skips a test when a host tool it runs or checks with is
// missing.
func imgNeedTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s on the host: %v", tool, err)
		}
	}
}

// imgCmd runs a host command and returns its stdout; it fails the test
// when the command fails.
// podmanRunRoot is a run root for podman: it refuses one longer than 50
// characters, which t.TempDir() under a long TMPDIR (CI's is a directory
// of the run's own) is.
func podmanRunRoot(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("/dev/shm", "ibuild-test-podman-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func imgCmd(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// imgSHA256 is the hex SHA-256 of a file.
func imgSHA256(t *testing.T, p string) string { return testutil.FileSHA256(t, p) }

// imgExtract copies size bytes at off of img into a new file and returns
// its path, for tools that take a file system image without an offset.
func imgExtract(t *testing.T, img string, off, size int64) string {
	t.Helper()
	src, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	p := filepath.Join(t.TempDir(), "part.img")
	dst, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, io.NewSectionReader(src, off, size)); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// The standard test disk: 64 MiB, BIOS boot, ESP and root partitions.
const (
	imgDiskUUID = "5f0e7b3c-9f5a-4d53-8a3e-0c8b6f1d2e11"
	imgRootUUID = "6a1b5f0e-2c3d-4e5f-8a9b-0c1d2e3f4a5b"
	imgDisk     = `{"filename":"disk.raw","size":67108864,"uuid":"` + imgDiskUUID + `","partitions":[
		{"name":"bios","type":"21686148-6449-6e6f-744e-656564454649","uuid":"3a9c1c44-8f6e-4f0b-9d2a-1b2c3d4e5f60","start":2048,"size":2048},
		{"name":"esp","type":"c12a7328-f81f-11d2-ba4b-00a0c93ec93b","uuid":"7d2b8f4a-1c3e-4a5b-9c6d-7e8f9a0b1c2d","start":4096,"size":69632},
		{"name":"root","type":"4f68bce3-e8cd-4db1-96e7-fbcaf984b709","uuid":"` + imgRootUUID + `","start":73728,"size":0}]}`
	imgESPStart  = 4096 * 512
	imgESPSize   = 69632 * 512
	imgRootStart = 73728 * 512
	// imgRootSize runs to the last usable sector: 131072 sectors less the
	// backup GPT (33 sectors) and LBA 73728's predecessors.
	imgRootSize = (131072 - 33 - 73728) * 512
)

// imgNewDisk runs the disk stage with imgDisk in env.
func imgNewDisk(t *testing.T, env *stages.Env) string {
	t.Helper()
	imgRun(t, env, "disk", imgDisk)
	return filepath.Join(env.Tree, "disk.raw")
}

// imgLeftovers fails when the output directory holds anything but want.
func imgLeftovers(t *testing.T, dir string, want ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("output directory holds %q, want %q", got, want)
	}
}

// TestImageStagesDebianTree runs the disk and export stages over a real
// Debian tree and logs how long each takes.
func TestImageStagesDebianTree(t *testing.T) {
	imgNeedTools(t, "mkfs.fat", "mkfs.ext4", "qemu-img", "tar", "e2fsck", "fsck.fat")
	tree := tcDebianTree(t)
	grub := imgGrubTree(t, "")
	if err := os.MkdirAll(filepath.Join(tree, "boot/efi/EFI/BOOT"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "boot/efi/EFI/BOOT/BOOTX64.EFI"), []byte(strings.Repeat("efi", 300000)), 0o644); err != nil {
		t.Fatal(err)
	}
	env := imgEnv(t, map[string]string{"os": tree, "grub": grub})
	timed := func(typ, options string) {
		t.Helper()
		start := time.Now()
		imgRun(t, env, typ, options)
		t.Logf("TIMING %s: %v", typ, time.Since(start).Round(time.Millisecond))
	}
	timed("disk", `{"filename":"disk.raw","size":4294967296,"uuid":"`+imgDiskUUID+`","partitions":[
		{"name":"bios","type":"21686148-6449-6e6f-744e-656564454649","uuid":"3a9c1c44-8f6e-4f0b-9d2a-1b2c3d4e5f60","start":2048,"size":2048},
		{"name":"esp","type":"c12a7328-f81f-11d2-ba4b-00a0c93ec93b","uuid":"7d2b8f4a-1c3e-4a5b-9c6d-7e8f9a0b1c2d","start":4096,"size":262144},
		{"name":"root","type":"4f68bce3-e8cd-4db1-96e7-fbcaf984b709","uuid":"`+imgRootUUID+`","start":266240,"size":0}]}`)
	timed("mkfs-fat", imgFATOptions)
	timed("mkfs-ext4", imgExt4Options)
	timed("grub-bios", `{"filename":"disk.raw","core_partition":1,"source":{"pipeline":"grub","path":"/boot/grub/i386-pc"}}`)
	img := filepath.Join(env.Tree, "disk.raw")
	imgCmd(t, "e2fsck", "-fn", imgExtract(t, img, 266240*512, (8388608-33-266240)*512))
	imgCmd(t, "fsck.fat", "-n", imgExtract(t, img, 4096*512, 262144*512))

	env.Inputs["image"] = env.Tree
	out := t.TempDir()
	env.Tree = out
	timed("qemu-img", `{"filename":"disk.qcow2","format":"qcow2","source":{"pipeline":"image","path":"/disk.raw"},"options":{"compat":"1.1"}}`)
	timed("qemu-img", `{"filename":"disk-c.qcow2","format":"qcow2","source":{"pipeline":"image","path":"/disk.raw"},"options":{"compat":"1.1"},"compress":true}`)
	timed("qemu-img", `{"filename":"disk.vmdk","format":"vmdk","source":{"pipeline":"image","path":"/disk.raw"},"options":{"subformat":"streamOptimized"}}`)
	timed("qemu-img", `{"filename":"disk.vhd","format":"vpc","source":{"pipeline":"image","path":"/disk.raw"},"options":{"subformat":"fixed","force_size":"on"}}`)
	env.Inputs["vmdk"] = out
	timed("ova", `{"filename":"image.ova","vmdk":{"pipeline":"vmdk","path":"/disk.vmdk"}}`)
	timed("gce", `{"filename":"image.tar.gz","source":{"pipeline":"image","path":"/disk.raw"}}`)
	timed("tar", `{"filename":"root.tar.zst","source":{"pipeline":"os","path":"/"},"compression":"zstd"}`)
	timed("tar", `{"filename":"root.tar.xz","source":{"pipeline":"os","path":"/"},"compression":"xz"}`)
	timed("wsl", `{"filename":"image.wsl","source":{"pipeline":"os","path":"/"}}`)
	timed("oci-archive", imgOCIOptions)
	ents, _ := os.ReadDir(out)
	for _, e := range ents {
		fi, _ := e.Info()
		t.Logf("%s: %d MiB", e.Name(), fi.Size()>>20)
	}
}
