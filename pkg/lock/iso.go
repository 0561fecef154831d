package lock

import (
	"fmt"
	"path"
	"regexp"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
	"github.com/image-builder-action/image-builder-action/pkg/disk"
	"github.com/image-builder-action/image-builder-action/pkg/distro"
	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/stages"
)

// The ISO image types. live-iso boots the os tree itself from the ISO;
// image-installer boots a small tree of its own that writes the raw disk
// image (the image pipeline's disk.raw, the same stages as the raw type's,
// so a build makes it once) onto a disk.

const (
	// pipelineInstaller is the installer's own tree.
	pipelineInstaller = "installer"
	// pipelineISOBuild is the installer's ISO tools' build root.
	pipelineISOBuild = "build-iso"
	// rawFile is the image pipeline's disk.
	rawFile = "disk.raw"
	// installerPayload is where the installer ISO carries the disk.
	installerPayload = "/install/disk.raw.zst"
	// installerConf is the installer's settings, which its script reads.
	installerConf = "/etc/ibuild-installer.conf"
)

// isLive reports whether the entry's os tree boots from an ISO.
func (p *entryPlan) isLive() bool { return p.typ.ISO != nil && p.typ.ISO.Kind == "live" }

// isoModules is the initramfs module list of a tree booting from the ISO:
// the kernel's list and what finding the medium takes.
func (p *entryPlan) isoModules() []string {
	var out []string
	seen := map[string]bool{}
	for _, m := range append(append([]string(nil), p.distro.Initramfs.Modules[p.typ.Kernel]...), p.typ.ISO.Modules...) {
		if !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	return out
}

// installerPipeline is the installer's tree: its packages, an initramfs
// that finds the ISO, the install script and unit, and its settings.
func (p *entryPlan) installerPipeline(debs []manifest.Stage, rootPartition int) manifest.Pipeline {
	iso, d := p.typ.ISO, p.distro
	pl := manifest.Pipeline{Name: pipelineInstaller, Stages: debs}
	add := func(typ string, opts any) { pl.Stages = append(pl.Stages, stage(typ, opts)) }
	add("initramfs", stages.Initramfs{Modules: p.isoModules(), Compress: d.Initramfs.Compress, Fstype: d.Initramfs.FSType})
	add("hostname", stages.Hostname{Hostname: iso.Hostname})
	conf := fmt.Sprintf("# Written by ibuild lock: what the installer writes, and where.\n"+
		"DEVICE=%s\nROOT_PARTITION=%d\nRAW_SIZE=%d\nPAYLOAD=%s\n",
		shq(p.cust.installDevice), rootPartition, p.table.Size, installerPayload)
	files := []stages.FileSpec{{Node: stages.Node{Path: installerConf, Mode: "0644"}, Data: conf}}
	for _, f := range iso.Files {
		files = append(files, stages.FileSpec{Node: stages.Node{Path: f.Path, Mode: f.Mode}, Data: f.Data, EnsureParents: true})
	}
	add("files", stages.Files{Files: files})
	if p.cust.installDevice != "" {
		p.origin(pl.Name, len(pl.Stages)-1, "customizations.installation_device")
	}
	if len(iso.EnabledServices) > 0 {
		add("systemd", stages.Systemd{Enabled: iso.EnabledServices})
	}
	add("cleanup", stages.Cleanup{})
	return pl
}

// isoPipeline is the export pipeline writing the ISO of the tree of
// pipeline root, with payload when the type carries one.
func (p *entryPlan) isoPipeline(root string, payload *stages.ISOPayload) manifest.Pipeline {
	iso, c := p.typ.ISO, p.cust
	opts := stages.ISO{
		Filename:      p.typ.Filename,
		VolumeID:      iso.VolumeID,
		Publisher:     c.isoPublisher,
		ApplicationID: c.isoApplicationID,
		Root:          stages.Source{Pipeline: root, Path: "/"},
		Timeout:       bootTimeout(p.typ),
		BIOS:          p.arch.Name == "x86_64",
		Payload:       payload,
	}
	if c.isoVolumeID != "" {
		opts.VolumeID = c.isoVolumeID
	}
	name := p.distro.Description
	if iso.Kind == "live" {
		opts.KernelOpts = mergeKernelArgs(p.arch.KernelOpts+" "+p.typ.KernelOpts+" "+iso.KernelOpts, c.kernelOpts)
		opts.Menu = []stages.ISOMenuEntry{{Title: name + " (live)"}}
	} else {
		// The blueprint's kernel arguments are the installed system's.
		opts.KernelOpts = mergeKernelArgs(p.arch.KernelOpts+" "+iso.KernelOpts, "")
		opts.Menu = []stages.ISOMenuEntry{
			{Title: "Install " + name},
			{Title: "Install " + name + ", replacing the partitions of the disk", KernelOpts: "ibuild.overwrite=1"},
		}
		if c.installerTimeout != nil {
			opts.Timeout = *c.installerTimeout
		}
	}
	pl := manifest.Pipeline{Name: p.typ.Name, Build: manifest.PipelineBuild, Stages: []manifest.Stage{stage("iso", opts)}}
	if c.isoField != "" {
		p.origin(pl.Name, 0, c.isoField)
	}
	return pl
}

// rootPartition is the 1-based number of the partition the installer
// grows to the disk: the root's, when it is the last partition and ext4
// (resize2fs); 0 leaves the disk as written.
func rootPartition(tbl *disk.Table) int {
	n := len(tbl.Partitions)
	if n == 0 {
		return 0
	}
	if fs := tbl.Partitions[n-1].FS; fs != nil && fs.Mountpoint == "/" && fs.Type == disk.Ext4 {
		return n
	}
	return 0
}

// isoCustomizations maps the blueprint's installer and ISO fields onto
// the ISO types among those locked, and refuses them when no type locked
// would use them, or what this installer does not do.
func isoCustomizations(bp *blueprint.Blueprint, c *customizations, o *options, refuse func(field, why string)) {
	cu := bp.Customizations
	if cu == nil {
		return
	}
	var live, installer bool
	types := o.types
	if len(types) == 0 {
		types = []string{"qcow2"}
	}
	defs := o.defs
	if defs == nil {
		var err error
		if defs, err = distro.Load(); err != nil {
			defs = &distro.Defs{}
		}
	}
	for _, name := range types {
		if t := defs.Types[name]; t != nil && t.ISO != nil {
			live = live || t.ISO.Kind == "live"
			installer = installer || t.ISO.Kind == "installer"
		}
	}
	if dev := cu.InstallationDevice; dev != "" {
		switch {
		case !installer:
			refuse("customizations.installation_device", "it is the disk the image-installer type writes the image to: lock that type (--type image-installer)")
		case !installDevice.MatchString(dev) || path.Clean(dev) != dev:
			refuse("customizations.installation_device", fmt.Sprintf("%q is not a device path such as /dev/sda or /dev/disk/by-id/NAME", dev))
		default:
			c.installDevice = dev
		}
	}
	if in := cu.Installer; in != nil {
		const f = "customizations.installer"
		if !installer {
			refuse(f, "it configures the installer of the image-installer type: lock that type (--type image-installer)")
		}
		// Unattended is what this installer always is: it writes the
		// image without asking.
		if in.Kickstart != nil {
			refuse(f+".kickstart", "kickstart is the language of Fedora's installer, Anaconda; this installer runs none: it writes the locked raw image onto customizations.installation_device (default: the first non-removable disk) and grows its root. Configure the installed system with the blueprint's other customizations, and steps at its first boot with customizations.firstboot")
		}
		if len(in.SudoNopasswd) > 0 {
			refuse(f+".sudo-nopasswd", "the installer writes the raw image as locked and changes nothing in it: give the rights in the image itself, with customizations.files (/etc/sudoers.d/NAME) or a user's groups = [\"sudo\"]")
		}
		if in.Modules != nil {
			refuse(f+".modules", "Anaconda's modules do not exist here: the installer has no modules and asks nothing")
		}
		if in.Payload != nil {
			refuse(f+".payload", "the installer's payload is the locked raw image alone; flatpaks are not installed")
		}
		timeout := in.MenuTimeout
		field := f + ".menu-timeout"
		if in.Bootloader != nil && in.Bootloader.Grub2 != nil && in.Bootloader.Grub2.MenuTimeout != nil {
			timeout, field = in.Bootloader.Grub2.MenuTimeout, f+".bootloader.grub2.menu-timeout"
		}
		if timeout != nil {
			if *timeout < 0 || *timeout > 3600 {
				refuse(field, fmt.Sprintf("%d is not within 0-3600 seconds", *timeout))
			} else {
				c.installerTimeout = timeout
			}
		}
	}
	if iso := cu.ISO; iso != nil {
		const f = "customizations.iso"
		if !live && !installer {
			refuse(f, "it sets the metadata of the ISO image types (live-iso, image-installer): lock one of them")
			return
		}
		c.isoField = f
		c.isoVolumeID, c.isoPublisher, c.isoApplicationID = iso.VolumeID, iso.Publisher, iso.ApplicationID
	}
}

// installDevice is what the installer's settings take as a device path.
var installDevice = regexp.MustCompile(`^/dev/[A-Za-z0-9/._:+@-]+$`)
