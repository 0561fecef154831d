package webui

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
	"github.com/image-builder-action/image-builder-action/pkg/distro"
)

func defs(t *testing.T) *distro.Defs {
	t.Helper()
	d, err := distro.Load()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestFormRoundTrip(t *testing.T) {
	v := url.Values{
		"name":                                     {"web"},
		"description":                              {"a <b>web</b> server"},
		"version":                                  {"1.2.3"},
		"distro":                                   {"debian-12"},
		"packages":                                 {"nginx\n\ncurl=7.*\n"},
		"customizations.hostname":                  {"web-1"},
		"customizations.timezone.timezone":         {"Europe/Berlin"},
		"customizations.timezone.ntpservers":       {"0.pool.ntp.org, 1.pool.ntp.org"},
		"customizations.locale.languages":          {"en_US.UTF-8"},
		"customizations.locale.keyboard":           {"de"},
		"customizations.services.enabled":          {"nginx ssh"},
		"customizations.firewall.ports":            {"80:tcp 443:tcp"},
		"customizations.user.rows":                 {"2"},
		"customizations.user[0].base":              {"-1"},
		"customizations.user[0].name":              {""},
		"customizations.user[1].base":              {"-1"},
		"customizations.user[1].name":              {"admin"},
		"customizations.user[1].key":               {"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl admin@example"},
		"customizations.user[1].groups":            {"sudo"},
		"customizations.files.rows":                {"1"},
		"customizations.files[0].base":             {"-1"},
		"customizations.files[0].path":             {"/etc/motd"},
		"customizations.files[0].mode":             {"0644"},
		"customizations.files[0].user":             {"0"},
		"customizations.files[0].data":             {"hello\r\nworld\r\n"},
		"customizations.filesystem.rows":           {"1"},
		"customizations.filesystem[0].base":        {"-1"},
		"customizations.filesystem[0].mountpoint":  {"/var"},
		"customizations.filesystem[0].minsize":     {"2 GiB"},
		"customizations.firewall.services.enabled": {"http"},
	}
	f := formFromValues(v)
	if len(f.Users) != 1 || f.Users[0].Name != "admin" {
		t.Fatalf("empty user row not dropped: %+v", f.Users)
	}
	bp, errs := f.blueprint()
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	text, err := encodeTOML(bp)
	if err != nil {
		t.Fatal(err)
	}
	got, cerrs := check(context.Background(), defs(t), []byte(text))
	if len(cerrs) > 0 {
		t.Fatalf("%v\n%s", cerrs, text)
	}
	if *got.Customizations.Hostname != "web-1" || got.Customizations.Files[0].Data != "hello\nworld\n" ||
		got.Customizations.Filesystem[0].MinSize != 2<<30 || got.Customizations.Files[0].User != int64(0) ||
		got.Packages[1] != (blueprint.Package{Name: "curl", Version: "7.*"}) {
		t.Errorf("blueprint from the form:\n%s", text)
	}
	// And back: the TOML fills the same form.
	back := formFromBlueprint(got, text)
	f.Base = text
	f.Packages = "nginx\ncurl=7.*"
	f.NTPServers = "0.pool.ntp.org 1.pool.ntp.org"
	f.Files[0].Data = "hello\nworld\n"
	for i := range f.Users {
		f.Users[i].Base = i
	}
	f.Files[0].Base, f.Filesystems[0].Base = 0, 0
	if d := cmp.Diff(f, back); d != "" {
		t.Errorf("form → TOML → form (-want +got):\n%s", d)
	}
}

// What the form does not show survives an edit through the form.
func TestFormKeepsHiddenFields(t *testing.T) {
	base := `name = "k"
distro = "debian-12"
[customizations.kernel]
append = "quiet"
[[customizations.user]]
name = "ops"
uid = 1234
[[customizations.directories]]
path = "/srv/app"
`
	bp, _ := check(context.Background(), defs(t), []byte(base))
	f := formFromBlueprint(bp, base)
	f.Users[0].Groups = "sudo"
	nb, errs := f.blueprint()
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	text, _ := encodeTOML(nb)
	for _, want := range []string{`append = 'quiet'`, `uid = 1234`, `path = '/srv/app'`, `groups = ['sudo']`} {
		if !strings.Contains(text, want) {
			t.Errorf("lost %q:\n%s", want, text)
		}
	}
}

// Errors land at their form control and at their TOML line, from the
// blueprint's validation and from what the distro refuses (as lock).
func TestErrorsPlaced(t *testing.T) {
	s := &Server{defs: defs(t)}
	for _, tc := range []struct {
		name    string
		values  url.Values
		control string
		msg     string
	}{
		{"hostname", url.Values{"name": {"x"}, "customizations.hostname": {"bad_host!"}}, "customizations.hostname", "invalid host name"},
		{"package", url.Values{"name": {"x"}, "packages": {"ok\nBad Name"}}, "packages", "package"},
		{"size", url.Values{"name": {"x"}, "customizations.filesystem.rows": {"1"}, "customizations.filesystem[0].mountpoint": {"/var"},
			"customizations.filesystem[0].minsize": {"lots"}}, "customizations.filesystem[0].minsize", "size"},
		{"refused by the distro", url.Values{"name": {"x"}, "distro": {"debian-12"}, "packages": {"@nosuchgroup"}}, "packages", "cannot honour"},
		{"file owner", url.Values{"name": {"x"}, "customizations.files.rows": {"1"}, "customizations.files[0].path": {"etc/motd"}}, "customizations.files[0].path", "absolute"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := s.fromForm(context.Background(), formFromValues(tc.values), false)
			errs := strings.Join(e.Errors[tc.control], "\n")
			if !strings.Contains(strings.ToLower(errs), strings.ToLower(tc.msg)) {
				t.Fatalf("errors at %s: %q; all: %v %v\n%s", tc.control, errs, e.Errors, e.Other, e.TOML)
			}
			if len(e.Lines) == 0 && tc.name != "size" {
				t.Errorf("no TOML line for the error")
			}
			for _, l := range e.Lines {
				lines := strings.Split(e.TOML, "\n")
				if l.Line < 1 || l.Line > len(lines) {
					t.Errorf("line %d outside the TOML", l.Line)
				}
			}
		})
	}
}

// TOML that decodes but has bad values still fills the form; TOML that
// does not decode keeps the form and reports the line.
func TestFromTOML(t *testing.T) {
	s := &Server{defs: defs(t)}
	e := s.fromTOML(context.Background(), "name = \"x\"\n\n[customizations]\nhostname = \"-bad\"\n", bpForm{})
	if e.Form.Hostname != "-bad" || len(e.Errors["customizations.hostname"]) == 0 || len(e.Lines) != 1 || e.Lines[0].Line != 4 {
		t.Errorf("form %+v errors %v lines %v", e.Form, e.Errors, e.Lines)
	}
	prev := bpForm{Name: "kept"}
	e = s.fromTOML(context.Background(), "name = \"x\"\nname = \"y\"\n", prev)
	if e.Form.Name != "kept" || len(e.Lines) != 1 || e.Lines[0].Line != 2 {
		t.Errorf("form %+v lines %v other %v", e.Form, e.Lines, e.Other)
	}
}

// customizations.disk through the form: plain, lvm and btrfs partitions
// come back the same, fields the form does not show are kept, and errors
// land at the partition's controls and at their TOML line.
func TestDiskForm(t *testing.T) {
	base := `name = "d"
distro = "debian-12"

[customizations.disk]
type = "gpt"
minsize = "10 GiB"

[[customizations.disk.partitions]]
minsize = "1 GiB"
mountpoint = "/boot"
fs_type = "ext4"
part_label = "boot"

[[customizations.disk.partitions]]
type = "lvm"
name = "rootvg"
minsize = "6 GiB"

[[customizations.disk.partitions.logical_volumes]]
name = "rootlv"
mountpoint = "/"
fs_type = "ext4"
minsize = "4 GiB"
label = "root"

[[customizations.disk.partitions.logical_volumes]]
name = "swaplv"
fs_type = "swap"
minsize = "1 GiB"

`
	btrfs := `name = "b"
distro = "debian-13"

[customizations.disk]
[[customizations.disk.partitions]]
type = "btrfs"
minsize = "2 GiB"

[[customizations.disk.partitions.subvolumes]]
name = "root"
mountpoint = "/"

[[customizations.disk.partitions.subvolumes]]
name = "srv"
mountpoint = "/srv"
`
	for _, base := range []string{base, btrfs} {
		want, errs := check(context.Background(), defs(t), []byte(base))
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		f := formFromBlueprint(want, base)
		if base == btrfs && f.Partitions[0].Subvolumes != "root /\nsrv /srv" || base != btrfs && f.Partitions[1].LogicalVols != "rootlv / ext4 4 GiB\nswaplv - swap 1 GiB" {
			t.Fatalf("form: %+v", f.Partitions)
		}
		bp, ferrs := f.blueprint()
		if len(ferrs) > 0 {
			t.Fatal(ferrs)
		}
		text, _ := encodeTOML(bp)
		got, errs := check(context.Background(), defs(t), []byte(text))
		if len(errs) > 0 {
			t.Fatalf("%v\n%s", errs, text)
		}
		if d := cmp.Diff(want.Customizations.Disk, got.Customizations.Disk); d != "" {
			t.Errorf("disk after the form (-want +got):\n%s", d)
		}
	}

	s := &Server{defs: defs(t)}
	disk := func(kv ...string) url.Values {
		v := url.Values{"name": {"d"}, "distro": {"debian-12"}, "customizations.disk.type": {"gpt"},
			"customizations.disk.partitions.rows":    {"2"},
			"customizations.disk.partitions[0].type": {"plain"}, "customizations.disk.partitions[0].mountpoint": {"/"},
			"customizations.disk.partitions[0].fs_type": {"ext4"}, "customizations.disk.partitions[0].minsize": {"4 GiB"},
			"customizations.disk.partitions[1].type": {"plain"}}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	if e := s.fromForm(context.Background(), formFromValues(disk()), false); e.HasErrors() {
		t.Fatalf("a good disk: %v %v %v\n%s", e.Errors, e.Other, e.Lines, e.TOML)
	}
	for _, tc := range []struct {
		name    string
		values  url.Values
		control string
		msg     string
		line    bool
	}{
		{"table type", disk("customizations.disk.type", "zfs"), "customizations.disk.type", "zfs", true},
		{"partition size", disk("customizations.disk.partitions[0].minsize", "big"), "customizations.disk.partitions[0].minsize", "size", false},
		{"fs type", disk("customizations.disk.partitions[0].fs_type", "ntfs"), "customizations.disk.partitions[0].fs_type", "ntfs", true},
		{"lv line", disk("customizations.disk.partitions[1].type", "lvm", "customizations.disk.partitions[1].logical_volumes", "data /data"),
			"customizations.disk.partitions[1].logical_volumes", "NAME MOUNTPOINT FSTYPE SIZE", false},
		{"lv mount point", disk("customizations.disk.partitions[1].type", "lvm", "customizations.disk.partitions[1].logical_volumes", "datalv data ext4 1 GiB"),
			"customizations.disk.partitions[1].logical_volumes", "mountpoint", true},
		{"kind", disk("customizations.disk.partitions[1].type", "zfs", "customizations.disk.partitions[1].minsize", "1 GiB"),
			"customizations.disk.partitions[1].type", "zfs", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := s.fromForm(context.Background(), formFromValues(tc.values), false)
			errs := strings.Join(e.Errors[tc.control], "\n")
			if !strings.Contains(strings.ToLower(errs), strings.ToLower(tc.msg)) {
				t.Fatalf("errors at %s: %q; all: %v %v\n%s", tc.control, errs, e.Errors, e.Other, e.TOML)
			}
			if tc.line && len(e.Lines) == 0 {
				t.Errorf("no TOML line for the error")
			}
		})
	}
}
