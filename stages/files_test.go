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

func TestFilesValidate(t *testing.T) {
	tests := []struct{ options, err string }{
		{`{"files":[{"path":"/etc/motd","data":"hi"}]}`, ""},
		{`{"files":[{"path":"/etc/motd","mode":"0600","user":"root","group":0,"data":""}]}`, ""},
		{`{"files":[{"path":"/etc/motd","user":1000,"group":"1000","data":""}]}`, ""},
		{`{"files":[]}`, ""},
		{`{"files":[{"path":"/a","data":""},{"path":"/b","data":""},{"path":"/etc/x","mode":"0888","data":""}]}`,
			`files[2].mode: "0888" is not an octal mode`},
		{`{"files":[{"path":"etc/motd","data":""}]}`, `files[0].path: "etc/motd" is not absolute`},
		{`{"files":[{"path":"/etc/../motd","data":""}]}`, `files[0].path: "/etc/../motd" is not clean`},
		{`{"files":[{"path":"/","data":""}]}`, `files[0].path: "/" is not a file`},
		{`{"files":[{"path":"/a","data":""},{"path":"/etc","data":""}]}`, `files[1].path: /etc is a directory in every tree, not a file`},
		{`{"files":[{"path":"/usr/local/bin","data":""}]}`, `files[0].path: /usr/local/bin is a directory in every tree`},
		{`{"files":[{"path":"/a","data":""},{"path":"/a","data":""}]}`, `files[1].path: /a is listed twice`},
		{`{"files":[{"path":"/a","user":"bad user","data":""}]}`, `files[0].user: "bad user" is neither`},
		{`{"files":[{"path":"/a","group":-1,"data":""}]}`, `owner -1: want a name or a numeric id`},
		{`{"files":[{"path":"/a","owner":"root","data":""}]}`, `unknown field "owner"`},
		{`{"files":[{"path":"/a","data":"AAEC/w==","encoding":"base64","ensure_parents":true}]}`, ""},
		{`{"files":[{"path":"/a","data":"%%","encoding":"base64"}]}`, `files[0].data: not valid base64`},
		{`{"files":[{"path":"/a","data":"","encoding":"hex"}]}`, `files[0].encoding: "hex" is not base64`},
	}
	for _, tc := range tests {
		_, err := stages.New("files", json.RawMessage(tc.options))
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("New(files, %s) = %v, want error %q", tc.options, err, tc.err)
		}
	}
}

// tcAccountsTree is an empty tree with a few accounts.
func tcAccountsTree(t *testing.T) string {
	root := tcEmptyTree(t)
	// daemon is 1 on the host: the tree's 4242 must win.
	tcWrite(t, root, "/etc/passwd", "root:x:0:0:root:/root:/bin/bash\nadmin:x:1000:1000::/home/admin:/bin/bash\ndaemon:x:4242:4242::/:/bin/sh\n")
	tcWrite(t, root, "/etc/group", "root:x:0:\nadmin:x:1000:\nwww:x:33:\n")
	return root
}

func TestFilesRun(t *testing.T) {
	tcNeedRoot(t)
	root := tcAccountsTree(t)
	env := tcEnv(t, root)
	os.Symlink("/etc/real", filepath.Join(root, "etc/link"))
	tcWrite(t, root, "/etc/real", "old")
	os.MkdirAll(filepath.Join(root, "usr/etc"), 0o755)
	os.Symlink("/usr/etc", filepath.Join(root, "etc/alias"))
	tcRun(t, env, "files", `{"files":[
		{"path":"/etc/motd","data":"hello\n"},
		{"path":"/etc/secret","mode":"0600","user":"admin","group":33,"data":"s"},
		{"path":"/etc/suid","mode":"4755","user":"1000","group":"www","data":"#!/bin/sh\n"},
		{"path":"/etc/link","data":"new"},
		{"path":"/etc/alias/conf","data":"via link"},
		{"path":"/etc/daemon.conf","user":"daemon","data":"d"},
		{"path":"/opt/new/dir/bin","data":"AAEC/w==","encoding":"base64","ensure_parents":true}]}`)
	if got := tcRead(t, root, "/opt/new/dir/bin"); got != "\x00\x01\x02\xff" {
		t.Errorf("/opt/new/dir/bin = %q", got)
	}
	tests := []struct {
		path, data string
		mode       fs.FileMode
		uid, gid   int
	}{
		{"/etc/motd", "hello\n", 0o644, 0, 0},
		{"/etc/secret", "s", 0o600, 1000, 33},
		{"/etc/suid", "#!/bin/sh\n", 0o755 | fs.ModeSetuid, 1000, 33},
		{"/etc/link", "new", 0o644, 0, 0},
		{"/usr/etc/conf", "via link", 0o644, 0, 0},
		{"/etc/daemon.conf", "d", 0o644, 4242, 0},
	}
	for _, tc := range tests {
		mode, uid, gid := tcStat(t, root, tc.path)
		if mode != tc.mode || uid != tc.uid || gid != tc.gid {
			t.Errorf("%s: mode %v owner %d:%d, want %v %d:%d", tc.path, mode, uid, gid, tc.mode, tc.uid, tc.gid)
		}
		if got := tcRead(t, root, tc.path); got != tc.data {
			t.Errorf("%s = %q, want %q", tc.path, got, tc.data)
		}
	}
	// The symlink was replaced; its old target is untouched.
	if got := tcRead(t, root, "/etc/real"); got != "old" {
		t.Errorf("symlink target changed to %q", got)
	}
	ents, _ := os.ReadDir(filepath.Join(root, "etc"))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".ibuild-") {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
}

func TestFilesRunErrors(t *testing.T) {
	tcNeedRoot(t)
	outside := t.TempDir()
	tests := []struct{ options, err string }{
		{`{"files":[{"path":"/nodir/f","data":""}]}`, "files[0].path: parent directory /nodir does not exist in the tree"},
		{`{"files":[{"path":"/etc/f","user":"nobody","data":""}]}`, `files[0].user: user "nobody" does not exist in the tree's /etc/passwd`},
		{`{"files":[{"path":"/etc/f","group":"wheel","data":""}]}`, `files[0].group: group "wheel" does not exist`},
		{`{"files":[{"path":"/etc/out/f","data":""}]}`, "symlink /etc/out -> ../../../../../../../../../../.. leads out of the tree"},
		{`{"files":[{"path":"/etc/abs/f","data":""}]}`, "parent directory /etc/abs does not exist in the tree"},
		{`{"files":[{"path":"/etc/dir","data":""}]}`, "is a directory"},
		{`{"files":[{"path":"/etc/passwd/f","data":""}]}`, "files[0].path: /etc/passwd is not a directory in the tree"},
	}
	for _, tc := range tests {
		root := tcAccountsTree(t)
		os.Symlink(strings.Repeat("../", 10)+"..", filepath.Join(root, "etc/out"))
		// An absolute link names a path of the tree, never of the host.
		os.Symlink(outside, filepath.Join(root, "etc/abs"))
		os.Mkdir(filepath.Join(root, "etc/dir"), 0o755)
		err := tcStage(t, "files", tc.options).Run(context.Background(), tcEnv(t, root))
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want error %q", tc.options, err, tc.err)
		}
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("files written outside the tree: %v", ents)
	}
}
