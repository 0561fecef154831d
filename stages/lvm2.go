package stages

// The LVM2 on-disk format, written by hand: no Go library writes LVM2
// metadata, and the lvm tools need device-mapper and a block device (a loop
// device) for what is, for a new volume group, three small blocks of
// bytes. What is written here is checked by the real tools (pvck, vgs,
// lvs, vgchange) in the tests. The format, as lvm2's lib/format_text and
// lib/label describe it:
//
//   - sector 1 of the physical volume: the label header ("LABELONE", its
//     sector, a CRC, "LVM2 001") and the PV header (PV id, device size, the
//     data area from pe_start, the metadata area, an extension with the
//     "in use" flag);
//   - at 4 KiB, the metadata area: a header (CRC, magic, where the area is,
//     where the current metadata text is and its CRC), then the volume
//     group's metadata as text, NUL-terminated;
//   - from pe_start (1 MiB), the physical extents; each logical volume here
//     is one linear segment of consecutive extents, in the order given.
//
// Numbers are little-endian; the CRC is lvm2's: CRC-32 (IEEE, reflected)
// seeded with 0xf597a6cf and not inverted at the end.

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// LVM2 writes an LVM2 physical volume into a partition of a disk image, with
// one volume group whose logical volumes are linear segments laid out one
// after the other from the first extent. File systems are then made in the
// logical volumes by the mkfs stages, at the offsets LVM2Layout gives.
type LVM2 struct {
	// Filename is the image in the output directory.
	Filename string `json:"filename"`
	// Partition is the 1-based GPT partition number of the physical volume.
	Partition int `json:"partition"`
	// VolumeGroup is the volume group's name.
	VolumeGroup string `json:"volume_group"`
	// VGID and PVID are LVM ids (32 characters of [0-9A-Za-z] in the
	// dashed 6-4-4-4-4-4-6 form), derived from the lockfile.
	VGID string `json:"vg_id"`
	PVID string `json:"pv_id"`
	// ExtentSize is the physical extent size in bytes: a power of two,
	// at least 1 MiB (lvm's default is 4 MiB).
	ExtentSize int64 `json:"extent_size"`
	// CreationHost is recorded as the host that made the volume group and
	// its logical volumes (the image's host name).
	CreationHost string `json:"creation_host"`
	// LogicalVolumes are laid out in this order.
	LogicalVolumes []LVM2Volume `json:"logical_volumes"`
}

// LVM2Volume is one logical volume.
type LVM2Volume struct {
	Name string `json:"name"`
	// ID is the logical volume's LVM id.
	ID string `json:"id"`
	// Size is in bytes, a multiple of the extent size.
	Size int64 `json:"size"`
}

const (
	// lvmMDAStart is where the metadata area starts in the physical volume.
	lvmMDAStart = 4096
	// lvmPEStart is where the first physical extent starts (lvm's default
	// data alignment).
	lvmPEStart = 1 << 20
	// lvmInitialCRC seeds lvm2's CRC-32.
	lvmInitialCRC = 0xf597a6cf
	// lvmMagic marks a metadata area header.
	lvmMagic = " LVM2 x[5A%r0N*>"
)

func init() { register[LVM2]("lvm2", 1) }

// lvmNameRe is what lvm accepts as a VG or LV name (lib/misc/lvm-string.c),
// less names it reserves.
var lvmNameRe = regexp.MustCompile(`^[A-Za-z0-9+_.][A-Za-z0-9+_.-]*$`)

func checkLVMName(field, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%s: empty", field)
	case len(name) > 127:
		return fmt.Errorf("%s: %q is longer than 127 characters", field, name)
	case name == "." || name == "..":
		return fmt.Errorf("%s: %q is not a name", field, name)
	case !lvmNameRe.MatchString(name):
		return fmt.Errorf("%s: %q: only letters, digits and + _ . - are allowed, not a leading -", field, name)
	case strings.HasPrefix(name, "snapshot") || strings.HasPrefix(name, "pvmove"):
		return fmt.Errorf("%s: %q: names starting with snapshot or pvmove are reserved by lvm", field, name)
	}
	for _, r := range []string{"_cdata", "_cmeta", "_corig", "_mimage", "_mlog", "_pmspare", "_rimage", "_rmeta", "_tdata", "_tmeta", "_vorigin", "_vdata"} {
		if strings.Contains(name, r) {
			return fmt.Errorf("%s: %q: names containing %s are reserved by lvm", field, name, r)
		}
	}
	return nil
}

var lvmIDRe = regexp.MustCompile(`^[0-9A-Za-z]{6}-[0-9A-Za-z]{4}-[0-9A-Za-z]{4}-[0-9A-Za-z]{4}-[0-9A-Za-z]{4}-[0-9A-Za-z]{4}-[0-9A-Za-z]{6}$`)

func checkLVMID(field, id string) error {
	if !lvmIDRe.MatchString(id) {
		return fmt.Errorf("%s: %q is not an LVM id (xxxxxx-xxxx-xxxx-xxxx-xxxx-xxxx-xxxxxx of letters and digits)", field, id)
	}
	return nil
}

// LVMID derives an LVM id from seed (for example a UUID made from the
// lockfile's digest): the same seed gives the same id.
func LVMID(seed string) string {
	const chars = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	sum := sha256.Sum256([]byte("lvm2-id\x00" + seed))
	var b strings.Builder
	for i := 0; i < 32; i++ {
		switch i {
		case 6, 10, 14, 18, 22, 26:
			b.WriteByte('-')
		}
		b.WriteByte(chars[int(sum[i])%len(chars)])
	}
	return b.String()
}

func (s *LVM2) validate() error {
	if err := checkFilename("filename", s.Filename); err != nil {
		return err
	}
	if err := checkPartitionNumber("partition", s.Partition); err != nil {
		return err
	}
	if err := checkLVMName("volume_group", s.VolumeGroup); err != nil {
		return err
	}
	if err := checkLVMID("vg_id", s.VGID); err != nil {
		return err
	}
	if err := checkLVMID("pv_id", s.PVID); err != nil {
		return err
	}
	if s.ExtentSize < 1<<20 || s.ExtentSize&(s.ExtentSize-1) != 0 || s.ExtentSize > 1<<30 {
		return fmt.Errorf("extent_size: %d is not a power of two from 1 MiB to 1 GiB", s.ExtentSize)
	}
	if s.CreationHost == "" || strings.ContainsAny(s.CreationHost, "\"\\\n\x00") {
		return fmt.Errorf("creation_host: %q is empty or has quotes, backslashes or newlines", s.CreationHost)
	}
	if len(s.LogicalVolumes) == 0 {
		return fmt.Errorf("logical_volumes: none")
	}
	names := map[string]int{}
	ids := map[string]string{s.VGID: "vg_id", s.PVID: "pv_id"}
	if s.VGID == s.PVID {
		return fmt.Errorf("pv_id: %s is the vg_id too", s.PVID)
	}
	for i, lv := range s.LogicalVolumes {
		field := fmt.Sprintf("logical_volumes[%d]", i)
		if err := checkLVMName(field+".name", lv.Name); err != nil {
			return err
		}
		if j, dup := names[lv.Name]; dup {
			return fmt.Errorf("%s.name: %q is logical_volumes[%d]'s name too", field, lv.Name, j)
		}
		names[lv.Name] = i
		if err := checkLVMID(field+".id", lv.ID); err != nil {
			return err
		}
		if prev, dup := ids[lv.ID]; dup {
			return fmt.Errorf("%s.id: %s is already %s", field, lv.ID, prev)
		}
		ids[lv.ID] = field + ".id"
		if lv.Size <= 0 || lv.Size%s.ExtentSize != 0 {
			return fmt.Errorf("%s.size: %d is not a positive multiple of the extent size %d", field, lv.Size, s.ExtentSize)
		}
	}
	return nil
}

// LVM2Region is where a logical volume's bytes are, relative to the start
// of the physical volume's partition.
type LVM2Region struct {
	Offset, Size int64
}

// Layout returns where each logical volume lies in the partition, by name.
func (s *LVM2) Layout() map[string]LVM2Region {
	out := map[string]LVM2Region{}
	off := int64(lvmPEStart)
	for _, lv := range s.LogicalVolumes {
		out[lv.Name] = LVM2Region{Offset: off, Size: lv.Size}
		off += lv.Size
	}
	return out
}

// MinPartitionSize is the smallest partition the volume group fits in.
func (s *LVM2) MinPartitionSize() int64 {
	n := int64(lvmPEStart)
	for _, lv := range s.LogicalVolumes {
		n += lv.Size
	}
	return n
}

// Run writes the physical volume's label, header and metadata on a copy of
// the image and renames the copy over it. The extents themselves are not
// touched: the partition is sparse, and file systems come later.
func (s *LVM2) Run(ctx context.Context, env *Env) error {
	part, err := findImagePartition(env, s.Filename, s.Partition)
	if err != nil {
		return err
	}
	if part.Size < s.MinPartitionSize() {
		return fmt.Errorf("partition %d: %d bytes are too few for volume group %s (%d needed)", s.Partition, part.Size, s.VolumeGroup, s.MinPartitionSize())
	}
	meta := s.metadata(part.Size, env.SourceDateEpoch)
	mdaSize := int64(lvmPEStart - lvmMDAStart)
	if int64(len(meta))+512 > mdaSize {
		return fmt.Errorf("volume group %s: metadata of %d bytes does not fit the %d-byte metadata area", s.VolumeGroup, len(meta), mdaSize)
	}
	label := s.label(part.Size, mdaSize)
	mdaHeader := lvmMDAHeader(mdaSize, meta)
	return updateImage(part.img, func(tmpBase string) error {
		f, err := os.OpenFile(filepath.Join(filepath.Dir(part.img), tmpBase), os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("writing volume group %s: %w", s.VolumeGroup, err)
		}
		defer f.Close()
		// The first 4 KiB and the metadata area's first sectors are zeroed
		// first: a label or metadata left from anything else must not be
		// read as ours.
		for _, w := range []struct {
			off  int64
			data []byte
		}{
			{0, make([]byte, lvmMDAStart)},
			{512, label},
			{lvmMDAStart, mdaHeader},
			{lvmMDAStart + 512, meta},
		} {
			if _, err := f.WriteAt(w.data, part.Start+w.off); err != nil {
				return fmt.Errorf("writing volume group %s: %w", s.VolumeGroup, err)
			}
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("writing volume group %s: %w", s.VolumeGroup, err)
		}
		return nil
	})
}

// lvmCRC is lvm2's calc_crc.
func lvmCRC(b []byte) uint32 {
	return ^crc32.Update(^uint32(lvmInitialCRC), crc32.IEEETable, b)
}

// label is sector 1 of the physical volume.
func (s *LVM2) label(devSize, mdaSize int64) []byte {
	b := make([]byte, 512)
	le := binary.LittleEndian
	copy(b[0:], "LABELONE")
	le.PutUint64(b[8:], 1) // the sector the label is in
	le.PutUint32(b[20:], 32)
	copy(b[24:], "LVM2 001")
	// pv_header
	copy(b[32:], strings.ReplaceAll(s.PVID, "-", ""))
	le.PutUint64(b[64:], uint64(devSize))
	// data areas: one, from pe_start to the end (size 0); then the end mark
	le.PutUint64(b[72:], lvmPEStart)
	le.PutUint64(b[80:], 0)
	// b[88:104] end of data areas
	// metadata areas: one, then the end mark
	le.PutUint64(b[104:], lvmMDAStart)
	le.PutUint64(b[112:], uint64(mdaSize))
	// b[120:136] end of metadata areas
	// pv_header_extension: version 2, flags PV_EXT_USED (in a VG), then an
	// empty list of bootloader areas.
	le.PutUint32(b[136:], 2)
	le.PutUint32(b[140:], 1)
	// b[144:160] end of bootloader areas
	le.PutUint32(b[16:], lvmCRC(b[20:]))
	return b
}

// lvmMDAHeader is the metadata area's header, pointing at meta right after
// it.
func lvmMDAHeader(mdaSize int64, meta []byte) []byte {
	b := make([]byte, 512)
	le := binary.LittleEndian
	copy(b[4:], lvmMagic)
	le.PutUint32(b[20:], 1) // version
	le.PutUint64(b[24:], lvmMDAStart)
	le.PutUint64(b[32:], uint64(mdaSize))
	// raw_locn: offset from the area's start, size, checksum, flags
	le.PutUint64(b[40:], 512)
	le.PutUint64(b[48:], uint64(len(meta)))
	le.PutUint32(b[56:], lvmCRC(meta))
	// b[64:88] end of raw_locns
	le.PutUint32(b[0:], lvmCRC(b[4:]))
	return b
}

// metadata is the volume group's metadata text, as lvm writes it,
// NUL-terminated. The time is the lockfile's source epoch.
func (s *LVM2) metadata(devSize, epoch int64) []byte {
	sectors := func(n int64) int64 { return n / 512 }
	peCount := (devSize - lvmPEStart) / s.ExtentSize
	stamp := time.Unix(epoch, 0).UTC().Format("Mon Jan _2 15:04:05 2006")
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("%s {\n", s.VolumeGroup)
	w("id = %q\n", s.VGID)
	w("seqno = 1\n")
	w("format = \"lvm2\"\n")
	w("status = [\"RESIZEABLE\", \"READ\", \"WRITE\"]\n")
	w("flags = []\n")
	w("extent_size = %d\n", sectors(s.ExtentSize))
	w("max_lv = 0\nmax_pv = 0\nmetadata_copies = 0\n\n")
	w("physical_volumes {\n\npv0 {\n")
	w("id = %q\n", s.PVID)
	w("device = \"/dev/disk/by-id/lvm-pv-uuid-%s\"\n\n", s.PVID)
	w("status = [\"ALLOCATABLE\"]\nflags = []\n")
	w("dev_size = %d\n", sectors(devSize))
	w("pe_start = %d\n", sectors(lvmPEStart))
	w("pe_count = %d\n}\n}\n\n", peCount)
	w("logical_volumes {\n")
	var start int64
	for _, lv := range s.LogicalVolumes {
		n := lv.Size / s.ExtentSize
		w("\n%s {\n", lv.Name)
		w("id = %q\n", lv.ID)
		w("status = [\"READ\", \"WRITE\", \"VISIBLE\"]\nflags = []\n")
		w("creation_time = %d\n", epoch)
		w("creation_host = %q\n", s.CreationHost)
		w("segment_count = 1\n\nsegment1 {\n")
		w("start_extent = 0\nextent_count = %d\n\n", n)
		w("type = \"striped\"\nstripe_count = 1\n\n")
		w("stripes = [\n\"pv0\", %d\n]\n}\n}\n", start)
		start += n
	}
	w("}\n\n}\n")
	w("# Generated by ibuild: %s\n\n", stamp)
	w("contents = \"Text Format Volume Group\"\nversion = 1\n\n")
	w("description = \"\"\n\n")
	w("creation_host = %q\n", s.CreationHost)
	w("creation_time = %d\n", epoch)
	return append([]byte(b.String()), 0)
}

// validate checks a region of a partition; nil is the whole partition.
func (r *LVM2Region) validate(field string) error {
	switch {
	case r == nil:
		return nil
	case r.Offset < 0 || r.Offset%4096 != 0:
		return fmt.Errorf("%s.offset: %d is not a non-negative multiple of 4096", field, r.Offset)
	case r.Size <= 0 || r.Size%4096 != 0:
		return fmt.Errorf("%s.size: %d is not a positive multiple of 4096", field, r.Size)
	}
	return nil
}

// region narrows the partition to r (a logical volume); nil keeps it whole.
func (p imagePartition) region(n int, r *LVM2Region) (imagePartition, error) {
	if r == nil {
		return p, nil
	}
	if r.Offset+r.Size > p.Size {
		return p, fmt.Errorf("partition %d: volume at %d+%d ends after the partition's %d bytes", n, r.Offset, r.Size, p.Size)
	}
	p.Start += r.Offset
	p.Size = r.Size
	return p, nil
}
