package lock

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
	"github.com/image-builder-action/image-builder-action/pkg/disk"
	"github.com/image-builder-action/image-builder-action/pkg/distro"
	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/stages"
)

// entryPlan is what one (arch, type) needs before resolution: the package
// names of each tree pipeline, and everything to write its stages.
type entryPlan struct {
	distro *distro.Distro
	arch   *distro.Arch
	typ    *distro.ImageType
	cust   customizations

	buildPackages []string
	osPackages    []string
	// table is the disk's layout (bootable types), once diskTable made it.
	table *disk.Table
	// installerPackages are the installer tree's (image-installer), and
	// isoBuildPackages the build root its ISO is made with.
	installerPackages []string
	isoBuildPackages  []string
	// btrfsToolPackages are the build root's that makes btrfs volumes
	// from another release (build.btrfs_tools), resolved there as
	// btrfsBase (its essential set) and btrfsPkgs.
	btrfsToolPackages    []string
	btrfsBase, btrfsPkgs []manifest.Package
	// origins maps "pipeline/index" to the blueprint field a stage's
	// options came from, so a stage lock refuses points at its line.
	origins map[string]string
	// seed derives UUIDs, volume ids and hash seeds: the lockfile's
	// id_seed with the distro and arch; each id adds its partition's role.
	// Nothing else of the blueprint goes in, so an unrelated edit leaves
	// them as they were. The image type does not either: raw, qcow2,
	// vmdk… of one arch are one disk in several formats and share one
	// image pipeline, built once.
	seed string
}

// customizations is the part of the blueprint that becomes stages, already
// checked against what the distro honours.
type customizations struct {
	// requests are the packages the blueprint asks for; systemPkgs what
	// its customizations need (tzdata for a time zone, …).
	requests   []pkgRequest
	systemPkgs []string

	hostname      string
	kernelName    string
	kernelField   string
	kernelOpts    string
	groups        []stages.GroupSpec
	users         []stages.UserSpec
	language      string
	moreLanguages []string
	keyboard      string
	cacerts       []string
	timezone      string
	ntpServers    []string
	dirs          []stages.DirectorySpec
	files         []stages.FileSpec
	enabled       []string
	disabled      []string
	masked        []string
	firewall      *stages.Firewall
	// layout holds the blueprint's filesystem, disk and partitioning
	// mode, when it sets any: what disk.New lays out.
	layout *blueprint.Customizations
	// containers are the blueprint's [[containers]], resolved.
	containers []*lockedContainer

	// The ISO types': the installer's target disk, its menu timeout,
	// and the ISO's metadata (isoField is where the blueprint set them).
	installDevice    string
	installerTimeout *int
	isoVolumeID      string
	isoPublisher     string
	isoApplicationID string
	isoField         string
}

// stage writes a stage with its options: the stage's own type from
// package stages (a map only where that type's JSON would differ from what
// lockfiles already hold).
func stage(typ string, opts any) manifest.Stage {
	b, err := json.Marshal(opts)
	if err != nil {
		// Options are the stages' own types: a failure is a bug.
		panic(fmt.Sprintf("marshalling %s options: %v", typ, err))
	}
	return manifest.Stage{Type: typ, Options: b}
}

// uuidFor derives a stable RFC 4122 (version 4 layout) UUID from the seed.
func (p *entryPlan) uuidFor(what string) string {
	h := sha256.Sum256([]byte(p.seed + "\x00" + what))
	h[6] = h[6]&0x0f | 0x40
	h[8] = h[8]&0x3f | 0x80
	x := hex.EncodeToString(h[:16])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

// fatIDFor derives a FAT volume id, written XXXX-XXXX as fstab wants it.
func (p *entryPlan) fatIDFor(what string) string {
	h := sha256.Sum256([]byte(p.seed + "\x00" + what))
	x := strings.ToUpper(hex.EncodeToString(h[:4]))
	return x[:4] + "-" + x[4:]
}

// refs turns resolved packages into the stage's sorted reference list.
func refs(pkgs []manifest.Package) []string {
	out := make([]string, len(pkgs))
	for i := range pkgs {
		out[i] = pkgs[i].Ref()
	}
	sort.Strings(out)
	return out
}

// pipelines writes the entry's pipelines from its resolved package sets.
// base is what every solution starts from (the Essential and required
// packages): when a set holds all of it, its tree installs base in a
// stage of its own, the same in the build root and the os tree, which a
// build then runs once for both.
func (p *entryPlan) pipelines(base, buildPkgs, osPkgs, installerPkgs, isoBuildPkgs []manifest.Package) ([]manifest.Pipeline, error) {
	build := manifest.Pipeline{Name: manifest.PipelineBuild, Stages: p.debs(base, buildPkgs)}
	os, tbl, err := p.osPipeline(p.debs(base, osPkgs))
	if err != nil {
		return nil, err
	}
	out := []manifest.Pipeline{build, os}
	if p.isLive() {
		return append(out, p.isoPipeline(manifest.PipelineOS, nil)), nil
	}
	if p.typ.Bootable {
		if p.btrfsPkgs != nil {
			out = append(out, p.btrfsPipelines(tbl)...)
		}
		out = append(out, p.imagePipeline(tbl))
	}
	if p.typ.ISO != nil {
		out = append(out, p.installerPipeline(p.debs(base, installerPkgs), rootPartition(tbl)))
		out = append(out, manifest.Pipeline{Name: pipelineISOBuild, Stages: p.debs(base, isoBuildPkgs)})
		payload := &stages.ISOPayload{Source: stages.Source{Pipeline: manifest.PipelineImage, Path: "/" + rawFile}, Path: installerPayload}
		iso := p.isoPipeline(pipelineInstaller, payload)
		iso.Build = pipelineISOBuild
		return append(out, iso), nil
	}
	if len(p.typ.Export) > 0 {
		exp := manifest.Pipeline{Name: p.typ.Name, Build: manifest.PipelineBuild}
		for _, e := range p.typ.Export {
			exp.Stages = append(exp.Stages, stage(e.Type, e.Options))
		}
		out = append(out, exp)
	}
	return out, nil
}

// debs writes the debs stages installing pkgs. base is what every
// solution starts from (the Essential and required packages): when pkgs
// holds all of it, it goes in a stage of its own, the same in the build
// root and the os tree, which a build then runs once for both.
func (p *entryPlan) debs(base, pkgs []manifest.Package) []manifest.Stage {
	var exclude, include []string
	if p.typ.Platform == "system" {
		// The build root leaves out what the image leaves out: its tools
		// need no documentation, and the first stages stay the same.
		exclude, include = p.distro.OS.PathExclude, p.distro.OS.PathInclude
	}
	one := func(pkgs []manifest.Package) manifest.Stage {
		return stage("debs", stages.Debs{Packages: refs(pkgs), PathExclude: exclude, PathInclude: include})
	}
	rest, ok := without(pkgs, base)
	if !ok || len(base) == 0 || len(rest) == 0 {
		return []manifest.Stage{one(pkgs)}
	}
	return []manifest.Stage{one(base), one(rest)}
}

// usesBuildRoot reports whether a pipeline runs with the build root.
func (p *entryPlan) usesBuildRoot(pipes []manifest.Pipeline) bool {
	for _, q := range pipes {
		if q.Build == manifest.PipelineBuild {
			return true
		}
	}
	return false
}

// crossBuildPipeline is the build root of host's packages that stands in
// for the entry's own on hosts of that architecture: the image and export
// stages' tools (mkfs, qemu-img, the compressors) work on files and give
// the same bytes whichever architecture runs them, so they need not be
// emulated. It is the same pipeline as the build root of host's own
// entries, which a build then finds in its cache.
func (p *entryPlan) crossBuildPipeline(host string, base, pkgs []manifest.Package) manifest.Pipeline {
	return manifest.Pipeline{Name: manifest.PipelineBuild + "-" + host, Host: host, Replaces: manifest.PipelineBuild, Stages: p.debs(base, pkgs)}
}

// without returns pkgs less those of sub, and whether pkgs holds all of
// sub (same versions).
func without(pkgs, sub []manifest.Package) ([]manifest.Package, bool) {
	in := map[string]bool{}
	for _, q := range sub {
		in[q.Ref()] = true
	}
	var rest []manifest.Package
	for _, q := range pkgs {
		if in[q.Ref()] {
			delete(in, q.Ref())
		} else {
			rest = append(rest, q)
		}
	}
	return rest, len(in) == 0
}

// osPipeline writes the os pipeline, which installs the packages with the
// debs stages given.
func (p *entryPlan) osPipeline(debs []manifest.Stage) (manifest.Pipeline, *disk.Table, error) {
	d, c := p.distro, p.cust
	// No build root: the os tree's stages run the tree's own tools
	// (dpkg, update-initramfs, systemctl), so it is built while the
	// build root is.
	os := manifest.Pipeline{Name: manifest.PipelineOS, Stages: debs}
	add := func(typ string, opts any) { os.Stages = append(os.Stages, stage(typ, opts)) }
	from := func(field string) { p.origin(os.Name, len(os.Stages)-1, field) }

	var tbl *disk.Table
	if p.isLive() {
		// Booted from the ISO by live-boot: no partitions, no fstab, no
		// GRUB in the tree; an initramfs that finds the medium.
		add("initramfs", stages.Initramfs{
			Modules:  p.isoModules(),
			Compress: d.Initramfs.Compress,
			Fstype:   d.Initramfs.FSType,
		})
	} else if p.typ.Bootable {
		var err error
		if tbl, err = p.diskTable(); err != nil {
			return os, nil, err
		}
		// Boot configuration comes right after the packages, before the
		// customizations: a hostname change then leaves the initramfs cached.
		add("fstab", stages.Fstab{Filesystems: fstabEntries(tbl)})
		if c.layout != nil {
			from(layoutField(c.layout))
		}
		grub := stages.Grub2{
			RootFSUUID: tbl.Root().UUID,
			KernelOpts: mergeKernelArgs(p.arch.KernelOpts+" "+p.typ.KernelOpts, c.kernelOpts),
			UEFI:       &stages.Grub2UEFI{Vendor: "debian", Removable: true},
			Timeout:    bootTimeout(p.typ),
			Serial:     true,
		}
		if boot := tbl.Boot(); boot.Mountpoint == "/boot" {
			grub.BootFSUUID = boot.UUID
		}
		switch root := tbl.Root(); {
		case root.LV != nil:
			// Debian's initramfs activates the root's logical volume by
			// its device-mapper name.
			grub.RootDevice = "/dev/mapper/" + dmName(root.VG.Name, root.LV.Name)
		case root.Subvolume != nil:
			grub.KernelOpts = mergeKernelArgs(grub.KernelOpts, "rootflags=subvol="+root.Subvolume.Name)
		}
		if biosBoots(tbl) {
			grub.BIOS = &stages.Grub2BIOS{Platform: "i386-pc"}
		}
		add("grub2", grub)
		if c.kernelOpts != "" {
			from("customizations.kernel.append")
		}
		// The initramfs mounts "/" and /usr: their file systems' modules
		// and fsck go in.
		ird := stages.Initramfs{
			Modules:  d.Initramfs.Modules[p.typ.Kernel],
			Compress: d.Initramfs.Compress,
			Fstype:   d.Initramfs.FSType,
		}
		for _, mp := range []string{"/", "/usr"} {
			if m, ok := tbl.Find(mp); ok && m.FSType != ird.Fstype && !contains(ird.Modules, m.FSType) {
				ird.Modules = append(append([]string(nil), ird.Modules...), m.FSType)
				if mp == "/" {
					ird.Fstype = m.FSType
				}
			}
		}
		for _, mp := range []string{"/", "/usr"} {
			if m, ok := tbl.Find(mp); ok && m.LV != nil && !contains(ird.Modules, "dm_mod") {
				ird.Modules = append(append([]string(nil), ird.Modules...), "dm_mod")
			}
		}
		add("initramfs", ird)
	}

	var files []stages.FileSpec
	if p.typ.Platform == "system" {
		for _, f := range d.OS.Files {
			files = append(files, stages.FileSpec{Node: stages.Node{Path: f.Path, Mode: f.Mode}, Data: f.Data})
		}
	}
	for _, f := range p.typ.Files {
		files = append(files, stages.FileSpec{Node: stages.Node{Path: f.Path, Mode: f.Mode}, Data: f.Data})
	}

	hostname := c.hostname
	if hostname == "" {
		hostname = d.Hostname
	}
	if p.typ.Platform == "system" {
		add("hostname", stages.Hostname{Hostname: hostname})
		if c.hostname != "" {
			from("customizations.hostname")
		}
	}
	if c.language != "" || c.keyboard != "" {
		add("locale", stages.Locale{Language: c.language, Generate: c.moreLanguages, Keyboard: c.keyboard})
	}
	if len(c.cacerts) > 0 {
		add("cacerts", stages.CACerts{Certs: c.cacerts})
	}
	if c.timezone != "" || len(c.ntpServers) > 0 {
		add("timezone", stages.Timezone{Timezone: c.timezone, NTPServers: c.ntpServers})
	}
	if len(c.groups) > 0 || len(c.users) > 0 {
		add("users", stages.Users{Groups: c.groups, Users: c.users})
	}
	if len(c.dirs) > 0 {
		add("directories", stages.Directories{Directories: c.dirs})
	}
	if len(c.containers) > 0 {
		var ims []stages.ContainerImage
		for _, lc := range c.containers {
			im, err := lc.forArch(p.arch.Dpkg)
			if err != nil {
				return os, nil, err
			}
			ims = append(ims, im)
		}
		add("containers", stages.Containers{Images: ims})
		from("containers")
	}
	files = append(files, c.files...)
	if len(files) > 0 {
		add("files", stages.Files{Files: files})
	}
	enabled := c.enabled
	if p.typ.Platform == "system" {
		enabled = append(append([]string(nil), d.OS.EnabledServices...), c.enabled...)
	}
	if len(enabled) > 0 || len(c.disabled) > 0 || len(c.masked) > 0 {
		add("systemd", stages.Systemd{Enabled: enabled, Disabled: c.disabled, Masked: c.masked})
	}
	if c.firewall != nil {
		add("firewall", c.firewall)
	}
	add("cleanup", stages.Cleanup{SSHHostKeyTypes: d.OS.SSHHostKeyTypes})
	return os, tbl, nil
}

func (p *entryPlan) imagePipeline(tbl *disk.Table) manifest.Pipeline {
	img := manifest.Pipeline{Name: manifest.PipelineImage, Build: manifest.PipelineBuild}
	add := func(typ string, opts any) { img.Stages = append(img.Stages, stage(typ, opts)) }
	const file = "disk.raw"
	ss := tbl.SectorSize
	d := stages.Disk{Filename: file, Size: int64(tbl.Size), UUID: p.uuidFor("disk")}
	if tbl.Type == disk.DOS {
		d.Type = disk.DOS
	}
	if ss != 512 {
		d.SectorSize = int(ss)
	}
	for i, pt := range tbl.Partitions {
		dp := stages.DiskPartition{Name: pt.Name, Type: pt.Type, UUID: pt.UUID, Start: pt.Start / ss, Size: pt.Size / ss, Bootable: pt.Bootable}
		if i == len(tbl.Partitions)-1 {
			dp.Size = 0 // to the end: the root takes what is left
		}
		if tbl.Type == disk.DOS {
			dp.Name, dp.UUID = "", "" // dos entries have neither
		}
		d.Partitions = append(d.Partitions, dp)
	}
	add("disk", d)
	p.origin(img.Name, 0, tbl.SizeField(p.cust.layout))
	for i, pt := range tbl.Partitions {
		if pt.FS == nil {
			continue
		}
		n := i + 1
		src := stages.Source{Pipeline: manifest.PipelineOS, Path: pt.FS.Mountpoint}
		var exclude []string
		for _, b := range outermost(tbl.Below(pt.FS.Mountpoint)) {
			exclude = append(exclude, b+"/*")
		}
		switch pt.FS.Type {
		case disk.VFAT:
			add("mkfs-fat", stages.MkfsFAT{Filename: file, Partition: n, FAT: 32,
				VolumeID: strings.ReplaceAll(pt.FS.UUID, "-", ""), Label: pt.FS.Label, Source: src})
		case disk.Ext4:
			add("mkfs-ext4", stages.MkfsExt4{Filename: file, Partition: n, UUID: pt.FS.UUID, Label: pt.FS.Label,
				HashSeed: p.uuidFor("hash_seed/" + pt.ID), Source: src, Exclude: exclude})
		case disk.XFS:
			add("mkfs-xfs", stages.MkfsXFS{Filename: file, Partition: n, UUID: pt.FS.UUID, Label: pt.FS.Label, Source: src, Exclude: exclude})
		case disk.Swap:
			add("mkswap", stages.Mkswap{Filename: file, Partition: n, UUID: pt.FS.UUID, Label: pt.FS.Label})
		}
		if pt.Field != "" {
			p.origin(img.Name, len(img.Stages)-1, pt.Field)
		}
	}
	for i, pt := range tbl.Partitions {
		switch {
		case pt.VG != nil:
			p.lvmStages(add, file, i+1, pt)
		case pt.Btrfs != nil && p.btrfsPkgs != nil:
			add("write-partition", stages.WritePartition{Filename: file, Partition: i + 1,
				Source: stages.Source{Pipeline: pipelineBtrfs, Path: "/" + btrfsFile(pt)}})
		case pt.Btrfs != nil:
			bt := p.mkfsBtrfs(pt)
			bt.Filename, bt.Partition = file, i+1
			add("mkfs-btrfs", bt)
		default:
			continue
		}
		if pt.Field != "" {
			p.origin(img.Name, len(img.Stages)-1, pt.Field)
		}
	}
	for i, pt := range tbl.Partitions {
		if pt.Type == disk.BIOSBootGUID {
			add("grub-bios", stages.GrubBIOS{Filename: file, CorePartition: i + 1,
				Source: stages.Source{Pipeline: manifest.PipelineOS, Path: "/boot/grub/i386-pc"}})
		}
	}
	if tbl.Type == disk.DOS && biosBoots(tbl) {
		// No BIOS boot partition on dos: core.img goes in the gap
		// between the MBR and the first partition.
		add("grub-bios", stages.GrubBIOS{Filename: file, CoreGap: true,
			Source: stages.Source{Pipeline: manifest.PipelineOS, Path: "/boot/grub/i386-pc"}})
	}
	return img
}

// The pipelines that make btrfs volumes with another release's
// mkfs.btrfs (build.btrfs_tools): its build root, and the volumes, each a
// file write-partition places into the image.
const (
	pipelineBtrfsBuild = "build-btrfs"
	pipelineBtrfs      = "btrfs"
)

// btrfsFile is the file of pipeline btrfs holding partition pt's volume.
func btrfsFile(pt disk.Partition) string { return "volume-" + pt.ID + ".img" }

// mkfsBtrfs is the mkfs-btrfs stage of btrfs partition pt, less where it
// writes.
func (p *entryPlan) mkfsBtrfs(pt disk.Partition) stages.MkfsBtrfs {
	bt := stages.MkfsBtrfs{UUID: pt.Btrfs.UUID, DeviceUUID: p.uuidFor("btrfs-dev/" + pt.ID),
		Label: pt.Btrfs.Label, Source: stages.Source{Pipeline: manifest.PipelineOS, Path: "/"}}
	for _, sv := range pt.Btrfs.Subvolumes {
		bt.Subvolumes = append(bt.Subvolumes, stages.BtrfsSubvolume{Name: sv.Name, Path: sv.Mountpoint})
	}
	return bt
}

// btrfsPipelines are the build root of the other release and the
// pipeline making the layout's btrfs volumes with it. osbuild runs a
// pipeline's stages with one build root, so the volumes are made apart
// from the image, whose other tools stay its own release's: bookworm's
// GRUB must read the ext4 /boot that bookworm's mkfs.ext4 writes, which
// trixie's defaults (orphan_file, metadata_csum_seed) need not allow.
func (p *entryPlan) btrfsPipelines(tbl *disk.Table) []manifest.Pipeline {
	vols := manifest.Pipeline{Name: pipelineBtrfs, Build: pipelineBtrfsBuild}
	for _, pt := range tbl.Partitions {
		if pt.Btrfs == nil {
			continue
		}
		bt := p.mkfsBtrfs(pt)
		bt.Output, bt.Size = btrfsFile(pt), int64(pt.Size)
		vols.Stages = append(vols.Stages, stage("mkfs-btrfs", bt))
		if pt.Field != "" {
			p.origin(vols.Name, len(vols.Stages)-1, pt.Field)
		}
	}
	return []manifest.Pipeline{{Name: pipelineBtrfsBuild, Stages: p.debs(p.btrfsBase, p.btrfsPkgs)}, vols}
}

// biosBoots says whether the layout boots from a PC BIOS: a GPT with a
// BIOS boot partition, or a dos table with 512-byte sectors on an arch
// whose table has one (GRUB's boot.img reads 512-byte sectors).
func biosBoots(tbl *disk.Table) bool {
	for _, pt := range tbl.Partitions {
		if pt.Type == disk.BIOSBootGUID {
			return true
		}
	}
	return tbl.LegacyBoot
}

// fstabEntries are the layout's file systems and swap areas, in table
// order, by UUID.
func fstabEntries(tbl *disk.Table) []stages.FstabEntry {
	var out []stages.FstabEntry
	var fss []*disk.Filesystem
	for _, pt := range tbl.Partitions {
		switch {
		case pt.FS != nil:
			fss = append(fss, pt.FS)
		case pt.VG != nil:
			// By UUID too: udev links it once the volume group is active.
			for j := range pt.VG.LogicalVolumes {
				fss = append(fss, &pt.VG.LogicalVolumes[j].FS)
			}
		case pt.Btrfs != nil:
			// fsck.btrfs does nothing: btrfs checks itself when mounted.
			for _, sv := range pt.Btrfs.Subvolumes {
				out = append(out, stages.FstabEntry{UUID: pt.Btrfs.UUID, VFSType: disk.Btrfs, Path: sv.Mountpoint, Options: "subvol=" + sv.Name})
			}
		}
	}
	for _, fs := range fss {
		opts := fs.Options
		if opts == "" {
			opts = "defaults"
		}
		switch fs.Type {
		case disk.Swap:
			out = append(out, stages.FstabEntry{UUID: fs.UUID, VFSType: "swap", Path: "none", Options: opts})
		case disk.Ext4:
			passno := 2
			if fs.Mountpoint == "/" {
				passno = 1
			}
			out = append(out, stages.FstabEntry{UUID: fs.UUID, VFSType: fs.Type, Path: fs.Mountpoint, Options: opts, Freq: 1, PassNo: passno})
		case disk.VFAT:
			out = append(out, stages.FstabEntry{UUID: fs.UUID, VFSType: fs.Type, Path: fs.Mountpoint, Options: opts, PassNo: 2})
		case disk.XFS:
			// fsck.xfs does nothing: xfs checks itself when mounted.
			out = append(out, stages.FstabEntry{UUID: fs.UUID, VFSType: fs.Type, Path: fs.Mountpoint, Options: opts})
		}
	}
	return out
}

// hostname is the image's host name.
func (p *entryPlan) hostname() string {
	if p.cust.hostname != "" {
		return p.cust.hostname
	}
	return p.distro.Hostname
}

// lvmStages writes partition n's volume group and makes its logical
// volumes' file systems at their extents.
func (p *entryPlan) lvmStages(add func(string, any), file string, n int, pt disk.Partition) {
	vg := pt.VG
	s := stages.LVM2{Filename: file, Partition: n, VolumeGroup: vg.Name, VGID: stages.LVMID(vg.UUID),
		PVID: stages.LVMID(p.uuidFor("pv/" + vg.Name)), ExtentSize: disk.LVMExtentSize, CreationHost: p.hostname()}
	for _, lv := range vg.LogicalVolumes {
		s.LogicalVolumes = append(s.LogicalVolumes, stages.LVM2Volume{Name: lv.Name, ID: stages.LVMID(lv.UUID), Size: int64(lv.Size)})
	}
	add("lvm2", s)
	layout := s.Layout()
	for _, lv := range vg.LogicalVolumes {
		r := layout[lv.Name]
		vol := &stages.LVM2Region{Offset: r.Offset, Size: r.Size}
		src := stages.Source{Pipeline: manifest.PipelineOS, Path: lv.FS.Mountpoint}
		var exclude []string
		if p.table != nil && lv.FS.Mountpoint != "" {
			for _, b := range outermost(p.table.Below(lv.FS.Mountpoint)) {
				exclude = append(exclude, b+"/*")
			}
		}
		switch lv.FS.Type {
		case disk.Ext4:
			add("mkfs-ext4", stages.MkfsExt4{Filename: file, Partition: n, UUID: lv.FS.UUID, Label: lv.FS.Label,
				HashSeed: p.uuidFor("hash_seed/lv/" + vg.Name + "/" + lv.Name), Source: src, Exclude: exclude, Volume: vol})
		case disk.XFS:
			add("mkfs-xfs", stages.MkfsXFS{Filename: file, Partition: n, UUID: lv.FS.UUID, Label: lv.FS.Label, Source: src, Exclude: exclude, Volume: vol})
		case disk.Swap:
			add("mkswap", stages.Mkswap{Filename: file, Partition: n, UUID: lv.FS.UUID, Label: lv.FS.Label, Volume: vol})
		}
	}
}

// outermost drops the paths below another path of dirs: once /boot's
// contents are left out, /boot/efi is gone with them (and its mount point
// could not be made in the empty stand-in).
func outermost(dirs []string) []string {
	var out []string
	for _, d := range dirs {
		inside := false
		for _, o := range dirs {
			if o != d && strings.HasPrefix(d, o+"/") {
				inside = true
			}
		}
		if !inside {
			out = append(out, d)
		}
	}
	return out
}

// dmName is the device-mapper name of logical volume lv of volume group
// vg: dashes in either are doubled.
func dmName(vg, lv string) string {
	return strings.ReplaceAll(vg, "-", "--") + "-" + strings.ReplaceAll(lv, "-", "--")
}

// diskBase is the image type's own layout on arch a: the arch's
// partition table (imagedefs) on a disk of size bytes.
func diskBase(a *distro.Arch, size uint64) disk.Base {
	b := disk.Base{Size: size}
	for _, pt := range a.Partitions {
		dp := disk.Partition{ID: pt.Name, Name: pt.Name, Type: strings.ToLower(pt.Type), MinSize: uint64(pt.Size)}
		if pt.FS != "" {
			dp.FS = &disk.Filesystem{Type: pt.FS, Label: pt.Label, Mountpoint: pt.Mountpoint, Options: pt.MountOptions()}
		}
		b.Partitions = append(b.Partitions, dp)
	}
	return b
}

// diskTable lays the entry's disk out and gives its ids their values,
// derived from the seed and each partition's role.
func (p *entryPlan) diskTable() (*disk.Table, error) {
	if p.table != nil {
		return p.table, nil
	}
	tbl, ferrs := disk.New(diskBase(p.arch, uint64(p.typ.Size)), p.cust.layout)
	if ferrs != nil {
		var errs []error
		for _, e := range ferrs {
			errs = append(errs, e)
		}
		return nil, errors.Join(errs...)
	}
	fsID := func(typ, what string) string {
		if typ == disk.VFAT {
			return p.fatIDFor(what)
		}
		return p.uuidFor(what)
	}
	for i := range tbl.Partitions {
		pt := &tbl.Partitions[i]
		if pt.UUID == "" && tbl.Type == disk.GPT {
			pt.UUID = p.uuidFor("partition/" + pt.ID)
		}
		switch {
		case pt.FS != nil:
			pt.FS.UUID = fsID(pt.FS.Type, "fs/"+pt.ID)
		case pt.VG != nil:
			pt.VG.UUID = p.uuidFor("vg/" + pt.VG.Name)
			for j := range pt.VG.LogicalVolumes {
				lv := &pt.VG.LogicalVolumes[j]
				lv.UUID = p.uuidFor("lv/" + pt.VG.Name + "/" + lv.Name)
				lv.FS.UUID = fsID(lv.FS.Type, "fs/lv/"+pt.VG.Name+"/"+lv.Name)
			}
		case pt.Btrfs != nil:
			pt.Btrfs.UUID = p.uuidFor("fs/" + pt.ID)
		}
	}
	p.table = tbl
	return tbl, nil
}

// origin records the blueprint field stage i of pipeline came from.
func (p *entryPlan) origin(pipeline string, i int, field string) {
	if field == "" {
		return
	}
	if p.origins == nil {
		p.origins = map[string]string{}
	}
	p.origins[fmt.Sprintf("%s/%d", pipeline, i)] = field
}

// bootTimeout is GRUB's menu timeout for the type: 1 s unless it says.
func bootTimeout(t *distro.ImageType) int {
	if t.BootTimeout != nil {
		return *t.BootTimeout
	}
	return 1
}
