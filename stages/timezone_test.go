package stages_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/image-builder-action/image-builder-action/stages"
)

func TestTimezoneValidate(t *testing.T) {
	tests := []struct{ options, err string }{
		{`{"timezone":"Europe/Berlin","ntpservers":["0.pool.ntp.org","192.0.2.1","2001:db8::1"]}`, ""},
		{`{"timezone":"Etc/GMT+5"}`, ""},
		{`{"timezone":"UTC"}`, ""},
		{`{"timezone":"../../../etc/shadow"}`, `timezone: "../../../etc/shadow" is not a time zone name`},
		{`{"timezone":"/Europe/Berlin"}`, `is not a time zone name`},
		{`{"ntpservers":["ok.example","bad host"]}`, `ntpservers[1]: "bad host" is not a valid host name`},
		{`{"timezone":"UTC","ntp":[]}`, `unknown field "ntp"`},
	}
	for _, tc := range tests {
		_, err := stages.New("timezone", json.RawMessage(tc.options))
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("New(timezone, %s) = %v, want error %q", tc.options, err, tc.err)
		}
	}
}

func TestTimezoneRun(t *testing.T) {
	root := tcEmptyTree(t)
	tcWrite(t, root, "/usr/share/zoneinfo/Europe/Berlin", "TZif2")
	os.Symlink("/usr/share/zoneinfo/Etc/UTC", filepath.Join(root, "etc/localtime"))
	env := tcEnv(t, root)
	tcRun(t, env, "timezone", `{"timezone":"Europe/Berlin","ntpservers":["0.pool.ntp.org","192.0.2.1"]}`)
	if got, err := os.Readlink(filepath.Join(root, "etc/localtime")); err != nil || got != "/usr/share/zoneinfo/Europe/Berlin" {
		t.Errorf("/etc/localtime -> %q, %v", got, err)
	}
	if got := tcRead(t, root, "/etc/timezone"); got != "Europe/Berlin\n" {
		t.Errorf("/etc/timezone = %q", got)
	}
	if got, want := tcRead(t, root, "/etc/systemd/timesyncd.conf.d/ibuild.conf"), "[Time]\nNTP=0.pool.ntp.org 192.0.2.1\n"; got != want {
		t.Errorf("timesyncd drop-in = %q, want %q", got, want)
	}
	err := tcStage(t, "timezone", `{"timezone":"Mars/Olympus"}`).Run(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), "timezone: /usr/share/zoneinfo/Mars/Olympus does not exist in the tree") {
		t.Errorf("missing zone: %v", err)
	}
	// A zone reached through a link that leaves the tree is refused.
	os.Symlink("../../../../..", filepath.Join(root, "usr/share/zoneinfo/Out"))
	err = tcStage(t, "timezone", `{"timezone":"Out/etc/passwd"}`).Run(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), "leads out of the tree") {
		t.Errorf("escaping zone: %v", err)
	}
}
