package distro

import (
	"strings"
	"testing"
	"testing/fstest"
)

func TestLoadEmbedded(t *testing.T) {
	d, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"debian-12", "debian-13"} {
		v, err := d.Distro(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range []string{"x86_64", "aarch64"} {
			if _, err := v.Arch(a); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
	for _, typ := range []string{"qcow2", "raw", "vmdk", "vhd", "ova", "ami", "gce", "tar", "container", "wsl"} {
		if _, err := d.Type(typ); err != nil {
			t.Error(err)
		}
	}
	if len(d.Digest) != 64 {
		t.Errorf("digest %q", d.Digest)
	}
}

func TestLoadErrors(t *testing.T) {
	good := `name = "x"
codename = "c"
components = ["main"]
suites = [{ name = "c", kind = "" }]
[arches.x86_64]
dpkg = "amd64"
`
	for _, tc := range []struct {
		name, file, data, want string
	}{
		{"unknown key", "distros/x.toml", good + "colour = 1\n", "unknown"},
		{"name mismatch", "distros/y.toml", good, `name "x" does not match`},
		{"bad syntax", "distros/x.toml", "name = \n", "distros/x.toml:1"},
		{"no dpkg arch", "distros/x.toml", strings.Replace(good, `dpkg = "amd64"`, "", 1), "arches.x86_64.dpkg"},
		{"bad type filename", "types/t.toml", `name = "t"` + "\nfilename = \"a/b\"\nplatform = \"system\"\n", "plain file name"},
		{"bad boot timeout", "types/t.toml", `name = "t"` + "\nfilename = \"a\"\nplatform = \"system\"\nboot_timeout = -1\n", "types/t.toml: boot_timeout: -1 is not within 0-3600"},
		{"bad size", "types/t.toml", `name = "t"` + "\nfilename = \"a\"\nplatform = \"system\"\nsize = \"4 GB!\"\n", "unknown unit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys := fstest.MapFS{tc.file: {Data: []byte(tc.data)}}
			if !strings.HasPrefix(tc.file, "distros/") {
				fsys["distros/x.toml"] = &fstest.MapFile{Data: []byte(good)}
			}
			_, err := LoadFS(fsys)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]uint64{"4 GiB": 4 << 30, "512MiB": 512 << 20, "1000": 1000, "2 GB": 2e9} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "GiB", "4 XB", "-1", "99999999999999999999"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q): no error", in)
		}
	}
}
