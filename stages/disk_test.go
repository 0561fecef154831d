package stages_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDiskValidate(t *testing.T) {
	const (
		g1 = "3a9c1c44-8f6e-4f0b-9d2a-1b2c3d4e5f60"
		g2 = "7d2b8f4a-1c3e-4a5b-9c6d-7e8f9a0b1c2d"
		ty = "0fc63daf-8483-4772-8e79-3d69d8477de4"
	)
	part := func(uuid string, start, size int) string {
		b, _ := json.Marshal(map[string]any{"name": "p", "type": ty, "uuid": uuid, "start": start, "size": size})
		return string(b)
	}
	disk := func(filename string, size int, parts ...string) string {
		return `{"filename":"` + filename + `","size":` + itoa(size) + `,"uuid":"` + imgDiskUUID + `","partitions":[` + strings.Join(parts, ",") + `]}`
	}
	tests := []struct{ options, err string }{
		{imgDisk, ""},
		{disk("disk.raw", 1<<20, part(g1, 34, 0)), ""},
		{disk("disk.raw", 2<<20, part(g1, 2048, 0)), ""},
		{disk("disk.raw", 2<<20, part(g1, 34, 2014), part(g2, 2048, 0)), ""},
		{disk("", 1<<20, part(g1, 2048, 0)), "filename: empty"},
		{disk("out/disk.raw", 1<<20, part(g1, 2048, 0)), "filename: \"out/disk.raw\" must be a base name"},
		{disk("..", 1<<20, part(g1, 2048, 0)), "filename: \"..\" is not a file name"},
		{disk(".disk", 1<<20, part(g1, 2048, 0)), "must not start with a dot"},
		{disk("disk.raw", 0, part(g1, 2048, 0)), "size: 0 is not positive"},
		{disk("disk.raw", -512, part(g1, 2048, 0)), "size: -512 is not positive"},
		{disk("disk.raw", 1000000, part(g1, 2048, 0)), "size: 1000000 is not a multiple of 512"},
		{disk("disk.raw", 512*60, part(g1, 34, 0)), "leaves no room"},
		{disk("disk.raw", 1<<20), "partitions: none"},
		{disk("disk.raw", 1<<20, part(g1, 33, 10)), "partitions[0].start: sector 33 is inside the primary GPT"},
		{disk("disk.raw", 1<<20, part(g1, 2000, 100)), "partitions[0]: sectors 2000+100 do not fit"},
		{disk("disk.raw", 1<<20, part(g1, 4096, 0)), "partitions[0]: sectors 4096+0 do not fit"},
		{disk("disk.raw", 1<<20, part(g1, 34, 100), part(g2, 100, 10)), "partitions[1]: sectors 100-109 overlap partitions[0] (34-133)"},
		{disk("disk.raw", 1<<20, part(g1, 34, 0), part(g2, 1000, 10)), "partitions[1]: sectors 1000-1009 overlap partitions[0]"},
		{disk("disk.raw", 1<<20, part(g1, 34, 10), part(strings.ToUpper(g1), 100, 10)), "partitions[1].uuid: " + strings.ToUpper(g1) + " is already used by partitions[0].uuid"},
		{disk("disk.raw", 1<<20, part(imgDiskUUID, 34, 10)), "is already used by uuid"},
		{disk("disk.raw", 1<<20, part("not-a-guid", 34, 10)), "partitions[0].uuid: \"not-a-guid\" is not a GUID"},
		{disk("disk.raw", 1<<20, part("{3a9c1c44-8f6e-4f0b-9d2a-1b2c3d4e5f6}", 34, 10)), "is not a GUID"},
		{strings.Replace(disk("disk.raw", 1<<20, part(g1, 34, 10)), ty, "00000000-0000-0000-0000-000000000000", 1), "partitions[0].type: the zero GUID"},
		{strings.Replace(disk("disk.raw", 1<<20, part(g1, 34, 10)), ty, "linux", 1), "partitions[0].type: \"linux\" is not a GUID"},
		{strings.Replace(disk("disk.raw", 1<<20, part(g1, 34, 10)), `"name":"p"`, `"name":"`+strings.Repeat("x", 37)+`"`, 1), "partitions[0].name: 37 UTF-16 code units"},
		{strings.Replace(disk("disk.raw", 1<<20, part(g1, 34, 10)), imgDiskUUID, "x", 1), "uuid: \"x\" is not a GUID"},
		{disk("disk.raw", 3<<40, part(g1, 34, 0)), "more than the 2 TiB"},
		{`{"filename":"disk.raw","size":1048576,"uuid":"` + imgDiskUUID + `","partitions":[],"label":"gpt"}`, `unknown field "label"`},
	}
	imgValidate(t, "disk", tests)
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// sfdiskTable is the part of `sfdisk --json` the test compares.
type sfdiskTable struct {
	PartitionTable struct {
		Label      string `json:"label"`
		ID         string `json:"id"`
		FirstLBA   int64  `json:"firstlba"`
		LastLBA    int64  `json:"lastlba"`
		SectorSize int    `json:"sectorsize"`
		Partitions []struct {
			Start int64  `json:"start"`
			Size  int64  `json:"size"`
			Type  string `json:"type"`
			UUID  string `json:"uuid"`
			Name  string `json:"name"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

func TestDiskRun(t *testing.T) {
	imgNeedTools(t, "sfdisk", "sgdisk")
	env := imgEnv(t, nil)
	img := imgNewDisk(t, env)
	imgLeftovers(t, env.Tree, "disk.raw")

	fi, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != 64<<20 {
		t.Errorf("size = %d, want %d", fi.Size(), 64<<20)
	}
	if used := fi.Sys().(*syscall.Stat_t).Blocks * 512; used > 1<<20 {
		t.Errorf("image uses %d bytes on disk: not sparse", used)
	}

	out := imgCmd(t, "sfdisk", "--verify", img)
	if !strings.Contains(out, "No errors detected") {
		t.Errorf("sfdisk --verify: %s", out)
	}
	if out := imgCmd(t, "sgdisk", "-v", img); !strings.Contains(out, "No problems found") {
		t.Errorf("sgdisk -v: %s", out)
	}

	var got sfdiskTable
	if err := json.Unmarshal([]byte(imgCmd(t, "sfdisk", "--json", img)), &got); err != nil {
		t.Fatal(err)
	}
	var want sfdiskTable
	want.PartitionTable.Label = "gpt"
	want.PartitionTable.ID = strings.ToUpper(imgDiskUUID)
	want.PartitionTable.FirstLBA = 34
	want.PartitionTable.LastLBA = 131038
	want.PartitionTable.SectorSize = 512
	var opts struct {
		Partitions []struct{ Name, Type, UUID string }
	}
	if err := json.Unmarshal([]byte(imgDisk), &opts); err != nil {
		t.Fatal(err)
	}
	for i, p := range opts.Partitions {
		want.PartitionTable.Partitions = append(want.PartitionTable.Partitions, struct {
			Start int64  `json:"start"`
			Size  int64  `json:"size"`
			Type  string `json:"type"`
			UUID  string `json:"uuid"`
			Name  string `json:"name"`
		}{[]int64{2048, 4096, 73728}[i], []int64{2048, 69632, 57311}[i], strings.ToUpper(p.Type), strings.ToUpper(p.UUID), p.Name})
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sfdisk --json (-want +got):\n%s", diff)
	}

	// The protective MBR: one 0xEE entry from LBA 1 over the disk.
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if b[510] != 0x55 || b[511] != 0xaa || b[446+4] != 0xee {
		t.Errorf("no protective MBR: % x", b[446:512])
	}

	// Same options, same bytes.
	env2 := imgEnv(t, nil)
	img2 := imgNewDisk(t, env2)
	if a, b := imgSHA256(t, img), imgSHA256(t, img2); a != b {
		t.Errorf("two runs differ: %s %s", a, b)
	}
	// A run replaces an existing image atomically.
	imgRun(t, env2, "disk", imgDisk)
	imgLeftovers(t, env2.Tree, "disk.raw")
	if a := imgSHA256(t, filepath.Join(env2.Tree, "disk.raw")); a != imgSHA256(t, img) {
		t.Errorf("rerun differs")
	}
}
