package stages_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/image-builder-action/image-builder-action/stages"
)

const (
	tcSHA512 = `$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1`
	tcSHA256 = `$5$saltsalt$0IyaXrmV7.sGNS6tirgqHLqX/G.FBvgkYA.lpPdS5sA`
	tcKey1   = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBr0Ulfr8Zy5nO3Eo0Qk7hQ4m3w5GqZ9vC4l1p4pR0rT one@example"
	tcKey2   = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTY= two@example"
)

func TestUsersValidate(t *testing.T) {
	tests := []struct{ options, err string }{
		{`{}`, ""},
		{`{"groups":[{"name":"devs","gid":1500}],"users":[{"name":"admin","uid":1000,"gid":1000,"groups":["sudo","devs"],
			"description":"The Admin","home":"/home/admin","shell":"/bin/bash","password":"` + tcSHA512 + `",
			"keys":["` + tcKey1 + `"],"expiredate":19000}]}`, ""},
		{`{"users":[{"name":"a","password":"$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7"}]}`, ""},
		{`{"users":[{"name":"a","password":"$2b$05$abcdefghijklmnopqrstuuL2tqq0tMEbXu4dNqoRDaqjvvGPhh/RS"}]}`, ""},
		{`{"users":[{"name":"a","password":"` + tcSHA256 + `"}]}`, ""},
		{`{"users":[{"name":"a","password":"hunter2"}]}`, "users[0].password: not a crypt(3) hash"},
		{`{"users":[{"name":"a","password":"$6$short"}]}`, "users[0].password: not a crypt(3) hash"},
		{`{"users":[{"name":"a","password":"$6$salt$hash:x"}]}`, "users[0].password: not a crypt(3) hash"},
		{`{"users":[{"name":""}]}`, `users[0].name: "" is not a valid user name`},
		{`{"users":[{"name":"a"},{"name":"Bad Name"}]}`, `users[1].name: "Bad Name" is not a valid user name`},
		{`{"users":[{"name":"a"},{"name":"a"}]}`, `users[1].name: a is listed twice`},
		{`{"users":[{"name":"a","uid":-1}]}`, `users[0].uid: -1 is out of range`},
		{`{"users":[{"name":"a","gid":4294967295}]}`, `users[0].gid: 4294967295 is out of range`},
		{`{"users":[{"name":"a","groups":["ok","no way"]}]}`, `users[0].groups[1]: "no way" is not a valid group name`},
		{`{"users":[{"name":"a","description":"a:b"}]}`, `users[0].description: "a:b" contains ':'`},
		{`{"users":[{"name":"a","home":"home/a"}]}`, `users[0].home: "home/a" is not absolute`},
		{`{"users":[{"name":"a","shell":"/bin/../sh"}]}`, `users[0].shell: "/bin/../sh" is not clean`},
		{`{"users":[{"name":"a","keys":["not a key"]}]}`, `users[0].keys[0]: "not a key" does not look like an ssh public key`},
		{`{"users":[{"name":"a","keys":["ssh-rsa AAAA\nssh-rsa BBBB"]}]}`, `users[0].keys[0]: an ssh key must be one line`},
		{`{"users":[{"name":"a","expiredate":-2}]}`, `users[0].expiredate: -2`},
		{`{"groups":[{"name":"g","gid":-5}]}`, `groups[0].gid: -5 is out of range`},
		{`{"groups":[{"name":"g"},{"name":"g"}]}`, `groups[1].name: g is listed twice`},
		{`{"users":[{"name":"a","sshkey":"x"}]}`, `unknown field "sshkey"`},
	}
	for _, tc := range tests {
		_, err := stages.New("users", json.RawMessage(tc.options))
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("New(users, %s) = %v, want error %q", tc.options, err, tc.err)
		}
	}
	// The refusal says how to fix it, and never repeats the password.
	_, err := stages.New("users", json.RawMessage(`{"users":[{"name":"a","password":"hunter2"}]}`))
	if err == nil || !strings.Contains(err.Error(), "mkpasswd") || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("plaintext refusal: %v", err)
	}
}

// tcField returns field i of the colon-separated entry for name in a file.
func tcField(t *testing.T, root, file, name string, i int) string {
	t.Helper()
	for _, l := range strings.Split(tcRead(t, root, file), "\n") {
		f := strings.Split(l, ":")
		if f[0] == name {
			if i >= len(f) {
				t.Fatalf("%s: entry %q has no field %d", file, l, i)
			}
			return f[i]
		}
	}
	t.Fatalf("%s has no entry %s", file, name)
	return ""
}

func TestUsersRun(t *testing.T) {
	root := tcDebianTree(t)
	env := tcEnv(t, root)
	options := `{"groups":[{"name":"devs","gid":1500},{"name":"ops"}],
		"users":[
		{"name":"root","password":"` + tcSHA512 + `","keys":["` + tcKey1 + `"]},
		{"name":"admin","uid":1000,"gid":1000,"groups":["sudo","devs"],"description":"The Admin",
		 "home":"/home/admin","shell":"/bin/bash","password":"` + tcSHA256 + `",
		 "keys":["` + tcKey1 + `","` + tcKey2 + `"],"expiredate":19000},
		{"name":"svc","uid":1200,"groups":["ops"]},
		{"name":"ops2","gid":1500},
		{"name":"john.doe","force_password_reset":true}]}`
	tcRun(t, env, "users", options)

	if got, want := tcRead(t, root, "/etc/group"), "devs:x:1500:admin\n"; !strings.Contains(got, want) {
		t.Errorf("/etc/group has no %q:\n%s", want, got)
	}
	for _, tc := range []struct{ file, name, want string }{
		{"/etc/passwd", "admin", "admin:x:1000:1000:The Admin:/home/admin:/bin/bash"},
		{"/etc/passwd", "svc", "svc:x:1200:1200::/home/svc:/bin/sh"},
		{"/etc/passwd", "ops2", "ops2:x:1201:1500::/home/ops2:/bin/sh"},
		{"/etc/group", "admin", "admin:x:1000:"},
		{"/etc/group", "sudo", "sudo:x:27:admin"},
		{"/etc/group", "svc", "svc:x:1200:"},
	} {
		fields := []string{}
		for i := 0; i < strings.Count(tc.want, ":")+1; i++ {
			fields = append(fields, tcField(t, root, tc.file, tc.name, i))
		}
		if got := strings.Join(fields, ":"); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.file, got, tc.want)
		}
	}
	if got := tcField(t, root, "/etc/group", "ops", 3); got != "svc" {
		t.Errorf("ops members %q", got)
	}
	// Shadow: hashes set, last change from SOURCE_DATE_EPOCH, expiry.
	day := fmt.Sprint(tcEpoch / 86400)
	if got := tcField(t, root, "/etc/shadow", "root", 1); got != tcSHA512 {
		t.Errorf("root hash %q", got)
	}
	if got := tcField(t, root, "/etc/shadow", "admin", 1); got != tcSHA256 {
		t.Errorf("admin hash %q", got)
	}
	for _, u := range []string{"admin", "svc", "ops2"} {
		if got := tcField(t, root, "/etc/shadow", u, 2); got != day {
			t.Errorf("%s last change %q, want %s (SOURCE_DATE_EPOCH)", u, got, day)
		}
	}
	// chage -d 0: the password must be changed at the next login.
	if got := tcField(t, root, "/etc/shadow", "john.doe", 2); got != "0" {
		t.Errorf("john.doe last change %q, want 0 (force_password_reset)", got)
	}
	if got := tcField(t, root, "/etc/shadow", "admin", 7); got != "19000" {
		t.Errorf("admin expiry %q", got)
	}
	// Home from skel, keys.
	for _, tc := range []struct {
		path       string
		perm       uint32
		uid, gid   int
		wantSubstr string
	}{
		{"/home/admin", 0o755, 1000, 1000, ""}, // Debian: HOME_MODE unset, UMASK 022
		{"/home/admin/.bashrc", 0o644, 1000, 1000, "~/.bashrc"},
		{"/home/admin/.ssh", 0o700, 1000, 1000, ""},
		{"/home/admin/.ssh/authorized_keys", 0o600, 1000, 1000, tcKey1 + "\n" + tcKey2 + "\n"},
		{"/home/svc", 0o755, 1200, 1200, ""},
		{"/root/.ssh/authorized_keys", 0o600, 0, 0, tcKey1 + "\n"},
	} {
		mode, uid, gid := tcStat(t, root, tc.path)
		if uint32(mode.Perm()) != tc.perm || uid != tc.uid || gid != tc.gid {
			t.Errorf("%s: %v %d:%d, want %o %d:%d", tc.path, mode, uid, gid, tc.perm, tc.uid, tc.gid)
		}
		if tc.wantSubstr != "" && !strings.Contains(tcRead(t, root, tc.path), tc.wantSubstr) {
			t.Errorf("%s lacks %q", tc.path, tc.wantSubstr)
		}
	}

	// A second run modifies instead of failing, and adds no key twice.
	before := map[string]string{}
	for _, f := range []string{"/etc/passwd", "/etc/group", "/etc/shadow", "/home/admin/.ssh/authorized_keys"} {
		before[f] = tcRead(t, root, f)
	}
	tcRun(t, env, "users", options)
	for f, b := range before {
		if got := tcRead(t, root, f); got != b {
			t.Errorf("second run changed %s:\n%s\nwas:\n%s", f, got, b)
		}
	}

	// A user changed later: uid and shell follow the options.
	tcRun(t, env, "users", `{"users":[{"name":"svc","uid":1300,"shell":"/bin/bash"}]}`)
	if got := tcField(t, root, "/etc/passwd", "svc", 2) + " " + tcField(t, root, "/etc/passwd", "svc", 6); got != "1300 /bin/bash" {
		t.Errorf("modified svc: %q", got)
	}
	if _, uid, _ := tcStat(t, root, "/home/svc"); uid != 1300 {
		t.Errorf("/home/svc owner %d after the uid change", uid)
	}

	// An existing group gets the gid asked for.
	tcRun(t, env, "users", `{"groups":[{"name":"devs","gid":1600}]}`)
	if got := tcField(t, root, "/etc/group", "devs", 2); got != "1600" {
		t.Errorf("devs gid %s after groupmod", got)
	}

	// A group that does not exist is named.
	err := tcStage(t, "users", `{"users":[{"name":"x","groups":["sudo","wheel"]}]}`).Run(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), `users[0] x: groups: group "wheel" does not exist in the tree`) {
		t.Errorf("unknown group: %v", err)
	}
	// A failing tool's error says which command failed.
	err = tcStage(t, "users", `{"users":[{"name":"dup","uid":1000}]}`).Run(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), "running useradd -u 1000 -m dup in the tree") {
		t.Errorf("duplicate uid: %v", err)
	}
}
