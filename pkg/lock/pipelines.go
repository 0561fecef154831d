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
	// seed derives UUIDs: the same for every image type of an arch, so
	// raw, qcow2, vmdk… of one blueprint share one image pipeline.
	seed string
}

// customizations is the part of the blueprint that becomes stages, already
// checked against what the distro honours.
type customizations struct {
	hostname   string
	kernelName string
	kernelOpts string
	groups     []groupOpt
	users      []userOpt
	language   string
	keyboard   string
	timezone   string
	ntpServers []string
	dirs       []dirOpt
	files      []fileOpt
	enabled    []string
	disabled   []string
	masked     []string
	firewall   *firewallOpt
	rootMin    uint64 // filesystem "/" minsize
	diskMin    uint64 // disk minsize
	extraFS    []extraFS
}

// extraFS is a separate ext4 partition the blueprint asks for.
type extraFS struct {
	mountpoint string
	minSize    uint64
}

// linuxDataType is the GPT type of a plain Linux file system partition.
const linuxDataType = "0fc63daf-8483-4772-8e79-3d69d8477de4"

type groupOpt struct {
	Name string `json:"name"`
	GID  *int   `json:"gid,omitempty"`
}

type userOpt struct {
	Name        string   `json:"name"`
	UID         *int     `json:"uid,omitempty"`
	GID         *int     `json:"gid,omitempty"`
	Groups      []string `json:"groups,omitempty"`
	Description string   `json:"description,omitempty"`
	Home        string   `json:"home,omitempty"`
	Shell       string   `json:"shell,omitempty"`
	Password    string   `json:"password,omitempty"`
	Keys        []string `json:"keys,omitempty"`
	ExpireDate  *int     `json:"expiredate,omitempty"`
}

type dirOpt struct {
	Path          string `json:"path"`
	Mode          string `json:"mode,omitempty"`
	User          any    `json:"user,omitempty"`
	Group         any    `json:"group,omitempty"`
	EnsureParents bool   `json:"ensure_parents,omitempty"`
}

type fileOpt struct {
	Path  string `json:"path"`
	Mode  string `json:"mode,omitempty"`
	User  any    `json:"user,omitempty"`
	Group any    `json:"group,omitempty"`
	Data  string `json:"data"`
}

type firewallOpt struct {
	Ports    []string `json:"ports,omitempty"`
	Enabled  []string `json:"enabled_services,omitempty"`
	Disabled []string `json:"disabled_services,omitempty"`
}

type treeSource struct {
	Pipeline string `json:"pipeline"`
	Path     string `json:"path"`
}

const sectorSize = 512

// GPT partition type GUIDs the generator needs to recognise.
const biosBootType = "21686148-6449-6e6f-744e-656564454649"

func stage(typ string, opts any) manifest.Stage {
	b, err := json.Marshal(opts)
	if err != nil {
		// Options are the generator's own types: a failure is a bug.
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
	if start*sectorSize+34*sectorSize+(64<<20) > size {
		return nil, fmt.Errorf("disk size %d bytes is too small for the partition table of %s", size, p.arch.Name)
	}
	return parts, nil
}

// pipelines writes the entry's pipelines from its resolved package sets.
func (p *entryPlan) pipelines(buildPkgs, osPkgs []manifest.Package) ([]manifest.Pipeline, error) {
	build := manifest.Pipeline{Name: "build", Stages: []manifest.Stage{
		stage("debs", map[string]any{"packages": refs(buildPkgs)}),
	}}
	os, parts, err := p.osPipeline(osPkgs)
	if err != nil {
		return nil, err
	}
	out := []manifest.Pipeline{build, os}
	if p.typ.Bootable {
		out = append(out, p.imagePipeline(parts))
	}
	if len(p.typ.Export) > 0 {
		exp := manifest.Pipeline{Name: p.typ.Name, Build: "build"}
		for _, e := range p.typ.Export {
			exp.Stages = append(exp.Stages, stage(e.Type, e.Options))
		}
		out = append(out, exp)
	}
	return out, nil
}

func (p *entryPlan) diskSize() uint64 {
	size := uint64(p.typ.Size)
	if p.cust.diskMin > size {
		size = p.cust.diskMin
	}
	// The partitions before the root, the root's minimum, and the GPT.
	need := uint64(1<<20) + p.cust.rootMin + 1<<20
	for _, pt := range p.partitions() {
		need += (uint64(pt.Size) + 1<<20 - 1) &^ (1<<20 - 1)
	}
	if need > size {
		size = need
	}
	// Round up to whole MiB: Azure wants it, and partitions align to it.
	return (size + (1 << 20) - 1) &^ ((1 << 20) - 1)
}

func (p *entryPlan) osPipeline(pkgs []manifest.Package) (manifest.Pipeline, []partPlan, error) {
	d, c := p.distro, p.cust
	os := manifest.Pipeline{Name: "os", Build: "build"}
	add := func(typ string, opts any) { os.Stages = append(os.Stages, stage(typ, opts)) }

	debs := map[string]any{"packages": refs(pkgs)}
	if p.typ.Platform == "system" {
		debs["path_exclude"] = d.OS.PathExclude
		debs["path_include"] = d.OS.PathInclude
	}
	add("debs", debs)

	var parts []partPlan
	if p.typ.Bootable {
		var err error
		if parts, err = p.layout(p.diskSize()); err != nil {
			return os, nil, err
		}
		// Boot configuration comes right after the packages, before the
		// customizations: a hostname change then leaves the initramfs cached.
		var fs []map[string]any
		var rootUUID string
		for _, pt := range parts {
			switch pt.FS {
			case "ext4":
				passno := 2
				if pt.Mountpoint == "/" {
					passno = 1
					rootUUID = pt.fsID
				}
				fs = append(fs, map[string]any{"uuid": pt.fsID, "vfs_type": "ext4", "path": pt.Mountpoint, "options": "defaults", "freq": 1, "passno": passno})
			case "vfat":
				fs = append(fs, map[string]any{"uuid": pt.fsID, "vfs_type": "vfat", "path": pt.Mountpoint, "options": "umask=0077", "freq": 0, "passno": 2})
			}
		}
		add("fstab", map[string]any{"filesystems": fs})
		grub := map[string]any{
			"root_fs_uuid": rootUUID,
			"kernel_opts":  strings.TrimSpace(p.arch.KernelOpts + " " + c.kernelOpts),
			"uefi":         map[string]any{"vendor": "debian", "removable": true},
			"timeout":      1,
			"serial":       true,
		}
		for _, pt := range parts {
			if pt.Type == biosBootType {
				grub["bios"] = map[string]any{"platform": "i386-pc"}
			}
		}
		add("grub2", grub)
		add("initramfs", map[string]any{
			"modules":  d.Initramfs.Modules[p.typ.Kernel],
			"compress": d.Initramfs.Compress,
			"fstype":   d.Initramfs.FSType,
		})
	}

	var files []fileOpt
	if p.typ.Platform == "system" {
		for _, f := range d.OS.Files {
			files = append(files, fileOpt{Path: f.Path, Mode: f.Mode, Data: f.Data})
		}
	}
	for _, f := range p.typ.Files {
		files = append(files, fileOpt{Path: f.Path, Mode: f.Mode, Data: f.Data})
	}

	hostname := c.hostname
	if hostname == "" {
		hostname = d.Hostname
	}
	if p.typ.Platform == "system" {
		add("hostname", map[string]any{"hostname": hostname})
	}
	if c.language != "" || c.keyboard != "" {
		opts := map[string]any{}
		if c.language != "" {
			opts["language"] = c.language
		}
		if c.keyboard != "" {
			opts["keyboard"] = c.keyboard
		}
		add("locale", opts)
	}
	if c.timezone != "" || len(c.ntpServers) > 0 {
		opts := map[string]any{}
		if c.timezone != "" {
			opts["timezone"] = c.timezone
		}
		if len(c.ntpServers) > 0 {
			opts["ntpservers"] = c.ntpServers
		}
		add("timezone", opts)
	}
	if len(c.groups) > 0 || len(c.users) > 0 {
		opts := map[string]any{}
		if len(c.groups) > 0 {
			opts["groups"] = c.groups
		}
		if len(c.users) > 0 {
			opts["users"] = c.users
		}
		add("users", opts)
	}
	if len(c.dirs) > 0 {
		add("directories", map[string]any{"directories": c.dirs})
	}
	files = append(files, c.files...)
	if len(files) > 0 {
		add("files", map[string]any{"files": files})
	}
	enabled := c.enabled
	if p.typ.Platform == "system" {
		enabled = append(append([]string(nil), d.OS.EnabledServices...), c.enabled...)
	}
	if len(enabled) > 0 || len(c.disabled) > 0 || len(c.masked) > 0 {
		opts := map[string]any{}
		if len(enabled) > 0 {
			opts["enabled"] = enabled
		}
		if len(c.disabled) > 0 {
			opts["disabled"] = c.disabled
		}
		if len(c.masked) > 0 {
			opts["masked"] = c.masked
		}
		add("systemd", opts)
	}
	if c.firewall != nil {
		add("firewall", c.firewall)
	}
	add("cleanup", map[string]any{})
	return os, parts, nil
}

func (p *entryPlan) imagePipeline(parts []partPlan) manifest.Pipeline {
	img := manifest.Pipeline{Name: "image", Build: "build"}
	add := func(typ string, opts any) { img.Stages = append(img.Stages, stage(typ, opts)) }
	const file = "disk.raw"
	var table []map[string]any
	for _, pt := range parts {
		table = append(table, map[string]any{"name": pt.Name, "type": pt.Type, "uuid": pt.uuid, "start": pt.start, "size": pt.size})
	}
	add("disk", map[string]any{"filename": file, "size": p.diskSize(), "uuid": p.uuidFor("disk"), "partitions": table})
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
			add("mkfs-fat", map[string]any{"filename": file, "partition": pt.index, "fat": 32,
				"volume_id": strings.ReplaceAll(pt.fsID, "-", ""), "label": pt.Label,
				"source": treeSource{Pipeline: "os", Path: pt.Mountpoint}})
		case "ext4":
			opts := map[string]any{"filename": file, "partition": pt.index, "uuid": pt.fsID, "label": pt.Label,
				"hash_seed": p.uuidFor("hash_seed/" + pt.Name), "source": treeSource{Pipeline: "os", Path: pt.Mountpoint}}
			if ex := excludesFor(pt.Mountpoint); len(ex) > 0 {
				opts["exclude"] = ex
			}
			add("mkfs-ext4", opts)
		}
	}
	for _, pt := range parts {
		if pt.Type == biosBootType {
			add("grub-bios", map[string]any{"filename": file, "core_partition": pt.index,
				"source": treeSource{Pipeline: "os", Path: "/boot/grub/i386-pc"}})
		}
	}
	return img
}
