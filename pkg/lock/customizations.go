package lock

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
	"github.com/image-builder-action/image-builder-action/pkg/distro"
	"github.com/image-builder-action/image-builder-action/pkg/repo"
	"github.com/image-builder-action/image-builder-action/stages"
)

// customizationsFor checks the blueprint against what the distro honours,
// refusing the rest by field name, and returns the stage inputs and the
// packages the blueprint asks for (with "=version" globs).
func customizationsFor(bp *blueprint.Blueprint, d *distro.Distro) (customizations, []string, error) {
	var c customizations
	var errs []error
	refuse := func(field, why string) {
		errs = append(errs, bp.Errorf(field, "%s cannot honour this: %s", d.Name, why))
	}

	var pkgs []string
	addPkgs := func(field string, list []blueprint.Package) {
		for i, p := range list {
			switch {
			case p.Version == "" || p.Version == "*":
				pkgs = append(pkgs, p.Name)
			default:
				pkgs = append(pkgs, p.Name+"="+p.Version)
			}
			_ = i
		}
	}
	addPkgs("packages", bp.Packages)
	addPkgs("modules", bp.Modules)
	if len(bp.Groups) > 0 {
		refuse("groups", "Debian repositories have no package groups; list the packages (or a task-* package) under [[packages]]")
	}
	if len(bp.EnabledModules) > 0 {
		refuse("enabled_modules", "RPM module streams do not exist in Debian")
	}
	if len(bp.Containers) > 0 {
		refuse("containers", "embedding container images is not supported yet")
	}
	if bp.Minimal {
		refuse("minimal", "images are already minimal: no recommends, no documentation")
	}

	cu := bp.Customizations
	if cu == nil {
		return c, pkgs, errors.Join(errs...)
	}
	// Each field that becomes a stage's options is checked by that stage.
	sc := &stageChecker{bp: bp}
	if cu.Hostname != nil {
		c.hostname = *cu.Hostname
		sc.check("customizations.hostname", "hostname", "", stages.Hostname{Hostname: c.hostname})
	}
	if k := cu.Kernel; k != nil {
		c.kernelName = k.Name
		args, err := stages.KernelArgs(k.Append)
		if err != nil {
			errs = append(errs, bp.Errorf("customizations.kernel.append", "%v", err))
		}
		c.kernelOpts = strings.Join(args, " ")
	}
	for i, g := range cu.Group {
		gs := stages.GroupSpec{Name: g.Name, GID: g.GID}
		sc.check(fmt.Sprintf("customizations.group[%d]", i), "users", "groups[0]", stages.Users{Groups: []stages.GroupSpec{gs}})
		c.groups = append(c.groups, gs)
	}
	users := map[string]*stages.UserSpec{}
	for i, u := range cu.User {
		o := stages.UserSpec{Name: u.Name, UID: u.UID, GID: u.GID, Groups: u.Groups, ExpireDate: u.ExpireDate}
		o.Description = deref(u.Description)
		o.Home = deref(u.Home)
		o.Shell = deref(u.Shell)
		o.Password = deref(u.Password)
		if o.Password != "" && !stages.IsCryptHash(o.Password) {
			errs = append(errs, bp.Errorf(fmt.Sprintf("customizations.user[%d].password", i), "not a crypt hash ($y$, $6$, $5$, $2b$...): plaintext passwords are not written into images; hash it first (for example with `mkpasswd -m yescrypt`)"))
		}
		if u.Key != nil && *u.Key != "" {
			o.Keys = append(o.Keys, strings.TrimSpace(*u.Key))
		}
		sc.check(fmt.Sprintf("customizations.user[%d]", i), "users", "users[0]", stages.Users{Users: []stages.UserSpec{o}})
		if u.ForcePasswordReset != nil && *u.ForcePasswordReset {
			// chage -d 0 at first login is what composer does; a zero
			// expiry of the password is the same on Debian.
			refuse(fmt.Sprintf("customizations.user[%d].force_password_reset", i), "not supported yet")
		}
		c.users = append(c.users, o)
		users[u.Name] = &c.users[len(c.users)-1]
	}
	for _, k := range cu.SSHKey {
		if u := users[k.User]; u != nil {
			u.Keys = append(u.Keys, strings.TrimSpace(k.Key))
			continue
		}
		// An sshkey for a user the blueprint does not create: composer
		// gives an existing user (root) the key.
		c.users = append(c.users, stages.UserSpec{Name: k.User, Keys: []string{strings.TrimSpace(k.Key)}})
		users[k.User] = &c.users[len(c.users)-1]
	}
	if tz := cu.Timezone; tz != nil {
		if tz.Timezone != nil {
			c.timezone = *tz.Timezone
			pkgs = append(pkgs, "tzdata")
		}
		c.ntpServers = tz.NTPServers
		if len(tz.NTPServers) > 0 {
			pkgs = append(pkgs, "systemd-timesyncd")
		}
		sc.check("customizations.timezone", "timezone", "", stages.Timezone{Timezone: c.timezone, NTPServers: c.ntpServers})
	}
	if l := cu.Locale; l != nil {
		if len(l.Languages) > 0 {
			c.language = l.Languages[0]
			if len(l.Languages) > 1 {
				refuse("customizations.locale.languages", "one language sets LANG; list only one")
			}
			if c.language != "C.UTF-8" && c.language != "C" && c.language != "POSIX" {
				pkgs = append(pkgs, "locales")
			}
		}
		if l.Keyboard != nil {
			c.keyboard = *l.Keyboard
		}
		if c.language != "" || c.keyboard != "" {
			sc.check("customizations.locale", "locale", "", stages.Locale{Language: c.language, Keyboard: c.keyboard})
		}
	}
	if f := cu.Firewall; f != nil {
		c.firewall = &stages.Firewall{Ports: f.Ports}
		if f.Services != nil {
			c.firewall.EnabledServices = f.Services.Enabled
			c.firewall.DisabledServices = f.Services.Disabled
		}
		if len(f.Zones) > 0 {
			refuse("customizations.firewall.zones", "firewalld zones are not supported yet")
		}
		pkgs = append(pkgs, "firewalld")
		sc.check("customizations.firewall", "firewall", "", c.firewall)
	}
	if s := cu.Services; s != nil {
		c.enabled, c.disabled, c.masked = s.Enabled, s.Disabled, s.Masked
		sc.check("customizations.services", "systemd", "", stages.Systemd{Enabled: s.Enabled, Disabled: s.Disabled, Masked: s.Masked})
	}
	for i, fs := range cu.Filesystem {
		switch {
		case fs.Mountpoint == "/":
			c.rootMin = fs.MinSize
			c.rootField = fmt.Sprintf("customizations.filesystem[%d].minsize", i)
		case fs.Mountpoint == "/boot/efi" || fs.Mountpoint == "/boot":
			refuse(fmt.Sprintf("customizations.filesystem[%d].mountpoint", i), fs.Mountpoint+" is laid out by the image type")
		default:
			// Composer makes each other mountpoint its own partition.
			c.extraFS = append(c.extraFS, extraFS{mountpoint: fs.Mountpoint, minSize: fs.MinSize, field: fmt.Sprintf("customizations.filesystem[%d]", i)})
		}
	}
	sort.Slice(c.extraFS, func(i, j int) bool { return c.extraFS[i].mountpoint < c.extraFS[j].mountpoint })
	if dk := cu.Disk; dk != nil {
		if len(dk.Partitions) > 0 {
			refuse("customizations.disk.partitions", "custom partition tables are not supported yet; use customizations.disk.minsize or filesystem \"/\" minsize")
		}
		if dk.Type != "" && dk.Type != "gpt" {
			refuse("customizations.disk.type", "images use GPT")
		}
		c.diskMin = dk.MinSize
	}
	for i, dir := range cu.Directories {
		ds := stages.DirectorySpec{Node: node(dir.Path, dir.Mode, dir.User, dir.Group), EnsureParents: dir.EnsureParents}
		sc.check(fmt.Sprintf("customizations.directories[%d]", i), "directories", "directories[0]", stages.Directories{Directories: []stages.DirectorySpec{ds}})
		c.dirs = append(c.dirs, ds)
	}
	for i, f := range cu.Files {
		fs := stages.FileSpec{Node: node(f.Path, f.Mode, f.User, f.Group), Data: f.Data}
		sc.check(fmt.Sprintf("customizations.files[%d]", i), "files", "files[0]", stages.Files{Files: []stages.FileSpec{fs}})
		c.files = append(c.files, fs)
	}
	for _, r := range []struct {
		set   bool
		field string
	}{
		{cu.InstallationDevice != "", "customizations.installation_device"},
		{cu.PartitioningMode != "", "customizations.partitioning_mode"},
		{cu.FDO != nil, "customizations.fdo"},
		{cu.OpenSCAP != nil, "customizations.openscap"},
		{cu.Ignition != nil, "customizations.ignition"},
		{cu.FIPS != nil && *cu.FIPS, "customizations.fips"},
		{cu.Installer != nil, "customizations.installer"},
		{cu.RPM != nil, "customizations.rpm"},
		{cu.RHSM != nil, "customizations.rhsm"},
		{cu.CACerts != nil, "customizations.cacerts"},
		{cu.ContainersStorage != nil, "customizations.containers-storage"},
		{cu.DNF != nil, "customizations.dnf"},
		{cu.ISO != nil, "customizations.iso"},
		{cu.Firstboot != nil, "customizations.firstboot"},
	} {
		if r.set {
			refuse(r.field, "it does not apply to Debian images or is not supported yet")
		}
	}
	errs = append(errs, sc.errs...)
	return c, pkgs, errors.Join(errs...)
}

// node is a blueprint file or directory for its stage; user and group
// are nil, a name or an id, as the blueprint checked them.
func node(path, mode string, user, group any) stages.Node {
	return stages.Node{Path: path, Mode: mode, User: owner(user), Group: owner(group)}
}

func owner(v any) stages.Owner {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return stages.Owner(x)
	default:
		return stages.Owner(fmt.Sprint(x))
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// blueprintSources turns customizations.repositories into apt sources:
// every base URL with every suite (default: the distro's codename) and the
// components (default: the distro's).
func blueprintSources(bp *blueprint.Blueprint, d *distro.Distro) ([]repo.Source, error) {
	if bp.Customizations == nil {
		return nil, nil
	}
	var out []repo.Source
	var errs []error
	for i, r := range bp.Customizations.Repositories {
		field := fmt.Sprintf("customizations.repositories[%d]", i)
		if r.Enabled != nil && !*r.Enabled {
			continue
		}
		if len(r.BaseURLs) == 0 {
			errs = append(errs, bp.Errorf(field, "Debian repositories need baseurls (metalink and mirrorlist are RPM-only)"))
			continue
		}
		if r.GPGCheck != nil && !*r.GPGCheck || r.RepoGPGCheck != nil && !*r.RepoGPGCheck {
			errs = append(errs, bp.Errorf(field, "unsigned repositories are refused: every InRelease is verified"))
			continue
		}
		signedBy := d.Keyring
		if len(r.GPGKeys) > 0 {
			// Armored keys inline, as in a deb822 Signed-By field.
			signedBy = strings.Join(r.GPGKeys, "\n")
		}
		suites := r.Suites
		if len(suites) == 0 {
			suites = []string{d.Codename}
		}
		comps := r.Components
		if len(comps) == 0 {
			comps = d.Components
		}
		for _, u := range r.BaseURLs {
			for _, s := range suites {
				out = append(out, repo.Source{URI: strings.TrimRight(u, "/"), Suite: s, Components: comps, SignedBy: signedBy})
			}
		}
	}
	return out, errors.Join(errs...)
}
