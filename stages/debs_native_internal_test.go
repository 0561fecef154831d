package stages

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func TestDebsNativePerl(t *testing.T) {
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
	status := func(arch, version string) string {
		return "Package: perl-base\nStatus: install ok installed\nArchitecture: " + arch + "\nVersion: " + version + "\n"
	}
	tests := []struct {
		name      string
		treeArch  string
		treePerl  string // perl-base version in the tree
		brArch    string
		pkgs      []string
		treeLib64 bool
		want      bool
	}{
		{name: "foreign tree, same perl", treeArch: "arm64", treePerl: "5.40.1-6", brArch: host, pkgs: []string{"debconf"}, want: true},
		{name: "native tree", treeArch: host, treePerl: "5.40.1-6", brArch: host},
		{name: "other perl version", treeArch: "arm64", treePerl: "5.40.1-7", brArch: host},
		{name: "build root of another arch", treeArch: "arm64", treePerl: "5.40.1-6", brArch: "arm64"},
		{name: "libperl in the set", treeArch: "arm64", treePerl: "5.40.1-6", brArch: host, pkgs: []string{"libperl5.40"}},
		{name: "perl-base replaced", treeArch: "arm64", treePerl: "5.40.1-6", brArch: host, pkgs: []string{"perl-base"}},
		{name: "tree has the loader dir", treeArch: "arm64", treePerl: "5.40.1-6", brArch: host, treeLib64: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.treeArch == host && host != "amd64" {
				t.Skip()
			}
			br, tree := t.TempDir(), t.TempDir()
			write(t, br, "var/lib/dpkg/arch", tt.brArch+"\n")
			write(t, br, "var/lib/dpkg/status", status(tt.brArch, "5.40.1-6"))
			write(t, br, "usr/bin/perl", "")
			write(t, br, "usr/lib64/ld-linux-x86-64.so.2", "")
			write(t, br, "usr/lib/x86_64-linux-gnu/libc.so.6", "")
			write(t, tree, "var/lib/dpkg/status", status(tt.treeArch, tt.treePerl))
			write(t, tree, "usr/bin/perl", "")
			if tt.treeLib64 {
				write(t, tree, "lib64/ld-linux-x86-64.so.2", "")
			}
			var pkgs []*debInfo
			for _, n := range tt.pkgs {
				pkgs = append(pkgs, &debInfo{name: n})
			}
			binds := debsNativePerl(&Env{Tree: tree, BuildRoot: br, Arch: tt.treeArch}, pkgs)
			if got := binds != nil; got != tt.want {
				t.Fatalf("native perl = %v (%v), want %v", got, binds, tt.want)
			}
			for _, b := range binds {
				if !b.ReadOnly {
					t.Errorf("bind %v is writable", b)
				}
			}
		})
	}
}
