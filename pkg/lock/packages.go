package lock

import (
	"errors"
	"fmt"
	"strings"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
	"github.com/image-builder-action/image-builder-action/pkg/depsolve"
)

// resolveRequests checks every package the blueprint asks for against the
// repositories before anything is solved, so that all missing names are
// reported at once, each at its line with a suggestion, and expands name
// globs ("python3-*") to the packages they match, as DNF does. It returns
// the install requests for depsolve, the customizations' own packages
// included.
func resolveRequests(bp *blueprint.Blueprint, u *depsolve.Universe, c customizations) ([]string, error) {
	var out []string
	var errs []error
	for _, r := range c.requests {
		if strings.ContainsAny(r.name, "*?[") {
			names, err := u.Match(r.name)
			switch {
			case err != nil:
				errs = append(errs, bp.Errorf(r.field, "bad package name pattern %q: %v", r.name, err))
			case len(names) == 0:
				errs = append(errs, bp.Errorf(r.field, "no package in the repositories matches %q", r.name))
			}
			for _, n := range names {
				out = append(out, pkgRequest{name: n, version: r.version}.install())
			}
			continue
		}
		if !u.Has(r.name) {
			errs = append(errs, bp.Errorf(r.field, "package %q is not in the repositories%s", r.name, suggestion(u, r.name)))
			continue
		}
		if provs := u.Providers(r.name); !u.IsPackage(r.name) && len(provs) > 1 {
			// apt installs a virtual package only when one package
			// provides it.
			errs = append(errs, bp.Errorf(r.field, "package %q is a virtual package provided by %s: name one%s", r.name, strings.Join(provs, ", "), suggestion(u, r.name)))
			continue
		}
		out = append(out, r.install())
	}
	if c.kernelName != "" && !u.Has(c.kernelName) {
		errs = append(errs, bp.Errorf(c.kernelField, "kernel package %q is not in the repositories%s", c.kernelName, suggestion(u, c.kernelName)))
	}
	out = append(out, c.systemPkgs...)
	return out, errors.Join(errs...)
}

// suggestion names a package that is probably meant, as
// ` (did you mean "apache2"?)`, or returns "".
func suggestion(u *depsolve.Universe, name string) string {
	var cands []string
	if m, ok := fedoraNames[name]; ok {
		cands = append(cands, m...)
	}
	switch {
	case strings.HasSuffix(name, "-devel"):
		cands = append(cands, strings.TrimSuffix(name, "-devel")+"-dev", "lib"+strings.TrimSuffix(name, "-devel")+"-dev")
	case strings.HasPrefix(name, "kernel"):
		cands = append(cands, "linux-image-"+u.Arch(), "linux-image-cloud-"+u.Arch())
	case strings.HasPrefix(name, "python-"):
		cands = append(cands, "python3-"+strings.TrimPrefix(name, "python-"))
	}
	cands = append(cands, strings.ToLower(name))
	for _, c := range cands {
		if c != name && u.Has(c) {
			return fmt.Sprintf(" (did you mean %q?)", c)
		}
	}
	if redHatOnly[name] {
		return " (a tool of Red Hat's distributions, which Debian has no counterpart for)"
	}
	// The nearest name, when it is near: a typo. Ties go to the first
	// name in sorted order, so the message is stable.
	best, bestD := "", 3
	if len(name) <= 5 {
		bestD = 2
	}
	u.Names(func(n string) {
		if d := editDistance(name, n); d < bestD || (d == bestD && best != "" && n < best) {
			best, bestD = n, d
		}
	})
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return ""
}

// redHatOnly are tools of Red Hat's distributions and services.
var redHatOnly = map[string]bool{"subscription-manager": true, "insights-client": true, "rhc": true, "setroubleshoot-server": true}

// fedoraNames maps Fedora and RHEL package names that Debian names
// differently to the Debian packages that do the same job.
var fedoraNames = map[string][]string{
	"httpd":                {"apache2"},
	"httpd-tools":          {"apache2-utils"},
	"mod_ssl":              {"apache2"},
	"vim-enhanced":         {"vim"},
	"vim-minimal":          {"vim-tiny"},
	"openssh-clients":      {"openssh-client"},
	"bind-utils":           {"bind9-dnsutils"},
	"bind":                 {"bind9"},
	"iproute":              {"iproute2"},
	"iputils":              {"iputils-ping"},
	"procps-ng":            {"procps"},
	"NetworkManager":       {"network-manager"},
	"NetworkManager-tui":   {"network-manager"},
	"gcc-c++":              {"g++"},
	"python3-devel":        {"python3-dev"},
	"openssl-devel":        {"libssl-dev"},
	"postgresql-server":    {"postgresql"},
	"mariadb":              {"mariadb-client"},
	"mysql-server":         {"default-mysql-server", "mariadb-server"},
	"java-11-openjdk":      {"openjdk-17-jre"},
	"java-17-openjdk":      {"openjdk-17-jre"},
	"java-21-openjdk":      {"openjdk-17-jre"},
	"nfs-utils":            {"nfs-common"},
	"dnf-utils":            {"apt-utils"},
	"yum-utils":            {"apt-utils"},
	"cronie":               {"cron"},
	"nmap-ncat":            {"ncat"},
	"redhat-lsb-core":      {"lsb-release"},
	"libselinux-utils":     {"selinux-utils"},
	"qemu-kvm":             {"qemu-system-x86"},
	"libvirt":              {"libvirt-daemon-system"},
	"etcd":                 {"etcd-server"},
	"kubernetes":           {"kubernetes-client"},
	"docker":               {"docker.io"},
	"docker-ce":            {"docker.io"},
	"container-selinux":    {"podman"},
	"words":                {"wamerican"},
	"glibc-langpack-en":    {"locales"},
	"langpacks-en":         {"locales"},
	"kernel-tools":         {"linux-cpupower"},
	"xz":                   {"xz-utils"},
	"gnupg2":               {"gnupg"},
	"ImageMagick":          {"imagemagick"},
	"golang":               {"golang-go"},
	"util-linux-core":      {"util-linux"},
	"shadow-utils":         {"passwd"},
	"cloud-utils-growpart": {"cloud-guest-utils"},
	"WALinuxAgent":         {"waagent"},
	"git-core":             {"git"},
	"perl-interpreter":     {"perl"},
	"which":                {"debianutils"},
	"dhcp-client":          {"isc-dhcp-client"},
	"dracut":               {"initramfs-tools"},
	"grub2-tools":          {"grub2-common"},
	"xorg-x11-server-Xorg": {"xserver-xorg"},
	"gdm":                  {"gdm3"},
}

// editDistance is the Levenshtein distance, with a cut-off: it returns a
// large number for strings whose lengths differ by 3 or more.
func editDistance(a, b string) int {
	if d := len(a) - len(b); d > 2 || d < -2 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
