package stages

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
)

func TestDebsNative(t *testing.T) {
	if _, ok := debsNativeHosts[runtime.GOARCH]; !ok {
		t.Skipf("no native programs in foreign trees on %s hosts", runtime.GOARCH)
	}
	host := runtime.GOARCH
	write := func(t *testing.T, root, name, data string) {
		t.Helper()
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	status := func(arch, perl string) string {
		s := ""
		for pkg, v := range map[string]string{"perl-base": perl, "dash": "0.5.12-12", "coreutils": "9.7-3"} {
			s += "Package: " + pkg + "\nStatus: install ok installed\nArchitecture: " + arch + "\nVersion: " + v + "\n\n"
		}
		return s
	}
	const perl, dash, rm = "/usr/bin/perl", "/usr/bin/dash", "/usr/bin/rm"
	tests := []struct {
		name      string
		treeArch  string
		treePerl  string // perl-base version in the tree
		brArch    string
		pkgs      []string
		treeLib64 bool
		want      []string // the tools bound
	}{
		{name: "foreign tree, same versions", treeArch: "arm64", treePerl: "5.40.1-6", brArch: host, pkgs: []string{"debconf"}, want: []string{dash, perl, rm}},
		{name: "native tree", treeArch: host, treePerl: "5.40.1-6", brArch: host},
		{name: "other perl version", treeArch: "arm64", treePerl: "5.40.1-7", brArch: host, want: []string{dash, rm}},
		{name: "binNMU of the same perl", treeArch: "arm64", treePerl: "5.40.1-6+b1", brArch: host, want: []string{dash, perl, rm}},
		{name: "build root of another arch", treeArch: "arm64", treePerl: "5.40.1-6", brArch: "arm64"},
		{name: "libperl in the set", treeArch: "arm64", treePerl: "5.40.1-6", brArch: host, pkgs: []string{"libperl5.40"}, want: []string{dash, rm}},
		{name: "packages replaced", treeArch: "arm64", treePerl: "5.40.1-6", brArch: host, pkgs: []string{"perl-base", "coreutils"}, want: []string{dash}},
		{name: "tree has the loader dir", treeArch: "arm64", treePerl: "5.40.1-6", brArch: host, treeLib64: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			br, tree := t.TempDir(), t.TempDir()
			write(t, br, "var/lib/dpkg/arch", tt.brArch+"\n")
			write(t, br, "var/lib/dpkg/status", status(tt.brArch, "5.40.1-6"))
			write(t, br, "usr/lib64/ld-linux-x86-64.so.2", "")
			write(t, br, "usr/lib/x86_64-linux-gnu/libc.so.6", "")
			write(t, tree, "var/lib/dpkg/status", status(tt.treeArch, tt.treePerl))
			for _, p := range []string{perl, dash, rm} {
				write(t, br, p, "")
				write(t, tree, p, "")
			}
			if tt.treeLib64 {
				write(t, tree, "usr/lib64/ld-linux-x86-64.so.2", "")
			}
			var pkgs []*debInfo
			for _, n := range tt.pkgs {
				pkgs = append(pkgs, &debInfo{name: n})
			}
			binds := debsNative(&Env{Tree: tree, Native: br, Arch: tt.treeArch}, pkgs)
			if binds != nil {
				unlink, err := debsNativeLink(tree)
				if err != nil {
					t.Fatal(err)
				}
				if target, err := os.Readlink(filepath.Join(tree, "lib64")); err != nil || target != "usr/lib64" {
					t.Errorf("/lib64 -> %q (%v), want usr/lib64", target, err)
				}
				if err := unlink(); err != nil {
					t.Fatal(err)
				}
				if _, err := os.Lstat(filepath.Join(tree, "lib64")); !os.IsNotExist(err) {
					t.Errorf("/lib64 left behind: %v", err)
				}
			}
			var got []string
			for i, b := range binds {
				if !b.ReadOnly {
					t.Errorf("bind %v is writable", b)
				}
				if i >= 2 { // after the loader's and the libraries' directories
					got = append(got, b.Dst)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("native tools = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDebsEssentialNative(t *testing.T) {
	if _, ok := debsNativeHosts[runtime.GOARCH]; !ok {
		t.Skipf("no native programs in foreign trees on %s hosts", runtime.GOARCH)
	}
	host := runtime.GOARCH
	write := func(t *testing.T, root, name, data string) {
		t.Helper()
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const tar, rm, sed = "/run/ibuild-native/tar", "/run/ibuild-native/rm", "/run/ibuild-native/sed"
	tests := []struct {
		name     string
		treeArch string
		set      map[string]string // the essential set's versions
		want     []string
	}{
		{name: "same versions", treeArch: "arm64", set: map[string]string{"tar": "1.35+dfsg-3.1", "coreutils": "9.7-3", "sed": "4.9-2"}, want: []string{rm, sed, tar}},
		{name: "binNMU", treeArch: "arm64", set: map[string]string{"tar": "1.35+dfsg-3.1+b1", "coreutils": "9.7-3", "sed": "4.9-2"}, want: []string{rm, sed, tar}},
		{name: "other tar version", treeArch: "arm64", set: map[string]string{"tar": "1.35+dfsg-3.2", "coreutils": "9.7-3", "sed": "4.9-2"}, want: []string{rm, sed}},
		{name: "not in the set", treeArch: "arm64", set: map[string]string{"coreutils": "9.7-3"}, want: []string{rm}},
		{name: "native tree", treeArch: host, set: map[string]string{"tar": "1.35+dfsg-3.1", "coreutils": "9.7-3", "sed": "4.9-2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			br, tree := t.TempDir(), t.TempDir()
			write(t, br, "var/lib/dpkg/arch", host+"\n")
			status := ""
			for pkg, v := range map[string]string{"tar": "1.35+dfsg-3.1", "coreutils": "9.7-3", "sed": "4.9-2"} {
				status += "Package: " + pkg + "\nStatus: install ok installed\nArchitecture: " + host + "\nVersion: " + v + "\n\n"
			}
			write(t, br, "var/lib/dpkg/status", status)
			write(t, br, "usr/lib64/ld-linux-x86-64.so.2", "")
			write(t, br, "usr/lib/x86_64-linux-gnu/libc.so.6", "")
			// The essential set is extracted, not yet configured: no status.
			for _, p := range []string{"/usr/bin/tar", "/usr/bin/rm", "/usr/bin/sed"} {
				write(t, br, p, "")
				write(t, tree, p, "")
			}
			var set []*debInfo
			for n, v := range tt.set {
				set = append(set, &debInfo{name: n, arch: tt.treeArch, version: v})
			}
			binds := debsEssentialNative(&Env{Tree: tree, Native: br, Arch: tt.treeArch}, set)
			var got []string
			for i, b := range binds {
				if i >= 2 {
					got = append(got, b.Dst)
					if b.Src != filepath.Join(br, "usr/bin", filepath.Base(b.Dst)) {
						t.Errorf("%s bound from %s", b.Dst, b.Src)
					}
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("native tools = %v, want %v", got, tt.want)
			}
		})
	}
}
