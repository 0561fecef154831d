package stages

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// debsNativeHosts says, per host architecture (GOARCH), where its dynamic
// loader and libraries live: paths an Debian tree of another architecture
// does not have, so binding them in hides nothing. Only amd64 for now: on
// arm64 the loader is in /usr/lib, which every tree has.
var debsNativeHosts = map[string]struct{ multiarch, loaderDir string }{
	"amd64": {multiarch: "x86_64-linux-gnu", loaderDir: "/lib64"},
}

// debsNativePerl returns the binds that make the tree's /usr/bin/perl the
// build root's, a program of this host's architecture, while the packages
// of a foreign tree are configured; nil when that would not give the same
// result as the tree's own perl.
//
// Under qemu-user every program starts a fresh emulator that translates it
// again, and perl compiling Debconf's modules costs about 1.7 s of CPU
// emulated against 0.05 s native (measured here); the maintainer scripts
// that use debconf, deb-systemd-helper and update-rc.d are perl. The
// build root's perl is the same perl-base version, and the scripts and
// modules it reads are the tree's (arch-independent /usr/share/perl5), so
// the files written are the same; what it runs is the tree's, emulated.
// It is used only when the versions match, no libperl of the target's
// (XS modules the native perl could not load) is in the set, and the
// tree's perl-base is not being replaced (a bind mount cannot be renamed
// over).
func debsNativePerl(env *Env, pkgs []*debInfo) []Bind {
	host, ok := debsNativeHosts[runtime.GOARCH]
	if !ok || !debsForeign(env.Arch) || env.BuildRoot == "" {
		return nil
	}
	arch, err := os.ReadFile(filepath.Join(env.BuildRoot, "var/lib/dpkg/arch"))
	if err != nil || strings.TrimSpace(strings.SplitN(string(arch), "\n", 2)[0]) != runtime.GOARCH {
		return nil
	}
	for _, p := range pkgs {
		if p.name == "perl-base" || strings.HasPrefix(p.name, "libperl") {
			return nil
		}
	}
	brStatus, err := readDpkgStatus(env.BuildRoot)
	if err != nil {
		return nil
	}
	treeStatus, err := readDpkgStatus(env.Tree)
	if err != nil {
		return nil
	}
	br, ok1 := brStatus["perl-base:"+runtime.GOARCH]
	tr, ok2 := treeStatus["perl-base:"+env.Arch]
	if !ok1 || !ok2 || br.status != "install ok installed" || tr.status != "install ok installed" || br.version != tr.version {
		return nil
	}
	libDir := "/usr/lib/" + host.multiarch
	for _, p := range []string{libDir, host.loaderDir} {
		if _, err := os.Lstat(filepath.Join(env.Tree, p)); !errors.Is(err, os.ErrNotExist) {
			return nil // the tree has it: a bind would hide it
		}
	}
	binds := []Bind{
		{Src: filepath.Join(env.BuildRoot, libDir), Dst: libDir, ReadOnly: true},
		{Src: filepath.Join(env.BuildRoot, "usr", host.loaderDir), Dst: host.loaderDir, ReadOnly: true},
		{Src: filepath.Join(env.BuildRoot, "usr/bin/perl"), Dst: "/usr/bin/perl", ReadOnly: true},
	}
	for _, b := range binds {
		if _, err := os.Stat(b.Src); err != nil {
			return nil
		}
	}
	if fi, err := os.Lstat(filepath.Join(env.Tree, "usr/bin/perl")); err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	return binds
}
