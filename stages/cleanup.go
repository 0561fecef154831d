package stages

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/image-builder-action/image-builder-action/pkg/treepath"
)

func init() { register[Cleanup]("cleanup", 1) }

// Cleanup removes what makes one machine's image differ from another's or
// is left over from the build: the machine id, SSH host keys (units make
// new ones at first boot), apt's lists and caches, logs, temporary files,
// random seeds, and the build's service blockers. It also stores GRUB's
// module copies in /boot/grub once, as hard links to the package's files.
// Running it twice changes nothing the second time.
type Cleanup struct {
	// SSHHostKeyTypes are the host keys made at first boot, in sshd's
	// order; empty means OpenSSH's defaults (sshHostKeyDefaults).
	SSHHostKeyTypes []string `json:"ssh_host_key_types,omitempty"`
}

// sshHostKeyDefaults are the types ssh-keygen -A makes. An RSA-3072 key
// takes seconds of CPU at first boot under emulation, which is why image
// definitions may leave it out.
var sshHostKeyDefaults = []string{"rsa", "ecdsa", "ed25519"}

func (s *Cleanup) validate() error {
	seen := map[string]bool{}
	for i, t := range s.SSHHostKeyTypes {
		if !slices.Contains(sshHostKeyDefaults, t) {
			return fmt.Errorf("ssh_host_key_types[%d]: %q is not one of %s", i, t, strings.Join(sshHostKeyDefaults, ", "))
		}
		if seen[t] {
			return fmt.Errorf("ssh_host_key_types[%d]: %q listed twice", i, t)
		}
		seen[t] = true
	}
	return nil
}

// The host keys are made by one instance of a template unit per type, so
// each runs only while its key is missing, and the types run in parallel.
// Where cloud-init runs, it replaces the keys first (after: no race over
// the files). The sshd_config drop-in names the keys, so sshd looks for no
// other.
const (
	sshKeygenUnitName = "ibuild-ssh-keygen@.service"
	sshKeygenUnit     = `[Unit]
Description=Generate the SSH host key of type %i
ConditionPathExists=!/etc/ssh/ssh_host_%i_key
After=cloud-init.service
Before=ssh.service ssh.socket

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -q -t %i -N "" -f /etc/ssh/ssh_host_%i_key
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
`
	sshHostKeysConf  = "/etc/ssh/sshd_config.d/ibuild-host-keys.conf"
	sshCloudInitConf = "/etc/cloud/cloud.cfg.d/90-ibuild-ssh-host-keys.cfg"
)

// sshKeygenInstance names the unit's instance for a key type.
func sshKeygenInstance(typ string) string { return "ibuild-ssh-keygen@" + typ + ".service" }

// cleanupDivertSuffix marks the local dpkg diversions the debs stage
// makes (debsDivertSuffix); it undoes them itself, this is the safety net
// for a tree it could not finish.
const cleanupDivertSuffix = ".ibuild-diverted"

// Run applies every step.
func (s *Cleanup) Run(ctx context.Context, env *Env) error {
	steps := []struct {
		name string
		fn   func(root string) error
	}{
		{"machine id", cleanMachineID},
		{"ssh host keys", func(root string) error { return cleanSSHKeys(root, s.SSHHostKeyTypes) }},
		{"apt", cleanApt},
		{"logs", cleanLogs},
		{"temporary files", cleanTmp},
		{"build leftovers", cleanBuildLeftovers},
		{"random seeds and caches", cleanSeeds},
		{"GRUB module copies", linkGrubModules},
	}
	for _, st := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := st.fn(env.Tree); err != nil {
			return fmt.Errorf("cleaning up %s: %w", st.name, err)
		}
	}
	return nil
}

// cleanMachineID empties /etc/machine-id, so systemd makes one at first
// boot, and points D-Bus's copy at it.
func cleanMachineID(root string) error {
	etc, err := treepath.Resolve(root, "/etc", true)
	if err != nil {
		return err
	}
	p := filepath.Join(etc, "machine-id")
	fi, err := os.Lstat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := treeWriteFile(p, nil, 0o444, 0, 0); err != nil {
			return err
		}
	case err != nil:
		return err
	case !fi.Mode().IsRegular():
		return fmt.Errorf("/etc/machine-id is not a regular file")
	case fi.Size() > 0:
		if err := os.Truncate(p, 0); err != nil {
			return err
		}
	}
	dbus, err := treepath.Resolve(root, "/var/lib/dbus", true)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(dbus); err == nil && fi.IsDir() {
		link := filepath.Join(dbus, "machine-id")
		if target, err := os.Readlink(link); err != nil || target != "/etc/machine-id" {
			return replaceSymlink(link, "/etc/machine-id")
		}
	}
	return nil
}

// cleanSSHKeys removes the host keys and, when the tree has sshd, enables
// the units that make new ones at first boot.
func cleanSSHKeys(root string, types []string) error {
	dir, err := treepath.Resolve(root, "/etc/ssh", true)
	if err != nil {
		return err
	}
	keys, err := filepath.Glob(filepath.Join(dir, "ssh_host_*"))
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := os.Remove(k); err != nil {
			return err
		}
	}
	if !treeExists(root, "/usr/sbin/sshd") {
		return nil
	}
	if len(types) == 0 {
		types = sshHostKeyDefaults
	}
	unit := path.Join("/etc/systemd/system", sshKeygenUnitName)
	if err := writeIfChanged(root, unit, sshKeygenUnit); err != nil {
		return err
	}
	conf := "# Written by ibuild: the host keys made at first boot.\n"
	for _, t := range types {
		conf += "HostKey /etc/ssh/ssh_host_" + t + "_key\n"
	}
	if err := writeIfChanged(root, sshHostKeysConf, conf); err != nil {
		return err
	}
	// cloud-init, where it runs, replaces the host keys at first boot
	// with its own list of types.
	if treeExists(root, "/etc/cloud/cloud.cfg") {
		cc := "# Written by ibuild: the host keys sshd is configured for.\nssh_genkeytypes: [" + strings.Join(types, ", ") + "]\n"
		if err := writeIfChanged(root, sshCloudInitConf, cc); err != nil {
			return err
		}
	}
	wants, err := treeMkdirAll(root, "/etc/systemd/system/multi-user.target.wants")
	if err != nil {
		return err
	}
	// Instances of the unit for types no longer asked for go.
	want := map[string]bool{}
	for _, t := range types {
		want[sshKeygenInstance(t)] = true
	}
	old, err := filepath.Glob(filepath.Join(wants, sshKeygenInstance("*")))
	if err != nil {
		return err
	}
	for _, l := range old {
		if !want[filepath.Base(l)] {
			if err := os.Remove(l); err != nil {
				return err
			}
		}
	}
	for _, t := range types {
		link := filepath.Join(wants, sshKeygenInstance(t))
		if target, err := os.Readlink(link); err == nil && target == unit {
			continue
		}
		if err := replaceSymlink(link, unit); err != nil {
			return err
		}
	}
	return nil
}

// writeIfChanged writes a root-owned 0644 file unless it already has data.
func writeIfChanged(root, p, data string) error {
	if old, err := treeReadFile(root, p); err == nil && string(old) == data {
		return nil
	}
	return treeWriteConfig(root, p, []byte(data), 0o644)
}

// cleanApt removes the package lists and caches apt rebuilds on update.
func cleanApt(root string) error {
	keep := map[string]bool{"lock": true, "partial": true}
	if err := emptyDir(root, "/var/lib/apt/lists", keep); err != nil {
		return err
	}
	if err := emptyDir(root, "/var/lib/apt/lists/partial", nil); err != nil {
		return err
	}
	if err := removeGlob(root, "/var/cache/apt", "*.bin"); err != nil {
		return err
	}
	if err := removeGlob(root, "/var/cache/apt/archives", "*.deb"); err != nil {
		return err
	}
	return emptyDir(root, "/var/cache/apt/archives/partial", nil)
}

// cleanLogs empties the build's logs, keeping each file (owner, mode) for
// the services that expect it, and removes rotated, compressed and
// journal files, which an empty file would corrupt.
func cleanLogs(root string) error {
	dir, err := treepath.Resolve(root, "/var/log", true)
	if err != nil {
		return err
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !d.Type().IsRegular() {
			return nil // symlinks are left alone: they may point anywhere
		}
		if removableLog(d.Name()) {
			return os.Remove(p)
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.Size() > 0 {
			return os.Truncate(p, 0)
		}
		return nil
	})
}

func removableLog(name string) bool {
	for _, suf := range []string{".gz", ".xz", ".zst", ".bz2", ".old", ".journal", ".journal~"} {
		if strings.HasSuffix(name, suf) {
			return true
		}
	}
	// Rotated: name.1, name.2...
	if i := strings.LastIndexByte(name, '.'); i >= 0 && i < len(name)-1 {
		return strings.Trim(name[i+1:], "0123456789") == ""
	}
	return false
}

// cleanTmp empties /tmp and /var/tmp.
func cleanTmp(root string) error {
	for _, d := range []string{"/tmp", "/var/tmp"} {
		if err := emptyDir(root, d, nil); err != nil {
			return err
		}
	}
	return nil
}

// cleanBuildLeftovers removes the service blocker and undoes the
// diversions the debs stage would have left had it not finished.
func cleanBuildLeftovers(root string) error {
	if data, err := treeReadFile(root, "/usr/sbin/policy-rc.d"); err == nil && strings.Contains(string(data), "# ibuild:") {
		p, err := treepath.Resolve(root, "/usr/sbin/policy-rc.d", false)
		if err != nil {
			return err
		}
		if err := os.Remove(p); err != nil {
			return err
		}
	}
	db, err := treepath.Resolve(root, "/var/lib/dpkg/diversions", true)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(db)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines)%3 != 0 {
		return fmt.Errorf("/var/lib/dpkg/diversions: %d lines, not records of 3", len(lines))
	}
	var kept []string
	changed := false
	for i := 0; i+2 < len(lines); i += 3 {
		from, to, pkg := lines[i], lines[i+1], lines[i+2]
		if pkg != ":" || to != from+cleanupDivertSuffix {
			kept = append(kept, from, to, pkg)
			continue
		}
		if err := undoDiversion(root, from, to); err != nil {
			return err
		}
		changed = true
	}
	if !changed {
		return nil
	}
	out := ""
	if len(kept) > 0 {
		out = strings.Join(kept, "\n") + "\n"
	}
	return treeWriteConfig(root, "/var/lib/dpkg/diversions", []byte(out), 0o644)
}

// undoDiversion puts the diverted file back in place of the stand-in.
func undoDiversion(root, from, to string) error {
	fromHost, err := treepath.Resolve(root, from, false)
	if err != nil {
		return err
	}
	toHost, err := treepath.Resolve(root, to, false)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(toHost); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // nothing was renamed away: the record alone goes
		}
		return err
	}
	return os.Rename(toHost, fromHost)
}

// cleanSeeds removes per-machine random seeds and caches that record the
// build host's state.
func cleanSeeds(root string) error {
	for _, p := range []string{"/var/lib/systemd/random-seed", "/var/cache/ldconfig/aux-cache"} {
		host, err := treepath.Resolve(root, p, false)
		if err != nil {
			return err
		}
		if err := os.Remove(host); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return removeGlob(root, "/var/cache/debconf", "*-old")
}

// emptyDir removes the contents of a tree directory, but the names in
// keep; a missing directory is fine.
func emptyDir(root, dir string, keep map[string]bool) error {
	host, err := treepath.Resolve(root, dir, true)
	if err != nil {
		return err
	}
	ents, err := os.ReadDir(host)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		if keep[e.Name()] {
			continue
		}
		if err := os.RemoveAll(filepath.Join(host, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// removeGlob removes the regular files and symlinks of a tree directory
// matching pattern.
func removeGlob(root, dir, pattern string) error {
	host, err := treepath.Resolve(root, dir, true)
	if err != nil {
		return err
	}
	matches, err := filepath.Glob(filepath.Join(host, pattern))
	if err != nil {
		return err
	}
	for _, m := range matches {
		if fi, err := os.Lstat(m); err == nil && fi.IsDir() {
			continue
		}
		if err := os.Remove(m); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// linkGrubModules replaces the files of /boot/grub/<platform> that are
// byte-for-byte copies of /usr/lib/grub/<platform>'s, with the same owner
// and mode, by hard links to them: ~5.6 MiB stored once in an amd64 image
// with both BIOS and UEFI GRUB. Only the names grub-install unlinks before
// it copies new ones (*.mod, *.lst, *.img) are linked, and dpkg renames a
// package's new files into place: neither writes through the link into the
// other file.
func linkGrubModules(root string) error {
	boot, err := treepath.Resolve(root, "/boot/grub", true)
	if err != nil {
		return err
	}
	platforms, err := os.ReadDir(boot)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, pl := range platforms {
		if !pl.IsDir() {
			continue // a symlink is left alone, like anything else unusual
		}
		src, err := treepath.Resolve(root, "/usr/lib/grub/"+pl.Name(), true)
		if err != nil {
			return err
		}
		dir := filepath.Join(boot, pl.Name())
		files, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, f := range files {
			n := f.Name()
			if !f.Type().IsRegular() || !grubInstallReplaces(n) {
				continue
			}
			if err := linkIfSame(filepath.Join(src, n), filepath.Join(dir, n)); err != nil {
				return err
			}
		}
	}
	return nil
}

// grubInstallReplaces reports whether grub-install removes a file of this
// name from a platform directory before copying (its clean_grub_dir).
func grubInstallReplaces(name string) bool {
	for _, ext := range []string{".mod", ".lst", ".img"} {
		if strings.HasSuffix(name, ext) {
			return true
		}
	}
	return false
}

// linkIfSame makes dst a hard link to src when both are regular files with
// the same owner, mode and contents and are not linked already.
func linkIfSame(src, dst string) error {
	sfi, err := os.Lstat(src)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	dfi, err := os.Lstat(dst)
	if err != nil {
		return err
	}
	if !sfi.Mode().IsRegular() || !dfi.Mode().IsRegular() || os.SameFile(sfi, dfi) ||
		sfi.Mode() != dfi.Mode() || sfi.Size() != dfi.Size() {
		return nil
	}
	ss, ds := sfi.Sys().(*syscall.Stat_t), dfi.Sys().(*syscall.Stat_t)
	if ss.Uid != ds.Uid || ss.Gid != ds.Gid {
		return nil
	}
	same, err := sameContents(src, dst)
	if err != nil || !same {
		return err
	}
	tmp := dst + ".ibuild-link"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Link(src, tmp); err != nil {
		if errors.Is(err, syscall.EXDEV) {
			return nil // another file system: the copy stays
		}
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// sameContents compares two files of equal size.
func sameContents(a, b string) (bool, error) {
	fa, err := os.Open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	ba, bb := make([]byte, 64<<10), make([]byte, 64<<10)
	for {
		na, erra := io.ReadFull(fa, ba)
		nb, errb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		if erra == io.EOF || erra == io.ErrUnexpectedEOF {
			return errb == io.EOF || errb == io.ErrUnexpectedEOF, nil
		}
		if erra != nil {
			return false, erra
		}
		if errb != nil {
			return false, errb
		}
	}
}
