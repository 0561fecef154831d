package blueprint

// DiskCustomization describes the partition table, as composer's
// customizations.disk. Sizes are bytes; in the file they are integers or
// strings with a unit ("20 GiB").
type DiskCustomization struct {
	// Type is the partition table type: "gpt", "dos" or empty for the
	// image type's default.
	Type        string                   `json:"type,omitempty" toml:"type,omitempty"`
	MinSize     uint64                   `json:"minsize,omitempty" toml:"minsize,omitempty" bp:"size"`
	Partitions  []PartitionCustomization `json:"partitions,omitempty" toml:"partitions,omitempty"`
	StartOffset uint64                   `json:"start_offset,omitempty" toml:"start_offset,omitempty" bp:"size"`
	// SectorSize is in bytes, a power of two; 0 means 512.
	SectorSize uint64 `json:"sector_size,omitempty" toml:"sector_size,omitempty"`
}

// PartitionCustomization is one partition. Type says what it holds and so
// which of the embedded structs' fields may be set:
//   - "plain" (or empty): a filesystem (FilesystemTypedCustomization);
//   - "lvm": a volume group (VGCustomization);
//   - "btrfs": a btrfs volume with subvolumes (BtrfsVolumeCustomization).
type PartitionCustomization struct {
	Type    string `json:"type,omitempty" toml:"type,omitempty"`
	MinSize uint64 `json:"minsize,omitempty" toml:"minsize,omitempty" bp:"size"`
	// PartType is the GPT partition type GUID, or two hex digits for dos.
	PartType string `json:"part_type,omitempty" toml:"part_type,omitempty"`
	// PartLabel is the GPT partition name (not the filesystem label).
	PartLabel string `json:"part_label,omitempty" toml:"part_label,omitempty"`
	// PartUUID is the GPT partition's unique GUID.
	PartUUID string `json:"part_uuid,omitempty" toml:"part_uuid,omitempty"`

	BtrfsVolumeCustomization
	VGCustomization
	FilesystemTypedCustomization
}

// FilesystemTypedCustomization is a filesystem on a plain partition or a
// logical volume. FSType is ext4, xfs or vfat; "swap" (and, on partitions,
// "none") take no mountpoint.
type FilesystemTypedCustomization struct {
	Mountpoint string `json:"mountpoint,omitempty" toml:"mountpoint,omitempty"`
	Label      string `json:"label,omitempty" toml:"label,omitempty"`
	FSType     string `json:"fs_type,omitempty" toml:"fs_type,omitempty"`
}

// VGCustomization is an LVM volume group.
type VGCustomization struct {
	// Name is generated when empty.
	Name           string            `json:"name,omitempty" toml:"name,omitempty"`
	LogicalVolumes []LVCustomization `json:"logical_volumes,omitempty" toml:"logical_volumes,omitempty"`
}

// LVCustomization is an LVM logical volume.
type LVCustomization struct {
	Name    string `json:"name,omitempty" toml:"name,omitempty"`
	MinSize uint64 `json:"minsize,omitempty" toml:"minsize,omitempty" bp:"size"`
	FilesystemTypedCustomization
}

// BtrfsVolumeCustomization is a btrfs volume.
type BtrfsVolumeCustomization struct {
	Subvolumes []BtrfsSubvolumeCustomization `json:"subvolumes,omitempty" toml:"subvolumes,omitempty"`
}

// BtrfsSubvolumeCustomization is a btrfs subvolume; Name is its path in the
// volume.
type BtrfsSubvolumeCustomization struct {
	Name       string `json:"name" toml:"name"`
	Mountpoint string `json:"mountpoint" toml:"mountpoint"`
}
