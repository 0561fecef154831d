// Package distro loads the image definitions: distributions, their
// architectures, and the image types they can build.
package distro

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/image-builder-action/image-builder-action/imagedefs"
)

// Distro is one distribution's definition.
type Distro struct {
	Name        string           `toml:"name"`
	Description string           `toml:"description"`
	Codename    string           `toml:"codename"`
	Components  []string         `toml:"components"`
	Keyring     string           `toml:"keyring"`
	Suites      []Suite          `toml:"suites"`
	Hostname    string           `toml:"hostname"`
	Arches      map[string]*Arch `toml:"arches"`
	Build       BuildRoot        `toml:"build"`
	OS          OSDefaults       `toml:"os"`
	Container   PackageSet       `toml:"container"`
	Initramfs   Initramfs        `toml:"initramfs"`
}

// Suite is one suite of the distribution and the kind of host source that
// serves it: "" for the release, "-updates", "-security".
type Suite struct {
	Name string `toml:"name"`
	Kind string `toml:"kind"`
}

// Arch is an architecture's specifics.
type Arch struct {
	Name       string            `toml:"-"`
	Dpkg       string            `toml:"dpkg"`
	Kernel     map[string]string `toml:"kernel"`
	Bootloader []string          `toml:"bootloader"`
	KernelOpts string            `toml:"kernel_opts"`
	Partitions []Partition       `toml:"partitions"`
}

// Partition is one partition of the default partition table.
type Partition struct {
	Name       string `toml:"name"`
	Type       string `toml:"type"`
	Size       Size   `toml:"size"`
	FS         string `toml:"fs"`
	Label      string `toml:"label"`
	Mountpoint string `toml:"mountpoint"`
	// Options are the fstab mount options; empty means the file system's
	// defaults (see MountOptions).
	Options string `toml:"options"`
}

// MountOptions are the partition's fstab options.
func (p *Partition) MountOptions() string {
	switch {
	case p.Options != "":
		return p.Options
	case p.FS == "vfat":
		return "umask=0077"
	default:
		return "defaults"
	}
}

// PackageSet is a list of package names.
type PackageSet struct {
	Packages []string `toml:"packages"`
}

// BuildRoot is what the build root, the tree whose tools the image and
// export stages run, holds.
type BuildRoot struct {
	Packages []string `toml:"packages"`
	// CrossHosts are host architectures for which an entry of another
	// architecture also gets a build root of the host's packages: there,
	// only the os tree's own programs (maintainer scripts, the initramfs)
	// run under emulation, and mkfs, qemu-img and the like run natively.
	CrossHosts []string `toml:"cross_hosts"`
	// BtrfsSubvolumes says the release's btrfs-progs makes subvolumes from
	// a tree (mkfs.btrfs --subvol, btrfs-progs 6.6 and newer): btrfs
	// layouts need it.
	BtrfsSubvolumes bool `toml:"btrfs_subvolumes"`
	// BtrfsTools, for a release without them, names the distro whose
	// build root makes btrfs volumes instead (resolved from the same
	// mirrors, pinned in the lockfile): only mkfs.btrfs runs from it.
	BtrfsTools string `toml:"btrfs_tools"`
}

// OSDefaults is the base of every bootable or system image.
type OSDefaults struct {
	Packages        []string `toml:"packages"`
	EnabledServices []string `toml:"enabled_services"`
	PathExclude     []string `toml:"path_exclude"`
	PathInclude     []string `toml:"path_include"`
	Files           []File   `toml:"files"`
	// SSHHostKeyTypes are the host keys made at first boot (the image
	// ships none); empty makes every type ssh-keygen -A makes.
	SSHHostKeyTypes []string `toml:"ssh_host_key_types"`
}

// File is a file the definitions put in every image of a kind.
type File struct {
	Path string `toml:"path"`
	Mode string `toml:"mode"`
	Data string `toml:"data"`
}

// Initramfs configures initramfs-tools for bootable images.
type Initramfs struct {
	Compress string              `toml:"compress"`
	FSType   string              `toml:"fstype"`
	Packages []string            `toml:"packages"`
	Modules  map[string][]string `toml:"modules"`
}

// ImageType is one output format.
type ImageType struct {
	Name        string   `toml:"name"`
	Description string   `toml:"description"`
	Filename    string   `toml:"filename"`
	Arches      []string `toml:"arches"`
	Platform    string   `toml:"platform"` // system or container
	Bootable    bool     `toml:"bootable"`
	Kernel      string   `toml:"kernel"` // generic, cloud
	// KernelOpts are added to the arch's kernel command line.
	KernelOpts string `toml:"kernel_opts"`
	// BootTimeout is GRUB's menu timeout in seconds; unset means 1. Cloud
	// types set 0: nobody is at their console to choose an entry.
	BootTimeout *int         `toml:"boot_timeout"`
	Size        Size         `toml:"size"`
	Packages    []string     `toml:"packages"`
	Files       []File       `toml:"files"`
	Export      []ExportStep `toml:"export"`
	// BuildPackages are added to the distro's build root for this type
	// (the ISO tools), so other types' build roots stay as they are.
	BuildPackages []string `toml:"build_packages"`
	// ISO, when set, makes the type a bootable ISO image.
	ISO *ISO `toml:"iso"`
}

// ISO describes an ISO image type: a live system booting from the image
// (kind "live": the os tree itself; kind "installer": a small tree of its
// own that writes the type's disk image, carried on the ISO, to a disk).
type ISO struct {
	Kind     string `toml:"kind"`
	VolumeID string `toml:"volume_id"`
	// KernelOpts follow boot=live on the live system's command line.
	KernelOpts string `toml:"kernel_opts"`
	// Modules are added to the initramfs' module list of the type's
	// kernel: what finding the image's medium needs.
	Modules []string `toml:"modules"`
	// Packages are added to the live tree: live-boot, and for an
	// installer the tools it runs.
	Packages []string `toml:"packages"`
	// Files and EnabledServices are the installer tree's.
	Files           []File   `toml:"files"`
	EnabledServices []string `toml:"enabled_services"`
	// Hostname is the installer tree's host name.
	Hostname string `toml:"hostname"`
}

// ExportStep is a stage of the image type's export pipeline.
type ExportStep struct {
	Type    string         `toml:"type"`
	Options map[string]any `toml:"options"`
}

// Size is a byte count written as a number or as "4 GiB".
type Size uint64

// UnmarshalText reads "4 GiB", "512 MiB", "1000000" and the like.
func (s *Size) UnmarshalText(b []byte) error {
	n, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*s = Size(n)
	return nil
}

// ParseSize reads a size with an optional unit (B, KiB, MiB, GiB, TiB, kB,
// MB, GB, TB).
func ParseSize(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return !(r >= '0' && r <= '9') })
	num, unit := t, ""
	if i >= 0 {
		num, unit = t[:i], strings.TrimSpace(t[i:])
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil || num == "" {
		return 0, fmt.Errorf("size %q: not a whole number with an optional unit", s)
	}
	mult := map[string]uint64{"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
		"kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("size %q: unknown unit %q", s, unit)
	}
	if n > ^uint64(0)/mult {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return n * mult, nil
}

// Defs is a loaded set of image definitions.
type Defs struct {
	Distros map[string]*Distro
	Types   map[string]*ImageType
	// Digest is the sha256 of every definition file, in path order.
	Digest string
}

// Load reads the embedded image definitions.
func Load() (*Defs, error) { return LoadFS(imagedefs.FS) }

// LoadFS reads image definitions from fsys: distros/*.toml, types/*.toml.
func LoadFS(fsys fs.FS) (*Defs, error) {
	d := &Defs{Distros: map[string]*Distro{}, Types: map[string]*ImageType{}}
	h := sha256.New()
	for _, dir := range []string{"distros", "types"} {
		names, err := fs.Glob(fsys, dir+"/*.toml")
		if err != nil {
			return nil, err
		}
		sort.Strings(names)
		for _, name := range names {
			data, err := fs.ReadFile(fsys, name)
			if err != nil {
				return nil, fmt.Errorf("reading image definition %s: %w", name, err)
			}
			fmt.Fprintf(h, "%s\x00%d\x00", name, len(data))
			h.Write(data)
			base := strings.TrimSuffix(path.Base(name), ".toml")
			if dir == "distros" {
				var v Distro
				if err := decodeStrict(name, data, &v); err != nil {
					return nil, err
				}
				if v.Name != base {
					return nil, fmt.Errorf("image definition %s: name %q does not match the file name", name, v.Name)
				}
				if err := v.validate(); err != nil {
					return nil, fmt.Errorf("image definition %s: %w", name, err)
				}
				d.Distros[v.Name] = &v
			} else {
				var v ImageType
				if err := decodeStrict(name, data, &v); err != nil {
					return nil, err
				}
				if v.Name != base {
					return nil, fmt.Errorf("image definition %s: name %q does not match the file name", name, v.Name)
				}
				if err := v.validate(); err != nil {
					return nil, fmt.Errorf("image definition %s: %w", name, err)
				}
				d.Types[v.Name] = &v
			}
		}
	}
	if len(d.Distros) == 0 {
		return nil, errors.New("image definitions: no distros")
	}
	for _, v := range d.Distros {
		if t := v.Build.BtrfsTools; t != "" {
			if o := d.Distros[t]; o == nil || !o.Build.BtrfsSubvolumes || o.Build.BtrfsTools != "" {
				return nil, fmt.Errorf("image definition distros/%s.toml: build.btrfs_tools: %q is not a distro with btrfs_subvolumes", v.Name, t)
			}
		}
	}
	d.Digest = hex.EncodeToString(h.Sum(nil))
	return d, nil
}

func decodeStrict(name string, data []byte, v any) error {
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			return fmt.Errorf("image definition %s:%d:%d: %s", name, row, col, de.String())
		}
		var se *toml.StrictMissingError
		if errors.As(err, &se) {
			return fmt.Errorf("image definition %s: %s", name, se.String())
		}
		return fmt.Errorf("image definition %s: %w", name, err)
	}
	return nil
}

func (d *Distro) validate() error {
	if d.Codename == "" || len(d.Components) == 0 || len(d.Suites) == 0 {
		return errors.New("codename, components and suites are required")
	}
	if len(d.Arches) == 0 {
		return errors.New("no arches")
	}
	for _, h := range d.Build.CrossHosts {
		if _, ok := d.Arches[h]; !ok {
			return fmt.Errorf("build.cross_hosts: %q is not one of the arches", h)
		}
	}
	for name, a := range d.Arches {
		a.Name = name
		if a.Dpkg == "" {
			return fmt.Errorf("arches.%s.dpkg is required", name)
		}
		var root bool
		for i, p := range a.Partitions {
			if p.Mountpoint == "/" {
				root = true
			}
			if p.Size == 0 && i != len(a.Partitions)-1 {
				return fmt.Errorf("arches.%s.partitions[%d] (%s): only the last partition may take the rest of the disk", name, i, p.Name)
			}
		}
		if len(a.Partitions) > 0 && !root {
			return fmt.Errorf("arches.%s.partitions: no partition is mounted at /", name)
		}
	}
	return nil
}

func (t *ImageType) validate() error {
	if t.Filename == "" || strings.Contains(t.Filename, "/") {
		return fmt.Errorf("filename %q must be a plain file name", t.Filename)
	}
	switch t.Platform {
	case "system", "container":
	default:
		return fmt.Errorf("platform %q: want system or container", t.Platform)
	}
	if t.Bootable && (t.Kernel == "" || t.Size == 0) {
		return errors.New("a bootable type needs kernel and size")
	}
	if t.BootTimeout != nil && (*t.BootTimeout < 0 || *t.BootTimeout > 3600) {
		return fmt.Errorf("boot_timeout: %d is not within 0-3600 seconds", *t.BootTimeout)
	}
	if iso := t.ISO; iso != nil {
		switch iso.Kind {
		case "live":
		case "installer":
			if !t.Bootable || len(t.Packages) > 0 || len(t.Files) > 0 {
				return errors.New("iso: an installer carries the disk the raw type makes: it must be bootable and add no packages or files to the os tree")
			}
			if iso.Hostname == "" {
				return errors.New("iso.hostname: the installer tree needs a host name")
			}
		default:
			return fmt.Errorf("iso.kind: %q is not live or installer", iso.Kind)
		}
		if !t.Bootable || iso.VolumeID == "" || len(t.Export) > 0 {
			return errors.New("iso: an ISO type is bootable, has a volume_id and no export steps (the iso stage is its export)")
		}
	}
	for i, e := range t.Export {
		if e.Type == "" {
			return fmt.Errorf("export[%d]: type is required", i)
		}
	}
	return nil
}

// Distro returns the named distro or an error listing the known ones.
func (d *Defs) Distro(name string) (*Distro, error) {
	if v, ok := d.Distros[name]; ok {
		return v, nil
	}
	return nil, fmt.Errorf("unknown distro %q (known: %s)", name, strings.Join(d.DistroNames(), ", "))
}

// Type returns the named image type or an error listing the known ones.
func (d *Defs) Type(name string) (*ImageType, error) {
	if v, ok := d.Types[name]; ok {
		return v, nil
	}
	return nil, fmt.Errorf("unknown image type %q (known: %s)", name, strings.Join(d.TypeNames(), ", "))
}

// Arch returns the distro's named architecture or an error listing them.
func (d *Distro) Arch(name string) (*Arch, error) {
	if v, ok := d.Arches[name]; ok {
		return v, nil
	}
	return nil, fmt.Errorf("unknown architecture %q for %s (known: %s)", name, d.Name, strings.Join(d.ArchNames(), ", "))
}

// DistroNames lists the distros, sorted.
func (d *Defs) DistroNames() []string { return sortedKeys(d.Distros) }

// TypeNames lists the image types, sorted.
func (d *Defs) TypeNames() []string { return sortedKeys(d.Types) }

// ArchNames lists the distro's architectures, sorted.
func (d *Distro) ArchNames() []string { return sortedKeys(d.Arches) }

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
