package stages

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
)

// debsNativeHosts says, per host architecture (GOARCH), where its dynamic
// loader and libraries live: paths a Debian tree of another architecture
// does not have, so binding them in hides nothing. The loader's directory
// is reached through a link (/lib64 -> usr/lib64) as on a merged-/usr
// system of the host's architecture: systemd's preinst refuses a tree
// whose /lib64 is a directory. Only amd64 for now: on arm64 the loader is
// in /usr/lib, which every tree has.
var debsNativeHosts = map[string]struct{ multiarch, loaderDir, loaderLink, loader string }{
	"amd64": {multiarch: "x86_64-linux-gnu", loaderDir: "/usr/lib64", loaderLink: "/lib64", loader: "ld-linux-x86-64.so.2"},
}

// debsNativeTools are the programs of a foreign tree that the build root's
// build of the same package version stands in for while packages are
// configured: the shell and perl that run maintainer scripts, the helpers
// dpkg starts for every package, and the file tools scripts call most.
// None of them says what machine it runs on (uname, arch and dpkg itself,
// which does, stay the tree's).
var debsNativeTools = []nativeTool{
	{"/usr/bin/dash", "dash"},
	{"/usr/bin/perl", "perl-base"},
	{"/usr/bin/dpkg-deb", "dpkg"},
	{"/usr/bin/dpkg-split", "dpkg"},
	{"/usr/bin/tar", "tar"},
	{"/usr/bin/grep", "grep"},
	{"/usr/bin/sed", "sed"},
	{"/usr/bin/basename", "coreutils"},
	{"/usr/bin/cat", "coreutils"},
	{"/usr/bin/chmod", "coreutils"},
	{"/usr/bin/chown", "coreutils"},
	{"/usr/bin/cp", "coreutils"},
	{"/usr/bin/dirname", "coreutils"},
	{"/usr/bin/ln", "coreutils"},
	{"/usr/bin/mkdir", "coreutils"},
	{"/usr/bin/mv", "coreutils"},
	{"/usr/bin/readlink", "coreutils"},
	{"/usr/bin/rm", "coreutils"},
	{"/usr/bin/touch", "coreutils"},
	{"/usr/bin/test", "coreutils"},
	{"/usr/bin/mktemp", "coreutils"},
	{"/usr/bin/realpath", "coreutils"},
	{"/usr/bin/stat", "coreutils"},
	{"/usr/bin/wc", "coreutils"},
}

// debsNative returns the binds that make some of a foreign tree's programs
// (debsNativeTools) those of env.Native, the build root of this host's
// architecture, while packages are configured; nil when none can be.
//
// Under qemu-user every program starts a fresh emulator that translates it
// again: about 75 ms of CPU for a small tool, and 1.7 s for perl loading
// Debconf's modules (0.05 s natively; measured on this machine), and dpkg
// starts dpkg-split, dpkg-deb twice, tar and rm for every package. A
// program is replaced only when the build root has the same version of
// the package that ships it (a binNMU of the same source counts: see
// debsSourceVersion), and that package is not in the set being
// installed (a bind mount cannot be renamed over). The scripts and data
// they read are the tree's, so the files written are the same as with
// the tree's own programs. Perl is left alone when a libperl is in the
// set: a native perl could not load the target's XS modules.
func debsNative(env *Env, pkgs []*debInfo) []Bind {
	installing := map[string]bool{}
	libperl := false
	for _, p := range pkgs {
		installing[p.name] = true
		libperl = libperl || strings.HasPrefix(p.name, "libperl")
	}
	return nativeBinds(env, debsNativeTools, func(pkg string) bool {
		return installing[pkg] || (pkg == "perl-base" && libperl)
	})
}

// nativeTool is a program of a foreign tree and the package shipping it.
type nativeTool struct{ path, pkg string }

// nativeBinds returns the binds that make those of tools whose package
// skip does not refuse the programs of env.Native, the build root of this
// host's architecture, instead of the foreign tree's; nil when none can
// be. A program is replaced only when the build root has the same version
// of its package as the tree (a binNMU of the same source counts: see
// debsSourceVersion). The first two binds are the host's loader and
// libraries; the tree needs the link debsNativeLink makes while they are
// mounted.
func nativeBinds(env *Env, tools []nativeTool, skip func(pkg string) bool) []Bind {
	treeStatus, err := readDpkgStatus(env.Tree)
	if err != nil {
		return nil
	}
	return nativeBindsFor(env, tools, skip, func(pkg string) (string, bool) {
		st, ok := treeStatus[pkg+":"+env.Arch]
		return st.version, ok && st.status == "install ok installed"
	})
}

// nativeBindsFor is nativeBinds with the tree's version of a package
// given by treeVersion (false: the tree has no such package installed).
func nativeBindsFor(env *Env, tools []nativeTool, skip func(pkg string) bool, treeVersion func(pkg string) (string, bool)) []Bind {
	host, ok := debsNativeHosts[runtime.GOARCH]
	if !ok || !debsForeign(env.Arch) || env.Native == "" {
		return nil
	}
	arch, err := os.ReadFile(filepath.Join(env.Native, "var/lib/dpkg/arch"))
	if err != nil || strings.TrimSpace(strings.SplitN(string(arch), "\n", 2)[0]) != runtime.GOARCH {
		return nil
	}
	libDir := "/usr/lib/" + host.multiarch
	for _, p := range []string{libDir, host.loaderDir, host.loaderLink} {
		if _, err := os.Lstat(filepath.Join(env.Tree, p)); !errors.Is(err, os.ErrNotExist) {
			return nil // the tree has it: a bind would hide it
		}
	}
	brStatus, err := readDpkgStatus(env.Native)
	if err != nil {
		return nil
	}
	var binds []Bind
	for _, t := range tools {
		if skip != nil && skip(t.pkg) {
			continue
		}
		br, ok1 := brStatus[t.pkg+":"+runtime.GOARCH]
		tr, ok2 := treeVersion(t.pkg)
		if !ok1 || !ok2 || br.status != "install ok installed" ||
			debsSourceVersion(br.version) != debsSourceVersion(tr) {
			continue
		}
		src := filepath.Join(env.Native, t.path)
		if fi, err := os.Stat(src); err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if fi, err := os.Lstat(filepath.Join(env.Tree, t.path)); err != nil || !fi.Mode().IsRegular() {
			continue
		}
		binds = append(binds, Bind{Src: src, Dst: t.path, ReadOnly: true})
	}
	if len(binds) == 0 {
		return nil
	}
	runtimeDirs := []Bind{
		{Src: filepath.Join(env.Native, libDir), Dst: libDir, ReadOnly: true},
		{Src: filepath.Join(env.Native, host.loaderDir), Dst: host.loaderDir, ReadOnly: true},
	}
	for _, b := range runtimeDirs {
		if _, err := os.Stat(b.Src); err != nil {
			return nil
		}
	}
	return append(runtimeDirs, binds...)
}

// debsBinNMURE matches a binary-only upload's suffix ("+b1").
var debsBinNMURE = regexp.MustCompile(`\+b[0-9]+$`)

// debsSourceVersion is a package version without its binNMU suffix: a
// binNMU rebuilds the same source for one architecture (grep 3.11-4 on
// amd64 is 3.11-4+b1 on arm64 in Debian 13), which changes what it links
// against, not what it does.
func debsSourceVersion(v string) string { return debsBinNMURE.ReplaceAllString(v, "") }

// debsNativeLink makes the link to the host's loader directory in the tree
// (see debsNativeHosts) and returns the function removing it again.
func debsNativeLink(tree string) (func() error, error) {
	host := debsNativeHosts[runtime.GOARCH]
	link := filepath.Join(tree, host.loaderLink)
	if err := os.Symlink(strings.TrimPrefix(host.loaderDir, "/"), link); err != nil {
		return nil, fmt.Errorf("linking %s for the native programs: %w", host.loaderLink, err)
	}
	return func() error {
		if err := os.Remove(link); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("removing %s: %w", host.loaderLink, err)
		}
		return nil
	}, nil
}

// debsEssentialNativeDir is where, while the essential set is configured,
// the build root's programs standing in for the tree's are (under the
// runner's /run tmpfs: nothing is left in the tree), first on dpkg's PATH.
const debsEssentialNativeDir = "/run/ibuild-native"

// debsEssentialNativeTools are the programs the essential set's dpkg run
// finds through PATH: dpkg starts dpkg-split, dpkg-deb (which starts tar)
// and rm for every package, and the maintainer scripts call the file
// tools. They are debsNativeTools but for those never looked up on PATH:
// the shells and perl stay the tree's (#!/bin/sh and #!/usr/bin/perl name
// their paths), and test is the shells' builtin. dpkg itself and uname,
// which say what machine they run on, are in neither list.
var debsEssentialNativeTools = slices.DeleteFunc(slices.Clone(debsNativeTools), func(t nativeTool) bool {
	return t.path == "/usr/bin/dash" || t.path == "/usr/bin/perl" || t.path == "/usr/bin/test"
})

// debsEssentialNative returns the binds that put the build root's builds
// of debsEssentialNativeTools, where their package's version is the one in
// essential, into debsEssentialNativeDir; nil when none can be. While the
// essential set is installed, dpkg renames over the tree's own copies of
// these programs, so they cannot be bound over as debsNative does for
// later packages: they come first on PATH instead.
func debsEssentialNative(env *Env, essential []*debInfo) []Bind {
	versions := map[string]string{}
	for _, p := range essential {
		if p.arch == env.Arch {
			versions[p.name] = p.version
		}
	}
	binds := nativeBindsFor(env, debsEssentialNativeTools, nil, func(pkg string) (string, bool) {
		v, ok := versions[pkg]
		return v, ok
	})
	for i := 2; i < len(binds); i++ {
		binds[i].Dst = debsEssentialNativeDir + "/" + filepath.Base(binds[i].Dst)
	}
	return binds
}
