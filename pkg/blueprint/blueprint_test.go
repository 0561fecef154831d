package blueprint

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func ptr[T any](v T) *T { return &v }

const exampleKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDQVJX0mmiKz3kyXWivsBeF1A25YJ0vikv6hZQTtwF6n admin@ibuild-example"

var ignoreSource = cmpopts.IgnoreFields(Blueprint{}, "Source")

func TestExamples(t *testing.T) {
	tests := []struct {
		file string
		want *Blueprint
	}{
		{
			file: "minimal.toml",
			want: &Blueprint{Name: "minimal", Distro: "debian-12"},
		},
		{
			file: "example.toml",
			want: &Blueprint{
				Name:        "example",
				Description: "A small Debian 12 server",
				Version:     "0.0.1",
				Distro:      "debian-12",
				Packages:    []Package{{Name: "openssh-server"}, {Name: "curl", Version: "7.88.*"}},
				Customizations: &Customizations{
					Hostname: ptr("ibuild-example"),
					Kernel:   &KernelCustomization{Append: "console=ttyS0"},
					User: []UserCustomization{{
						Name:        "admin",
						Description: ptr("Administrator"),
						Key:         ptr(exampleKey),
						Groups:      []string{"sudo"},
					}},
					Timezone: &TimezoneCustomization{Timezone: ptr("Europe/Berlin")},
					Locale:   &LocaleCustomization{Languages: []string{"en_US.UTF-8"}, Keyboard: ptr("us")},
					Services: &ServicesCustomization{Enabled: []string{"ssh"}},
					Directories: []DirectoryCustomization{{
						Path: "/srv/data", Mode: "0750", User: "admin", Group: "admin",
					}},
					Files: []FileCustomization{{
						Path: "/etc/motd", Mode: "0644", Data: "Built by ibuild from the example blueprint.\n",
					}},
				},
			},
		},
		{
			file: "extra-repo.toml",
			want: &Blueprint{
				Name:     "extra-repo",
				Distro:   "debian-12",
				Packages: []Package{{Name: "example-agent"}},
				Customizations: &Customizations{
					Repositories: []RepositoryCustomization{{
						ID:          "example",
						Name:        "Example vendor repository",
						BaseURLs:    []string{"https://packages.example.com/debian"},
						Suites:      []string{"bookworm"},
						Components:  []string{"main"},
						GPGKeys:     []string{"https://packages.example.com/debian/archive-key.asc"},
						GPGCheck:    ptr(true),
						InstallFrom: true,
					}},
				},
			},
		},
		{
			file: "server.json",
			want: &Blueprint{
				Name:        "server",
				Description: "A Debian 12 web server behind a firewall",
				Version:     "1.0.0",
				Distro:      "debian-12",
				Packages:    []Package{{Name: "nginx"}, {Name: "openssh-server"}},
				Customizations: &Customizations{
					Hostname: ptr("web01"),
					User: []UserCustomization{{
						Name: "deploy", Key: ptr(exampleKey), Groups: []string{"www-data"},
					}},
					Firewall: &FirewallCustomization{
						Ports:    []string{"22:tcp", "80:tcp", "443:tcp"},
						Services: &FirewallServices{Enabled: []string{"http", "https"}, Disabled: []string{"telnet"}},
					},
					Services: &ServicesCustomization{Enabled: []string{"nginx", "ssh"}},
					Filesystem: []FilesystemCustomization{
						{Mountpoint: "/", MinSize: 4 << 30},
						{Mountpoint: "/var/www", MinSize: 1 << 30},
					},
				},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join(testdataDir, tt.file)
			got, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, ignoreSource); diff != "" {
				t.Errorf("Load(%s) mismatch (-want +got):\n%s", tt.file, diff)
			}
			if got.Source == nil || got.Source.File != path {
				t.Errorf("Source = %+v, want file %s", got.Source, path)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate() on a parsed blueprint: %v", err)
			}
		})
	}
}

// TestComposerCompat decodes blueprints written in the shapes of
// composer's documented examples, each in TOML and in JSON, and requires
// the same result from both.
func TestComposerCompat(t *testing.T) {
	dir := filepath.Join(testdataDir, "composer")
	tomls, err := filepath.Glob(filepath.Join(dir, "*.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(tomls) < 6 {
		t.Fatalf("found %d composer examples, want at least 6", len(tomls))
	}
	// Spot checks that the decoded values are the documented ones, not
	// merely equal to each other.
	checks := map[string]func(t *testing.T, b *Blueprint){
		"basic": func(t *testing.T, b *Blueprint) {
			want := []Package{{Name: "tmux", Version: "2.9a"}, {Name: "openssh-server", Version: "8.*"}}
			if diff := cmp.Diff(want, b.Packages); diff != "" {
				t.Errorf("packages (-want +got):\n%s", diff)
			}
			if c := b.Containers[1]; !c.LocalStorage || c.TLSVerify == nil || *c.TLSVerify {
				t.Errorf("containers[1] = %+v", c)
			}
		},
		"users": func(t *testing.T, b *Blueprint) {
			u := b.Customizations.User[0]
			if *u.Home != "/srv/widget" {
				t.Errorf("home = %q, want the trailing slash trimmed", *u.Home)
			}
			if *u.UID != 1200 || *u.ExpireDate != 12345 {
				t.Errorf("uid, expiredate = %d, %d", *u.UID, *u.ExpireDate)
			}
			if got := b.Customizations.Firewall.Ports[2]; got != "imap:tcp" {
				t.Errorf("ports[2] = %q", got)
			}
		},
		"files": func(t *testing.T, b *Blueprint) {
			d := b.Customizations.Directories[1]
			if d.User != int64(1020) || d.Group != int64(1050) || !d.EnsureParents {
				t.Errorf("directories[1] = %#v", d)
			}
			if f := b.Customizations.Files[1]; f.User != "root" || f.Mode != "0644" {
				t.Errorf("files[1] = %#v", f)
			}
		},
		"filesystem": func(t *testing.T, b *Blueprint) {
			got := []uint64{}
			for _, fs := range b.Customizations.Filesystem {
				got = append(got, fs.MinSize)
			}
			if diff := cmp.Diff([]uint64{10 << 30, 1 << 30, 2 << 30}, got); diff != "" {
				t.Errorf("minsizes (-want +got):\n%s", diff)
			}
		},
		"disk-lvm": func(t *testing.T, b *Blueprint) {
			d := b.Customizations.Disk
			if d.MinSize != 20<<30 || d.Partitions[1].Name != "mainvg" || d.Partitions[1].MinSize != 20<<30 {
				t.Errorf("disk = %+v", d)
			}
			lv := d.Partitions[1].LogicalVolumes[2]
			if lv.FSType != "swap" || lv.MinSize != 1<<30 {
				t.Errorf("swap lv = %+v", lv)
			}
		},
		"disk-btrfs": func(t *testing.T, b *Blueprint) {
			sv := b.Customizations.Disk.Partitions[1].Subvolumes
			if len(sv) != 2 || sv[1].Mountpoint != "/home" {
				t.Errorf("subvolumes = %+v", sv)
			}
		},
		"rhel": func(t *testing.T, b *Blueprint) {
			c := b.Customizations
			if c.FIPS == nil || !*c.FIPS || c.InstallationDevice != "/dev/sda" || c.RHSM.Config.SubscriptionManager.RHSMCertdConfig.AutoRegistration == nil {
				t.Errorf("customizations = %+v", c)
			}
			if !strings.HasPrefix(c.CACerts.PEMCerts[0], "-----BEGIN CERTIFICATE-----") {
				t.Errorf("pem_certs[0] = %q", c.CACerts.PEMCerts[0])
			}
		},
	}
	for _, tomlPath := range tomls {
		name := strings.TrimSuffix(filepath.Base(tomlPath), ".toml")
		t.Run(name, func(t *testing.T) {
			fromTOML, err := Load(tomlPath)
			if err != nil {
				t.Fatal(err)
			}
			fromJSON, err := Load(strings.TrimSuffix(tomlPath, ".toml") + ".json")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(fromTOML, fromJSON, ignoreSource); diff != "" {
				t.Errorf("TOML and JSON differ (-toml +json):\n%s", diff)
			}
			if diff := cmp.Diff(fromTOML.SetFields(), fromJSON.SetFields()); diff != "" {
				t.Errorf("SetFields differ (-toml +json):\n%s", diff)
			}
			check, ok := checks[name]
			if !ok {
				t.Fatalf("no spot check for %s", name)
			}
			check(t, fromTOML)
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, file, data string
		want             string
	}{
		{
			name: "toml unknown top-level key",
			file: "b.toml",
			data: "name = \"x\"\nnmae = \"y\"\n",
			want: `b.toml:2:1: unknown field "nmae" (did you mean "name"?)`,
		},
		{
			name: "toml unknown key without suggestion",
			file: "b.toml",
			data: "name = \"x\"\n[customizations]\nwhatever = 1\n",
			want: `b.toml:3:1: customizations: unknown field "whatever"`,
		},
		{
			name: "toml unknown quoted key",
			file: "b.toml",
			data: "name = \"x\"\n[customizations]\n\"a.b\" = 1\n",
			want: `b.toml:3:1: customizations: unknown field "a.b"`,
		},
		{
			name: "toml dotted keys",
			file: "b.toml",
			data: "name = \"x\"\ncustomizations.timezone.timezon = \"UTC\"\n",
			want: `b.toml:2:25: customizations.timezone: unknown field "timezon" (did you mean "timezone"?)`,
		},
		{
			name: "toml inline table in array",
			file: "b.toml",
			data: "name = \"x\"\npackages = [\n  {name = \"a\"},\n  {name = \"b\", vers = \"1\"},\n]\n",
			want: `b.toml:4:16: packages[1]: unknown field "vers"`,
		},
		{
			name: "toml nested array of tables",
			file: "b.toml",
			data: "name = \"x\"\n[[customizations.disk.partitions]]\ntype = \"lvm\"\nminsize = 1\n[[customizations.disk.partitions.logical_volumes]]\nminsize = 1\n[[customizations.disk.partitions.logical_volumes]]\nminsize = true\n",
			want: `b.toml:8:1: customizations.disk.partitions[0].logical_volumes[1].minsize: expected a size (an integer number of bytes or a string such as "20 GiB"), got boolean`,
		},
		{
			name: "toml sub-table of an array element",
			file: "b.toml",
			data: "name = \"x\"\n[[customizations.user]]\nname = \"a\"\n[[customizations.user]]\nname = \"b\"\n[customizations.user.extra]\n",
			want: `b.toml:6:22: customizations.user[1]: unknown field "extra"`,
		},
		{
			name: "toml date",
			file: "b.toml",
			data: "name = 1979-05-27\n",
			want: `b.toml:1:1: name: expected a string, got date/time`,
		},
		{
			name: "toml table where a string belongs",
			file: "b.toml",
			data: "name = \"x\"\n[customizations.hostname]\n",
			want: `b.toml:2:17: customizations.hostname: expected a string, got table`,
		},
		{
			name: "toml integer too large for a size",
			file: "b.toml",
			data: "name = \"x\"\n[[customizations.filesystem]]\nmountpoint = \"/\"\nminsize = \"99999999999 TiB\"\n",
			want: `b.toml:4:1: customizations.filesystem[0].minsize: invalid size "99999999999 TiB": too large`,
		},
		{
			name: "toml empty document",
			file: "b.toml",
			data: "",
			want: `b.toml: name: a blueprint name is required`,
		},
		{
			name: "json unknown key",
			file: "b.json",
			data: "{\n  \"name\": \"x\",\n  \"customizations\": {\"hostnme\": \"h\"}\n}\n",
			want: `b.json:3:22: customizations: unknown field "hostnme" (did you mean "hostname"?)`,
		},
		{
			name: "json object where an array belongs",
			file: "b.json",
			data: `{"name": "x", "packages": {"name": "curl"}}`,
			want: `b.json:1:15: packages: expected an array, got object`,
		},
		{
			name: "json fraction where an integer belongs",
			file: "b.json",
			data: `{"name": "x", "customizations": {"user": [{"name": "a", "uid": 1000.5}]}}`,
			want: `b.json:1:57: customizations.user[0].uid: expected an integer, got float`,
		},
		{
			name: "json integer out of range for int64",
			file: "b.json",
			data: `{"name": "x", "customizations": {"user": [{"name": "a", "uid": 99999999999999999999}]}}`,
			want: `b.json:1:57: customizations.user[0].uid: expected an integer, got float`,
		},
		{
			name: "json null member is absent",
			file: "b.json",
			data: `{"name": "x", "customizations": null}`,
			want: "",
		},
		{
			name: "json null name",
			file: "b.json",
			data: `{"name": null}`,
			want: `b.json:1:2: name: a blueprint name is required`,
		},
		{
			name: "json truncated",
			file: "b.json",
			data: `{"name": "x"`,
			want: `b.json:1:13: unexpected end of JSON input`,
		},
		{
			name: "json empty",
			file: "b.json",
			data: ``,
			want: `b.json:1:1: unexpected end of JSON input`,
		},
		{
			name: "json key is not a string",
			file: "b.json",
			data: `{1: 2}`,
			want: `b.json:1:2: invalid character '1'`,
		},
		{
			name: "byte order mark is skipped",
			file: "b.json",
			data: "\xef\xbb\xbf{\"name\": \"x\"}",
			want: "",
		},
		{
			name: "extension is case-insensitive",
			file: "B.TOML",
			data: `name = "x"`,
			want: "",
		},
		{
			name: "no extension",
			file: "blueprint",
			data: `name = "x"`,
			want: `blueprint: unknown blueprint format: the file name must end in .toml or .json`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.file, []byte(tt.data))
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("Parse() error\n got: %s\nwant: %s", got, tt.want)
			}
		})
	}
}

func TestErrorsAndPositions(t *testing.T) {
	data := "name = \"x\"\n\n[[customizations.user]]\nname = \"1Bad\"\n\n[[customizations.user]]\nname = \"ok\"\nuid = -1\n"
	_, err := Parse("bp.toml", []byte(data))
	errs := Errors(err)
	want := []*Error{
		{File: "bp.toml", Line: 4, Column: 1, Field: "customizations.user[0].name", Msg: `invalid user name "1Bad": use letters, digits, '_', '.' and '-', starting with a letter or '_' (what useradd accepts)`},
		{File: "bp.toml", Line: 8, Column: 1, Field: "customizations.user[1].uid", Msg: "uid -1 is negative"},
	}
	if diff := cmp.Diff(want, errs); diff != "" {
		t.Errorf("Errors() mismatch (-want +got):\n%s", diff)
	}
	var e *Error
	if !errors.As(err, &e) || e.Line != 4 {
		t.Errorf("errors.As found %+v", e)
	}
	if got := Errors(errors.New("plain")); got != nil {
		t.Errorf("Errors(plain error) = %v, want nil", got)
	}
}

func TestErrorf(t *testing.T) {
	b, err := Load(filepath.Join(testdataDir, "composer", "rhel.toml"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		field string
		want  string
	}{
		{"customizations.openscap", "rhel.toml:10:17: customizations.openscap: not supported"},
		{"customizations.openscap.tailoring.selected", "rhel.toml:15:1: customizations.openscap.tailoring.selected: not supported"},
		{"customizations.fips", "rhel.toml:8:1: customizations.fips: not supported"},
		// Absent fields fall back to their nearest present parent.
		{"customizations.kernel", "rhel.toml:5:2: customizations.kernel: not supported"},
		{"nothing", "rhel.toml: nothing: not supported"},
	}
	for _, tt := range tests {
		got := b.Errorf(tt.field, "not supported").Error()
		if !strings.HasSuffix(got, tt.want) || !strings.Contains(got, "composer"+string(filepath.Separator)) {
			t.Errorf("Errorf(%q) = %q, want …%q", tt.field, got, tt.want)
		}
	}

	// Unindexed names find the first element; indexed names find theirs.
	b, err = Load(filepath.Join(testdataDir, "composer", "disk-lvm.json"))
	if err != nil {
		t.Fatal(err)
	}
	for field, want := range map[string]Position{
		"customizations.disk.partitions.logical_volumes.name":       {Line: 15, Column: 14},
		"customizations.disk.partitions[1].logical_volumes[2].name": {Line: 17, Column: 14},
		"customizations.disk.partitions[1].logical_volumes[2]":      {Line: 17, Column: 13},
	} {
		if got, ok := b.Source.Position(field); !ok || got != want {
			t.Errorf("Position(%q) = %v, %v; want %v", field, got, ok, want)
		}
	}

	// A blueprint built in code has no source.
	e := (&Blueprint{}).Errorf("customizations.fips", "no")
	if e.Error() != "customizations.fips: no" {
		t.Errorf("Errorf without source = %q", e.Error())
	}
}

func TestSetFields(t *testing.T) {
	tests := []struct {
		name string
		b    *Blueprint
		want []string
	}{
		{"empty", &Blueprint{}, []string{}},
		{
			"pointer to false counts as set",
			&Blueprint{Name: "x", Customizations: &Customizations{FIPS: ptr(false)}},
			[]string{"customizations", "customizations.fips", "name"},
		},
		{
			"leaves of array elements, no indexes",
			&Blueprint{Customizations: &Customizations{
				User: []UserCustomization{{Name: "a"}, {Name: "b", ForcePasswordReset: ptr(true)}},
				Disk: &DiskCustomization{Partitions: []PartitionCustomization{{
					Type: "lvm", VGCustomization: VGCustomization{LogicalVolumes: []LVCustomization{{MinSize: 1}}},
				}}},
				Firstboot: &FirstbootCustomization{Scripts: []FirstbootScript{{Type: "custom"}}},
			}},
			[]string{
				"customizations", "customizations.disk", "customizations.disk.partitions",
				"customizations.disk.partitions.logical_volumes", "customizations.disk.partitions.logical_volumes.minsize",
				"customizations.disk.partitions.type", "customizations.firstboot", "customizations.firstboot.scripts", "customizations.firstboot.scripts.type",
				"customizations.user", "customizations.user.force_password_reset", "customizations.user.name",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.b.SetFields()); diff != "" {
				t.Errorf("SetFields() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "missing.toml")); err == nil || !strings.HasPrefix(err.Error(), "reading blueprint: ") {
		t.Errorf("Load(missing) = %v", err)
	}
	big := filepath.Join(dir, "big.toml")
	if err := os.WriteFile(big, make([]byte, MaxSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Load(big) = %v", err)
	}
}
