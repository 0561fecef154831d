package treepath

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755))
	must(os.MkdirAll(filepath.Join(root, "run"), 0o755))
	must(os.Symlink("usr/bin", filepath.Join(root, "bin")))
	must(os.MkdirAll(filepath.Join(root, "var"), 0o755))
	must(os.Symlink("/run", filepath.Join(root, "var/run")))
	must(os.Symlink("/etc/../../../../etc", filepath.Join(root, "escape")))
	must(os.Symlink("../../..", filepath.Join(root, "usr/up")))
	must(os.Symlink("loop2", filepath.Join(root, "loop1")))
	must(os.Symlink("loop1", filepath.Join(root, "loop2")))
	must(os.Symlink("sh", filepath.Join(root, "usr/bin/link")))
	for _, tc := range []struct {
		in         string
		followLast bool
		want, err  string
	}{
		{"/bin/sh", true, "usr/bin/sh", ""},
		{"/var/run/lock", true, "run/lock", ""},
		{"/new/dir", true, "new/dir", ""},
		{"/new/../bin/sh", true, "usr/bin/sh", ""},
		{"/", true, "", ""},
		{"/bin/link", true, "usr/bin/sh", ""},
		{"/bin/link", false, "usr/bin/link", ""},
		{"/var/run", false, "var/run", ""},
		// Where a chroot would stop at "/", an escape is refused.
		{"/escape/passwd", true, "", "symlink /escape -> /etc/../../../../etc leads out of the tree"},
		{"/usr/up/etc", true, "", "symlink /usr/up -> ../../.. leads out of the tree"},
		{"/../../etc", true, "", "leads out of the tree"},
		{"/missing/../../x", true, "", "leads out of the tree"},
		{"/loop1/x", true, "", "too many levels of symbolic links"},
		{"etc", true, "", "not absolute"},
	} {
		got, err := Resolve(root, tc.in, tc.followLast)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Resolve(%q) = %q, %v; want error %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if want := filepath.Join(root, tc.want); err != nil || got != want {
			t.Errorf("Resolve(%q, %v) = %q, %v; want %q", tc.in, tc.followLast, got, err, want)
		}
	}
}
