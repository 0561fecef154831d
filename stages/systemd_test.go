package stages_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/image-builder-action/image-builder-action/stages"
)

func TestSystemdValidate(t *testing.T) {
	tests := []struct{ options, err string }{
		{`{"enabled":["ssh","fstrim.timer","serial-getty@ttyS0"],"disabled":["apt-daily.timer"],"masked":["x.socket"],"default_target":"multi-user.target"}`, ""},
		{`{"default_target":"graphical"}`, ""},
		{`{}`, ""},
		{`{"enabled":["ok","bad unit"]}`, `enabled[1]: "bad unit" is not a unit name`},
		{`{"enabled":["--root=/x"]}`, `enabled[0]: "--root=/x" is not a unit name`},
		{`{"enabled":["a/b"]}`, `enabled[0]: "a/b" is not a unit name`},
		{`{"enabled":["ssh"],"masked":["ssh.service"]}`, `masked[0]: ssh.service is already listed in enabled[0]`},
		{`{"default_target":"ssh.service"}`, `default_target: "ssh.service" is not a target`},
		{`{"default_target":"x@y.target"}`, `default_target: "x@y.target" is not a target name`},
		{`{"enable":["ssh"]}`, `unknown field "enable"`},
	}
	for _, tc := range tests {
		_, err := stages.New("systemd", json.RawMessage(tc.options))
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("New(systemd, %s) = %v, want error %q", tc.options, err, tc.err)
		}
	}
}

// tcLink returns a symlink's target in a tree, "" when it is absent.
func tcLink(t *testing.T, root, p string) string {
	t.Helper()
	target, err := os.Readlink(filepath.Join(root, p))
	if err != nil {
		return ""
	}
	return target
}

func TestSystemdRun(t *testing.T) {
	root := tcDebianTree(t)
	env := tcEnv(t, root)
	const sys = "/etc/systemd/system/"
	// Debian's postinsts enabled ssh when the tree was made.
	if tcLink(t, root, sys+"multi-user.target.wants/ssh.service") == "" {
		t.Fatal("the test tree does not have ssh enabled")
	}
	tcRun(t, env, "systemd", `{"enabled":["systemd-networkd","serial-getty@ttyS0"],
		"disabled":["ssh","fstrim.timer"],"masked":["apt-daily.timer"],"default_target":"multi-user"}`)
	for _, tc := range []struct{ link, target string }{
		{"multi-user.target.wants/systemd-networkd.service", "/lib/systemd/system/systemd-networkd.service"},
		{"sockets.target.wants/systemd-networkd.socket", "/lib/systemd/system/systemd-networkd.socket"},
		{"getty.target.wants/serial-getty@ttyS0.service", "/lib/systemd/system/serial-getty@.service"},
		{"multi-user.target.wants/ssh.service", ""},
		{"sshd.service", ""},
		{"timers.target.wants/fstrim.timer", ""},
		{"apt-daily.timer", "/dev/null"},
		{"default.target", "/lib/systemd/system/multi-user.target"},
	} {
		if got := tcLink(t, root, sys+tc.link); got != tc.target {
			t.Errorf("%s%s -> %q, want %q", sys, tc.link, got, tc.target)
		}
	}
	for _, tc := range []struct{ options, err string }{
		{`{"enabled":["ssh","nonexistent"]}`, "enabled[1]: unit nonexistent.service does not exist in the tree"},
		{`{"disabled":["nope.timer"]}`, "disabled[0]: unit nope.timer does not exist in the tree"},
		{`{"default_target":"nowhere"}`, "default_target: unit nowhere.target does not exist in the tree"},
	} {
		err := tcStage(t, "systemd", tc.options).Run(context.Background(), env)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want %q", tc.options, err, tc.err)
		}
	}
	// Masking needs no unit file.
	tcRun(t, env, "systemd", `{"masked":["not-installed"]}`)
	if got := tcLink(t, root, sys+"not-installed.service"); got != "/dev/null" {
		t.Errorf("masked not-installed.service -> %q", got)
	}
}

// tcUnitLinks lists the symlinks under /etc/systemd/system with their
// targets.
func tcUnitLinks(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	dir := filepath.Join(root, "etc/systemd/system")
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.Type()&os.ModeSymlink == 0 {
			return err
		}
		target, err := os.Readlink(p)
		rel, _ := filepath.Rel(dir, p)
		out[rel] = target
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSystemdWithoutSystemctl checks the Go fallback against the tree's
// own systemctl: the same options on two copies of a Debian tree, one
// without systemctl, give the same links.
func TestSystemdWithoutSystemctl(t *testing.T) {
	withCtl, without := tcDebianTree(t), tcDebianTree(t)
	if err := os.Remove(filepath.Join(without, "usr/bin/systemctl")); err != nil {
		t.Fatal(err)
	}
	for _, opts := range []string{
		`{"enabled":["systemd-networkd","serial-getty@ttyS0","getty@","fstrim.timer"],"masked":["apt-daily.timer"],"default_target":"multi-user"}`,
		`{"disabled":["ssh","fstrim.timer","getty@tty1"]}`,
	} {
		tcRun(t, tcEnv(t, withCtl), "systemd", opts)
		tcRun(t, tcEnv(t, without), "systemd", opts)
		want, got := tcUnitLinks(t, withCtl), tcUnitLinks(t, without)
		for k, v := range want {
			if got[k] != v {
				t.Errorf("after %s: %s -> %q, systemctl made %q", opts, k, got[k], v)
			}
		}
		for k, v := range got {
			if _, ok := want[k]; !ok {
				t.Errorf("after %s: %s -> %q, which systemctl did not make", opts, k, v)
			}
		}
	}
	for _, tc := range []struct{ options, err string }{
		{`{"enabled":["nonexistent"]}`, "unit nonexistent.service does not exist"},
		{`{"enabled":["apt-daily.timer"]}`, "unit apt-daily.timer is masked"},
	} {
		err := tcStage(t, "systemd", tc.options).Run(context.Background(), tcEnv(t, without))
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want %q", tc.options, err, tc.err)
		}
	}
}
