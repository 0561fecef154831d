package stages_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/image-builder-action/image-builder-action/stages"
)

const (
	lvmVGID   = "Vg0123-abcd-EFGH-ijkl-MNOP-qrst-UVwxyz"
	lvmPVID   = "Pv0123-abcd-EFGH-ijkl-MNOP-qrst-UVwxyz"
	lvmRootID = "Lv0123-abcd-EFGH-ijkl-MNOP-qrst-UVroot"
	lvmVarID  = "Lv0123-abcd-EFGH-ijkl-MNOP-qrst-UVvar0"
	lvmPVType = "e6d6d379-f507-44c2-a23c-238f2a3df928"
)

// lvmOptions are the lvm2 stage's options for volume group vg on partition 2.
func lvmOptions(vg string) string {
	return `{"filename":"disk.raw","partition":2,"volume_group":"` + vg + `","vg_id":"` + lvmVGID + `","pv_id":"` + lvmPVID + `",
		"extent_size":4194304,"creation_host":"pinned","logical_volumes":[
		{"name":"rootlv","id":"` + lvmRootID + `","size":33554432},
		{"name":"varlv","id":"` + lvmVarID + `","size":16777216}]}`
}

// lvmDisk is a 96 MiB disk with a BIOS boot partition and an LVM partition.
const lvmDisk = `{"filename":"disk.raw","size":100663296,"uuid":"` + imgDiskUUID + `","partitions":[
	{"name":"bios","type":"21686148-6449-6e6f-744e-656564454649","uuid":"3a9c1c44-8f6e-4f0b-9d2a-1b2c3d4e5f60","start":2048,"size":2048},
	{"name":"lvm","type":"` + lvmPVType + `","uuid":"` + imgRootUUID + `","start":4096,"size":0}]}`

func TestLVM2Validate(t *testing.T) {
	ok := lvmOptions("vg0")
	tests := []struct{ options, err string }{
		{ok, ""},
		{strings.Replace(ok, `"vg0"`, `"-vg"`, 1), `volume_group: "-vg": only letters`},
		{strings.Replace(ok, `"vg0"`, `"a/b"`, 1), `volume_group: "a/b"`},
		{strings.Replace(ok, `"rootlv"`, `"snapshot1"`, 1), `reserved by lvm`},
		{strings.Replace(ok, `"rootlv"`, `"varlv"`, 1), `logical_volumes[1].name: "varlv" is logical_volumes[0]'s name too`},
		{strings.Replace(ok, lvmVGID, "Vg0123-abcd", 1), `vg_id: "Vg0123-abcd" is not an LVM id`},
		{strings.Replace(ok, lvmPVID, lvmVGID, 1), `pv_id: ` + lvmVGID + ` is the vg_id too`},
		{strings.Replace(ok, lvmVarID, lvmRootID, 1), `logical_volumes[1].id: ` + lvmRootID + ` is already logical_volumes[0].id`},
		{strings.Replace(ok, `"extent_size":4194304`, `"extent_size":3000000`, 1), `extent_size: 3000000 is not a power of two`},
		{strings.Replace(ok, `"size":16777216`, `"size":1000`, 1), `logical_volumes[1].size: 1000 is not a positive multiple of the extent size`},
		{strings.Replace(ok, `"pinned"`, `"a\"b"`, 1), `creation_host:`},
		{strings.Replace(ok, `"partition":2`, `"partition":0`, 1), `partition: 0`},
		{`{"filename":"disk.raw","partition":2,"volume_group":"vg","vg_id":"` + lvmVGID + `","pv_id":"` + lvmPVID + `","extent_size":4194304,"creation_host":"h","logical_volumes":[]}`, `logical_volumes: none`},
		{strings.Replace(ok, `"creation_host"`, `"stripes":2,"creation_host"`, 1), `unknown field "stripes"`},
	}
	imgValidate(t, "lvm2", tests)
	if id := stages.LVMID("seed"); !regexp.MustCompile(`^[0-9A-Za-z]{6}(-[0-9A-Za-z]{4}){5}-[0-9A-Za-z]{6}$`).MatchString(id) || id != stages.LVMID("seed") || id == stages.LVMID("other") {
		t.Errorf("LVMID(seed) = %q: not a stable LVM id", id)
	}
}

// lvmBuild makes the disk, the volume group and an ext4 file system in each
// logical volume, and returns the image's path.
func lvmBuild(t *testing.T, vg string) string {
	t.Helper()
	osTree := imgRootTree(t)
	varTree := t.TempDir()
	if err := os.WriteFile(filepath.Join(varTree, "in-var"), []byte("var\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := imgEnv(t, map[string]string{"os": osTree, "var": varTree})
	imgRun(t, env, "disk", lvmDisk)
	imgRun(t, env, "lvm2", lvmOptions(vg))
	var s stages.LVM2
	if err := json.Unmarshal([]byte(lvmOptions(vg)), &s); err != nil {
		t.Fatal(err)
	}
	layout := s.Layout()
	for _, fs := range []struct{ lv, uuid, pipeline string }{
		{"rootlv", "11111111-2222-4333-8444-555555555555", "os"},
		{"varlv", "66666666-7777-4888-9999-aaaaaaaaaaaa", "var"},
	} {
		r := layout[fs.lv]
		opts := fmt.Sprintf(`{"filename":"disk.raw","partition":2,"uuid":%q,"label":%q,"hash_seed":"0b8c3a2e-6a4f-4a9f-8e2d-1c3b5a7d9e0f",
			"source":{"pipeline":%q,"path":"/"},"volume":{"offset":%d,"size":%d}}`, fs.uuid, fs.lv, fs.pipeline, r.Offset, r.Size)
		imgRun(t, env, "mkfs-ext4", opts)
	}
	imgLeftovers(t, env.Tree, "disk.raw")
	return filepath.Join(env.Tree, "disk.raw")
}

// lvmConfig keeps the lvm tools of a test to loop devices, without
// lvmetad, udev or the devices file.
const lvmConfig = `devices { filter=["a|^/dev/loop|","r|.*|"] use_devicesfile=0 obtain_device_list_from_udev=0 } activation { udev_sync=0 udev_rules=0 } global { use_lvmetad=0 }`

// lvmTool runs an lvm command with the test's configuration and returns its
// output.
func lvmTool(t *testing.T, args ...string) (string, error) {
	t.Helper()
	full := append([]string{args[0], "--config", lvmConfig}, args[1:]...)
	cmd := exec.Command("lvm", full...)
	cmd.Env = append(os.Environ(), "LVM_SUPPRESS_FD_WARNINGS=1")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestLVM2Run writes a volume group with two logical volumes holding ext4
// file systems and checks it with the real lvm tools on a loop device that
// only this test uses, then the file systems with e2fsck where lvm says the
// logical volumes are.
func TestLVM2Run(t *testing.T) {
	imgNeedRoot(t)
	imgNeedTools(t, "mkfs.ext4", "debugfs", "e2fsck", "lvm", "losetup", "sfdisk")
	vg := fmt.Sprintf("ibtest%d", os.Getpid())
	img := lvmBuild(t, vg)
	if out := imgCmd(t, "sfdisk", "--verify", img); !strings.Contains(out, "No errors detected") {
		t.Errorf("sfdisk --verify: %s", out)
	}

	// Two builds give the same bytes.
	if a, b := imgSHA256(t, img), imgSHA256(t, lvmBuild(t, vg)); a != b {
		t.Errorf("two builds differ: %s %s", a, b)
	}

	// A loop device over the physical volume's partition (partition
	// devices of a loop device need udev, which test machines may lack).
	const partStart, partSize = 4096 * 512, 100663296 - 4096*512 - 33*512
	loop := strings.TrimSpace(imgCmd(t, "losetup", "-f", "--show", "-r", "-o", strconv.Itoa(partStart), "--sizelimit", strconv.Itoa(partSize), img))
	t.Cleanup(func() {
		if out, err := lvmTool(t, "vgchange", "-an", vg); err != nil {
			t.Logf("vgchange -an: %v\n%s", err, out)
		}
		if out, err := exec.Command("losetup", "-d", loop).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v\n%s", loop, err, out)
		}
	})
	pv := loop

	run := func(args ...string) string {
		t.Helper()
		out, err := lvmTool(t, args...)
		if err != nil {
			t.Fatalf("lvm %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	out := run("pvck", "--dump", "headers", pv)
	t.Logf("pvck --dump headers:\n%s", out)
	for _, bad := range []string{"CHECK", "bad", "invalid", "error"} {
		if strings.Contains(out, bad) {
			t.Errorf("pvck --dump headers reports %q", bad)
		}
	}
	run("pvck", pv)
	out = run("pvck", "--dump", "metadata", pv)
	if !strings.Contains(out, vg+" {") || strings.Contains(out, "CHECK") {
		t.Errorf("pvck --dump metadata:\n%s", out)
	}

	vgs := run("vgs", "--noheadings", "--units", "b", "--nosuffix", "--separator", ",", "-o", "vg_name,vg_uuid,pv_count,lv_count,vg_extent_size,vg_extent_count", vg)
	want := fmt.Sprintf("%s,%s,1,2,4194304,23", vg, lvmVGID)
	if got := strings.TrimSpace(vgs); got != want {
		t.Errorf("vgs = %q, want %q", got, want)
	}
	pvs := run("pvs", "--noheadings", "--units", "b", "--nosuffix", "--separator", ",", "-o", "pv_name,pv_uuid,pe_start,vg_name", pv)
	if got := strings.TrimSpace(pvs); got != fmt.Sprintf("%s,%s,1048576,%s", pv, lvmPVID, vg) {
		t.Errorf("pvs = %q", got)
	}
	lvs := run("lvs", "--noheadings", "--units", "b", "--nosuffix", "--separator", ",", "-o", "lv_name,lv_uuid,lv_size,seg_pe_ranges,lv_time,lv_host", vg)
	t.Logf("lvs:\n%s", lvs)
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(lvs), "\n") {
		f := strings.Split(strings.TrimSpace(line), ",")
		if len(f) != 6 {
			t.Fatalf("lvs line %q", line)
		}
		if f[5] != "pinned" || !strings.HasPrefix(f[4], "2023-11-14") {
			t.Errorf("lv %s: time %q host %q, want the source epoch's day and pinned", f[0], f[4], f[5])
		}
		// seg_pe_ranges: "/dev/loopNp2:first-last"
		m := regexp.MustCompile(`:(\d+)-(\d+)$`).FindStringSubmatch(f[3])
		if m == nil {
			t.Fatalf("lv %s: pe ranges %q", f[0], f[3])
		}
		first, _ := strconv.ParseInt(m[1], 10, 64)
		size, _ := strconv.ParseInt(f[2], 10, 64)
		// Where lvm says the logical volume is, the file system is clean
		// and has the volume's size.
		part := imgExtract(t, img, partStart+1048576+first*4194304, size)
		t.Logf("e2fsck -fn %s:\n%s", f[0], imgCmd(t, "e2fsck", "-fn", part))
		super := imgCmd(t, "dumpe2fs", "-h", part)
		if !strings.Contains(super, "Filesystem volume name:   "+f[0]) || !strings.Contains(super, fmt.Sprintf("Block count:              %d", size/4096)) {
			t.Errorf("lv %s holds another file system:\n%s", f[0], super)
		}
		checked++
	}
	if checked != 2 {
		t.Errorf("lvs lists %d logical volumes, want 2", checked)
	}

	// With device-mapper (not in every kernel: not in this machine's),
	// activate the volume group and check the file systems through it.
	misc, _ := os.ReadFile("/proc/misc")
	if !strings.Contains(string(misc), "device-mapper") {
		t.Logf("the kernel has no device-mapper: logical volumes checked at the offsets lvm reports, not activated")
		return
	}
	run("vgchange", "-ay", vg)
	for _, lv := range []string{"rootlv", "varlv"} {
		dev := "/dev/" + vg + "/" + lv
		t.Logf("e2fsck -fn %s:\n%s", dev, imgCmd(t, "e2fsck", "-fn", dev))
	}
	run("vgchange", "-an", vg)
}
