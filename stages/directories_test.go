package stages_test

import (
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/image-builder-action/image-builder-action/stages"
)

func TestDirectoriesValidate(t *testing.T) {
	tests := []struct{ options, err string }{
		{`{"directories":[{"path":"/srv/data","mode":"0750","user":"root","group":"root","ensure_parents":true}]}`, ""},
		{`{"directories":[{"path":"/srv"}]}`, ""},
		{`{"directories":[{"path":"/srv","mode":"755x"}]}`, `directories[0].mode: "755x" is not an octal mode`},
		{`{"directories":[{"path":"/"}]}`, `directories[0].path: the tree's root`},
		{`{"directories":[{"path":"/srv/"}]}`, `directories[0].path: "/srv/" is not clean`},
		{`{"directories":[{"path":"/srv"},{"path":"/srv"}]}`, `directories[1].path: /srv is listed twice`},
		{`{"directories":[{"path":"/srv","user":"x y"}]}`, `directories[0].user`},
		{`{"directories":[{"path":"/srv","parents":true}]}`, `unknown field "parents"`},
	}
	for _, tc := range tests {
		_, err := stages.New("directories", json.RawMessage(tc.options))
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("New(directories, %s) = %v, want error %q", tc.options, err, tc.err)
		}
	}
}

func TestDirectoriesRun(t *testing.T) {
	tcNeedRoot(t)
	root := tcAccountsTree(t)
	os.MkdirAll(filepath.Join(root, "var/lib/existing"), 0o700)
	os.Symlink("var/lib", filepath.Join(root, "vl"))
	tcRun(t, tcEnv(t, root), "directories", `{"directories":[
		{"path":"/srv/data/deep","mode":"2770","user":"admin","group":"www","ensure_parents":true},
		{"path":"/var/lib/existing","mode":"0755","user":1000,"group":1000},
		{"path":"/vl/new"},
		{"path":"/tmpx","mode":"1777"}]}`)
	tests := []struct {
		path     string
		mode     fs.FileMode
		uid, gid int
	}{
		{"/srv", 0o755 | fs.ModeDir, 0, 0},
		{"/srv/data", 0o755 | fs.ModeDir, 0, 0},
		{"/srv/data/deep", 0o770 | fs.ModeDir | fs.ModeSetgid, 1000, 33},
		{"/var/lib/existing", 0o755 | fs.ModeDir, 1000, 1000},
		{"/var/lib/new", 0o755 | fs.ModeDir, 0, 0},
		{"/tmpx", 0o777 | fs.ModeDir | fs.ModeSticky, 0, 0},
	}
	for _, tc := range tests {
		mode, uid, gid := tcStat(t, root, tc.path)
		if mode != tc.mode || uid != tc.uid || gid != tc.gid {
			t.Errorf("%s: mode %v owner %d:%d, want %v %d:%d", tc.path, mode, uid, gid, tc.mode, tc.uid, tc.gid)
		}
	}
}

func TestDirectoriesRunErrors(t *testing.T) {
	tcNeedRoot(t)
	outside := t.TempDir()
	tests := []struct{ options, err string }{
		{`{"directories":[{"path":"/a/b"}]}`, "directories[0]: path: parent directory /a does not exist in the tree (set ensure_parents"},
		{`{"directories":[{"path":"/etc/passwd"}]}`, "directories[0]: path: /etc/passwd exists and is not a directory"},
		{`{"directories":[{"path":"/etc/passwd/x"}]}`, "directories[0]: path: parent directory /etc/passwd does not exist in the tree (set ensure_parents"},
		{`{"directories":[{"path":"/etc/out/x","ensure_parents":true}]}`, "leads out of the tree"},
		{`{"directories":[{"path":"/etc/out"}]}`, "leads out of the tree"},
		{`{"directories":[{"path":"/etc/dangling"}]}`, "/etc/dangling is a dangling symlink"},
		{`{"directories":[{"path":"/srv","user":"nobody"}]}`, `directories[0]: user: user "nobody" does not exist`},
	}
	for _, tc := range tests {
		root := tcAccountsTree(t)
		os.Symlink(outside, filepath.Join(root, "etc/dangling"))
		os.Symlink("../..", filepath.Join(root, "etc/out"))
		err := tcStage(t, "directories", tc.options).Run(context.Background(), tcEnv(t, root))
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want error %q", tc.options, err, tc.err)
		}
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("directories made outside the tree: %v", ents)
	}
}
