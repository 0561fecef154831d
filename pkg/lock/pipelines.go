package lock

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

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
	rootMin       uint64 // filesystem "/" minsize
	rootField     string
	diskMin       uint64 // disk minsize
	extraFS       []extraFS
}

// extraFS is a separate ext4 partition the blueprint asks for.
type extraFS struct {
	mountpoint string
	minSize    uint64
	field      string // the blueprint's filesystem entry
}

// sizeField is the blueprint field that asks for the most room on the
// disk, which a disk too big for its stage is refused by.
func (c *customizations) sizeField() string {
	field, most := "", uint64(0)
	if c.diskMin > 0 {
		field, most = "customizations.disk.minsize", c.diskMin
	}
	if c.rootMin > most {
		field, most = c.rootField, c.rootMin
	}
	for _, x := range c.extraFS {
		if x.minSize > most {
			field, most = x.field+".minsize", x.minSize
		}
	}
	return field
}

// linuxDataType is the GPT type of a plain Linux file system partition.
const linuxDataType = "0fc63daf-8483-4772-8e79-3d69d8477de4"

const sectorSize = 512

// GPT partition type GUIDs the generator needs to recognise.
const biosBootType = "21686148-6449-6e6f-744e-656564454649"

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

type partPlan struct {
	distro.Partition
	index int // 1-based
	start uint64
	size  uint64 // sectors; 0 = to the end
	uuid  string
	fsID  string
}

// partitions is the arch's partition table with the blueprint's extra
// file systems placed before the last (root) partition.
func (p *entryPlan) partitions() []distro.Partition {
	arch := p.arch.Partitions
	if len(arch) == 0 {
		return nil
	}
	out := append([]distro.Partition(nil), arch[:len(arch)-1]...)
	for _, x := range p.cust.extraFS {
		label := strings.ReplaceAll(strings.Trim(x.mountpoint, "/"), "/", "-")
		if len(label) > 16 {
			label = label[:16]
		}
		out = append(out, distro.Partition{Name: label, Type: linuxDataType, Size: distro.Size(x.minSize), FS: "ext4", Label: label, Mountpoint: x.mountpoint})
	}
	return append(out, arch[len(arch)-1])
}

// layout places the partitions, 1 MiB aligned, on a disk of size bytes;
// the last partition without a size takes the rest.
func (p *entryPlan) layout(size uint64) ([]partPlan, error) {
	const align = (1 << 20) / sectorSize
	start := uint64(align)
	var parts []partPlan
	for i, d := range p.partitions() {
		pp := partPlan{Partition: d, index: i + 1, start: start, uuid: p.uuidFor("partition/" + d.Name)}
		if d.Size > 0 {
			pp.size = (uint64(d.Size) + sectorSize - 1) / sectorSize
			start += (pp.size + align - 1) / align * align
		}
		switch d.FS {
		case "vfat":
			pp.fsID = p.fatIDFor("fs/" + d.Name)
		case "ext4":
			pp.fsID = p.uuidFor("fs/" + d.Name)
		}
		parts = append(parts, pp)
	}
	// 33 sectors of backup GPT at the end, plus room for the last partition.
	if start*sectorSize+34*sectorSize+minRoot > size {
		return nil, fmt.Errorf("disk size %d bytes is too small for the partition table of %s", size, p.arch.Name)
	}
	return parts, nil
}

// pipelines writes the entry's pipelines from its resolved package sets.
// base is what every solution starts from (the Essential and required
// packages): when a set holds all of it, its tree installs base in a
// stage of its own, the same in the build root and the os tree, which a
// build then runs once for both.
func (p *entryPlan) pipelines(base, buildPkgs, osPkgs []manifest.Package) ([]manifest.Pipeline, error) {
	build := manifest.Pipeline{Name: manifest.PipelineBuild, Stages: p.debs(base, buildPkgs)}
	os, parts, err := p.osPipeline(p.debs(base, osPkgs))
	if err != nil {
		return nil, err
	}
	out := []manifest.Pipeline{build, os}
	if p.typ.Bootable {
		out = append(out, p.imagePipeline(parts))
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

// diskSize is the disk's size: the type's, grown to hold the blueprint's
// extra file systems beside a root as large as the type's default disk
// gives it (or the blueprint's "/" minsize), and at least the blueprint's
// disk minsize. customizationsWith bounds the blueprint's sizes, so the
// sums cannot overflow.
func (p *entryPlan) diskSize() uint64 {
	const mib = 1 << 20
	roundUp := func(n uint64) uint64 { return (n + mib - 1) &^ (mib - 1) }
	arch := p.arch.Partitions
	var fixed uint64 // the arch's partitions before the root
	for i, pt := range arch {
		if i < len(arch)-1 {
			fixed += roundUp(uint64(pt.Size))
		}
	}
	// The GPT: 1 MiB before the first partition, and its backup at the
	// end (34 sectors, rounded to a MiB).
	overhead := uint64(2 * mib)
	typeSize := uint64(p.typ.Size)
	root := uint64(0)
	if typeSize > fixed+overhead {
		root = typeSize - fixed - overhead
	}
	root = max(root, roundUp(p.cust.rootMin), minRoot)
	need := overhead + fixed + root
	for _, x := range p.cust.extraFS {
		need += roundUp(x.minSize)
	}
	return roundUp(max(typeSize, p.cust.diskMin, need))
}

// minRoot is the least room the layout leaves the root file system.
const minRoot = 64 << 20

// maxDisk bounds what a blueprint may ask for: an image file holds at
// most 2^63-1 bytes (off_t), rounded down to whole MiB.
const maxDisk = (1<<63 - 1) &^ (1<<20 - 1)

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
func (p *entryPlan) osPipeline(debs []manifest.Stage) (manifest.Pipeline, []partPlan, error) {
	d, c := p.distro, p.cust
	// No build root: the os tree's stages run the tree's own tools
	// (dpkg, update-initramfs, systemctl), so it is built while the
	// build root is.
	os := manifest.Pipeline{Name: manifest.PipelineOS, Stages: debs}
	add := func(typ string, opts any) { os.Stages = append(os.Stages, stage(typ, opts)) }
	from := func(field string) { p.origin(os.Name, len(os.Stages)-1, field) }

	var parts []partPlan
	if p.typ.Bootable {
		var err error
		if parts, err = p.layout(p.diskSize()); err != nil {
			return os, nil, err
		}
		// Boot configuration comes right after the packages, before the
		// customizations: a hostname change then leaves the initramfs cached.
		var fs []stages.FstabEntry
		var rootUUID string
		for _, pt := range parts {
			switch pt.FS {
			case "ext4":
				passno := 2
				if pt.Mountpoint == "/" {
					passno = 1
					rootUUID = pt.fsID
				}
				fs = append(fs, stages.FstabEntry{UUID: pt.fsID, VFSType: "ext4", Path: pt.Mountpoint, Options: pt.MountOptions(), Freq: 1, PassNo: passno})
			case "vfat":
				fs = append(fs, stages.FstabEntry{UUID: pt.fsID, VFSType: "vfat", Path: pt.Mountpoint, Options: pt.MountOptions(), PassNo: 2})
			}
		}
		add("fstab", stages.Fstab{Filesystems: fs})
		if len(c.extraFS) > 0 {
			from("customizations.filesystem")
		}
		grub := stages.Grub2{
			RootFSUUID: rootUUID,
			KernelOpts: mergeKernelArgs(p.arch.KernelOpts+" "+p.typ.KernelOpts, c.kernelOpts),
			UEFI:       &stages.Grub2UEFI{Vendor: "debian", Removable: true},
			Timeout:    bootTimeout(p.typ),
			Serial:     true,
		}
		for _, pt := range parts {
			if pt.Type == biosBootType {
				grub.BIOS = &stages.Grub2BIOS{Platform: "i386-pc"}
			}
		}
		add("grub2", grub)
		if c.kernelOpts != "" {
			from("customizations.kernel.append")
		}
		add("initramfs", stages.Initramfs{
			Modules:  d.Initramfs.Modules[p.typ.Kernel],
			Compress: d.Initramfs.Compress,
			Fstype:   d.Initramfs.FSType,
		})
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
	return os, parts, nil
}

func (p *entryPlan) imagePipeline(parts []partPlan) manifest.Pipeline {
	img := manifest.Pipeline{Name: manifest.PipelineImage, Build: manifest.PipelineBuild}
	add := func(typ string, opts any) { img.Stages = append(img.Stages, stage(typ, opts)) }
	const file = "disk.raw"
	var table []stages.DiskPartition
	for _, pt := range parts {
		table = append(table, stages.DiskPartition{Name: pt.Name, Type: pt.Type, UUID: pt.uuid, Start: pt.start, Size: pt.size})
	}
	add("disk", stages.Disk{Filename: file, Size: int64(p.diskSize()), UUID: p.uuidFor("disk"), Partitions: table})
	p.origin(img.Name, 0, p.cust.sizeField())
	// A file system leaves out what other file systems mounted below it
	// hold; paths are relative to its own mountpoint.
	excludesFor := func(mp string) []string {
		var out []string
		prefix := strings.TrimSuffix(mp, "/") + "/"
		for _, o := range parts {
			if o.FS != "" && o.Mountpoint != mp && strings.HasPrefix(o.Mountpoint, prefix) {
				out = append(out, "/"+strings.TrimPrefix(o.Mountpoint, prefix)+"/*")
			}
		}
		return out
	}
	for _, pt := range parts {
		switch pt.FS {
		case "vfat":
			add("mkfs-fat", stages.MkfsFAT{Filename: file, Partition: pt.index, FAT: 32,
				VolumeID: strings.ReplaceAll(pt.fsID, "-", ""), Label: pt.Label,
				Source: stages.Source{Pipeline: manifest.PipelineOS, Path: pt.Mountpoint}})
		case "ext4":
			add("mkfs-ext4", stages.MkfsExt4{Filename: file, Partition: pt.index, UUID: pt.fsID, Label: pt.Label,
				HashSeed: p.uuidFor("hash_seed/" + pt.Name), Source: stages.Source{Pipeline: manifest.PipelineOS, Path: pt.Mountpoint},
				Exclude: excludesFor(pt.Mountpoint)})
		}
	}
	for _, pt := range parts {
		if pt.Type == biosBootType {
			add("grub-bios", stages.GrubBIOS{Filename: file, CorePartition: pt.index,
				Source: stages.Source{Pipeline: manifest.PipelineOS, Path: "/boot/grub/i386-pc"}})
		}
	}
	return img
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
