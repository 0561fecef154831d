package stages_test

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/image-builder-action/image-builder-action/pkg/testutil"
	"github.com/image-builder-action/image-builder-action/stages"
)

// stageVersionsGolden pins, per stage type, the version the type is
// registered at and the digest of what it writes on a small fixture.
const stageVersionsGolden = "testdata/stage-versions.json"

// pinnedStage is one type's entry of the golden file.
type pinnedStage struct {
	Version int `json:"version"`
	// SHA256 is the digest of the stage's output on its fixture, empty
	// when the output is the work of a tool (Tool says which), which the
	// tool's own version decides as much as our code.
	SHA256 string `json:"sha256,omitempty"`
	Tool   string `json:"tool,omitempty"`
}

// versionFixture runs a stage on a small tree made for it.
type versionFixture struct {
	options string
	// inputs are input pipelines' trees made by the fixture: "os" is the
	// fixture tree; otherwise the stage runs on the fixture tree itself.
	inputs map[string]func(t *testing.T) string
	// output, when set, makes the tree the stage runs on (an output
	// directory holding a disk image, for stages that change one).
	output func(t *testing.T) string
}

// vtTree is the fixture tree: a few accounts and the files the tree stages
// read or change, with fixed owners and modes.
func vtTree(t *testing.T) string {
	root := tcAccountsTree(t)
	for p, data := range map[string]string{
		"/etc/hostname":                             "old\n",
		"/etc/hosts":                                "127.0.0.1\tlocalhost\n127.0.1.1\told\n",
		"/etc/machine-id":                           "0123456789abcdef0123456789abcdef\n",
		"/etc/ssh/ssh_host_rsa_key":                 "key",
		"/etc/ssh/sshd_config":                      "Include /etc/ssh/sshd_config.d/*.conf\n",
		"/var/lib/apt/lists/x_Packages":             "Package: x\n",
		"/var/log/dpkg.log":                         "log\n",
		"/usr/share/zoneinfo/Europe/Berlin":         "TZif2 fake\n",
		"/usr/lib/systemd/system/a.service":         "[Unit]\nDescription=a\n[Install]\nWantedBy=multi-user.target\n",
		"/usr/lib/systemd/system/b.service":         "[Unit]\nDescription=b\n[Install]\nWantedBy=multi-user.target\n",
		"/usr/lib/systemd/system/multi-user.target": "[Unit]\nDescription=m\n",
		"/boot/efi/EFI/BOOT/BOOTX64.EFI":            "MZ efi",
		"/usr/bin/tool":                             "#!/bin/sh\n",
	} {
		tcWrite(t, root, p, data)
	}
	return root
}

// vtFile is a tree holding one file, the input of a converting stage.
func vtFile(name string, size int) func(t *testing.T) string {
	return func(t *testing.T) string {
		dir := t.TempDir()
		b := make([]byte, size)
		for i := range b {
			b[i] = byte(i * 7)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
}

// vtVMDK is a tree holding a small stream-optimized VMDK (made once by
// qemu-img, whose VMDKs carry a random content id, and kept gzipped).
func vtVMDK(t *testing.T) string {
	f, err := os.Open("testdata/fixture.vmdk.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "disk.vmdk"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// vtDiskOptions are the disk stage's on its fixture: a 64 MiB GPT disk.
const vtDiskOptions = `{"filename":"disk.raw","size":67108864,"uuid":"` + imgDiskUUID + `","partitions":[
		{"name":"esp","type":"c12a7328-f81f-11d2-ba4b-00a0c93ec93b","uuid":"7d2b8f4a-1c3e-4a5b-9c6d-7e8f9a0b1c2d","start":2048,"size":69632},
		{"name":"root","type":"4f68bce3-e8cd-4db1-96e7-fbcaf984b709","uuid":"` + imgRootUUID + `","start":71680,"size":0}]}`

var versionFixtures = map[string]versionFixture{
	"hostname":    {options: `{"hostname":"pinned"}`},
	"files":       {options: `{"files":[{"path":"/etc/motd","data":"hi\n"},{"path":"/etc/secret","mode":"0600","user":"admin","group":33,"data":"s"}]}`},
	"directories": {options: `{"directories":[{"path":"/etc/data","mode":"0750","user":"admin"},{"path":"/opt/a/b","ensure_parents":true}]}`},
	"fstab": {options: `{"filesystems":[{"uuid":"6a1b5f0e-2c3d-4e5f-8a9b-0c1d2e3f4a5b","vfs_type":"ext4","path":"/","options":"errors=remount-ro","freq":1,"passno":1},
		{"uuid":"ABCD-1234","vfs_type":"vfat","path":"/boot/efi","options":"umask=0077","passno":2}]}`},
	"timezone":    {options: `{"timezone":"Europe/Berlin","ntpservers":["0.pool.ntp.org","ntp.example.org"]}`},
	"cleanup":     {options: `{"ssh_host_key_types":["ecdsa","ed25519"]}`},
	"systemd":     {options: `{"enabled":["a"],"masked":["b"]}`},
	"disk":        {options: vtDiskOptions},
	"tar":         {options: `{"filename":"root.tar","source":{"pipeline":"os","path":"/"}}`, inputs: map[string]func(*testing.T) string{"os": vtTree}},
	"wsl":         {options: `{"filename":"image.wsl","source":{"pipeline":"os","path":"/"}}`, inputs: map[string]func(*testing.T) string{"os": vtTree}},
	"oci-archive": {options: imgOCIOptions, inputs: map[string]func(*testing.T) string{"os": vtTree}},
	"gce":         {options: `{"filename":"image.tar.gz","source":{"pipeline":"image","path":"/disk.raw"}}`, inputs: map[string]func(*testing.T) string{"image": vtFile("disk.raw", 1<<20)}},
	"ova":         {options: `{"filename":"image.ova","vmdk":{"pipeline":"vmdk","path":"/disk.vmdk"}}`, inputs: map[string]func(*testing.T) string{"vmdk": vtVMDK}},
	"lvm2":        {options: lvmOptions("pinned"), output: vtDisk(lvmDisk)},
	// The ESP of the disk fixture: 69632 sectors.
	"write-partition": {options: `{"filename":"disk.raw","partition":1,"source":{"pipeline":"fs","path":"/fs.img"}}`,
		output: vtDisk(vtDiskOptions), inputs: map[string]func(*testing.T) string{"fs": vtFile("fs.img", 69632*512)}},
}

// vtDisk is an output directory holding the disk the disk stage makes
// from options.
func vtDisk(options string) func(t *testing.T) string {
	return func(t *testing.T) string {
		env := imgEnv(t, nil)
		imgRun(t, env, "disk", options)
		return env.Tree
	}
}

// vtTools are the stages whose output is a tool's: the build root's or
// the tree's own, run in namespaces.
var vtTools = map[string]string{
	"cacerts": "update-ca-certificates",
	// Its output is the registry's blobs, pinned by digest, and a unit.
	"containers": "a container registry",
	"debs":       "dpkg",
	"firewall":   "firewall-offline-cmd",
	"grub2":      "grub-mkimage",
	"grub-bios":  "the build root's dd",
	"initramfs":  "update-initramfs",
	"locale":     "locale-gen",
	"mkfs-btrfs": "mkfs.btrfs",
	"mkfs-ext4":  "mkfs.ext4",
	"mkfs-fat":   "mkfs.fat and mcopy",
	"iso":        "mksquashfs, grub-mkimage, mkfs.fat and mcopy, xorriso",
	"mkfs-xfs":   "mkfs.xfs",
	"mkswap":     "mkswap",
	"qemu-img":   "qemu-img",
	"users":      "useradd, groupadd, usermod",
}

// TestStageVersions pins what each stage writes on a small fixture, with
// the version it is registered at: a change in what a stage writes fails
// here until the stage's version is raised (then -update records it), so
// a warm cache never serves a tree of older code.
func TestStageVersions(t *testing.T) {
	tcNeedRoot(t)
	var golden map[string]pinnedStage
	data, err := os.ReadFile(stageVersionsGolden)
	if err != nil && !testutil.Update() {
		t.Fatal(err)
	}
	if len(data) > 0 {
		if err := json.Unmarshal(data, &golden); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]pinnedStage{}
	for _, typ := range stages.Types() {
		if strings.HasPrefix(typ, "test-") {
			continue
		}
		p := pinnedStage{Version: stages.Version(typ)}
		fx, ok := versionFixtures[typ]
		switch {
		case ok:
			p.SHA256 = vtDigest(t, typ, fx)
		case vtTools[typ] != "":
			p.Tool = vtTools[typ]
		default:
			t.Errorf("stage %s has neither a fixture nor a tool named here", typ)
			continue
		}
		got[typ] = p
		old, known := golden[typ]
		switch {
		case !known:
		case old.SHA256 != p.SHA256 && old.Version == p.Version:
			t.Errorf("stage %s writes something else than at version %d (%s, was %s): raise its version where it registers, then run the test with -update", typ, p.Version, p.SHA256, old.SHA256)
			got[typ] = old // -update keeps the old pin until the version is raised
		case p.Version < old.Version:
			t.Errorf("stage %s is at version %d, lower than the pinned %d", typ, p.Version, old.Version)
		}
	}
	if testutil.Update() {
		b, err := json.MarshalIndent(got, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(stageVersionsGolden, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if d := cmp.Diff(golden, got); d != "" {
		t.Errorf("%s is out of date (run with -update) (-old +new):\n%s", stageVersionsGolden, d)
	}
}

// vtDigest runs typ on its fixture twice, fails if the runs differ, and
// returns the digest of what the stage wrote.
func vtDigest(t *testing.T, typ string, fx versionFixture) string {
	t.Helper()
	var sums []string
	for range 2 {
		var tree string
		inputs := map[string]string{}
		switch {
		case fx.output != nil:
			tree = fx.output(t)
			for name, mk := range fx.inputs {
				inputs[name] = mk(t)
			}
		case fx.inputs == nil:
			tree = vtTree(t)
		default:
			tree = t.TempDir()
			for name, mk := range fx.inputs {
				inputs[name] = mk(t)
			}
		}
		before := vtSnapshot(t, tree)
		env := tcEnv(t, tree)
		env.Inputs, env.BuildRoot = inputs, "/"
		s, err := stages.New(typ, json.RawMessage(fx.options))
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if err := s.Run(context.Background(), env); err != nil {
			t.Fatalf("running %s on its fixture: %v", typ, err)
		}
		after := vtSnapshot(t, tree)
		var diff []string
		for p, l := range after {
			if before[p] != l {
				diff = append(diff, l)
			}
		}
		for p := range before {
			if _, ok := after[p]; !ok {
				diff = append(diff, "removed "+p)
			}
		}
		sort.Strings(diff)
		sum := sha256.Sum256([]byte(strings.Join(diff, "\n")))
		sums = append(sums, hex.EncodeToString(sum[:]))
		if len(sums) == 2 && sums[0] != sums[1] {
			t.Errorf("stage %s writes something else on each run:\n%s", typ, strings.Join(diff, "\n"))
		}
	}
	return sums[0]
}

// vtSnapshot describes each entry of a tree by path: type and mode,
// owner, link target or content digest. Modification times are left out:
// the trees are made at test time, and the build clamps them when it
// makes disks and archives.
func vtSnapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		rel := "/" + strings.TrimPrefix(strings.TrimPrefix(p, root), "/")
		l := fmt.Sprintf("%s %v %d:%d", rel, fi.Mode(), st.Uid, st.Gid)
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			l += " -> " + target
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			l += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		out[rel] = l
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
