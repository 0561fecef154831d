package lock

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
	"github.com/image-builder-action/image-builder-action/pkg/distro"
	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/stages"
)

// A blueprint with every customization the generator turns into stages.
const everyCustomization = `name = "every"
distro = "debian-12"
[customizations]
hostname = "every"
[customizations.kernel]
append = "quiet"
[[customizations.group]]
name = "web"
gid = 1005
[[customizations.user]]
name = "admin"
uid = 1000
gid = 1000
groups = ["sudo", "web"]
description = "Admin"
home = "/home/admin"
shell = "/bin/bash"
password = "$6$saltsalt$Jq5V1x0nZ0bYqJmNq0xQ3c4Yc1m8yq0Gf6mVb2v8WmJ2r5aXcQe1bDkZ9m2Zr7W0mEo4y8qf1P6m1hX3rS0w/"
expiredate = 19000
[customizations.locale]
languages = ["en_US.UTF-8"]
keyboard = "de"
[customizations.timezone]
timezone = "Europe/Berlin"
ntpservers = ["0.pool.ntp.org"]
[customizations.firewall]
ports = ["22:tcp"]
[customizations.firewall.services]
enabled = ["ssh"]
disabled = ["dhcpv6-client"]
[customizations.services]
enabled = ["ssh"]
disabled = ["getty@tty1"]
masked = ["apt-daily.timer"]
[[customizations.directories]]
path = "/srv/a"
mode = "0750"
user = "admin"
group = 1000
ensure_parents = true
[[customizations.files]]
path = "/etc/x"
mode = "0600"
user = 0
group = "root"
data = "x"
[[customizations.filesystem]]
mountpoint = "/var"
minsize = "1 GiB"
`

// Every stage the generator writes, for every shipped distro, arch and
// image type, is one its stage type decodes strictly and accepts.
func TestPipelinesDecode(t *testing.T) {
	defs, err := distro.Load()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "every.toml")
	if err := os.WriteFile(p, []byte(everyCustomization), 0o644); err != nil {
		t.Fatal(err)
	}
	bp, err := blueprint.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	base := []manifest.Package{{Name: "dpkg", Version: "1.21.22", Arch: "amd64"}}
	// A set holding base, so the base's own debs stage is checked too.
	pkg := append([]manifest.Package{{Name: "hello", Version: "2.10-3", Arch: "amd64"}}, base...)
	seen := map[string]bool{}
	for _, dn := range defs.DistroNames() {
		d := defs.Distros[dn]
		cust, _, err := customizationsFor(bp, d)
		if err != nil {
			t.Fatal(err)
		}
		for _, an := range d.ArchNames() {
			for _, tn := range defs.TypeNames() {
				typ := defs.Types[tn]
				if len(typ.Arches) > 0 && !slices.Contains(typ.Arches, an) {
					continue
				}
				pipes, err := newPlan(d, d.Arches[an], typ, cust, nil, "seed").pipelines(base, pkg, pkg, pkg, pkg)
				if err != nil {
					t.Fatalf("%s %s %s: %v", dn, an, tn, err)
				}
				for _, pl := range pipes {
					for i, s := range pl.Stages {
						seen[s.Type] = true
						if _, err := stages.New(s.Type, s.Options); err != nil {
							t.Errorf("%s %s %s: pipeline %s stage %d: %v\n%s", dn, an, tn, pl.Name, i, err, s.Options)
						}
					}
				}
			}
		}
	}
	for _, typ := range []string{"debs", "fstab", "grub2", "initramfs", "hostname", "locale", "timezone", "users",
		"directories", "files", "systemd", "firewall", "cleanup", "disk", "mkfs-fat", "mkfs-ext4", "grub-bios"} {
		if !seen[typ] {
			t.Errorf("no %s stage was generated", typ)
		}
	}
}

// Owners keep the form the blueprint gives them: ids as numbers, names as
// strings.
func TestOwnerOptions(t *testing.T) {
	tests := []struct {
		user, group any
		want        string
	}{
		{nil, nil, `{"directories":[{"path":"/srv"}]}`},
		{"admin", int64(1000), `{"directories":[{"path":"/srv","user":"admin","group":1000}]}`},
		{int64(0), "root", `{"directories":[{"path":"/srv","user":0,"group":"root"}]}`},
	}
	for _, tc := range tests {
		s := stage("directories", stages.Directories{Directories: []stages.DirectorySpec{{Node: node("/srv", "", tc.user, tc.group)}}})
		if string(s.Options) != tc.want {
			t.Errorf("owners %#v %#v: %s, want %s", tc.user, tc.group, s.Options, tc.want)
		}
	}
}

func TestWithout(t *testing.T) {
	p := func(name, version string) manifest.Package {
		return manifest.Package{Name: name, Version: version, Arch: "amd64"}
	}
	base := []manifest.Package{p("dpkg", "1"), p("libc6", "2")}
	for _, tc := range []struct {
		name     string
		pkgs     []manifest.Package
		wantRest []string
		wantOK   bool
	}{
		{"holds base", []manifest.Package{p("curl", "7"), p("dpkg", "1"), p("libc6", "2")}, []string{"curl:amd64=7"}, true},
		{"only base", []manifest.Package{p("dpkg", "1"), p("libc6", "2")}, nil, true},
		{"other version", []manifest.Package{p("curl", "7"), p("dpkg", "1"), p("libc6", "3")}, []string{"curl:amd64=7", "libc6:amd64=3"}, false},
		{"missing one", []manifest.Package{p("curl", "7"), p("dpkg", "1")}, []string{"curl:amd64=7"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rest, ok := without(tc.pkgs, base)
			if ok != tc.wantOK || !slices.Equal(refs(rest), tc.wantRest) {
				t.Errorf("without: %v %v, want %v %v", refs(rest), ok, tc.wantRest, tc.wantOK)
			}
		})
	}
}
