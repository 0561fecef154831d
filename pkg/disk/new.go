package disk

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
)

// Base is what the image type lays out on its own.
type Base struct {
	// Partitions are the arch's partition table (imagedefs): a BIOS boot
	// partition (x86_64), the ESP, the root last. Their IDs are their
	// names there.
	Partitions []Partition
	// Size is the image type's disk size.
	Size uint64
}

// FieldError is a refusal of a blueprint field.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Partitioning modes (customizations.partitioning_mode).
const (
	ModeRaw     = "raw"
	ModeLVM     = "lvm"
	ModeAutoLVM = "auto-lvm"
	ModeBtrfs   = "btrfs"
)

// Default sizes, composer's.
const (
	// bootSize is a /boot the layout adds itself (root on LVM or btrfs).
	bootSize = 512 * MiB
	// rootDirs is what "/" needs with /usr in it (1 GiB for "/", 2 GiB
	// for "/usr"); rootOnly without /usr.
	rootDirs = 3 * GiB
	rootOnly = 1 * GiB
	// btrfsMin is the least btrfs volume mkfs.btrfs makes with its
	// defaults (mixed block groups off).
	btrfsMin = 256 * MiB
	// plainRootMin is the least room a plain root is given.
	plainRootMin = 64 * MiB
	// swapMin is the least swap area mkswap makes (10 pages) and more.
	swapMin = MiB
)

// New makes the layout of an image type with base partitions for the
// customizations (nil for none), as composer does:
//
//   - customizations.filesystem: "/" sizes the root, "/boot/efi" the ESP,
//     "/boot" and any other mountpoint become partitions (partitioning
//     mode raw, the default here) or logical volumes of the root's volume
//     group (lvm; auto-lvm, the default as in composer, when a mountpoint
//     is new, /boot included) or subvolumes of the root's btrfs volume
//     (btrfs). Each mountpoint is given at least composer's minimum
//     (composerMin: 1 GiB, /boot 500 MiB), whatever its minsize says.
//   - customizations.disk with partitions: the table is the blueprint's
//     partitions after the type's BIOS boot partition (gpt only) and ESP
//     (or the blueprint's /boot/efi partition in its place); a root is
//     added when none is given (a logical volume of the volume group, a
//     subvolume of the btrfs volume, else a plain partition) and a /boot
//     when the root is on LVM or btrfs. The partition holding "/" goes
//     last and takes the room left.
//   - customizations.disk's type, sector_size, start_offset and minsize
//     apply to either.
//
// Then Layout places the partitions. The refusals name blueprint fields.
func New(base Base, cu *blueprint.Customizations) (*Table, []*FieldError) {
	b := &builder{t: &Table{Type: GPT, SectorSize: 512, MinSize: base.Size}}
	if cu == nil {
		cu = &blueprint.Customizations{}
	}
	dk := cu.Disk
	if dk != nil {
		b.tableOptions(dk)
	}
	b.defaultRoot = defaultRoot(base)
	b.addBase(base.Partitions)
	switch {
	case dk != nil && len(dk.Partitions) > 0:
		b.custom(dk)
	default:
		b.filesystems(cu.Filesystem, cu.PartitioningMode)
	}
	if len(b.errs) > 0 {
		return nil, b.errs
	}
	b.finish()
	if len(b.errs) > 0 {
		return nil, b.errs
	}
	if err := b.t.Layout(); err != nil {
		field := b.sizeField
		if field == "" {
			field = "customizations"
		}
		b.fail(field, "%v", err)
		return nil, b.errs
	}
	return b.t, nil
}

type builder struct {
	t    *Table
	errs []*FieldError
	ids  map[string]bool
	// baseIDs are the IDs of the image type's partitions.
	baseIDs map[string]bool
	// usrSeparate says /usr is its own file system, so the root needs
	// less room.
	usrSeparate bool
	// rootMin is the blueprint's "/" minsize, rootField its field.
	rootMin   uint64
	rootField string
	// sizeField is the blueprint field asking for the most room, which a
	// disk too big is refused at.
	sizeField string
	sizeMost  uint64
	// defaultRoot is the room the image type's own layout gives a plain
	// root: what a blueprint adds goes beside it, the disk grows.
	defaultRoot uint64
}

func (b *builder) fail(field, format string, args ...any) {
	b.errs = append(b.errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
}

// asks records that field asks for n bytes.
func (b *builder) asks(field string, n uint64) {
	if n > b.sizeMost {
		b.sizeField, b.sizeMost = field, n
	}
	if n > MaxSize {
		b.fail(field, "%d bytes cannot be a disk: an image file holds at most %d bytes (8 EiB)", n, uint64(MaxSize))
	}
}

// id returns a role name not used yet: name, else name-2, name-3…
func (b *builder) id(name string) string {
	if b.ids == nil {
		b.ids = map[string]bool{}
	}
	id := name
	for i := 2; b.ids[id]; i++ {
		id = name + "-" + strconv.Itoa(i)
	}
	b.ids[id] = true
	return id
}

func (b *builder) tableOptions(dk *blueprint.DiskCustomization) {
	const p = "customizations.disk"
	switch dk.Type {
	case "", GPT:
	case DOS:
		b.t.Type = DOS
	default:
		b.fail(p+".type", "unknown partition table type %q (want gpt or dos)", dk.Type)
	}
	switch dk.SectorSize {
	case 0, 512:
	case 4096:
		b.t.SectorSize = 4096
	default:
		b.fail(p+".sector_size", "%d-byte sectors: disks have 512- or 4096-byte sectors", dk.SectorSize)
	}
	if dk.StartOffset%b.t.SectorSize != 0 {
		b.fail(p+".start_offset", "%d bytes is not a whole number of %d-byte sectors", dk.StartOffset, b.t.SectorSize)
	}
	b.asks(p+".start_offset", dk.StartOffset)
	b.t.StartOffset = dk.StartOffset
	b.asks(p+".minsize", dk.MinSize)
	b.t.MinSize = max(b.t.MinSize, dk.MinSize)
}

// partType is the partition type for a role on this table: gpt (a GUID)
// or its dos id.
func (b *builder) partType(guid string) string {
	if b.t.Type == GPT {
		return guid
	}
	switch guid {
	case ESPGUID:
		return DOSESP
	case SwapGUID:
		return DOSSwap
	case LVMGUID:
		return DOSLVM
	}
	return DOSLinux
}

// addBase adds the type's partitions: the BIOS boot partition only on
// gpt with 512-byte sectors (on dos, GRUB's core image goes in the gap
// before the first partition; see Table.LegacyBoot).
func (b *builder) addBase(parts []Partition) {
	for _, p := range parts {
		if p.Type == BIOSBootGUID {
			if b.t.SectorSize != 512 {
				continue
			}
			b.t.LegacyBoot = true
			if b.t.Type == DOS {
				continue
			}
		}
		p.ID = b.id(p.ID)
		if b.baseIDs == nil {
			b.baseIDs = map[string]bool{}
		}
		b.baseIDs[p.ID] = true
		p.Type = b.partType(p.Type)
		if p.FS != nil {
			fs := *p.FS
			p.FS = &fs
		}
		b.t.Partitions = append(b.t.Partitions, p)
	}
}

// base returns the partition of the type's table with mountpoint mp.
func (b *builder) base(mp string) *Partition {
	for i := range b.t.Partitions {
		p := &b.t.Partitions[i]
		if b.baseIDs[p.ID] && p.FS != nil && p.FS.Mountpoint == mp {
			return p
		}
	}
	return nil
}

// filesystems applies customizations.filesystem.
func (b *builder) filesystems(fss []blueprint.FilesystemCustomization, mode string) {
	var fresh []int // indexes of new mountpoints, by mountpoint: the
	// table does not change when the blueprint lists them in another order
	// Composer's minimum sizes, on a copy: the blueprint stays as
	// written.
	fss = append([]blueprint.FilesystemCustomization(nil), fss...)
	for i := range fss {
		fss[i].MinSize = composerMin(fss[i].Mountpoint, fss[i].MinSize)
	}
	for i, fs := range fss {
		f := fmt.Sprintf("customizations.filesystem[%d]", i)
		b.asks(f+".minsize", fs.MinSize)
		if fs.Mountpoint == "/usr" {
			b.usrSeparate = true
		}
		switch fs.Mountpoint {
		case "/":
			b.rootMin, b.rootField = fs.MinSize, f+".minsize"
		case "/boot/efi":
			if esp := b.base("/boot/efi"); esp != nil {
				esp.MinSize = max(esp.MinSize, fs.MinSize)
				esp.Field = f
				continue
			}
			b.fail(f+".mountpoint", "this image type has no ESP to size")
		default:
			fresh = append(fresh, i)
		}
	}
	sort.SliceStable(fresh, func(i, j int) bool { return fss[fresh[i]].Mountpoint < fss[fresh[j]].Mountpoint })
	switch mode {
	case ModeRaw, ModeLVM, ModeBtrfs:
	case "", ModeAutoLVM:
		// Composer's default mode is auto-lvm: the root moves to LVM
		// as soon as a mountpoint is new.
		mode = ModeRaw
		if len(fresh) > 0 {
			mode = ModeLVM
		}
	default:
		b.fail("customizations.partitioning_mode", "unknown partitioning mode %q (want raw, lvm or auto-lvm)", mode)
		return
	}
	root := b.base("/")
	if root == nil {
		b.fail("customizations.filesystem", "this image type has no disk to lay file systems out on")
		return
	}
	rootFS := *root.FS
	var rest []Partition // the base partitions before the root
	for _, p := range b.t.Partitions {
		if p.ID != root.ID {
			rest = append(rest, p)
		}
	}
	b.t.Partitions = rest
	var vg *VolumeGroup
	var bv *BtrfsVolume
	switch mode {
	case ModeLVM:
		vg = &VolumeGroup{Name: "rootvg"}
		rootFS.Label = ""
		vg.LogicalVolumes = append(vg.LogicalVolumes, LogicalVolume{Name: "rootlv", MinSize: b.rootMin, FS: rootFS, Field: b.rootField})
	case ModeBtrfs:
		bv = &BtrfsVolume{Label: "root", Subvolumes: []Subvolume{{Name: "root", Mountpoint: "/", Field: b.rootField}}}
	}
	hasBoot := false
	for _, i := range fresh {
		fs := fss[i]
		f := fmt.Sprintf("customizations.filesystem[%d]", i)
		switch {
		case fs.Mountpoint == "/boot":
			hasBoot = true
			b.addBoot(fs.MinSize, f)
		case vg != nil:
			vg.LogicalVolumes = append(vg.LogicalVolumes, LogicalVolume{Name: uniqueLVName(vg, lvNameFor(fs.Mountpoint)), MinSize: fs.MinSize,
				FS: Filesystem{Type: defaultFSType, Mountpoint: fs.Mountpoint}, Field: f})
		case bv != nil:
			bv.Subvolumes = append(bv.Subvolumes, Subvolume{Name: nameFor(fs.Mountpoint), Mountpoint: fs.Mountpoint, Field: f})
		default:
			id := b.id(nameFor(fs.Mountpoint))
			b.t.Partitions = append(b.t.Partitions, Partition{ID: id, Name: labelFor(id, defaultFSType), Type: b.partType(DataGUID), MinSize: fs.MinSize,
				FS: &Filesystem{Type: defaultFSType, Label: labelFor(id, defaultFSType), Mountpoint: fs.Mountpoint}, Field: f})
		}
	}
	if (vg != nil || bv != nil) && !hasBoot {
		b.addBoot(bootSize, "")
	}
	root.MinSize = max(root.MinSize, b.rootMin)
	root.Field = b.rootField
	switch {
	case vg != nil:
		root.FS, root.VG, root.Type = nil, vg, b.partType(LVMGUID)
		root.ID = b.id("lvm")
		root.Name = "lvm"
		root.MinSize = 0
	case bv != nil:
		root.FS, root.Btrfs, root.Type = nil, bv, b.partType(DataGUID)
		root.ID = b.id("btrfs")
		root.Name = "btrfs"
	}
	b.t.Partitions = append(b.t.Partitions, *root)
}

// uniqueLVName is name, or, when vg has a logical volume of that name
// already (/root's "rootlv" beside the root's), name and the first free
// two-digit number, as composer names them (rootlv00).
func uniqueLVName(vg *VolumeGroup, name string) string {
	used := map[string]bool{}
	for _, lv := range vg.LogicalVolumes {
		used[lv.Name] = true
	}
	if !used[name] {
		return name
	}
	for i := 0; i < 100; i++ {
		if n := fmt.Sprintf("%s%02d", name, i); !used[n] {
			return n
		}
	}
	// A hundred mountpoints of one name cannot be: names are unique
	// mountpoints.
	return name
}

// Composer's least sizes of a mountpoint from customizations.filesystem
// (clampFSSize in osbuild/images): a minsize below them is raised.
const (
	mountMin = 1 * GiB
	bootMin  = 500 * MiB
)

// composerMin is the size composer gives mountpoint mp asked for with
// minsize n. The ESP (/boot/efi, which composer does not take here) keeps
// the size asked for: its room is the image type's.
func composerMin(mp string, n uint64) uint64 {
	switch mp {
	case "/boot/efi":
		return n
	case "/boot":
		return max(n, bootMin)
	}
	return max(n, mountMin)
}

// addBoot adds a plain /boot partition of at least size bytes, after the
// type's partitions and before the blueprint's.
func (b *builder) addBoot(size uint64, field string) {
	p := Partition{ID: b.id("boot"), Name: "boot", Type: b.partType(XBootLDRGUID), MinSize: size,
		FS: &Filesystem{Type: defaultFSType, Label: "boot", Mountpoint: "/boot"}, Field: field}
	at := 0
	for at < len(b.t.Partitions) && b.baseIDs[b.t.Partitions[at].ID] {
		at++
	}
	b.t.Partitions = append(b.t.Partitions[:at], append([]Partition{p}, b.t.Partitions[at:]...)...)
}

// custom applies customizations.disk's partitions.
func (b *builder) custom(dk *blueprint.DiskCustomization) {
	baseRoot := b.base("/")
	if baseRoot == nil {
		b.fail("customizations.disk.partitions", "this image type has no disk to lay partitions out on")
		return
	}
	rootTemplate := *baseRoot
	rootFS := *baseRoot.FS
	// The type's root goes: the blueprint's partitions take its place.
	var kept []Partition
	for _, p := range b.t.Partitions {
		if p.ID != baseRoot.ID {
			kept = append(kept, p)
		}
	}
	b.t.Partitions = kept
	delete(b.ids, baseRoot.ID)
	delete(b.baseIDs, baseRoot.ID)
	vgAt, bvAt := -1, -1 // indexes: appends move the partitions
	hasBoot, hasRoot := false, false
	for i := range dk.Partitions {
		bp := &dk.Partitions[i]
		f := fmt.Sprintf("customizations.disk.partitions[%d]", i)
		b.asks(f+".minsize", bp.MinSize)
		p := Partition{MinSize: bp.MinSize, UUID: strings.ToLower(bp.PartUUID), Name: bp.PartLabel, Field: f}
		switch bp.Type {
		case "", "plain":
			fs := bp.FilesystemTypedCustomization
			if fs.FSType == "" {
				fs.FSType = defaultFSType
			}
			p.FS = &Filesystem{Type: fs.FSType, Label: fs.Label, Mountpoint: fs.Mountpoint}
			switch fs.Mountpoint {
			case "/":
				hasRoot = true
				b.rootMin, b.rootField = bp.MinSize, f+".minsize"
				p.ID, p.Type = b.id("root"), strings.ToLower(b.partType(rootTemplate.Type))
				if b.t.Type == GPT {
					p.Type = rootTemplate.Type
				}
			case "/boot":
				hasBoot = true
				p.ID, p.Type = b.id("boot"), b.partType(XBootLDRGUID)
			case "/boot/efi":
				// The blueprint's ESP stands in for the type's.
				esp := b.base("/boot/efi")
				if esp == nil {
					b.fail(f+".mountpoint", "this image type boots without an ESP")
					continue
				}
				esp.MinSize = max(esp.MinSize, bp.MinSize)
				esp.Field = f
				if bp.Label != "" {
					esp.FS.Label = bp.Label
				}
				if bp.PartLabel != "" {
					esp.Name = bp.PartLabel
				}
				if bp.PartUUID != "" {
					esp.UUID = p.UUID
				}
				if bp.PartType != "" {
					esp.Type = strings.ToLower(bp.PartType)
				}
				continue
			case "":
				p.ID = b.id(fs.FSType)
				p.Type = b.partType(DataGUID)
				if fs.FSType == Swap {
					p.Type = b.partType(SwapGUID)
					p.MinSize = max(p.MinSize, swapMin)
				}
			default:
				if fs.Mountpoint == "/usr" {
					b.usrSeparate = true
				}
				p.ID, p.Type = b.id(nameFor(fs.Mountpoint)), b.partType(DataGUID)
			}
		case "lvm":
			name := bp.Name
			if name == "" {
				name = "vg00"
			}
			p.ID, p.Type = b.id("lvm"), b.partType(LVMGUID)
			p.VG = &VolumeGroup{Name: name}
			for j, lv := range bp.LogicalVolumes {
				lf := fmt.Sprintf("%s.logical_volumes[%d]", f, j)
				b.asks(lf+".minsize", lv.MinSize)
				fs := lv.FilesystemTypedCustomization
				if fs.FSType == "" {
					fs.FSType = defaultFSType
				}
				n := lv.Name
				if n == "" {
					n = lvNameFor(fs.Mountpoint)
					if fs.Mountpoint == "" {
						n = fs.FSType + "lv"
					}
				}
				switch fs.Mountpoint {
				case "/":
					hasRoot = true
					b.rootMin, b.rootField = lv.MinSize, lf+".minsize"
				case "/usr":
					b.usrSeparate = true
				}
				mn := lv.MinSize
				if fs.FSType == Swap {
					mn = max(mn, swapMin)
				}
				p.VG.LogicalVolumes = append(p.VG.LogicalVolumes, LogicalVolume{Name: n, MinSize: mn,
					FS: Filesystem{Type: fs.FSType, Label: fs.Label, Mountpoint: fs.Mountpoint}, Field: lf})
			}
		case "btrfs":
			p.ID, p.Type = b.id("btrfs"), b.partType(DataGUID)
			p.MinSize = max(p.MinSize, btrfsMin)
			p.Btrfs = &BtrfsVolume{}
			for j, sv := range bp.Subvolumes {
				switch sv.Mountpoint {
				case "/":
					hasRoot = true
					b.rootMin, b.rootField = 0, fmt.Sprintf("%s.subvolumes[%d]", f, j)
				case "/usr":
					b.usrSeparate = true
				case "/boot":
					// GRUB reads /boot from btrfs too, but composer
					// keeps it on a plain partition with LVM or btrfs.
				}
				p.Btrfs.Subvolumes = append(p.Btrfs.Subvolumes, Subvolume{Name: sv.Name, Mountpoint: sv.Mountpoint, Field: fmt.Sprintf("%s.subvolumes[%d]", f, j)})
			}
		default:
			b.fail(f+".type", "unknown partition type %q (want plain, lvm or btrfs)", bp.Type)
			continue
		}
		if bp.PartType != "" {
			p.Type = strings.ToLower(bp.PartType)
		}
		if p.Name == "" && b.t.Type == GPT {
			p.Name = p.ID
		}
		b.t.Partitions = append(b.t.Partitions, p)
		switch {
		case p.VG != nil:
			vgAt = len(b.t.Partitions) - 1
		case p.Btrfs != nil:
			bvAt = len(b.t.Partitions) - 1
		}
	}
	switch {
	case hasRoot:
	case vgAt >= 0:
		vg := b.t.Partitions[vgAt].VG
		vg.LogicalVolumes = append(vg.LogicalVolumes, LogicalVolume{Name: "rootlv", FS: Filesystem{Type: rootFS.Type, Mountpoint: "/"}})
	case bvAt >= 0:
		bv := b.t.Partitions[bvAt].Btrfs
		bv.Subvolumes = append(bv.Subvolumes, Subvolume{Name: "root", Mountpoint: "/"})
	default:
		r := rootTemplate
		r.ID = b.id(r.ID)
		r.Type = b.partType(r.Type)
		if b.t.Type == GPT {
			r.Type = rootTemplate.Type
		}
		fs := rootFS
		r.FS = &fs
		b.t.Partitions = append(b.t.Partitions, r)
	}
	if (vgAt >= 0 || bvAt >= 0) && !hasBoot {
		b.addBoot(bootSize, "")
	}
}

// finish checks the table's limits, sizes the root and moves the
// partition holding it last.
func (b *builder) finish() {
	t := b.t
	rootAt := -1
	for i := range t.Partitions {
		if t.Partitions[i].holdsRoot() {
			rootAt = i
		}
	}
	if rootAt < 0 {
		b.fail("customizations", "the layout has no root file system")
		return
	}
	root := t.Partitions[rootAt]
	t.Partitions = append(t.Partitions[:rootAt], t.Partitions[rootAt+1:]...)
	t.Partitions = append(t.Partitions, root)
	if n := len(t.Partitions); t.Type == DOS && n > 4 {
		b.fail("customizations.disk.partitions", "a dos partition table holds 4 partitions; with the image type's ESP and the root (or a /boot) this layout needs %d", n)
	}
	if n := len(t.Partitions); n > 128 {
		b.fail("customizations.disk.partitions", "a GPT holds 128 partitions; this layout needs %d", n)
	}
	// "/" needs room for the system (composer's 1 GiB for "/" and 2 GiB
	// for "/usr" when /usr is in it).
	need := uint64(rootDirs)
	if b.usrSeparate {
		need = rootOnly
	}
	rp := &t.Partitions[len(t.Partitions)-1]
	switch {
	case rp.FS != nil:
		// A plain root takes the rest of the disk, which the image
		// type sizes for its system: it needs only some room of its
		// own beside the blueprint's partitions.
		rp.MinSize = max(rp.MinSize, b.rootMin, b.defaultRoot, plainRootMin)
	case rp.VG != nil:
		for i := range rp.VG.LogicalVolumes {
			if lv := &rp.VG.LogicalVolumes[i]; lv.FS.Mountpoint == "/" {
				lv.MinSize = max(lv.MinSize, need)
			}
		}
	case rp.Btrfs != nil:
		rp.MinSize = max(rp.MinSize, need)
	}
	// On dos, BIOS boots the active partition's boot code, which GRUB's
	// boot.img in the MBR replaces; the flag still helps some firmware.
	if t.Type == DOS {
		bootAt := len(t.Partitions) - 1
		for i := range t.Partitions {
			if p := t.Partitions[i]; p.FS != nil && p.FS.Mountpoint == "/boot" {
				bootAt = i
			}
		}
		t.Partitions[bootAt].Bootable = true
	}
	for i := range t.Partitions {
		p := &t.Partitions[i]
		if p.FS != nil && p.FS.Type == Swap {
			p.FS.Mountpoint = ""
		}
		// FAT32 needs 65525 clusters of at least a sector: with
		// 4096-byte sectors, some 260 MiB.
		if p.FS != nil && p.FS.Type == VFAT && t.SectorSize == 4096 {
			p.MinSize = max(p.MinSize, 300*MiB)
		}
	}
}

// SizeField is the blueprint field asking for the most room, which a
// stage refusing the disk's size is reported at ("" when none asks).
func (t *Table) SizeField(cu *blueprint.Customizations) string {
	most, field := uint64(0), ""
	ask := func(f string, n uint64) {
		if n > most {
			most, field = n, f
		}
	}
	if cu == nil {
		return ""
	}
	for i, fs := range cu.Filesystem {
		ask(fmt.Sprintf("customizations.filesystem[%d].minsize", i), fs.MinSize)
	}
	if dk := cu.Disk; dk != nil {
		ask("customizations.disk.minsize", dk.MinSize)
		for i, p := range dk.Partitions {
			ask(fmt.Sprintf("customizations.disk.partitions[%d].minsize", i), p.MinSize)
			for j, lv := range p.LogicalVolumes {
				ask(fmt.Sprintf("customizations.disk.partitions[%d].logical_volumes[%d].minsize", i, j), lv.MinSize)
			}
		}
	}
	return field
}

// defaultRoot is the room the type's table on its own disk gives the root
// (its last partition): the disk less the GPT and the other partitions.
func defaultRoot(base Base) uint64 {
	used := uint64(2 * Grain) // the GPT at the start, its backup at the end
	for i, p := range base.Partitions {
		if i < len(base.Partitions)-1 {
			n, _ := alignUp(p.MinSize, Grain)
			used += n
		}
	}
	if base.Size <= used {
		return 0
	}
	return base.Size - used
}
