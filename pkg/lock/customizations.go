package lock

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
	"github.com/image-builder-action/image-builder-action/pkg/disk"
	"github.com/image-builder-action/image-builder-action/pkg/distro"
	"github.com/image-builder-action/image-builder-action/pkg/repo"
	"github.com/image-builder-action/image-builder-action/pkg/shacrypt"
	"github.com/image-builder-action/image-builder-action/stages"
)

// pkgRequest is a package the blueprint asks for, with the field that
// asks, so that a missing package is reported at its line.
type pkgRequest struct {
	field   string // "packages[2]", "customizations.kernel.name"
	name    string // a name or a glob
	version string // "", a version or a glob
}

// install is the request as depsolve takes it.
func (r pkgRequest) install() string {
	if r.version == "" || r.version == "*" {
		return r.name
	}
	return r.name + "=" + r.version
}

// maxFetch bounds what lock downloads for a blueprint (keys, files).
const maxFetch = 32 << 20

// customizationsFor checks the blueprint against what the distro honours,
// refusing the rest by field name, and returns the stage inputs and the
// packages the blueprint asks for (as depsolve requests). Refusals say
// why; ctx and o serve the fields lock fetches (files' uri, repository
// keys given by URL).
func customizationsFor(bp *blueprint.Blueprint, d *distro.Distro) (customizations, []string, error) {
	return customizationsWith(context.Background(), bp, d, &options{})
}

func customizationsWith(ctx context.Context, bp *blueprint.Blueprint, d *distro.Distro, o *options) (customizations, []string, error) {
	var c customizations
	var errs []error
	refuse := func(field, why string) {
		errs = append(errs, bp.Errorf(field, "%s cannot honour this: %s", d.Name, why))
	}
	warn := func(field, format string, args ...any) {
		if o.warn != nil {
			o.warn(bp.Errorf(field, format, args...).Error())
		}
	}
	request := func(field, name, version string) {
		if g, ok := strings.CutPrefix(name, "@"); ok {
			// DNF's syntax in a package list: @group, @module:stream.
			if _, _, isModule := strings.Cut(g, ":"); isModule {
				refuse(field, fmt.Sprintf("%q is an RPM module stream; Debian has one version of each package in a release: list the packages", name))
				return
			}
			pkgs, ok := groupTasks[groupKey(g)]
			if !ok {
				refuse(field, fmt.Sprintf("Debian repositories have no package group %q; list its packages, or a task package (task-gnome-desktop, task-web-server, build-essential…)", g))
			}
			for _, p := range pkgs {
				c.requests = append(c.requests, pkgRequest{field: field, name: p})
			}
			return
		}
		c.requests = append(c.requests, pkgRequest{field: field, name: name, version: version})
	}
	system := func(names ...string) { c.systemPkgs = append(c.systemPkgs, names...) }

	for i, p := range bp.Packages {
		request(fmt.Sprintf("packages[%d].name", i), p.Name, p.Version)
	}
	for i, p := range bp.Modules {
		request(fmt.Sprintf("modules[%d].name", i), p.Name, p.Version)
	}
	for i, g := range bp.Groups {
		field := fmt.Sprintf("groups[%d].name", i)
		pkgs, ok := groupTasks[groupKey(g.Name)]
		switch {
		case !ok:
			refuse(field, fmt.Sprintf("Debian repositories have no package group %q; list its packages under [[packages]], or a task package (task-gnome-desktop, task-web-server, build-essential…)", g.Name))
		default:
			for _, p := range pkgs {
				request(field, p, "")
			}
		}
	}
	if len(bp.EnabledModules) > 0 {
		refuse("enabled_modules", "RPM module streams do not exist in Debian: a Debian release has one version of each package")
	}
	for i, ct := range bp.Containers {
		if ct.LocalStorage {
			refuse(fmt.Sprintf("containers[%d].local-storage", i), "it takes the image from the building host's containers-storage, which a lockfile cannot pin; push the image to a registry and name it by source")
			continue
		}
		if o.offline {
			continue
		}
		lc, err := resolveContainer(ctx, bp, i, ct, o.httpClient)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c.containers = append(c.containers, lc)
	}
	if len(bp.Containers) > 0 {
		// skopeo copies the images into containers-storage at first
		// boot; podman is what lists and runs them.
		system("podman", "skopeo")
		c.enabled = append(c.enabled, stages.ContainersUnit)
	}
	// minimal: the images are minimal already (no recommends, no
	// documentation), which is what composer's flag asks for.

	cu := bp.Customizations
	if cu == nil {
		return c, c.packages(), errors.Join(errs...)
	}
	// Each field that becomes a stage's options is checked by that stage.
	sc := &stageChecker{bp: bp}
	if cu.Hostname != nil {
		c.hostname = *cu.Hostname
		sc.check("customizations.hostname", "hostname", "", stages.Hostname{Hostname: c.hostname})
	}
	if k := cu.Kernel; k != nil {
		if k.Name != "" {
			c.kernelName = k.Name
			c.kernelField = "customizations.kernel.name"
		}
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
		field := fmt.Sprintf("customizations.user[%d]", i)
		o := stages.UserSpec{Name: u.Name, UID: u.UID, GID: u.GID, ExpireDate: u.ExpireDate}
		for _, g := range u.Groups {
			if g == "wheel" {
				// wheel is the administrators' group of Fedora and RHEL,
				// whose members sudo allows; Debian's is sudo.
				g = "sudo"
				system("sudo")
			}
			if !contains(o.Groups, g) {
				o.Groups = append(o.Groups, g)
			}
		}
		o.Description = deref(u.Description)
		o.Home = deref(u.Home)
		o.Shell = deref(u.Shell)
		o.Password = deref(u.Password)
		if o.Password != "" && !stages.IsCryptHash(o.Password) {
			if strings.HasPrefix(o.Password, "$") {
				errs = append(errs, bp.Errorf(field+".password", "starts with $ but is not a crypt hash ($y$, $6$, $5$, $2b$...): give a whole hash, or the password in plain text"))
			} else {
				h, err := hashPassword(u.Name, o.Password)
				if err != nil {
					errs = append(errs, bp.Errorf(field+".password", "%v", err))
				}
				o.Password = h
				warn(field+".password", "a plaintext password is in the blueprint (and so in your repository); it is hashed with SHA-512 crypt into the lockfile: put a hash in the blueprint instead (mkpasswd -m yescrypt)")
			}
		}
		if u.Key != nil && *u.Key != "" {
			o.Keys = append(o.Keys, splitKeys(*u.Key)...)
		}
		sc.check(fmt.Sprintf("customizations.user[%d]", i), "users", "users[0]", stages.Users{Users: []stages.UserSpec{o}})
		if u.ForcePasswordReset != nil && *u.ForcePasswordReset {
			o.ForcePasswordReset = true
		}
		c.users = append(c.users, o)
		users[u.Name] = &c.users[len(c.users)-1]
	}
	for _, k := range cu.SSHKey {
		if u := users[k.User]; u != nil {
			u.Keys = append(u.Keys, splitKeys(k.Key)...)
			continue
		}
		// An sshkey for a user the blueprint does not create: composer
		// gives an existing user (root) the key.
		c.users = append(c.users, stages.UserSpec{Name: k.User, Keys: splitKeys(k.Key)})
		users[k.User] = &c.users[len(c.users)-1]
	}
	if tz := cu.Timezone; tz != nil {
		if tz.Timezone != nil {
			c.timezone = *tz.Timezone
			system("tzdata")
		}
		c.ntpServers = tz.NTPServers
		if len(tz.NTPServers) > 0 {
			system("systemd-timesyncd")
		}
		sc.check("customizations.timezone", "timezone", "", stages.Timezone{Timezone: c.timezone, NTPServers: c.ntpServers})
	}
	if l := cu.Locale; l != nil {
		if len(l.Languages) > 0 {
			// The first sets LANG, the others are generated for users
			// who choose them, as composer does.
			c.language = l.Languages[0]
			for _, lang := range l.Languages[1:] {
				if lang != c.language && !contains(c.moreLanguages, lang) {
					c.moreLanguages = append(c.moreLanguages, lang)
				}
			}
			for _, lang := range l.Languages {
				if lang != "C.UTF-8" && lang != "C" && lang != "POSIX" {
					system("locales")
					break
				}
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
		for _, z := range f.Zones {
			c.firewall.Zones = append(c.firewall.Zones, stages.FirewallZone{Name: deref(z.Name), Sources: z.Sources})
		}
		system("firewalld")
		sc.check("customizations.firewall", "firewall", "", c.firewall)
	}
	if s := cu.Services; s != nil {
		c.enabled, c.disabled, c.masked = s.Enabled, s.Disabled, s.Masked
		sc.check("customizations.services", "systemd", "", stages.Systemd{Enabled: s.Enabled, Disabled: s.Disabled, Masked: s.Masked})
	}
	// The disk layout: checked here against each arch's partitions, so
	// a refusal comes before any repository is read; each bootable entry
	// lays it out again with its type's size (entryPlan.diskTable).
	if cu.Disk != nil || len(cu.Filesystem) > 0 || cu.PartitioningMode != "" {
		c.layout = cu
		seen := map[string]bool{}
		for _, name := range d.ArchNames() {
			a, _ := d.Arch(name)
			if a == nil || len(a.Partitions) == 0 {
				continue
			}
			tbl, ferrs := disk.New(diskBase(a, 0), cu)
			for _, e := range ferrs {
				if !seen[e.Error()] {
					seen[e.Error()] = true
					errs = append(errs, bp.Errorf(e.Field, "%s", e.Msg))
				}
			}
			if tbl != nil && tbl.Features().Btrfs && !d.Build.BtrfsSubvolumes && d.Build.BtrfsTools == "" && !seen["btrfs"] {
				seen["btrfs"] = true
				refuse(layoutField(cu), "btrfs layouts need mkfs.btrfs --subvol (btrfs-progs 6.6 or newer), which this release's build root lacks; use debian-13, or LVM or plain partitions")
			}
		}
	}
	for i, dir := range cu.Directories {
		ds := stages.DirectorySpec{Node: node(dir.Path, dir.Mode, dir.User, dir.Group), EnsureParents: dir.EnsureParents}
		sc.check(fmt.Sprintf("customizations.directories[%d]", i), "directories", "directories[0]", stages.Directories{Directories: []stages.DirectorySpec{ds}})
		c.dirs = append(c.dirs, ds)
	}
	for i, f := range cu.Files {
		field := fmt.Sprintf("customizations.files[%d]", i)
		spec := stages.FileSpec{Node: node(f.Path, f.Mode, f.User, f.Group), Data: f.Data, EnsureParents: f.EnsureParents}
		if f.DataEncoding == "base64" {
			spec.Data, spec.Encoding = strings.Join(strings.Fields(f.Data), ""), "base64"
		}
		if f.URI != "" {
			data, err := fetchURI(ctx, o, bp, f.URI)
			if err != nil {
				errs = append(errs, bp.Errorf(field+".uri", "%v", err))
			}
			// Pinned by content: the lockfile holds the bytes.
			spec.Data = string(data)
			if !utf8.Valid(data) {
				spec.Data, spec.Encoding = base64.StdEncoding.EncodeToString(data), "base64"
			}
		}
		sc.check(field, "files", "files[0]", stages.Files{Files: []stages.FileSpec{spec}})
		c.files = append(c.files, spec)
	}
	if ca := cu.CACerts; ca != nil && len(ca.PEMCerts) > 0 {
		c.cacerts = append(c.cacerts, ca.PEMCerts...)
	}
	if sd := cu.Sshd; sd != nil {
		c.files = append(c.files, sshdConfig(sd))
		system("openssh-server")
	}
	if fb := cu.Firstboot; fb != nil {
		for i, sc := range fb.Scripts {
			field := fmt.Sprintf("customizations.firstboot.scripts[%d]", i)
			if sc.Type == "satellite" {
				refuse(field+".type", "Satellite registration runs subscription-manager and installs RPM packages, which Debian has not")
				continue
			}
			c.cacerts = append(c.cacerts, sc.CACerts...)
			files, unit := firstbootUnit(i, sc)
			c.files = append(c.files, files...)
			c.enabled = append(c.enabled, unit)
			if sc.Type == "aap" {
				system("curl")
			}
		}
	}
	if len(c.cacerts) > 0 {
		system("ca-certificates")
	}
	repoFiles, err := repositoryFiles(ctx, bp, d, o)
	if err != nil {
		errs = append(errs, err)
	}
	c.files = append(c.files, repoFiles...)

	for _, r := range []struct {
		set        bool
		field, why string
	}{
		{cu.FDO != nil, "customizations.fdo", "FIDO Device Onboarding needs fdo-client, which Debian does not package"},
		{cu.OpenSCAP != nil, "customizations.openscap", "remediating needs SCAP Security Guide content for this release, and Debian's ssg-debian in bookworm (0.1.65) ships data streams for Debian 10 and 11 only (ssg-debian10-ds.xml, ssg-debian11-ds.xml); another release's profile would check the wrong files and packages, so there is no profile to remediate with"},
		{cu.Ignition != nil, "customizations.ignition", "Ignition is Fedora CoreOS's provisioning tool, which Debian does not package; use firstboot scripts or cloud-init"},
		{cu.FIPS != nil && *cu.FIPS, "customizations.fips", "Debian ships no FIPS 140-validated crypto modules or FIPS mode"},
		{cu.RPM != nil, "customizations.rpm", "it imports keys into RPM's database; Debian installs with dpkg and apt"},
		{cu.RHSM != nil, "customizations.rhsm", "Red Hat Subscription Manager exists only on RHEL"},
		{cu.ContainersStorage != nil, "customizations.containers-storage", "embedded containers are copied into containers-storage's default place (/var/lib/containers/storage) at first boot; another destination is not supported"},
		{cu.DNF != nil, "customizations.dnf", "it configures DNF; Debian installs with apt"},
	} {
		if r.set {
			refuse(r.field, r.why)
		}
	}
	isoCustomizations(bp, &c, o, refuse)
	errs = append(errs, sc.errs...)
	return c, c.packages(), errors.Join(errs...)
}

// packages is what the blueprint asks to install, as depsolve requests
// before globs are expanded (the apt baseline of the benchmark uses it).
func (c *customizations) packages() []string {
	var out []string
	for _, r := range c.requests {
		out = append(out, r.install())
	}
	return append(out, c.systemPkgs...)
}

// groupKey normalises a composer group id or name: "Development Tools"
// and "development-tools" are the same group.
func groupKey(s string) string {
	return strings.ToLower(strings.Join(strings.Fields(strings.ReplaceAll(strings.TrimPrefix(s, "@"), "-", " ")), "-"))
}

// groupTasks maps Fedora and RHEL comps groups to the Debian packages
// (mostly tasksel's task packages) that do the same job. "core" and
// "base" are what every Debian image holds already: no package to add.
var groupTasks = map[string][]string{
	"core":                            {},
	"base":                            {},
	"minimal-environment":             {},
	"standard":                        {},
	"development-tools":               {"build-essential"},
	"development":                     {"build-essential"},
	"c-development":                   {"build-essential"},
	"gnome-desktop":                   {"task-gnome-desktop"},
	"gnome-desktop-environment":       {"task-gnome-desktop"},
	"workstation-product-environment": {"task-gnome-desktop"},
	"workstation":                     {"task-gnome-desktop"},
	"gnome":                           {"task-gnome-desktop"},
	"kde-desktop":                     {"task-kde-desktop"},
	"kde-desktop-environment":         {"task-kde-desktop"},
	"xfce-desktop":                    {"task-xfce-desktop"},
	"xfce-desktop-environment":        {"task-xfce-desktop"},
	"lxde-desktop":                    {"task-lxde-desktop"},
	"lxqt-desktop":                    {"task-lxqt-desktop"},
	"mate-desktop":                    {"task-mate-desktop"},
	"cinnamon-desktop":                {"task-cinnamon-desktop"},
	"web-server":                      {"task-web-server"},
	"web-server-environment":          {"task-web-server"},
	"print-server":                    {"task-print-server"},
	"mail-server":                     {"task-mail-server"},
	"ssh-server":                      {"task-ssh-server"},
	"container-management":            {"podman"},
	"headless-management":             {"cockpit"},
	"server-product-environment":      {"task-ssh-server"},
	"cloud-server-environment":        {"cloud-init"},
	"virtualization-host-environment": {"qemu-system", "libvirt-daemon-system"},
}

// hashPassword hashes a plaintext password with SHA-512 crypt and a salt
// derived from the user and the password, so that locking twice writes
// the same lockfile.
func hashPassword(user, password string) (string, error) {
	sum := sha256.Sum256([]byte("ibuild password salt\x00" + user + "\x00" + password))
	salt := make([]byte, 16)
	for i := range salt {
		salt[i] = shacrypt.SaltChars[int(sum[i])%len(shacrypt.SaltChars)]
	}
	return shacrypt.SHA512(password, string(salt))
}

// armorKey checks that data is a binary OpenPGP public key and armors it.
func armorKey(data []byte) (string, error) {
	if _, err := openpgp.ReadKeyRing(bytes.NewReader(data)); err != nil {
		return "", err
	}
	var b strings.Builder
	w, err := armor.Encode(&b, openpgp.PublicKeyType, nil)
	if err != nil {
		return "", err
	}
	if _, err := w.Write(data); err != nil {
		return "", err
	}
	if err := w.Close(); err != nil {
		return "", err
	}
	return b.String(), nil
}

// splitKeys turns a key field (one or more authorized_keys lines) into
// the stage's one-line keys.
func splitKeys(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// sshdConfig is composer's sshd customization as a drop-in that Debian's
// sshd_config includes (Include /etc/ssh/sshd_config.d/*.conf, first
// value wins, so the drop-in overrides the main file).
func sshdConfig(sd *blueprint.SshdCustomization) stages.FileSpec {
	yesno := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	var b strings.Builder
	b.WriteString("# From the blueprint's customizations.sshd.\n")
	if sd.PasswordAuthentication != nil {
		fmt.Fprintf(&b, "PasswordAuthentication %s\n", yesno(*sd.PasswordAuthentication))
	}
	if sd.KbdInteractiveAuthentication != nil {
		fmt.Fprintf(&b, "KbdInteractiveAuthentication %s\n", yesno(*sd.KbdInteractiveAuthentication))
	}
	if sd.ClientAliveInterval != nil {
		fmt.Fprintf(&b, "ClientAliveInterval %d\n", *sd.ClientAliveInterval)
	}
	if sd.PermitRootLogin != "" {
		fmt.Fprintf(&b, "PermitRootLogin %s\n", sd.PermitRootLogin)
	}
	return stages.FileSpec{Node: stages.Node{Path: "/etc/ssh/sshd_config.d/40-ibuild-blueprint.conf", Mode: "0644"}, Data: b.String(), EnsureParents: true}
}

// firstbootUnit writes a firstboot script as a script and a oneshot unit
// that runs it once: the unit removes its own stamp condition by creating
// the stamp, so a later boot skips it. Scripts are ordered by their index
// (each after the one before), as composer runs them in order.
func firstbootUnit(i int, sc blueprint.FirstbootScript) ([]stages.FileSpec, string) {
	name := sc.Name
	if name == "" {
		name = fmt.Sprint(i)
	}
	base := fmt.Sprintf("ibuild-firstboot-%02d-%s", i, name)
	script := "/usr/local/libexec/ibuild-firstboot/" + base
	stamp := "/var/lib/ibuild-firstboot/" + base + ".done"
	var contents string
	switch sc.Type {
	case "aap":
		// What composer's AAP callback does: ask the controller to run
		// the job template against this host.
		contents = fmt.Sprintf("#!/bin/sh\nset -e\nexec curl -s -i --retry 5 --retry-all-errors --data %s %s\n",
			shq("host_config_key="+sc.HostConfigKey), shq(sc.JobTemplateURL))
	default:
		contents = sc.Contents
		if !strings.HasPrefix(contents, "#!") {
			contents = "#!/bin/sh\n" + contents
		}
		if !strings.HasSuffix(contents, "\n") {
			contents += "\n"
		}
	}
	var u strings.Builder
	fmt.Fprintf(&u, "[Unit]\nDescription=Blueprint firstboot script %s\nConditionPathExists=!%s\n", name, stamp)
	fmt.Fprintf(&u, "Wants=network-online.target\nAfter=network-online.target\n")
	if i > 0 {
		fmt.Fprintf(&u, "After=ibuild-firstboot-%02d-*.service\n", i-1)
	}
	for _, a := range sc.After {
		fmt.Fprintf(&u, "After=%s\n", a)
	}
	for _, b := range sc.Before {
		fmt.Fprintf(&u, "Before=%s\n", b)
	}
	fmt.Fprintf(&u, "\n[Service]\nType=oneshot\nRemainAfterExit=yes\n")
	if sc.IgnoreFailure {
		fmt.Fprintf(&u, "ExecStart=-%s\n", script)
	} else {
		fmt.Fprintf(&u, "ExecStart=%s\n", script)
	}
	fmt.Fprintf(&u, "ExecStartPost=/bin/sh -c 'mkdir -p %s && touch %s'\n", filepath.Dir(stamp), stamp)
	fmt.Fprintf(&u, "\n[Install]\nWantedBy=multi-user.target\n")
	return []stages.FileSpec{
		{Node: stages.Node{Path: script, Mode: "0755"}, Data: contents, EnsureParents: true},
		{Node: stages.Node{Path: "/etc/systemd/system/" + base + ".service", Mode: "0644"}, Data: u.String()},
	}, base + ".service"
}

// shq quotes s for sh.
func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// fetchURI reads what a blueprint names by URI at lock time: an absolute
// path or file: URL on this machine, or an http(s) URL.
func fetchURI(ctx context.Context, o *options, bp *blueprint.Blueprint, uri string) ([]byte, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, err
	}
	if u.Scheme == "" || u.Scheme == "file" {
		f, err := os.Open(u.Path)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", uri, err)
		}
		defer f.Close()
		return readLimited(f, uri)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, err
	}
	client := o.httpClient
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", uri, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching %s: %s", uri, resp.Status)
	}
	return readLimited(resp.Body, uri)
}

func readLimited(r io.Reader, name string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxFetch+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if len(b) > maxFetch {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, maxFetch)
	}
	return b, nil
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

// blueprintSources turns the repositories with install_from into apt
// sources for resolving: every base URL with every suite (default: the
// distro's codename) and the components (default: the distro's).
// Repositories without install_from are only written into the image;
// resolve_only ones are resolved against and not written.
func blueprintSources(ctx context.Context, bp *blueprint.Blueprint, d *distro.Distro, o *options) ([]repo.Source, error) {
	if bp.Customizations == nil {
		return nil, nil
	}
	var out []repo.Source
	var errs []error
	for i, r := range bp.Customizations.Repositories {
		field := fmt.Sprintf("customizations.repositories[%d]", i)
		if !r.InstallFrom && !r.ResolveOnly {
			continue
		}
		if r.Enabled != nil && !*r.Enabled {
			errs = append(errs, bp.Errorf(field+".enabled", "install_from needs an enabled repository"))
			continue
		}
		if len(r.BaseURLs) == 0 {
			errs = append(errs, bp.Errorf(field+".baseurls", "Debian repositories need baseurls (metalink and mirrorlist are RPM-only)"))
			continue
		}
		if r.GPGCheck != nil && !*r.GPGCheck || r.RepoGPGCheck != nil && !*r.RepoGPGCheck {
			errs = append(errs, bp.Errorf(field+".gpgcheck", "install_from refuses unsigned repositories: every InRelease is verified"))
			continue
		}
		keys, err := repoKeys(ctx, bp, o, field, r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		signedBy := d.Keyring
		if len(keys) > 0 {
			// Armored keys inline, as in a deb822 Signed-By field.
			signedBy = strings.Join(keys, "\n")
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

// repoKeys returns a repository's armored keys: given inline, or fetched
// from their URL at lock (the lockfile then holds the key itself, so it
// is pinned by content).
func repoKeys(ctx context.Context, bp *blueprint.Blueprint, o *options, field string, r blueprint.RepositoryCustomization) ([]string, error) {
	var keys []string
	for j, k := range r.GPGKeys {
		if strings.HasPrefix(strings.TrimSpace(k), "-----BEGIN PGP PUBLIC KEY BLOCK-----") {
			keys = append(keys, strings.TrimSpace(k))
			continue
		}
		data, err := fetchURI(ctx, o, bp, k)
		if err != nil {
			return nil, bp.Errorf(fmt.Sprintf("%s.gpgkeys[%d]", field, j), "%v", err)
		}
		s := strings.TrimSpace(string(data))
		if !strings.HasPrefix(s, "-----BEGIN PGP PUBLIC KEY BLOCK-----") {
			// A binary key: armor is what deb822 Signed-By takes inline.
			armored, err := armorKey(data)
			if err != nil {
				return nil, bp.Errorf(fmt.Sprintf("%s.gpgkeys[%d]", field, j), "%s is not an OpenPGP public key: %v", k, err)
			}
			s = armored
		}
		keys = append(keys, s)
	}
	return keys, nil
}

// repositoryFiles writes the blueprint's repositories into the image as
// apt sources, which is what composer does with them (as .repo files):
// /etc/apt/sources.list.d/<filename or id>.sources in deb822 with the keys
// inline, a pin for priority, an apt.conf drop-in for sslverify = false.
func repositoryFiles(ctx context.Context, bp *blueprint.Blueprint, d *distro.Distro, o *options) ([]stages.FileSpec, error) {
	var out []stages.FileSpec
	var errs []error
	for i, r := range bp.Customizations.Repositories {
		field := fmt.Sprintf("customizations.repositories[%d]", i)
		if r.ResolveOnly {
			// Resolved against at lock, not configured in the image.
			continue
		}
		uris := r.BaseURLs
		switch {
		case len(r.BaseURLs) == 0 && r.Mirrorlist != "":
			// apt's mirror method reads a list of mirrors from a URL, as
			// DNF's mirrorlist does: the list must name Debian mirrors.
			// Lock resolves install_from repositories from baseurls
			// only, and apt pins by a host the list does not name.
			if r.InstallFrom {
				errs = append(errs, bp.Errorf(field+".mirrorlist", "%s cannot honour this with install_from: lock resolves packages from baseurls; list them", d.Name))
				continue
			}
			if r.Priority != nil {
				errs = append(errs, bp.Errorf(field+".priority", "%s cannot honour this with a mirrorlist: apt pins a repository by its host, which a mirror list does not name; give baseurls", d.Name))
				continue
			}
			mu, err := url.Parse(r.Mirrorlist)
			if err != nil || (mu.Scheme != "http" && mu.Scheme != "https" && mu.Scheme != "file") {
				errs = append(errs, bp.Errorf(field+".mirrorlist", "apt's mirror method takes an http, https or file URL, not %q", r.Mirrorlist))
				continue
			}
			uris = []string{"mirror+" + r.Mirrorlist}
		case len(r.BaseURLs) == 0:
			errs = append(errs, bp.Errorf(field+".metalink", "%s cannot honour this: metalink is a DNF format; list the repository's baseurls", d.Name))
			continue
		}
		if r.ModuleHotfixes != nil && *r.ModuleHotfixes {
			errs = append(errs, bp.Errorf(field+".module_hotfixes", "%s cannot honour this: RPM module streams do not exist in Debian", d.Name))
		}
		keys, err := repoKeys(ctx, bp, o, field, r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		name := r.ID
		if r.Filename != "" {
			name = strings.TrimSuffix(r.Filename, ".repo")
		}
		suites := r.Suites
		if len(suites) == 0 {
			suites = []string{d.Codename}
		}
		comps := r.Components
		if len(comps) == 0 && !(len(suites) == 1 && strings.HasSuffix(suites[0], "/")) {
			comps = d.Components
		}
		var b strings.Builder
		fmt.Fprintf(&b, "# Repository %q from the blueprint", r.ID)
		if r.Name != "" {
			fmt.Fprintf(&b, ": %s", strings.ReplaceAll(r.Name, "\n", " "))
		}
		b.WriteString("\nTypes: deb\n")
		fmt.Fprintf(&b, "URIs: %s\n", strings.Join(uris, " "))
		fmt.Fprintf(&b, "Suites: %s\n", strings.Join(suites, " "))
		if len(comps) > 0 {
			fmt.Fprintf(&b, "Components: %s\n", strings.Join(comps, " "))
		}
		if r.Enabled != nil && !*r.Enabled {
			b.WriteString("Enabled: no\n")
		}
		switch {
		case len(keys) > 0:
			b.WriteString("Signed-By:")
			for _, k := range keys {
				for _, l := range strings.Split(k, "\n") {
					if l = strings.TrimRight(l, " \r"); l == "" {
						l = "."
					}
					b.WriteString("\n " + l)
				}
			}
			b.WriteString("\n")
		case r.GPGCheck != nil && !*r.GPGCheck:
			// gpgcheck = false: composer writes an unchecked repository;
			// apt's word for it.
			b.WriteString("Trusted: yes\n")
		}
		out = append(out, stages.FileSpec{Node: stages.Node{Path: "/etc/apt/sources.list.d/" + name + ".sources", Mode: "0644"}, Data: b.String()})
		if r.Priority != nil {
			// DNF: lower is preferred, 99 by default; apt: higher is
			// preferred, 500 by default.
			pin := aptPin(*r.Priority)
			var pb strings.Builder
			fmt.Fprintf(&pb, "# Repository %q from the blueprint: priority %d\n", r.ID, *r.Priority)
			for _, u := range r.BaseURLs {
				if pu, err := url.Parse(u); err == nil && pu.Host != "" {
					fmt.Fprintf(&pb, "\nPackage: *\nPin: origin %s\nPin-Priority: %d\n", pu.Hostname(), pin)
				}
			}
			out = append(out, stages.FileSpec{Node: stages.Node{Path: "/etc/apt/preferences.d/" + name + ".pref", Mode: "0644"}, Data: pb.String()})
		}
		if r.SSLVerify != nil && !*r.SSLVerify {
			var sb strings.Builder
			fmt.Fprintf(&sb, "// Repository %q from the blueprint: sslverify = false\n", r.ID)
			for _, u := range r.BaseURLs {
				if pu, err := url.Parse(u); err == nil && pu.Scheme == "https" {
					fmt.Fprintf(&sb, "Acquire::https::%s::Verify-Peer \"false\";\nAcquire::https::%s::Verify-Host \"false\";\n", pu.Hostname(), pu.Hostname())
				}
			}
			out = append(out, stages.FileSpec{Node: stages.Node{Path: "/etc/apt/apt.conf.d/50" + name, Mode: "0644"}, Data: sb.String()})
		}
	}
	return out, errors.Join(errs...)
}

// layoutField is the field a refusal of the whole layout points at.
func layoutField(cu *blueprint.Customizations) string {
	switch {
	case cu.Disk != nil && len(cu.Disk.Partitions) > 0:
		return "customizations.disk.partitions"
	case cu.PartitioningMode != "":
		return "customizations.partitioning_mode"
	case len(cu.Filesystem) > 0:
		return "customizations.filesystem"
	}
	return "customizations.disk"
}

// aptPin is a DNF priority as an apt pin priority. DNF: lower is
// preferred, 99 by default; apt: higher is preferred, 500 by default.
func aptPin(prio int) int { return max(1, min(500+99-prio, 989)) }

// repoPins maps each install_from repository's base URLs to its apt pin
// priority, for those that set one.
func repoPins(bp *blueprint.Blueprint) map[string]int {
	if bp.Customizations == nil {
		return nil
	}
	out := map[string]int{}
	for _, r := range bp.Customizations.Repositories {
		if !r.InstallFrom && !r.ResolveOnly || r.Priority == nil {
			continue
		}
		for _, u := range r.BaseURLs {
			out[strings.TrimRight(u, "/")] = aptPin(*r.Priority)
		}
	}
	return out
}
