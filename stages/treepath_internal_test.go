package stages

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/image-builder-action/image-builder-action/pkg/treepath"
)

// resolveTree builds a tree with the kinds of links a Debian tree has
// (merged /usr, absolute links) and hostile ones.
func resolveTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"usr/lib/dir", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"lib":             "usr/lib",
		"etc/abs":         "/usr/lib",
		"etc/out":         "../../..",
		"etc/outabs":      "/../etc",
		"etc/outdeep":     "../usr/../../x",
		"etc/loop":        "loop",
		"etc/dangling":    "/nonexistent/dir",
		"usr/lib/up":      "../../etc",
		"usr/lib/dir/dot": "./.",
		"etc/host":        "/etc/../usr/lib",
	}
	for l, target := range links {
		if err := os.Symlink(target, filepath.Join(root, l)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestTreeResolve(t *testing.T) {
	root := resolveTree(t)
	tests := []struct {
		path       string
		followLast bool
		want       string // inside the tree; "" when an error is wanted
		err        string
	}{
		{"/lib/dir/file", false, "/usr/lib/dir/file", ""},
		{"/lib", false, "/lib", ""},
		{"/lib", true, "/usr/lib", ""},
		{"/etc/abs/x", false, "/usr/lib/x", ""},
		{"/etc/host/x", false, "/usr/lib/x", ""},
		{"/usr/lib/up/passwd", false, "/etc/passwd", ""},
		{"/lib/up/passwd", false, "/etc/passwd", ""},
		{"/lib/dir/dot/dot/f", false, "/usr/lib/dir/f", ""},
		{"/etc/dangling/x", false, "/nonexistent/dir/x", ""},
		{"/etc/dangling", true, "/nonexistent/dir", ""},
		{"/etc/out", false, "/etc/out", ""},
		{"/etc/out", true, "", "leads out of the tree"},
		{"/etc/out/x", false, "", "symlink /etc/out -> ../../.. leads out of the tree"},
		{"/etc/outabs/x", false, "", "leads out of the tree"},
		{"/etc/outdeep/x", false, "", "leads out of the tree"},
		{"/etc/loop/x", false, "", "too many levels"},
		{"/missing/a/b", true, "/missing/a/b", ""},
		{"/", true, "/", ""},
	}
	for _, tc := range tests {
		got, err := treepath.Resolve(root, tc.path, tc.followLast)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("treepath.Resolve(%s, %v) = %q, %v; want error with %q", tc.path, tc.followLast, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != filepath.Join(root, tc.want) {
			t.Errorf("treepath.Resolve(%s, %v) = %q, %v; want %q", tc.path, tc.followLast, got, err, filepath.Join(root, tc.want))
		}
	}
}

func TestTreeMkdirAll(t *testing.T) {
	root := resolveTree(t)
	host, err := treeMkdirAll(root, "/lib/new/sub")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, "usr/lib/new/sub"); host != want {
		t.Errorf("host path %s, want %s", host, want)
	}
	fi, err := os.Stat(filepath.Join(root, "usr/lib/new"))
	if err != nil || fi.Mode().Perm() != 0o755 || !fi.IsDir() {
		t.Errorf("created parent: %v, %v", fi, err)
	}
	if _, err := treeMkdirAll(root, "/etc/dangling/sub"); err == nil || !strings.Contains(err.Error(), "/etc/dangling is a dangling symlink") {
		t.Errorf("treeMkdirAll through a dangling link: %v", err)
	}
	if _, err := treeMkdirAll(root, "/etc/out/x"); err == nil {
		t.Error("treeMkdirAll through an escaping link succeeded")
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(root), "x")); err == nil {
		t.Error("treeMkdirAll created a directory outside the tree")
	}
}

func TestCheckTreePath(t *testing.T) {
	tests := []struct{ path, err string }{
		{"/etc/motd", ""},
		{"/", ""},
		{"", "empty path"},
		{"etc/motd", "not absolute"},
		{"/etc//motd", "not clean"},
		{"/etc/motd/", "not clean"},
		{"/etc/../motd", "not clean"},
		{"/..", "not clean"},
		{"/etc/..x", ""},
		{"/etc/a\nb", "newline"},
	}
	for _, tc := range tests {
		err := checkTreePath("files[0].path", tc.path)
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("checkTreePath(%q) = %v, want %q", tc.path, err, tc.err)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "files[0].path: ") {
			t.Errorf("error %q does not name the field", err)
		}
	}
}

func TestParseMode(t *testing.T) {
	tests := []struct {
		in   string
		want fs.FileMode
		ok   bool
	}{
		{"0644", 0o644, true},
		{"755", 0o755, true},
		{"4755", 0o755 | fs.ModeSetuid, true},
		{"1777", 0o777 | fs.ModeSticky, true},
		{"2750", 0o750 | fs.ModeSetgid, true},
		{"0888", 0, false},
		{"", 0, false},
		{"-644", 0, false},
		{"17777", 0, false},
		{"rw-r--r--", 0, false},
	}
	for _, tc := range tests {
		got, err := parseMode("files[2].mode", tc.in)
		if tc.ok != (err == nil) || got != tc.want {
			t.Errorf("parseMode(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && err.Error() != `files[2].mode: "`+tc.in+`" is not an octal mode` {
			t.Errorf("error %q", err)
		}
	}
}

func TestOwnerJSON(t *testing.T) {
	tests := []struct {
		in   string
		want Owner
		ok   bool
	}{
		{`"admin"`, "admin", true},
		{`"1000"`, "1000", true},
		{`1000`, "1000", true},
		{`0`, "0", true},
		{`-1`, "", false},
		{`1.5`, "", false},
		{`true`, "", false},
		{`4294967296`, "", false},
	}
	for _, tc := range tests {
		var o Owner
		err := json.Unmarshal([]byte(tc.in), &o)
		if tc.ok != (err == nil) || o != tc.want {
			t.Errorf("Unmarshal(%s) = %q, %v", tc.in, o, err)
		}
	}
	for _, bad := range []Owner{"Bad Name", "-x", "a:b", "x/y"} {
		if err := bad.validate("files[0].user"); err == nil {
			t.Errorf("Owner(%q).validate() succeeded", bad)
		}
	}
}

func TestLoadTreeAccounts(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/bash\nadmin:x:1000:1001::/home/admin:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc/group"), []byte("root:x:0:\nstaff:x:50:admin\n"), 0o644)
	a, err := loadTreeAccounts(root)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := a.userID("admin"); id != 1000 || err != nil {
		t.Errorf("userID(admin) = %d, %v", id, err)
	}
	if id, err := a.userID("4242"); id != 4242 || err != nil {
		t.Errorf("userID(4242) = %d, %v", id, err)
	}
	if id, err := a.groupID("staff"); id != 50 || err != nil {
		t.Errorf("groupID(staff) = %d, %v", id, err)
	}
	if _, err := a.userID("nobody"); err == nil || !strings.Contains(err.Error(), `user "nobody" does not exist in the tree's /etc/passwd`) {
		t.Errorf("userID(nobody): %v", err)
	}
	if _, err := a.groupID("wheel"); err == nil || !strings.Contains(err.Error(), `group "wheel"`) {
		t.Errorf("groupID(wheel): %v", err)
	}
	os.WriteFile(filepath.Join(root, "etc/group"), []byte("root:x:0:\nbroken:x\n"), 0o644)
	if _, err := loadTreeAccounts(root); err == nil || !strings.Contains(err.Error(), "/etc/group:2") {
		t.Errorf("broken group file: %v", err)
	}
}

func TestTreeWriteFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	os.Symlink("/etc/passwd", p)
	if err := treeWriteFile(p, []byte("x"), 0o600, os.Getuid(), os.Getgid()); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(p)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		t.Fatalf("after write: %v, %v", fi, err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
	if err := treeWriteFile(dir, []byte("x"), 0o644, 0, 0); err == nil {
		t.Error("writing over a directory succeeded")
	}
}

func TestHostsWithName(t *testing.T) {
	tests := []struct{ in, name, want string }{
		{"", "vm", strings.Replace(defaultHosts, "HOSTNAME", "vm", 1)},
		{"127.0.0.1 localhost\n127.0.1.1 old\n::1 localhost\n", "new.example.com",
			"127.0.0.1 localhost\n127.0.1.1\tnew.example.com\tnew\n::1 localhost\n"},
		{"127.0.0.1 localhost\n::1 localhost", "h", "127.0.0.1 localhost\n127.0.1.1\th\n::1 localhost\n"},
		{"127.0.1.1 a\n127.0.1.1 b\n", "h", "127.0.1.1\th\n"},
		{"# comment\n", "h", "127.0.1.1\th\n# comment\n"},
	}
	for _, tc := range tests {
		if got := string(hostsWithName([]byte(tc.in), tc.name)); got != tc.want {
			t.Errorf("hostsWithName(%q, %s) = %q, want %q", tc.in, tc.name, got, tc.want)
		}
	}
}

// The cleanup stage's safety net undoes the diversions the debs stage
// makes: both must use the same marker.
func TestCleanupDivertSuffixMatchesDebs(t *testing.T) {
	if cleanupDivertSuffix != debsDivertSuffix {
		t.Errorf("cleanup undoes diversions to *%s, debs makes *%s", cleanupDivertSuffix, debsDivertSuffix)
	}
}
