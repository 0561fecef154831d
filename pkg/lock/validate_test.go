package lock

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
	"github.com/image-builder-action/image-builder-action/pkg/build"
	"github.com/image-builder-action/image-builder-action/pkg/manifest"
)

// planAll runs every entry of lf through the build's planning, which
// decodes and validates every stage the way a build starts.
func planAll(t *testing.T, lf *manifest.Lockfile) {
	t.Helper()
	for _, e := range lf.Entries {
		if err := build.Plan(lf, e.Arch, e.Type); err != nil {
			t.Errorf("lock accepted what the build refuses: %v", err)
		}
	}
}

// TestLockRefusesWhatBuildRefuses: whatever lock accepts, the build's
// planning accepts; what it cannot take is refused at lock, at the
// blueprint's line and field.
func TestLockRefusesWhatBuildRefuses(t *testing.T) {
	const head = "name = \"x\"\ndistro = \"testdist\"\n"
	for _, tc := range []struct {
		name, bp string
		want     string // an error, or "" to lock and plan
		cmdline  string // the grub2 stage's kernel_opts, when locked
	}{
		{"quoted kernel arguments", head + "[customizations.kernel]\nappend = 'quiet console=\"ttyS0\"'\n", "",
			`console=ttyS0 quiet console="ttyS0"`},
		{"quoted kernel argument with spaces", head + "[customizations.kernel]\nappend = 'dyndbg=\"file drivers/usb/* +p\"  console=\"ttyS0,115200\"'\n", "",
			`console=ttyS0 dyndbg="file drivers/usb/* +p" console="ttyS0,115200"`},
		{"unclosed quote", head + "[customizations.kernel]\nappend = 'quiet console=\"ttyS0'\n", `bp.toml:4:1: customizations.kernel.append: "console=\"ttyS0": the double quote is not closed`, ""},
		{"shell in kernel arguments", head + "[customizations.kernel]\nappend = 'quiet $(reboot)'\n", `bp.toml:4:1: customizations.kernel.append: "$"`, ""},
		{"file at /etc", head + "[[customizations.files]]\npath = \"/root/.profile\"\ndata = \"hi\"\n[[customizations.files]]\npath = \"/etc\"\ndata = \"hi\"\n",
			"bp.toml:7:1: customizations.files[1].path: /etc is a directory in every tree, not a file (the files stage)", ""},
		{"root of 900 TiB", head + "[[customizations.filesystem]]\nmountpoint = \"/\"\nminsize = \"900 TiB\"\n",
			"bp.toml:5:1: customizations.filesystem[0].minsize: entry x86_64/qcow2 pipeline image stage 0 (disk): size: 989560600264704 bytes is more than the 2 TiB this stage supports", ""},
		{"disk of 3 TiB", head + "[customizations.disk]\nminsize = \"3 TiB\"\n",
			"bp.toml:4:1: customizations.disk.minsize: entry x86_64/qcow2 pipeline image stage 0 (disk): size: 3298534883328 bytes is more than the 2 TiB", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lf, err := lockFixture(t, writeBlueprint(t, tc.bp), WithTypes("qcow2"))
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("got %v, want an error containing %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			planAll(t, lf)
			if tc.cmdline == "" {
				return
			}
			for _, s := range lf.Entries[0].Pipelines[1].Stages {
				if s.Type == "grub2" && !strings.Contains(string(s.Options), `"kernel_opts":`+jsonString(tc.cmdline)) {
					t.Errorf("grub2 options %s, want kernel_opts %q", s.Options, tc.cmdline)
				}
			}
		})
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestGoldenLockfilePlans: the golden lockfile of testdata/lock builds.
func TestGoldenLockfilePlans(t *testing.T) {
	lf, err := manifest.Load("../../testdata/lock/blueprint.lock.json")
	if err != nil {
		t.Fatal(err)
	}
	planAll(t, lf)
}

// TestFirewallPortNames: composer's blueprints name ports by service, and
// the firewall stage takes them (it refused them once, after lock).
func TestFirewallPortNames(t *testing.T) {
	bp, err := blueprint.Load(writeBlueprint(t, "name = \"x\"\n[customizations.firewall]\nports = [\"imap:tcp\", \"22:tcp\", \"8000-8080:udp\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := customizationsFor(bp, fixtureDefs(t).Distros["testdist"])
	if err != nil {
		t.Fatal(err)
	}
	if c.firewall == nil || len(c.firewall.Ports) != 3 {
		t.Errorf("firewall: %+v", c.firewall)
	}
}
