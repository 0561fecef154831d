package disk_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
	"github.com/image-builder-action/image-builder-action/pkg/disk"
	"github.com/image-builder-action/image-builder-action/pkg/testutil"
)

// x86 is debian-12's x86_64 table with the qcow2 type's size.
func x86() disk.Base {
	return disk.Base{Size: 4 * disk.GiB, Partitions: []disk.Partition{
		{ID: "bios", Name: "bios", Type: disk.BIOSBootGUID, MinSize: disk.MiB},
		{ID: "esp", Name: "esp", Type: disk.ESPGUID, MinSize: 127 * disk.MiB, FS: &disk.Filesystem{Type: disk.VFAT, Label: "ESP", Mountpoint: "/boot/efi", Options: "umask=0077"}},
		{ID: "root", Name: "root", Type: "4f68bce3-e8cd-4db1-96e7-fbcaf984b709", FS: &disk.Filesystem{Type: disk.Ext4, Label: "root", Mountpoint: "/"}},
	}}
}

func parse(t *testing.T, name, src string) *blueprint.Blueprint {
	t.Helper()
	bp, err := blueprint.Parse(name, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return bp
}

// The layouts of composer's published examples and of small blueprints,
// as golden JSON (testdata/NAME.json).
func TestNewGolden(t *testing.T) {
	published := "../../testdata/blueprints/composer/published/"
	cases := map[string]string{}
	for _, f := range []string{"images-partitioning-plain.json", "images-partitioning-lvm.json", "images-partitioning-lvm-noswap.json",
		"images-partitioning-dos-lvm.json", "images-partitioning-btrfs.json", "images-filesystem-customizations.json",
		"images-filesystem-no-explicit-rootfs.json"} {
		b, err := os.ReadFile(published + f)
		if err != nil {
			t.Fatal(err)
		}
		// The customizations as published; the name and version as
		// this product's blueprints want them (semver).
		var doc map[string]any
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		doc["name"], doc["version"] = "x", "0.0.1"
		b, _ = json.Marshal(doc)
		cases[strings.TrimSuffix(strings.TrimPrefix(f, "images-"), ".json")] = string(b)
	}
	for name, src := range map[string]string{
		"default":        `name = "x"`,
		"plain-var-home": "name = \"x\"\n[[customizations.disk.partitions]]\nmountpoint = \"/var\"\nfs_type = \"xfs\"\nminsize = \"1 GiB\"\n[[customizations.disk.partitions]]\nmountpoint = \"/home\"\nfs_type = \"ext4\"\nlabel = \"home\"\nminsize = \"512 MiB\"\n",
		"dos":            "name = \"x\"\n[customizations.disk]\ntype = \"dos\"\n[[customizations.disk.partitions]]\nmountpoint = \"/var\"\nfs_type = \"ext4\"\nminsize = \"1 GiB\"\n",
		"boot":           "name = \"x\"\n[[customizations.filesystem]]\nmountpoint = \"/boot\"\nminsize = \"600 MiB\"\n",
		"sector4096":     "name = \"x\"\n[customizations.disk]\nsector_size = 4096\nstart_offset = \"8 MiB\"\nminsize = \"6 GiB\"\n[[customizations.disk.partitions]]\nfs_type = \"swap\"\nminsize = \"256 MiB\"\n[[customizations.disk.partitions]]\nmountpoint = \"/\"\nfs_type = \"ext4\"\nminsize = \"2 GiB\"\n",
		"mode-lvm":       "name = \"x\"\n[customizations]\npartitioning_mode = \"lvm\"\n[[customizations.filesystem]]\nmountpoint = \"/var/log\"\nminsize = \"1 GiB\"\n",
		"mode-auto-lvm":  "name = \"x\"\n[customizations]\npartitioning_mode = \"auto-lvm\"\n[[customizations.filesystem]]\nmountpoint = \"/\"\nminsize = \"5 GiB\"\n",
		// Composer's least sizes: /var/log asks for 128 MiB and gets
		// 1 GiB, /boot asks for 300 MiB and gets 500 MiB.
		"mode-raw-small": "name = \"x\"\n[customizations]\npartitioning_mode = \"raw\"\n[[customizations.filesystem]]\nmountpoint = \"/boot\"\nminsize = \"300 MiB\"\n[[customizations.filesystem]]\nmountpoint = \"/var/log\"\nminsize = \"128 MiB\"\n",
		// No mode: auto-lvm, as composer's default; a new mountpoint
		// moves the root to LVM and becomes a logical volume of 1 GiB.
		"mode-default-small": "name = \"x\"\n[[customizations.filesystem]]\nmountpoint = \"/var/log\"\nminsize = \"128 MiB\"\n",
	} {
		cases[name] = src
	}
	for name, src := range cases {
		t.Run(name, func(t *testing.T) {
			ext := ".toml"
			if strings.HasPrefix(strings.TrimSpace(src), "{") {
				ext = ".json"
			}
			bp := parse(t, name+ext, src)
			tbl, errs := disk.New(x86(), bp.Customizations)
			if errs != nil {
				t.Fatalf("%v", errs)
			}
			checkInvariants(t, tbl, bp.Customizations)
			got, err := json.MarshalIndent(tbl, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			testutil.Golden(t, filepath.Join("testdata", name+".json"), append(got, '\n'))
		})
	}
}

// checkInvariants: partitions in order, aligned, inside the disk; every
// mountpoint asked for is there with at least its minsize.
func checkInvariants(t *testing.T, tbl *disk.Table, cu *blueprint.Customizations) {
	t.Helper()
	end := uint64(0)
	for i, p := range tbl.Partitions {
		if p.Start < end || p.Start%tbl.SectorSize != 0 || p.Size%tbl.SectorSize != 0 {
			t.Errorf("partition %d (%s) at %d+%d overlaps or is not sector aligned (previous end %d)", i, p.ID, p.Start, p.Size, end)
		}
		end = p.Start + p.Size
		if p.Size < p.MinSize {
			t.Errorf("partition %s: %d bytes < minsize %d", p.ID, p.Size, p.MinSize)
		}
	}
	if end+tbl.FooterSize() != tbl.Size {
		t.Errorf("last partition ends at %d, disk is %d with a footer of %d", end, tbl.Size, tbl.FooterSize())
	}
	if tbl.Root().Mountpoint != "/" {
		t.Error("no root")
	}
	if cu == nil {
		return
	}
	want := map[string]uint64{}
	for _, fs := range cu.Filesystem {
		want[fs.Mountpoint] = fs.MinSize
	}
	if cu.Disk != nil {
		for _, p := range cu.Disk.Partitions {
			if p.Mountpoint != "" {
				want[p.Mountpoint] = p.MinSize
			}
			for _, lv := range p.LogicalVolumes {
				if lv.Mountpoint != "" {
					want[lv.Mountpoint] = lv.MinSize
				}
			}
			for _, sv := range p.Subvolumes {
				want[sv.Mountpoint] = 0
			}
		}
	}
	for mp, min := range want {
		m, ok := tbl.Find(mp)
		if !ok {
			t.Errorf("mountpoint %s is missing", mp)
			continue
		}
		have := tbl.Partitions[m.Partition].Size
		if m.LV != nil {
			have = m.LV.Size
		}
		if have < min {
			t.Errorf("mountpoint %s: %d bytes < minsize %d", mp, have, min)
		}
	}
}

func TestNewRefusals(t *testing.T) {
	for _, tc := range []struct {
		name, src, field, msg string
	}{
		{"huge minsize", "name = \"x\"\n[[customizations.filesystem]]\nmountpoint = \"/var\"\nminsize = 18446744073709551615\n", "customizations.filesystem[0].minsize", "cannot be a disk"},
		{"sum too big", "name = \"x\"\n[[customizations.filesystem]]\nmountpoint = \"/var\"\nminsize = 5764607523034234880\n[[customizations.filesystem]]\nmountpoint = \"/home\"\nminsize = 5764607523034234880\n", "customizations.filesystem[0].minsize", "does not fit a disk"},
		{"sector size", "name = \"x\"\n[customizations.disk]\nsector_size = 2048\n", "customizations.disk.sector_size", "512- or 4096-byte"},
		{"start offset", "name = \"x\"\n[customizations.disk]\nsector_size = 4096\nstart_offset = 512\n", "customizations.disk.start_offset", "sectors"},
		{"dos too many", "name = \"x\"\n[customizations.disk]\ntype = \"dos\"\n[[customizations.disk.partitions]]\nmountpoint = \"/var\"\nfs_type = \"ext4\"\nminsize = 1000000\n[[customizations.disk.partitions]]\nmountpoint = \"/home\"\nfs_type = \"ext4\"\nminsize = 1000000\n[[customizations.disk.partitions]]\nmountpoint = \"/srv\"\nfs_type = \"ext4\"\nminsize = 1000000\n", "customizations.disk.partitions", "4 partitions"},
		{"mode", "name = \"x\"\n[customizations]\npartitioning_mode = \"zfs\"\n", "customizations.partitioning_mode", "unknown partitioning mode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bp, err := blueprint.Parse("x.toml", []byte(tc.src))
			if err != nil {
				// The blueprint's own checks refuse some first; the
				// layout must still refuse them when called directly.
				t.Logf("blueprint: %v", err)
				if bp == nil {
					t.Skip()
				}
			}
			_, errs := disk.New(x86(), bp.Customizations)
			for _, e := range errs {
				if e.Field == tc.field && strings.Contains(e.Msg, tc.msg) {
					return
				}
			}
			t.Errorf("want a refusal of %s containing %q, got %v", tc.field, tc.msg, errs)
		})
	}
}
