package blueprint

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"unicode/utf16"
)

// checker collects validation errors against field paths.
type checker struct {
	errs []*Error
}

func (c *checker) add(field, format string, args ...any) {
	c.errs = append(c.errs, &Error{Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (c *checker) check(field string, err error) {
	if err != nil {
		c.errs = append(c.errs, &Error{Field: field, Msg: err.Error()})
	}
}

func (b *Blueprint) validate() []*Error {
	c := &checker{}
	c.top(b)
	if b.Customizations != nil {
		c.customizations("customizations", b.Customizations)
	}
	return c.errs
}

func (c *checker) top(b *Blueprint) {
	switch {
	case b.Name == "":
		c.add("name", "a blueprint name is required")
	case hasControl(b.Name) || strings.Contains(b.Name, "/"):
		c.add("name", "invalid blueprint name %q: must not contain control characters or '/'", b.Name)
	}
	if b.Version != "" && !semverRE.MatchString(b.Version) {
		c.add("version", "invalid version %q: must be a semantic version such as \"0.0.1\"", b.Version)
	}
	if b.Distro != "" && !distroRE.MatchString(b.Distro) {
		c.add("distro", "invalid distro %q: want a name such as \"debian-12\"", b.Distro)
	}
	if b.Architecture != "" && !archRE.MatchString(b.Architecture) {
		c.add("architecture", "invalid architecture %q", b.Architecture)
	}
	for i, p := range b.Packages {
		c.check(joinIndex("packages", i), checkPackage(p.Name, p.Version))
	}
	for i, p := range b.Modules {
		c.check(joinIndex("modules", i), checkPackage(p.Name, p.Version))
	}
	for i, m := range b.EnabledModules {
		if !packageNameRE.MatchString(m.Name) {
			c.add(joinIndex("enabled_modules", i)+".name", "invalid module name %q", m.Name)
		}
	}
	for i, g := range b.Groups {
		f := joinIndex("groups", i) + ".name"
		switch {
		case g.Name == "":
			c.add(f, "group name is required")
		case hasControl(g.Name) || strings.TrimSpace(g.Name) != g.Name:
			c.add(f, "invalid group name %q", g.Name)
		}
	}
	for i, ct := range b.Containers {
		f := joinIndex("containers", i) + ".source"
		if ct.Source == "" || strings.ContainsFunc(ct.Source, func(r rune) bool { return r <= ' ' }) {
			c.add(f, "invalid container source %q: want an image reference such as registry.example.com/image:tag", ct.Source)
		}
	}
}

func (c *checker) customizations(p string, cu *Customizations) {
	if cu.Hostname != nil {
		c.check(p+".hostname", checkHostname(*cu.Hostname, 64))
	}
	if k := cu.Kernel; k != nil {
		if k.Name != "" && !packageNameRE.MatchString(k.Name) {
			c.add(p+".kernel.name", "invalid kernel package name %q", k.Name)
		}
		if hasControl(k.Append) {
			c.add(p+".kernel.append", "kernel command line must be one line without control characters")
		}
	}
	c.users(p, cu)
	c.groups(p, cu)
	if tz := cu.Timezone; tz != nil {
		if tz.Timezone != nil && (len(*tz.Timezone) > 255 || !timezoneRE.MatchString(*tz.Timezone)) {
			c.add(p+".timezone.timezone", "invalid time zone %q: want a name such as \"Europe/Berlin\" or \"UTC\"", *tz.Timezone)
		}
		for i, s := range tz.NTPServers {
			if checkHostname(s, 253) != nil && !isIP(s) {
				c.add(joinIndex(p+".timezone.ntpservers", i), "invalid NTP server %q: want a host name or an IP address", s)
			}
		}
	}
	if l := cu.Locale; l != nil {
		for i, lang := range l.Languages {
			if !localeRE.MatchString(lang) {
				c.add(joinIndex(p+".locale.languages", i), "invalid locale %q: want a name such as \"en_US.UTF-8\"", lang)
			}
		}
		if l.Keyboard != nil && (len(*l.Keyboard) > 64 || !keyboardRE.MatchString(*l.Keyboard)) {
			c.add(p+".locale.keyboard", "invalid keyboard layout %q", *l.Keyboard)
		}
	}
	if fw := cu.Firewall; fw != nil {
		c.firewall(p+".firewall", fw)
	}
	if s := cu.Services; s != nil {
		c.services(p+".services", s)
	}
	c.filesystems(p, cu)
	if cu.Disk != nil {
		c.disk(p+".disk", cu.Disk)
		if len(cu.Filesystem) > 0 {
			c.add(p+".disk", "cannot be combined with customizations.filesystem")
		}
	}
	c.filesAndDirectories(p, cu)
	if sd := cu.Sshd; sd != nil {
		switch sd.PermitRootLogin {
		case "", "yes", "no", "prohibit-password", "without-password", "forced-commands-only":
		default:
			c.add(p+".sshd.permit_root_login", "invalid value %q (want yes, no, prohibit-password or forced-commands-only)", sd.PermitRootLogin)
		}
		if sd.ClientAliveInterval != nil && *sd.ClientAliveInterval < 0 {
			c.add(p+".sshd.client_alive_interval", "must not be negative")
		}
	}
	if fb := cu.Firstboot; fb != nil {
		c.firstboot(p+".firstboot", fb)
	}
	c.repositories(p, cu.Repositories)
	c.rpmOnly(p, cu)
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

func (c *checker) users(p string, cu *Customizations) {
	seen := map[string]string{}
	for i, k := range cu.SSHKey {
		f := joinIndex(p+".sshkey", i)
		c.check(f+".user", checkNewName("user", k.User))
		c.check(f+".key", checkSSHKeys(k.Key))
	}
	for i, u := range cu.User {
		f := joinIndex(p+".user", i)
		if err := checkNewName("user", u.Name); err != nil {
			c.check(f+".name", err)
		} else if prev, dup := seen[u.Name]; dup {
			c.add(f+".name", "duplicate user %q (also %s)", u.Name, prev)
		} else {
			seen[u.Name] = f
		}
		if u.Description != nil && (strings.Contains(*u.Description, ":") || hasControl(*u.Description)) {
			c.add(f+".description", "must not contain ':' or control characters")
		}
		if u.Password != nil && (strings.ContainsAny(*u.Password, ":\n") || hasControl(*u.Password)) {
			c.add(f+".password", "must not contain ':' or control characters")
		}
		if u.Key != nil {
			c.check(f+".key", checkSSHKeys(*u.Key))
		}
		if u.Home != nil {
			c.check(f+".home", checkAbsPath(*u.Home))
		}
		if u.Shell != nil {
			c.check(f+".shell", checkAbsPath(*u.Shell))
		}
		for j, g := range u.Groups {
			c.check(joinIndex(f+".groups", j), checkRefName("group", g))
		}
		if u.UID != nil {
			c.check(f+".uid", checkID("uid", int64(*u.UID)))
		}
		if u.GID != nil {
			c.check(f+".gid", checkID("gid", int64(*u.GID)))
		}
		if u.ExpireDate != nil && *u.ExpireDate < 0 {
			c.add(f+".expiredate", "must not be negative (days since 1970-01-01)")
		}
	}
}

func (c *checker) groups(p string, cu *Customizations) {
	names := map[string]string{}
	gids := map[int]string{}
	for i, g := range cu.Group {
		f := joinIndex(p+".group", i)
		if err := checkNewName("group", g.Name); err != nil {
			c.check(f+".name", err)
		} else if prev, dup := names[g.Name]; dup {
			c.add(f+".name", "duplicate group %q (also %s)", g.Name, prev)
		} else {
			names[g.Name] = f
		}
		if g.GID != nil {
			if err := checkID("gid", int64(*g.GID)); err != nil {
				c.check(f+".gid", err)
			} else if prev, dup := gids[*g.GID]; dup {
				c.add(f+".gid", "duplicate gid %d (also %s)", *g.GID, prev)
			} else {
				gids[*g.GID] = f
			}
		}
	}
}

func (c *checker) firewall(p string, fw *FirewallCustomization) {
	for i, port := range fw.Ports {
		c.check(joinIndex(p+".ports", i), checkFirewallPort(port))
	}
	if s := fw.Services; s != nil {
		enabled := map[string]bool{}
		for i, name := range s.Enabled {
			if !fwServiceRE.MatchString(name) {
				c.add(joinIndex(p+".services.enabled", i), "invalid firewall service name %q", name)
			}
			enabled[name] = true
		}
		for i, name := range s.Disabled {
			f := joinIndex(p+".services.disabled", i)
			switch {
			case !fwServiceRE.MatchString(name):
				c.add(f, "invalid firewall service name %q", name)
			case enabled[name]:
				c.add(f, "firewall service %q is both enabled and disabled", name)
			}
		}
	}
	for i, z := range fw.Zones {
		f := joinIndex(p+".zones", i)
		if z.Name != nil && *z.Name != "" && !fwZoneRE.MatchString(*z.Name) {
			c.add(f+".name", "invalid zone name %q", *z.Name)
		}
		for j, s := range z.Sources {
			c.check(joinIndex(f+".sources", j), checkZoneSource(s))
		}
	}
}

func (c *checker) services(p string, s *ServicesCustomization) {
	state := map[string]string{}
	lists := []struct {
		name  string
		units []string
	}{{"enabled", s.Enabled}, {"disabled", s.Disabled}, {"masked", s.Masked}}
	for _, l := range lists {
		for i, u := range l.units {
			f := joinIndex(p+"."+l.name, i)
			if err := checkUnit(u); err != nil {
				c.check(f, err)
				continue
			}
			full := unitName(u)
			if prev, ok := state[full]; ok && prev != l.name {
				c.add(f, "unit %s is both %s and %s", full, prev, l.name)
				continue
			}
			state[full] = l.name
		}
	}
}

func (c *checker) filesystems(p string, cu *Customizations) {
	seen := map[string]string{}
	for i, fs := range cu.Filesystem {
		f := joinIndex(p+".filesystem", i)
		if c.mountpoint(f+".mountpoint", fs.Mountpoint) {
			if prev, dup := seen[fs.Mountpoint]; dup {
				c.add(f+".mountpoint", "duplicate mountpoint %q (also %s)", fs.Mountpoint, prev)
			}
			seen[fs.Mountpoint] = f
		}
		if fs.MinSize == 0 {
			c.add(f+".minsize", "minsize is required and must be greater than 0")
		}
	}
}

// mountpoint checks a mountpoint's syntax and composer's mountpoint policy.
func (c *checker) mountpoint(f, mp string) bool {
	if err := checkAbsPath(mp); err != nil {
		c.add(f, "invalid mountpoint: %v", err)
		return false
	}
	if err := checkPolicy(mp, mountpointPolicy); err != nil {
		c.add(f, "mountpoint %v", err)
		return false
	}
	return true
}

var fsLabelMax = map[string]int{"ext4": 16, "xfs": 12, "vfat": 11}

func (c *checker) disk(p string, d *DiskCustomization) {
	switch d.Type {
	case "", "gpt":
	case "dos":
		if len(d.Partitions) > 4 {
			c.add(p+".partitions", "a dos partition table holds at most 4 partitions, got %d", len(d.Partitions))
		}
	default:
		c.add(p+".type", "unknown partition table type %q (want gpt or dos)", d.Type)
	}
	if d.SectorSize != 0 && d.SectorSize&(d.SectorSize-1) != 0 {
		c.add(p+".sector_size", "must be a power of 2, got %d", d.SectorSize)
	}
	mounts := map[string]string{}
	vgs := map[string]string{}
	lvmCount, btrfsCount := 0, 0
	for i := range d.Partitions {
		part := &d.Partitions[i]
		f := joinIndex(p+".partitions", i)
		if part.MinSize == 0 {
			c.add(f+".minsize", "minsize is required and must be greater than 0")
		}
		c.partitionIDs(f, d.Type, part)
		switch part.Type {
		case "", "plain":
			c.notSet(f, part.Type, "logical_volumes", len(part.LogicalVolumes) > 0)
			c.notSet(f, part.Type, "subvolumes", len(part.Subvolumes) > 0)
			c.notSet(f, part.Type, "name", part.Name != "")
			c.filesystem(f, part.FilesystemTypedCustomization, mounts, true)
		case "lvm":
			lvmCount++
			c.notSet(f, part.Type, "mountpoint", part.Mountpoint != "")
			c.notSet(f, part.Type, "label", part.Label != "")
			c.notSet(f, part.Type, "fs_type", part.FSType != "")
			c.notSet(f, part.Type, "subvolumes", len(part.Subvolumes) > 0)
			c.volumeGroup(f, part, mounts, vgs)
		case "btrfs":
			btrfsCount++
			c.notSet(f, part.Type, "mountpoint", part.Mountpoint != "")
			c.notSet(f, part.Type, "label", part.Label != "")
			c.notSet(f, part.Type, "fs_type", part.FSType != "")
			c.notSet(f, part.Type, "logical_volumes", len(part.LogicalVolumes) > 0)
			c.notSet(f, part.Type, "name", part.Name != "")
			c.btrfs(f, part, mounts)
		default:
			c.add(f+".type", "unknown partition type %q (want plain, lvm or btrfs)", part.Type)
		}
	}
	switch {
	case lvmCount > 0 && btrfsCount > 0:
		c.add(p+".partitions", "lvm and btrfs partitions cannot be combined")
	case lvmCount > 1:
		c.add(p+".partitions", "only one lvm volume group is supported")
	case btrfsCount > 1:
		c.add(p+".partitions", "only one btrfs volume is supported")
	}
}

func (c *checker) notSet(f, typ, field string, set bool) {
	if typ == "" {
		typ = "plain"
	}
	if set {
		c.add(f+"."+field, "not allowed on a partition of type %q", typ)
	}
}

func (c *checker) partitionIDs(f, table string, part *PartitionCustomization) {
	if pt := part.PartType; pt != "" {
		isUUID, isDos := uuidRE.MatchString(pt), dosPartTypeRE.MatchString(pt)
		switch {
		case table == "gpt" && !isUUID:
			c.add(f+".part_type", "invalid part_type %q: a gpt partition type is a UUID", pt)
		case table == "dos" && !isDos:
			c.add(f+".part_type", "invalid part_type %q: a dos partition type is two hex digits", pt)
		case !isUUID && !isDos:
			c.add(f+".part_type", "invalid part_type %q: want a UUID (gpt) or two hex digits (dos)", pt)
		}
	}
	if part.PartUUID != "" {
		switch {
		case table == "dos":
			c.add(f+".part_uuid", "not supported on a dos partition table")
		case !uuidRE.MatchString(part.PartUUID):
			c.add(f+".part_uuid", "invalid part_uuid %q: must be a UUID", part.PartUUID)
		}
	}
	if part.PartLabel != "" {
		switch {
		case table == "dos":
			c.add(f+".part_label", "not supported on a dos partition table")
		case len(utf16.Encode([]rune(part.PartLabel))) > 36:
			c.add(f+".part_label", "a GPT partition label holds at most 36 UTF-16 code units")
		case hasControl(part.PartLabel):
			c.add(f+".part_label", "must not contain control characters")
		}
	}
}

// filesystem checks a filesystem on a plain partition (none allowed) or a
// logical volume.
func (c *checker) filesystem(f string, fs FilesystemTypedCustomization, mounts map[string]string, partition bool) {
	switch fs.FSType {
	case "swap", "none":
		if fs.FSType == "none" && !partition {
			c.add(f+".fs_type", "unknown filesystem type %q (want ext4, xfs, vfat or swap)", fs.FSType)
			return
		}
		if fs.Mountpoint != "" {
			c.add(f+".mountpoint", "a %s partition has no mountpoint", fs.FSType)
		}
		return
	case "ext4", "xfs", "vfat":
	case "":
		c.add(f+".fs_type", "fs_type is required (ext4, xfs, vfat or swap)")
	default:
		c.add(f+".fs_type", "unknown filesystem type %q (want ext4, xfs, vfat or swap)", fs.FSType)
	}
	if max, ok := fsLabelMax[fs.FSType]; ok && len(fs.Label) > max {
		c.add(f+".label", "a %s label holds at most %d bytes", fs.FSType, max)
	}
	if hasControl(fs.Label) {
		c.add(f+".label", "must not contain control characters")
	}
	if !c.mountpoint(f+".mountpoint", fs.Mountpoint) {
		return
	}
	if prev, dup := mounts[fs.Mountpoint]; dup {
		c.add(f+".mountpoint", "duplicate mountpoint %q (also %s)", fs.Mountpoint, prev)
	}
	mounts[fs.Mountpoint] = f
	switch {
	case fs.Mountpoint == "/boot" && fs.FSType != "ext4" && fs.FSType != "xfs" && fs.FSType != "":
		c.add(f+".fs_type", "/boot must be ext4 or xfs, not %s", fs.FSType)
	case fs.Mountpoint == "/boot/efi" && fs.FSType != "vfat" && fs.FSType != "":
		c.add(f+".fs_type", "/boot/efi must be vfat, not %s", fs.FSType)
	}
}

func (c *checker) volumeGroup(f string, part *PartitionCustomization, mounts, vgs map[string]string) {
	if part.Name != "" {
		if !lvmNameRE.MatchString(part.Name) || part.Name == "." || part.Name == ".." {
			c.add(f+".name", "invalid volume group name %q", part.Name)
		} else if prev, dup := vgs[part.Name]; dup {
			c.add(f+".name", "duplicate volume group %q (also %s)", part.Name, prev)
		}
		vgs[part.Name] = f
	}
	if len(part.LogicalVolumes) == 0 {
		c.add(f+".logical_volumes", "a volume group needs at least one logical volume")
	}
	lvs := map[string]string{}
	for j, lv := range part.LogicalVolumes {
		lf := joinIndex(f+".logical_volumes", j)
		if lv.Name != "" {
			if !lvmNameRE.MatchString(lv.Name) || lv.Name == "." || lv.Name == ".." {
				c.add(lf+".name", "invalid logical volume name %q", lv.Name)
			} else if prev, dup := lvs[lv.Name]; dup {
				c.add(lf+".name", "duplicate logical volume %q (also %s)", lv.Name, prev)
			}
			lvs[lv.Name] = lf
		}
		if lv.MinSize == 0 {
			c.add(lf+".minsize", "minsize is required and must be greater than 0")
		}
		if lv.Mountpoint == "/boot" || lv.Mountpoint == "/boot/efi" {
			c.add(lf+".mountpoint", "%s must be on a plain partition, not a logical volume", lv.Mountpoint)
			continue
		}
		c.filesystem(lf, lv.FilesystemTypedCustomization, mounts, false)
	}
}

func (c *checker) btrfs(f string, part *PartitionCustomization, mounts map[string]string) {
	if len(part.Subvolumes) == 0 {
		c.add(f+".subvolumes", "a btrfs volume needs at least one subvolume")
	}
	names := map[string]string{}
	for j, sv := range part.Subvolumes {
		sf := joinIndex(f+".subvolumes", j)
		switch {
		case sv.Name == "":
			c.add(sf+".name", "subvolume name is required")
		case hasControl(sv.Name) || slicesContains(strings.Split(sv.Name, "/"), ".."):
			c.add(sf+".name", "invalid subvolume name %q", sv.Name)
		default:
			if prev, dup := names[sv.Name]; dup {
				c.add(sf+".name", "duplicate subvolume %q (also %s)", sv.Name, prev)
			}
			names[sv.Name] = sf
		}
		if sv.Mountpoint == "/boot/efi" {
			c.add(sf+".mountpoint", "/boot/efi must be on a plain partition, not a btrfs subvolume")
			continue
		}
		if c.mountpoint(sf+".mountpoint", sv.Mountpoint) {
			if prev, dup := mounts[sv.Mountpoint]; dup {
				c.add(sf+".mountpoint", "duplicate mountpoint %q (also %s)", sv.Mountpoint, prev)
			}
			mounts[sv.Mountpoint] = sf
		}
	}
}

func (c *checker) filesAndDirectories(p string, cu *Customizations) {
	// kind and field of every path, to find duplicates and files that are
	// used as directories.
	type node struct {
		field string
		dir   bool
	}
	nodes := map[string]node{}
	for i, d := range cu.Directories {
		f := joinIndex(p+".directories", i)
		ok := c.fsPath(f+".path", d.Path, directoryPolicy)
		c.check(f+".mode", checkMode(d.Mode))
		c.check(f+".user", checkOwner("user", d.User))
		c.check(f+".group", checkOwner("group", d.Group))
		if !ok {
			continue
		}
		if prev, dup := nodes[d.Path]; dup {
			c.add(f+".path", "duplicate directory %q (also %s)", d.Path, prev.field)
			continue
		}
		nodes[d.Path] = node{field: f, dir: true}
	}
	var files []string
	for i, fl := range cu.Files {
		f := joinIndex(p+".files", i)
		ok := c.fsPath(f+".path", fl.Path, filePolicy)
		c.check(f+".mode", checkMode(fl.Mode))
		c.check(f+".user", checkOwner("user", fl.User))
		c.check(f+".group", checkOwner("group", fl.Group))
		switch fl.DataEncoding {
		case "", "plain":
		case "base64":
			if _, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(fl.Data), "")); err != nil {
				c.add(f+".data", "data_encoding is base64 but data is not valid base64")
			}
		default:
			c.add(f+".data_encoding", "unknown data encoding %q (want plain or base64)", fl.DataEncoding)
		}
		if fl.URI != "" {
			if fl.Data != "" {
				c.add(f+".uri", "uri and data are mutually exclusive")
			}
			c.check(f+".uri", checkFileURI(fl.URI))
		}
		if !ok {
			continue
		}
		if prev, dup := nodes[fl.Path]; dup {
			if prev.dir {
				c.add(f+".path", "%q is declared both as a file and as a directory (%s)", fl.Path, prev.field)
			} else {
				c.add(f+".path", "duplicate file %q (also %s)", fl.Path, prev.field)
			}
			continue
		}
		nodes[fl.Path] = node{field: f}
		files = append(files, fl.Path)
	}
	// A file cannot be the parent of another file or directory.
	paths := make([]string, 0, len(nodes))
	for np := range nodes {
		paths = append(paths, np)
	}
	sort.Strings(paths)
	for _, fp := range files {
		for _, np := range paths {
			if strings.HasPrefix(np, fp+"/") {
				c.add(nodes[fp].field+".path", "file %q is also used as a directory by %s", fp, nodes[np].field)
				break
			}
		}
	}
}

// firstboot checks composer's firstboot scripts.
func (c *checker) firstboot(p string, fb *FirstbootCustomization) {
	names := map[string]string{}
	for i, sc := range fb.Scripts {
		f := joinIndex(p+".scripts", i)
		if sc.Name != "" {
			if !firstbootNameRE.MatchString(sc.Name) {
				c.add(f+".name", "invalid name %q: use letters, digits, '-' and '_'", sc.Name)
			} else if prev, dup := names[sc.Name]; dup {
				c.add(f+".name", "duplicate firstboot name %q (also %s)", sc.Name, prev)
			}
			names[sc.Name] = f
		}
		for _, l := range []struct {
			field string
			units []string
		}{{"after", sc.After}, {"before", sc.Before}} {
			for j, u := range l.units {
				if err := checkUnit(u); err != nil || unitName(u) != u {
					c.add(joinIndex(f+"."+l.field, j), "invalid unit %q: want a full unit name such as network-online.target", u)
				}
			}
		}
		for j, pemData := range sc.CACerts {
			c.check(joinIndex(f+".cacerts", j), checkPEMCerts(pemData))
		}
		switch sc.Type {
		case "", "custom":
			if strings.TrimSpace(sc.Contents) == "" {
				c.add(f+".contents", "a custom firstboot script needs contents")
			}
		case "satellite":
			if sc.Command == "" {
				c.add(f+".command", "a satellite firstboot script needs the registration command")
			}
		case "aap":
			if sc.JobTemplateURL == "" {
				c.add(f+".job_template_url", "an aap firstboot script needs the job template URL")
			} else {
				c.check(f+".job_template_url", checkURL(sc.JobTemplateURL))
			}
			if sc.HostConfigKey == "" {
				c.add(f+".host_config_key", "an aap firstboot script needs the host config key")
			}
		default:
			c.add(f+".type", "unknown firstboot type %q (want custom, satellite or aap)", sc.Type)
		}
	}
}

func (c *checker) fsPath(f, p string, policy []pathRule) bool {
	if err := checkAbsPath(p); err != nil {
		c.check(f, err)
		return false
	}
	if p == "/" {
		c.add(f, "path must not be /")
		return false
	}
	if err := checkPolicy(p, policy); err != nil {
		c.check(f, err)
		return false
	}
	return true
}

func (c *checker) repositories(p string, repos []RepositoryCustomization) {
	ids := map[string]string{}
	for i, r := range repos {
		f := joinIndex(p+".repositories", i)
		switch {
		case r.ID == "":
			c.add(f+".id", "repository id is required")
		case !repoIDRE.MatchString(r.ID):
			c.add(f+".id", "invalid repository id %q: use letters, digits, '_', '.', ':' and '-'", r.ID)
		default:
			if prev, dup := ids[r.ID]; dup {
				c.add(f+".id", "duplicate repository %q (also %s)", r.ID, prev)
			}
			ids[r.ID] = f
		}
		if r.Filename != "" {
			name := r.Filename
			if !strings.HasSuffix(name, ".repo") {
				name += ".repo"
			}
			if !repoFileRE.MatchString(name) {
				c.add(f+".filename", "invalid repository file name %q", r.Filename)
			}
		}
		if len(r.BaseURLs) == 0 && r.Mirrorlist == "" && r.Metalink == "" {
			c.add(f, "a repository needs baseurls, a mirrorlist or a metalink")
		}
		for j, u := range r.BaseURLs {
			c.check(joinIndex(f+".baseurls", j), checkURL(u))
		}
		if r.Mirrorlist != "" {
			c.check(f+".mirrorlist", checkURL(r.Mirrorlist))
		}
		if r.Metalink != "" {
			c.check(f+".metalink", checkURL(r.Metalink))
		}
		if r.GPGCheck != nil && *r.GPGCheck && len(r.GPGKeys) == 0 {
			c.add(f+".gpgkeys", "gpgcheck is true but no gpgkeys are given")
		}
		for j, k := range r.GPGKeys {
			c.check(joinIndex(f+".gpgkeys", j), checkGPGKey(k))
		}
		flat := false
		for j, s := range r.Suites {
			sf := joinIndex(f+".suites", j)
			switch {
			case !suiteRE.MatchString(s) || slicesContains(strings.Split(s, "/"), ".."):
				c.add(sf, "invalid suite %q", s)
			case strings.HasSuffix(s, "/"):
				flat = true
				if len(r.Suites) > 1 {
					c.add(sf, "a flat repository (suite ending in /) has exactly one suite")
				}
			}
		}
		for j, comp := range r.Components {
			if !componentRE.MatchString(comp) {
				c.add(joinIndex(f+".components", j), "invalid component %q", comp)
			}
		}
		switch {
		case len(r.Components) > 0 && len(r.Suites) == 0:
			c.add(f+".components", "components need suites")
		case flat && len(r.Components) > 0:
			c.add(f+".components", "a flat repository (suite ending in /) has no components")
		}
	}
}

// rpmOnly checks the customizations composer checks for its own distros.
func (c *checker) rpmOnly(p string, cu *Customizations) {
	switch cu.PartitioningMode {
	case "", "raw", "lvm", "auto-lvm", "btrfs":
	default:
		c.add(p+".partitioning_mode", "unknown partitioning mode %q (want raw, lvm, auto-lvm or btrfs)", cu.PartitioningMode)
	}
	if ig := cu.Ignition; ig != nil && ig.FirstBoot != nil && ig.FirstBoot.Empty && ig.FirstBoot.ProvisioningURL != "" {
		c.add(p+".ignition.firstboot", "url and empty are mutually exclusive")
	}
	if in := cu.Installer; in != nil {
		if in.Kickstart != nil && in.Kickstart.Contents != "" {
			if in.Unattended {
				c.add(p+".installer.unattended", "not supported with custom kickstart contents")
			}
			if len(in.SudoNopasswd) > 0 {
				c.add(p+".installer.sudo-nopasswd", "not supported with custom kickstart contents")
			}
		}
		if in.Modules != nil && len(cu.User)+len(cu.Group) > 0 {
			for j, m := range in.Modules.Disable {
				if m == "org.fedoraproject.Anaconda.Modules.Users" {
					c.add(joinIndex(p+".installer.modules.disable", j), "the Users module is required by user and group customizations")
				}
			}
		}
	}
	if iso := cu.ISO; iso != nil && iso.VolumeID != "" && !volumeIDRE.MatchString(iso.VolumeID) {
		c.add(p+".iso.volume_id", "invalid volume id %q: use letters, digits, '-', '_', '.' and '$'", iso.VolumeID)
	}
	if ca := cu.CACerts; ca != nil {
		for j, pemData := range ca.PEMCerts {
			c.check(joinIndex(p+".cacerts.pem_certs", j), checkPEMCerts(pemData))
		}
	}
	if cs := cu.ContainersStorage; cs != nil && cs.StoragePath != nil {
		c.check(p+".containers-storage.destination-path", checkAbsPath(*cs.StoragePath))
	}
}
