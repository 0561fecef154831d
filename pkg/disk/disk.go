// Package disk holds a whole disk layout — the partition table, plain
// partitions, LVM volume groups with logical volumes, btrfs volumes with
// subvolumes — and composer's rules for making one: the image type's own
// partitions (BIOS boot, ESP, root) merged with a blueprint's
// customizations.filesystem, customizations.disk and partitioning_mode,
// then placed on a disk that grows to hold them (Layout).
//
// The package knows no stage and no UUID source: lock fills in the
// identifiers (derived from the lockfile's id_seed) and turns a Table into
// stage options.
package disk

import (
	"fmt"
	"path"
	"sort"
	"strings"
)

// Sizes in bytes.
const (
	KiB = 1 << 10
	MiB = 1 << 20
	GiB = 1 << 30

	// Grain aligns partition sizes (and, with the default start, starts),
	// as composer and every partitioning tool do.
	Grain = MiB

	// LVMExtentSize is the volume groups' physical extent size: logical
	// volumes are whole extents.
	LVMExtentSize = 4 * MiB
	// LVMDataOffset is where a physical volume's first extent starts
	// (pe_start): the PV label and one metadata area come before it.
	// A volume group's partition is LVMDataOffset plus its extents.
	LVMDataOffset = MiB

	// MaxSize is the largest disk: an image file holds at most 2^63-1
	// bytes (off_t), rounded down to whole MiB.
	MaxSize = (1<<63 - 1) &^ (MiB - 1)
)

// Partition table types.
const (
	GPT = "gpt"
	DOS = "dos"
)

// File system types.
const (
	Ext4  = "ext4"
	XFS   = "xfs"
	VFAT  = "vfat"
	Swap  = "swap"
	Btrfs = "btrfs"
	// None is a partition left unformatted (composer's fs_type "none").
	None = "none"
)

// GPT partition type GUIDs (lower case) and their dos ids.
const (
	BIOSBootGUID  = "21686148-6449-6e6f-744e-656564454649"
	ESPGUID       = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
	DataGUID      = "0fc63daf-8483-4772-8e79-3d69d8477de4"
	XBootLDRGUID  = "bc13c2ff-59e6-4262-a352-b275fd6f7172"
	SwapGUID      = "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f"
	LVMGUID       = "e6d6d379-f507-44c2-a23c-238f2a3df928"
	DOSLinux      = "83"
	DOSSwap       = "82"
	DOSLVM        = "8e"
	DOSESP        = "ef"
	defaultFSType = Ext4
)

// Table is a disk: its partition table and what each partition holds.
type Table struct {
	// Type is GPT or DOS.
	Type string `json:"type"`
	// SectorSize is the logical sector size, 512 or 4096.
	SectorSize uint64 `json:"sector_size"`
	// StartOffset is composer's start_offset: how far after the first
	// grain (1 MiB, which holds the partition table) the first partition
	// starts.
	StartOffset uint64 `json:"start_offset,omitempty"`
	// MinSize is the least size of the disk (the image type's size, or
	// the blueprint's disk minsize if larger).
	MinSize uint64 `json:"minsize,omitempty"`
	// LegacyBoot says the disk boots from a PC BIOS as well: the image
	// type has a BIOS boot partition, which a gpt table keeps and a dos
	// table does without (GRUB's core image goes before the first
	// partition). Disks of 4096-byte sectors boot by UEFI only: GRUB's
	// boot.img reads 512-byte sectors.
	LegacyBoot bool `json:"legacy_boot,omitempty"`
	// Size is the disk's size; Layout sets it.
	Size uint64 `json:"size,omitempty"`
	// Partitions in table (and disk) order: the one holding "/" is last
	// and takes the room left.
	Partitions []Partition `json:"partitions"`
}

// Partition is one entry of the partition table. Exactly one of FS, VG
// and Btrfs is set, except on a BIOS boot partition (none).
type Partition struct {
	// ID names the partition's role, unique in the table ("bios", "esp",
	// "root", "boot", "var", "swap", "lvm"…): lock derives its UUIDs
	// from it, so the same role keeps the same ids across edits.
	ID string `json:"id"`
	// Name is the GPT partition name (part_label).
	Name string `json:"name,omitempty"`
	// Type is a GPT type GUID, lower case, or a dos type (two hex digits).
	Type string `json:"type"`
	// UUID is the GPT unique partition GUID when the blueprint gives one
	// (part_uuid); otherwise lock derives it.
	UUID string `json:"uuid,omitempty"`
	// Bootable sets the dos active flag (on the partition holding /boot).
	Bootable bool `json:"bootable,omitempty"`
	// MinSize is what the partition must hold at least.
	MinSize uint64 `json:"minsize"`
	// Start and Size, in bytes, are set by Layout.
	Start uint64 `json:"start,omitempty"`
	Size  uint64 `json:"size,omitempty"`

	FS    *Filesystem  `json:"fs,omitempty"`
	VG    *VolumeGroup `json:"vg,omitempty"`
	Btrfs *BtrfsVolume `json:"btrfs,omitempty"`

	// Field is the blueprint field the partition came from ("" for the
	// image type's own), for messages.
	Field string `json:"-"`
}

// Filesystem is a file system (or swap area) on a partition or a logical
// volume.
type Filesystem struct {
	// Type is Ext4, XFS, VFAT, Swap or None.
	Type       string `json:"type"`
	Label      string `json:"label,omitempty"`
	Mountpoint string `json:"mountpoint,omitempty"`
	// Options are the fstab options ("" is "defaults").
	Options string `json:"options,omitempty"`
	// UUID is set by lock: a UUID, or XXXX-XXXX for vfat.
	UUID string `json:"uuid,omitempty"`
}

// VolumeGroup is an LVM volume group whose one physical volume is the
// partition.
type VolumeGroup struct {
	Name           string          `json:"name"`
	LogicalVolumes []LogicalVolume `json:"logical_volumes"`
	// UUID is set by lock (the VG's id; lvmbtrfs formats it as LVM does).
	UUID string `json:"uuid,omitempty"`
}

// LogicalVolume is a linear logical volume of the group, in order.
type LogicalVolume struct {
	Name    string `json:"name"`
	MinSize uint64 `json:"minsize"`
	// Size is MinSize rounded up to whole extents; Layout sets it.
	Size uint64     `json:"size,omitempty"`
	FS   Filesystem `json:"fs"`
	// UUID is set by lock (the LV's id).
	UUID  string `json:"uuid,omitempty"`
	Field string `json:"-"`
}

// BtrfsVolume is a btrfs file system with subvolumes.
type BtrfsVolume struct {
	Label      string      `json:"label,omitempty"`
	UUID       string      `json:"uuid,omitempty"`
	Subvolumes []Subvolume `json:"subvolumes"`
}

// Subvolume is a btrfs subvolume: Name is its path in the volume.
type Subvolume struct {
	Name       string `json:"name"`
	Mountpoint string `json:"mountpoint"`
	Field      string `json:"-"`
}

// Mount is a mounted thing of the layout: a file system on a partition or
// logical volume, or a btrfs subvolume.
type Mount struct {
	Mountpoint string
	// FSType is the file system's type (Btrfs for a subvolume).
	FSType string
	// UUID is the file system's UUID (the btrfs volume's for a subvolume).
	UUID string
	// Options are the fstab options ("" is "defaults").
	Options string
	// Partition is the index of the partition in Table.Partitions.
	Partition int
	// LV is the logical volume (nil on a plain partition).
	LV *LogicalVolume
	// VG is the volume group of LV.
	VG *VolumeGroup
	// Subvolume is the btrfs subvolume (nil unless FSType is Btrfs).
	Subvolume *Subvolume
	// MinSize is what the blueprint asked for the mountpoint (0 when it
	// asked nothing): the room it has is at least this.
	MinSize uint64
}

// Mounts lists every mountpoint of the layout, sorted by mountpoint (so a
// parent comes before what is mounted below it).
func (t *Table) Mounts() []Mount {
	var out []Mount
	for i := range t.Partitions {
		p := &t.Partitions[i]
		switch {
		case p.FS != nil && p.FS.Mountpoint != "":
			out = append(out, Mount{Mountpoint: p.FS.Mountpoint, FSType: p.FS.Type, UUID: p.FS.UUID, Options: p.FS.Options, Partition: i, MinSize: p.MinSize})
		case p.VG != nil:
			for j := range p.VG.LogicalVolumes {
				lv := &p.VG.LogicalVolumes[j]
				if lv.FS.Mountpoint != "" {
					out = append(out, Mount{Mountpoint: lv.FS.Mountpoint, FSType: lv.FS.Type, UUID: lv.FS.UUID, Options: lv.FS.Options, Partition: i, LV: lv, VG: p.VG, MinSize: lv.MinSize})
				}
			}
		case p.Btrfs != nil:
			for j := range p.Btrfs.Subvolumes {
				sv := &p.Btrfs.Subvolumes[j]
				out = append(out, Mount{Mountpoint: sv.Mountpoint, FSType: Btrfs, UUID: p.Btrfs.UUID, Partition: i, Subvolume: sv})
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Mountpoint < out[j].Mountpoint })
	return out
}

// Find returns the mount of mountpoint mp, if the layout has it.
func (t *Table) Find(mp string) (Mount, bool) {
	for _, m := range t.Mounts() {
		if m.Mountpoint == mp {
			return m, true
		}
	}
	return Mount{}, false
}

// Root is the mount of "/"; every layout New makes has one.
func (t *Table) Root() Mount {
	m, _ := t.Find("/")
	return m
}

// Boot is the file system GRUB loads the kernel from: a separate /boot
// when there is one, else the root.
func (t *Table) Boot() Mount {
	if m, ok := t.Find("/boot"); ok {
		return m
	}
	return t.Root()
}

// Below lists the mountpoints mounted below mp (not mp itself, nor those
// below another of them, which go with it), as paths relative to mp with
// a leading slash: what a file system made from mp's directory leaves
// out, as they go on file systems of their own.
func (t *Table) Below(mp string) []string {
	prefix := strings.TrimSuffix(mp, "/") + "/"
	var out []string
	for _, m := range t.Mounts() { // sorted: parents first
		if m.Mountpoint == mp || !strings.HasPrefix(m.Mountpoint, prefix) {
			continue
		}
		rel := "/" + strings.TrimPrefix(m.Mountpoint, prefix)
		covered := false
		for _, o := range out {
			covered = covered || strings.HasPrefix(rel, o+"/")
		}
		if !covered {
			out = append(out, rel)
		}
	}
	return out
}

// Features say what tools a layout needs (in the build root) and what the
// booted system needs (in the initramfs).
type Features struct {
	Ext4, XFS, VFAT, Swap, LVM, Btrfs bool
}

// Features reports what the layout holds.
func (t *Table) Features() Features {
	var f Features
	set := func(typ string) {
		switch typ {
		case Ext4:
			f.Ext4 = true
		case XFS:
			f.XFS = true
		case VFAT:
			f.VFAT = true
		case Swap:
			f.Swap = true
		}
	}
	for _, p := range t.Partitions {
		switch {
		case p.FS != nil:
			set(p.FS.Type)
		case p.VG != nil:
			f.LVM = true
			for _, lv := range p.VG.LogicalVolumes {
				set(lv.FS.Type)
			}
		case p.Btrfs != nil:
			f.Btrfs = true
		}
	}
	return f
}

// Plain reports whether every partition is a plain file system (or a BIOS
// boot partition): no LVM, no btrfs.
func (t *Table) Plain() bool {
	for _, p := range t.Partitions {
		if p.VG != nil || p.Btrfs != nil {
			return false
		}
	}
	return true
}

// holdsRoot reports whether p holds "/".
func (p *Partition) holdsRoot() bool {
	switch {
	case p.FS != nil:
		return p.FS.Mountpoint == "/"
	case p.VG != nil:
		for _, lv := range p.VG.LogicalVolumes {
			if lv.FS.Mountpoint == "/" {
				return true
			}
		}
	case p.Btrfs != nil:
		for _, sv := range p.Btrfs.Subvolumes {
			if sv.Mountpoint == "/" {
				return true
			}
		}
	}
	return false
}

// mountpoints lists p's mountpoints.
func (p *Partition) mountpoints() []string {
	var out []string
	switch {
	case p.FS != nil && p.FS.Mountpoint != "":
		out = append(out, p.FS.Mountpoint)
	case p.VG != nil:
		for _, lv := range p.VG.LogicalVolumes {
			if lv.FS.Mountpoint != "" {
				out = append(out, lv.FS.Mountpoint)
			}
		}
	case p.Btrfs != nil:
		for _, sv := range p.Btrfs.Subvolumes {
			out = append(out, sv.Mountpoint)
		}
	}
	return out
}

// alignUp rounds n up to a multiple of a; ok is false on overflow.
func alignUp(n, a uint64) (uint64, bool) {
	r := (n + a - 1) / a * a
	return r, r >= n && n <= MaxSize
}

// nameFor is the role name of a mountpoint: "/var/log" → "var-log", "/"
// → "root".
func nameFor(mp string) string {
	if mp == "/" {
		return "root"
	}
	return strings.ReplaceAll(strings.Trim(path.Clean(mp), "/"), "/", "-")
}

// lvNameFor is composer's name for a logical volume of mountpoint mp:
// "/var/log" → "var_loglv", "/" → "rootlv".
func lvNameFor(mp string) string {
	if mp == "/" {
		return "rootlv"
	}
	return strings.ReplaceAll(strings.Trim(mp, "/"), "/", "_") + "lv"
}

// labelFor cuts a role name to the label length fsType allows.
func labelFor(name, fsType string) string {
	n := map[string]int{Ext4: 16, XFS: 12, VFAT: 11}[fsType]
	if n == 0 {
		return ""
	}
	if len(name) > n {
		name = name[:n]
	}
	return name
}

func (p *Partition) String() string { return fmt.Sprintf("partition %s", p.ID) }

// Least sizes of the file systems the build root's tools make with their
// defaults: a smaller minsize is raised to these (a mountpoint then has
// at least what it asked for).
var fsMin = map[string]uint64{
	Ext4: 8 * MiB,
	// xfsprogs 5.19 and later refuse file systems under 300 MB.
	XFS: 300 * MiB,
	// FAT32 needs 65525 clusters.
	VFAT: 33 * MiB,
	Swap: MiB,
}

// FSMin is the least size of a file system of type typ ("" for none).
func FSMin(typ string) uint64 { return fsMin[typ] }

// headerSize is what the partition table takes before the first grain:
// for GPT the protective MBR, the header and 128 entries of 128 bytes.
func (t *Table) headerSize() uint64 {
	if t.Type == DOS {
		return t.SectorSize
	}
	return 2*t.SectorSize + 128*128
}

// FooterSize is what the partition table takes at the end of the disk:
// GPT's backup entries and header; nothing for dos.
func (t *Table) FooterSize() uint64 {
	if t.Type == DOS {
		return 0
	}
	return t.SectorSize + 128*128
}

// content is the room p's payload needs, before alignment.
func (p *Partition) content() (uint64, bool) {
	n := p.MinSize
	switch {
	case p.FS != nil:
		n = max(n, FSMin(p.FS.Type))
	case p.VG != nil:
		sum := uint64(LVMDataOffset)
		for i := range p.VG.LogicalVolumes {
			lv := &p.VG.LogicalVolumes[i]
			sz, ok := alignUp(max(lv.MinSize, FSMin(lv.FS.Type)), LVMExtentSize)
			if !ok || sum+sz < sum {
				return 0, false
			}
			lv.Size = sz
			sum += sz
		}
		n = max(n, sum)
	case p.Btrfs != nil:
		n = max(n, btrfsMin)
	}
	return n, n <= MaxSize
}

// Layout places the partitions: the first at the first grain plus the
// start offset, each after the one before with its size rounded up to
// the grain, the last (the one holding "/") taking what is left of a disk
// of at least MinSize, grown to hold them all. Logical volumes get whole
// extents.
func (t *Table) Layout() error {
	tooBig := fmt.Errorf("the layout does not fit a disk: an image file holds at most %d bytes (8 EiB)", uint64(MaxSize))
	if len(t.Partitions) == 0 {
		return fmt.Errorf("no partitions")
	}
	start, _ := alignUp(t.headerSize(), Grain)
	start += t.StartOffset
	last := len(t.Partitions) - 1
	for i := range t.Partitions {
		p := &t.Partitions[i]
		n, ok := p.content()
		if !ok {
			return tooBig
		}
		p.Start = start
		if i == last {
			end, ok := alignUp(start+n+t.FooterSize(), Grain)
			if !ok || start+n < start {
				return tooBig
			}
			min, _ := alignUp(t.MinSize, Grain)
			t.Size = max(min, end)
			if t.Size > MaxSize {
				return tooBig
			}
			p.Size = t.Size - start - t.FooterSize()
			return nil
		}
		n, ok = alignUp(n, Grain)
		if !ok || start+n < start || start+n > MaxSize {
			return tooBig
		}
		p.Size = n
		start += n
	}
	return nil
}
