package stages_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/image-builder-action/image-builder-action/stages"
)

func TestCleanupValidate(t *testing.T) {
	tests := []struct{ options, err string }{
		{`{}`, ""},
		{`{"ssh_host_key_types":["ed25519","ecdsa","rsa"]}`, ""},
		{`{"keep_logs":true}`, `unknown field "keep_logs"`},
		{`{"ssh_host_key_types":["dsa"]}`, `ssh_host_key_types[0]: "dsa" is not one of rsa, ecdsa, ed25519`},
		{`{"ssh_host_key_types":["ed25519","ed25519"]}`, `ssh_host_key_types[1]: "ed25519" listed twice`},
		{`{"ssh_host_key_types":["../x"]}`, `ssh_host_key_types[0]: "../x" is not one of`},
	}
	for _, tc := range tests {
		_, err := stages.New("cleanup", json.RawMessage(tc.options))
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("New(cleanup, %s) = %v, want error %q", tc.options, err, tc.err)
		}
	}
}

// Where cloud-init runs, it makes the host keys again at first boot: it is
// told the same types as sshd.
func TestCleanupSSHCloudInit(t *testing.T) {
	tcNeedRoot(t)
	root := tcEmptyTree(t)
	tcWrite(t, root, "/usr/sbin/sshd", "")
	tcWrite(t, root, "/etc/cloud/cloud.cfg", "ssh_deletekeys: true\n")
	env := tcEnv(t, root)
	const options = `{"ssh_host_key_types":["ed25519","ecdsa"]}`
	tcRun(t, env, "cleanup", options)
	want := "# Written by ibuild: the host keys sshd is configured for.\nssh_genkeytypes: [ed25519, ecdsa]\n"
	if got := tcRead(t, root, "/etc/cloud/cloud.cfg.d/90-ibuild-ssh-host-keys.cfg"); got != want {
		t.Errorf("cloud-init configuration %q, want %q", got, want)
	}
	if got := tcRead(t, root, "/etc/ssh/sshd_config.d/ibuild-host-keys.conf"); !strings.Contains(got, "HostKey /etc/ssh/ssh_host_ed25519_key\nHostKey /etc/ssh/ssh_host_ecdsa_key\n") {
		t.Errorf("sshd_config drop-in:\n%s", got)
	}
	tcSecondRunNoop(t, env, options)
}

// tcSnapshot describes every entry of a tree: type, mode, owner, size,
// mtime, link target and content digest.
func tcSnapshot(t *testing.T, root string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		l := fmt.Sprintf("%s %v %d:%d %d %d", strings.TrimPrefix(p, root), fi.Mode(), st.Uid, st.Gid, fi.Size(), fi.ModTime().UnixNano())
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			l += " -> " + target
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			l += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		lines = append(lines, l)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// tcSecondRunNoop runs cleanup again and fails if anything changed.
func tcSecondRunNoop(t *testing.T, env *stages.Env, options string) {
	t.Helper()
	before := tcSnapshot(t, env.Tree)
	tcRun(t, env, "cleanup", options)
	if after := tcSnapshot(t, env.Tree); after != before {
		a, b := strings.Split(after, "\n"), map[string]bool{}
		for _, l := range strings.Split(before, "\n") {
			b[l] = true
		}
		for _, l := range a {
			if !b[l] {
				t.Errorf("second cleanup changed: %s", l)
			}
		}
		if len(a) != len(b) {
			t.Errorf("second cleanup changed the number of entries: %d -> %d", len(b), len(a))
		}
	}
}

func TestCleanupFiles(t *testing.T) {
	tcNeedRoot(t)
	root := tcEmptyTree(t)
	for p, data := range map[string]string{
		"/etc/machine-id":                                  "0123456789abcdef0123456789abcdef\n",
		"/etc/ssh/ssh_host_ed25519_key":                    "secret",
		"/etc/ssh/ssh_host_ed25519_key.pub":                "public",
		"/etc/ssh/sshd_config":                             "config",
		"/var/lib/apt/lists/lock":                          "",
		"/var/lib/apt/lists/partial/x":                     "partial",
		"/var/lib/apt/lists/host_dists_bookworm_InRelease": "release",
		"/var/cache/apt/pkgcache.bin":                      "cache",
		"/var/cache/apt/archives/a_1_amd64.deb":            "deb",
		"/var/cache/apt/archives/partial/b.deb":            "partial",
		"/var/log/dpkg.log":                                "installed things",
		"/var/log/apt/history.log":                         "history",
		"/var/log/apt/eipp.log.xz":                         "xz",
		"/var/log/syslog.1":                                "rotated",
		"/var/log/journal/abc/system.journal":              "journal",
		"/tmp/dir/file":                                    "tmp",
		"/var/tmp/file":                                    "tmp",
		"/usr/sbin/policy-rc.d":                            "#!/bin/sh\n# ibuild: no service starts while building.\nexit 101\n",
		"/usr/sbin/start-stop-daemon":                      "#!/bin/sh\n# ibuild stand-in\n",
		"/usr/sbin/start-stop-daemon.ibuild-diverted":      "the real one",
		"/var/lib/dpkg/diversions": "/bin/sh\n/bin/sh.distrib\ndash\n" +
			"/usr/sbin/start-stop-daemon\n/usr/sbin/start-stop-daemon.ibuild-diverted\n:\n",
		"/var/lib/systemd/random-seed":      "seed",
		"/var/cache/debconf/config.dat-old": "old",
		"/var/cache/debconf/config.dat":     "current",
	} {
		tcWrite(t, root, p, data)
	}
	os.MkdirAll(filepath.Join(root, "var/lib/dbus"), 0o755)
	os.Chmod(filepath.Join(root, "tmp"), 0o777|fs.ModeSticky)
	os.Chown(filepath.Join(root, "var/log/dpkg.log"), 0, 4)
	env := tcEnv(t, root)
	tcRun(t, env, "cleanup", `{}`)

	gone := []string{"/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_ed25519_key.pub",
		"/var/lib/apt/lists/partial/x", "/var/lib/apt/lists/host_dists_bookworm_InRelease",
		"/var/cache/apt/pkgcache.bin", "/var/cache/apt/archives/a_1_amd64.deb", "/var/cache/apt/archives/partial/b.deb",
		"/var/log/apt/eipp.log.xz", "/var/log/syslog.1", "/var/log/journal/abc/system.journal",
		"/tmp/dir", "/var/tmp/file", "/usr/sbin/policy-rc.d", "/usr/sbin/start-stop-daemon.ibuild-diverted",
		"/var/lib/systemd/random-seed", "/var/cache/debconf/config.dat-old",
		// No sshd: no key generation unit.
		"/etc/systemd/system/ibuild-ssh-keygen@.service", "/etc/ssh/sshd_config.d/ibuild-host-keys.conf"}
	for _, p := range gone {
		if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
			t.Errorf("%s is still there", p)
		}
	}
	for p, want := range map[string]string{
		"/etc/machine-id":               "",
		"/var/log/dpkg.log":             "",
		"/var/log/apt/history.log":      "",
		"/etc/ssh/sshd_config":          "config",
		"/var/cache/debconf/config.dat": "current",
		"/usr/sbin/start-stop-daemon":   "the real one",
		"/var/lib/dpkg/diversions":      "/bin/sh\n/bin/sh.distrib\ndash\n",
	} {
		if got := tcRead(t, root, p); got != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
	for _, d := range []string{"/tmp", "/var/tmp", "/var/lib/apt/lists/partial", "/var/log/journal/abc"} {
		if fi, err := os.Stat(filepath.Join(root, d)); err != nil || !fi.IsDir() {
			t.Errorf("directory %s was removed: %v", d, err)
		}
	}
	if mode, _, _ := tcStat(t, root, "/tmp"); mode.Perm() != 0o777 || mode&fs.ModeSticky == 0 {
		t.Errorf("/tmp mode %v", mode)
	}
	if _, _, gid := tcStat(t, root, "/var/log/dpkg.log"); gid != 4 {
		t.Errorf("/var/log/dpkg.log lost its group: %d", gid)
	}
	if got := tcLink(t, root, "/var/lib/dbus/machine-id"); got != "/etc/machine-id" {
		t.Errorf("/var/lib/dbus/machine-id -> %q", got)
	}
	tcSecondRunNoop(t, env, `{}`)
}

func TestCleanupRun(t *testing.T) {
	root := tcDebianTree(t)
	env := tcEnv(t, root)
	if keys, _ := filepath.Glob(filepath.Join(root, "etc/ssh/ssh_host_*")); len(keys) == 0 {
		t.Fatal("the test tree has no ssh host keys to remove")
	}
	tcRun(t, env, "cleanup", `{}`)
	if keys, _ := filepath.Glob(filepath.Join(root, "etc/ssh/ssh_host_*")); len(keys) != 0 {
		t.Errorf("host keys left: %v", keys)
	}
	if got := tcRead(t, root, "/etc/machine-id"); got != "" {
		t.Errorf("/etc/machine-id = %q", got)
	}
	tcSecondRunNoop(t, env, `{}`)
	tcCheckSSHKeygen(t, env, []string{"rsa", "ecdsa", "ed25519"})

	// A shorter list takes the other instances away again (and the keys
	// the check made).
	tcRun(t, env, "cleanup", `{"ssh_host_key_types":["ed25519","ecdsa"]}`)
	tcCheckSSHKeygen(t, env, []string{"ed25519", "ecdsa"})
	if _, err := os.Lstat(filepath.Join(root, "etc/systemd/system/multi-user.target.wants/ibuild-ssh-keygen@rsa.service")); err == nil {
		t.Error("the rsa instance is still enabled")
	}
}

// tcCheckSSHKeygen checks the units that make the host keys of types at
// first boot, and runs what they would run, in the tree: the keys are
// made and the tree's sshd accepts its configuration with them.
func tcCheckSSHKeygen(t *testing.T, env *stages.Env, types []string) {
	t.Helper()
	root := env.Tree
	unit := tcRead(t, root, "/etc/systemd/system/ibuild-ssh-keygen@.service")
	for _, want := range []string{"\nConditionPathExists=!/etc/ssh/ssh_host_%i_key\n", "\nAfter=cloud-init.service\n", "\nBefore=ssh.service ssh.socket\n", "\nWantedBy=multi-user.target\n"} {
		if !strings.Contains(unit, want) {
			t.Errorf("key generation unit lacks %q:\n%s", want, unit)
		}
	}
	var execStart string
	for _, l := range strings.Split(unit, "\n") {
		if v, ok := strings.CutPrefix(l, "ExecStart="); ok {
			execStart = v
		}
	}
	conf := tcRead(t, root, "/etc/ssh/sshd_config.d/ibuild-host-keys.conf")
	var hostKeys []string
	for _, l := range strings.Split(conf, "\n") {
		if v, ok := strings.CutPrefix(l, "HostKey "); ok {
			hostKeys = append(hostKeys, v)
		}
	}
	var want []string
	for _, typ := range types {
		want = append(want, "/etc/ssh/ssh_host_"+typ+"_key")
		name := "ibuild-ssh-keygen@" + typ + ".service"
		if got := tcLink(t, root, "/etc/systemd/system/multi-user.target.wants/"+name); got != "/etc/systemd/system/ibuild-ssh-keygen@.service" {
			t.Errorf("wants link of %s -> %q", name, got)
		}
		// The tree's own systemctl agrees it is enabled.
		var out bytes.Buffer
		err := env.Runner.Run(context.Background(), &stages.Cmd{Root: root, Env: []string{"SYSTEMD_OFFLINE=1"},
			Args: []string{"systemctl", "is-enabled", name}, Stdout: &out})
		if got := strings.TrimSpace(out.String()); err != nil || got != "enabled" {
			t.Errorf("systemctl is-enabled %s: %q, %v", name, got, err)
		}
	}
	if !slices.Equal(hostKeys, want) {
		t.Errorf("sshd_config drop-in names %v, want %v:\n%s", hostKeys, want, conf)
	}
	// What the instances run at first boot (systemd unquotes "" to an
	// empty argument).
	for _, typ := range types {
		var args []string
		for _, f := range strings.Fields(strings.ReplaceAll(execStart, "%i", typ)) {
			args = append(args, strings.Trim(f, `"`))
		}
		var log bytes.Buffer
		if err := env.Runner.Run(context.Background(), &stages.Cmd{Root: root, Args: args, Stdout: &log, Stderr: &log}); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, log.String())
		}
	}
	var log bytes.Buffer
	// /run is the runner's own tmpfs: sshd's privilege separation
	// directory is made in it.
	sshd := []string{"/bin/sh", "-c", "mkdir -p /run/sshd && exec /usr/sbin/sshd -t"}
	if err := env.Runner.Run(context.Background(), &stages.Cmd{Root: root, Args: sshd, Stdout: &log, Stderr: &log}); err != nil {
		t.Errorf("sshd -t with the made keys: %v\n%s", err, log.String())
	}
	if strings.Contains(log.String(), "host key") {
		t.Errorf("sshd -t complains about host keys:\n%s", log.String())
	}
	keys, _ := filepath.Glob(filepath.Join(root, "etc/ssh/ssh_host_*_key"))
	if len(keys) != len(types) {
		t.Errorf("keys made: %v, want %v", keys, types)
	}
}

func TestCleanupGrubModules(t *testing.T) {
	tcNeedRoot(t)
	root := tcEmptyTree(t)
	for _, f := range []struct{ p, data string }{
		{"/usr/lib/grub/i386-pc/normal.mod", "normal"},
		{"/usr/lib/grub/i386-pc/moddep.lst", "deps"},
		{"/usr/lib/grub/i386-pc/boot.img", "boot sector"},
		{"/usr/lib/grub/i386-pc/modinfo.sh", "info"},
		{"/usr/lib/grub/i386-pc/other.mod", "package"},
		{"/usr/lib/grub/i386-pc/private.mod", "private"},
		{"/usr/lib/grub/i386-pc/owned.mod", "owned"},
		{"/usr/lib/grub/x86_64-efi/linux.mod", "linux"},
		{"/boot/grub/i386-pc/normal.mod", "normal"},
		{"/boot/grub/i386-pc/moddep.lst", "deps"},
		{"/boot/grub/i386-pc/boot.img", "boot sector"},
		{"/boot/grub/i386-pc/core.img", "built here"},
		{"/boot/grub/i386-pc/modinfo.sh", "info"},     // grub-install overwrites it in place
		{"/boot/grub/i386-pc/other.mod", "changed"},   // same size, other bytes
		{"/boot/grub/i386-pc/private.mod", "private"}, // other mode
		{"/boot/grub/i386-pc/owned.mod", "owned"},     // other owner
		{"/boot/grub/x86_64-efi/linux.mod", "linux"},
		{"/boot/grub/x86_64-efi/extra.mod", "no source"},
		{"/boot/grub/grub.cfg", "menu"},
	} {
		tcWrite(t, root, f.p, f.data)
	}
	if err := os.Chmod(filepath.Join(root, "boot/grub/i386-pc/private.mod"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(root, "boot/grub/i386-pc/owned.mod"), 1, 1); err != nil {
		t.Fatal(err)
	}
	env := tcEnv(t, root)
	tcRun(t, env, "cleanup", `{}`)

	same := func(a, b string) bool {
		fa, err := os.Lstat(filepath.Join(root, a))
		if err != nil {
			t.Fatal(err)
		}
		fb, err := os.Lstat(filepath.Join(root, b))
		if err != nil {
			t.Fatal(err)
		}
		return os.SameFile(fa, fb)
	}
	for _, tc := range []struct {
		name   string
		linked bool
	}{
		{"i386-pc/normal.mod", true},
		{"i386-pc/moddep.lst", true},
		{"i386-pc/boot.img", true},
		{"i386-pc/modinfo.sh", false},
		{"i386-pc/other.mod", false},
		{"i386-pc/private.mod", false},
		{"i386-pc/owned.mod", false},
		{"x86_64-efi/linux.mod", true},
	} {
		if got := same("/boot/grub/"+tc.name, "/usr/lib/grub/"+tc.name); got != tc.linked {
			t.Errorf("%s: linked %v, want %v", tc.name, got, tc.linked)
		}
	}
	for p, want := range map[string]string{
		"/boot/grub/i386-pc/core.img":        "built here",
		"/boot/grub/i386-pc/other.mod":       "changed",
		"/usr/lib/grub/i386-pc/other.mod":    "package",
		"/boot/grub/i386-pc/normal.mod":      "normal",
		"/boot/grub/x86_64-efi/extra.mod":    "no source",
		"/boot/grub/grub.cfg":                "menu",
		"/usr/lib/grub/x86_64-efi/linux.mod": "linux",
	} {
		if got := tcRead(t, root, p); got != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
	if mode, uid, _ := tcStat(t, root, "/boot/grub/i386-pc/owned.mod"); mode.Perm() != 0o644 || uid != 1 {
		t.Errorf("owned.mod: %v uid %d", mode, uid)
	}
	if left, _ := filepath.Glob(filepath.Join(root, "boot/grub/*/*.ibuild-link")); len(left) > 0 {
		t.Errorf("temporary links left: %v", left)
	}
	tcSecondRunNoop(t, env, `{}`)
}
