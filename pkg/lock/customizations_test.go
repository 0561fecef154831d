package lock

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/stages"
)

// stageOptions returns the options of the first stage of typ in the
// pipeline of the x86_64 qcow2 entry, decoded into v; false if absent.
func stageOptions(t *testing.T, lf *manifest.Lockfile, pipeline, typ string, v any) bool {
	t.Helper()
	e, err := lf.Entry("x86_64", "qcow2")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range e.Pipelines {
		if p.Name != pipeline {
			continue
		}
		for _, s := range p.Stages {
			if s.Type == typ {
				if err := json.Unmarshal(s.Options, v); err != nil {
					t.Fatal(err)
				}
				if _, err := stages.New(typ, s.Options); err != nil {
					t.Errorf("stage %s: %v", typ, err)
				}
				return true
			}
		}
	}
	return false
}

func TestLockCustomizations(t *testing.T) {
	keySrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/key.asc" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBFake\n=abcd\n-----END PGP PUBLIC KEY BLOCK-----\n")
	}))
	defer keySrv.Close()
	const head = "name = \"x\"\ndistro = \"testdist\"\n"
	// partitioning_mode raw: the fixture repository has no lvm2.
	p := writeBlueprint(t, head+`
[customizations]
partitioning_mode = "raw"

[[packages]]
name = "python3-[ry]*"

[[packages]]
name = "openssh-server"
version = "9.*"

[[groups]]
name = "core"

[customizations.locale]
languages = ["en_US.UTF-8", "de_DE.UTF-8"]

[[customizations.user]]
name = "john.doe"
password = "hunter2"
groups = ["wheel"]
force_password_reset = true

[customizations.sshd]
password_authentication = false

[customizations.cacerts]
pem_certs = ["""`+readCA(t)+`"""]

[[customizations.firstboot.scripts]]
name = "hello"
contents = "echo hi > /var/tmp/hi"

[[customizations.filesystem]]
mountpoint = "/var"
minsize = "20 GiB"

[[customizations.files]]
path = "/opt/x/bin"
data = "AAEC/w=="
data_encoding = "base64"
ensure_parents = true

[[customizations.repositories]]
id = "extra"
name = "Extra packages"
baseurls = ["https://extra.example/debian"]
gpgkeys = ["`+keySrv.URL+`/key.asc"]
priority = 10
sslverify = false
enabled = false
`)
	var warnings []string
	lf, err := lockFixture(t, p, WithWarn(func(s string) { warnings = append(warnings, s) }))
	if err != nil {
		t.Fatal(err)
	}
	var users stages.Users
	if !stageOptions(t, lf, "os", "users", &users) || len(users.Users) != 1 {
		t.Fatalf("users stage: %+v", users)
	}
	u := users.Users[0]
	if !strings.HasPrefix(u.Password, "$6$") || !stages.IsCryptHash(u.Password) || strings.Contains(u.Password, "hunter2") {
		t.Errorf("password %q is not hashed", u.Password)
	}
	if fmt.Sprint(u.Groups) != "[sudo]" || !u.ForcePasswordReset {
		t.Errorf("user %+v: want wheel mapped to sudo and a forced reset", u)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "customizations.user[0].password: a plaintext password") {
		t.Errorf("warnings %q", warnings)
	}
	// Locking again gives the same hash: the salt comes from the blueprint.
	again, _ := lockFixture(t, p)
	a, _ := lf.Marshal()
	b, _ := again.Marshal()
	if string(a) != string(b) {
		t.Error("two locks differ")
	}
	var loc stages.Locale
	if !stageOptions(t, lf, "os", "locale", &loc) || loc.Language != "en_US.UTF-8" || fmt.Sprint(loc.Generate) != "[de_DE.UTF-8]" {
		t.Errorf("locale %+v", loc)
	}
	var ca stages.CACerts
	if !stageOptions(t, lf, "os", "cacerts", &ca) || len(ca.Certs) != 1 {
		t.Errorf("cacerts %+v", ca)
	}
	var sd stages.Systemd
	if !stageOptions(t, lf, "os", "systemd", &sd) || !strings.Contains(fmt.Sprint(sd.Enabled), "ibuild-firstboot-00-hello.service") {
		t.Errorf("systemd %+v", sd)
	}
	var files stages.Files
	stageOptions(t, lf, "os", "files", &files)
	byPath := map[string]stages.FileSpec{}
	for _, f := range files.Files {
		byPath[f.Path] = f
	}
	for path, want := range map[string]string{
		"/etc/ssh/sshd_config.d/40-ibuild-blueprint.conf":               "PasswordAuthentication no\n",
		"/etc/systemd/system/ibuild-firstboot-00-hello.service":         "ConditionPathExists=!/var/lib/ibuild-firstboot/",
		"/usr/local/libexec/ibuild-firstboot/ibuild-firstboot-00-hello": "#!/bin/sh\necho hi > /var/tmp/hi\n",
		"/etc/apt/sources.list.d/extra.sources":                         "URIs: https://extra.example/debian\nSuites: bookworm\nComponents: main\nEnabled: no\nSigned-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n mQINBFake",
		"/etc/apt/preferences.d/extra.pref":                             "Pin: origin extra.example\nPin-Priority: 589\n",
		"/etc/apt/apt.conf.d/50extra":                                   `Acquire::https::extra.example::Verify-Peer "false";`,
		"/opt/x/bin":                                                    "AAEC/w==",
	} {
		if f, ok := byPath[path]; !ok || !strings.Contains(f.Data, want) {
			t.Errorf("file %s = %q, want it to contain %q", path, f.Data, want)
		}
	}
	if f := byPath["/opt/x/bin"]; f.Encoding != "base64" || !f.EnsureParents {
		t.Errorf("/opt/x/bin: %+v", f)
	}
	// Globs and versions without the epoch resolve; the repository was
	// written, not used (no install_from).
	refs := strings.Join(lf.Entries[0].Pipelines[1].PackageRefs(), " ")
	for _, want := range []string{"python3-yaml", "python3-requests", "openssh-server", "sudo", "locales", "ca-certificates"} {
		if !strings.Contains(refs, want+":") && !strings.Contains(refs, want+"=") && !strings.Contains(refs, want) {
			t.Errorf("os packages lack %s: %s", want, refs)
		}
	}
	for _, r := range lf.Repositories {
		if strings.Contains(r.URI, "extra.example") {
			t.Error("a repository without install_from was used to resolve")
		}
	}
	// The disk holds /var's 20 GiB beside the root's default room.
	var disk stages.Disk
	if !stageOptions(t, lf, "image", "disk", &disk) || disk.Size < 20<<30+1<<30 {
		t.Errorf("disk size %d", disk.Size)
	}
}

func readCA(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../testdata/blueprints/composer/ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestLockRefusals(t *testing.T) {
	const head = "name = \"x\"\ndistro = \"testdist\"\n"
	for _, tc := range []struct{ name, bp, want string }{
		{"missing packages all at once", head + "[[packages]]\nname = \"httpd\"\n\n[[packages]]\nname = \"curl\"\n\n[[packages]]\nname = \"opensh-server\"\n",
			"bp.toml:4:1: packages[0].name: package \"httpd\" is not in the repositories (did you mean \"apache2\"?)\n/" +
				"*/bp.toml:10:1: packages[2].name: package \"opensh-server\" is not in the repositories (did you mean \"openssh-server\"?)"},
		{"kernel name", head + "[customizations.kernel]\nname = \"kernel-rt\"\n", `bp.toml:4:1: customizations.kernel.name: kernel package "kernel-rt" is not in the repositories`},
		{"root of 2^64-1", head + fmt.Sprintf("[[customizations.filesystem]]\nmountpoint = \"/\"\nminsize = %d\n", uint64(math.MaxInt64)),
			"customizations.filesystem[0].minsize"},
		{"start offset", head + "[customizations.disk]\nsector_size = 4096\nstart_offset = 512\n", "bp.toml:5:1: customizations.disk.start_offset: 512 bytes is not a whole number of 4096-byte sectors"},
		{"sector size", head + "[customizations.disk]\nsector_size = 2048\n", "customizations.disk.sector_size: 2048-byte sectors"},
		{"btrfs mode", head + "[customizations]\npartitioning_mode = \"btrfs\"\n", "customizations.partitioning_mode: testdist cannot honour this: btrfs layouts need mkfs.btrfs --subvol"},
		{"rhsm", head + "[customizations.rhsm.config.dnf_plugins.product_id]\nenabled = true\n", "customizations.rhsm: testdist cannot honour this: Red Hat Subscription Manager"},
		{"installer", head + "[customizations.installer]\nunattended = true\n", "the installer of the image-installer type"},
		{"satellite", head + "[[customizations.firstboot.scripts]]\ntype = \"satellite\"\ncommand = \"x\"\n", "customizations.firstboot.scripts[0].type: testdist cannot honour this: Satellite"},
		{"metalink", head + "[[customizations.repositories]]\nid = \"f\"\nmetalink = \"https://mirrors.fedoraproject.org/metalink?repo=fedora-40\"\n", "customizations.repositories[0].metalink"},
		{"mirrorlist with install_from", head + "[[customizations.repositories]]\nid = \"m\"\nmirrorlist = \"http://127.0.0.1:1/mirrors.txt\"\ninstall_from = true\n", "customizations.repositories[0].mirrorlist: testdist cannot honour this with install_from"},
		{"mirrorlist with priority", head + "[[customizations.repositories]]\nid = \"m\"\nmirrorlist = \"http://127.0.0.1:1/mirrors.txt\"\npriority = 10\n", "customizations.repositories[0].priority: testdist cannot honour this with a mirrorlist"},
		{"mirrorlist not a URL apt takes", head + "[[customizations.repositories]]\nid = \"m\"\nmirrorlist = \"ftp://127.0.0.1/mirrors.txt\"\n", "apt's mirror method takes an http, https or file URL"},
		{"key url", head + "[[customizations.repositories]]\nid = \"f\"\nbaseurls = [\"http://127.0.0.1:1/debian\"]\ngpgkeys = [\"http://127.0.0.1:1/key.asc\"]\n", "bp.toml:6:12: customizations.repositories[0].gpgkeys[0]: fetching http://127.0.0.1:1/key.asc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := lockFixture(t, writeBlueprint(t, tc.bp))
			if err != nil {
				// The directory of the blueprint differs each run.
				err = fmt.Errorf("%s", strings.ReplaceAll(err.Error(), strings.TrimSuffix(strings.SplitN(err.Error(), "bp.toml", 2)[0], "/"), "/*"))
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v\nwant an error containing %q", err, tc.want)
			}
		})
	}
	// 2^64-1 itself: above what an image file holds.
	_, err := lockFixture(t, writeBlueprint(t, head+"[[customizations.filesystem]]\nmountpoint = \"/\"\nminsize = \"18446744073709551615\"\n"))
	if err == nil || !strings.Contains(err.Error(), "customizations.filesystem[0].minsize") {
		t.Errorf("2^64-1: %v", err)
	}
}

func TestFirewallZones(t *testing.T) {
	bp, err := blueprint.Parse("bp.toml", []byte("name = \"x\"\n[[customizations.firewall.zones]]\nname = \"trusted\"\nsources = [\"192.0.2.0/24\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	c, pkgs, err := customizationsFor(bp, fixtureDefs(t).Distros["testdist"])
	if err != nil {
		t.Fatal(err)
	}
	if c.firewall == nil || len(c.firewall.Zones) != 1 || c.firewall.Zones[0].Name != "trusted" || fmt.Sprint(c.firewall.Zones[0].Sources) != "[192.0.2.0/24]" {
		t.Errorf("firewall %+v", c.firewall)
	}
	if fmt.Sprint(pkgs) != "[firewalld]" {
		t.Errorf("packages %v", pkgs)
	}
}

// A resolve_only repository (composer's payload_repositories) is
// resolved against, as install_from is, and not written into the image,
// which install_from is.
func TestResolveOnlyRepository(t *testing.T) {
	const head = "name = \"x\"\ndistro = \"testdist\"\n[customizations]\npartitioning_mode = \"raw\"\n"
	for _, tc := range []struct {
		flag    string
		written bool
	}{
		{"resolve_only = true", false},
		{"install_from = true", true},
	} {
		t.Run(tc.flag, func(t *testing.T) {
			p := writeBlueprint(t, head+`
[[customizations.repositories]]
id = "payload"
baseurls = ["https://payload.example/debian"]
`+tc.flag+"\n")
			lf, err := lockFixture(t, p)
			if err != nil {
				t.Fatal(err)
			}
			resolved := false
			for _, r := range lf.Repositories {
				resolved = resolved || strings.Contains(r.URI, "payload.example")
			}
			if !resolved {
				t.Errorf("the repository was not resolved against: %+v", lf.Repositories)
			}
			var files stages.Files
			stageOptions(t, lf, "os", "files", &files)
			written := false
			for _, f := range files.Files {
				if strings.Contains(f.Data, "payload.example") {
					written = true
				}
			}
			if written != tc.written {
				t.Errorf("written into the image: %v, want %v", written, tc.written)
			}
		})
	}
}
