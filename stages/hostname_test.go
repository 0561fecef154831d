package stages_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/image-builder-action/image-builder-action/stages"
)

func TestHostnameValidate(t *testing.T) {
	tests := []struct{ options, err string }{
		{`{"hostname":"vm"}`, ""},
		{`{"hostname":"web-1.example.com"}`, ""},
		{`{"hostname":""}`, "hostname: empty"},
		{`{}`, "hostname: empty"},
		{`{"hostname":"-bad"}`, `hostname: "-bad" is not a valid host name`},
		{`{"hostname":"a..b"}`, `label ""`},
		{`{"hostname":"under_score"}`, "not a valid host name"},
		{`{"hostname":"` + strings.Repeat("a", 64) + `"}`, "not a valid host name"},
		{`{"hostname":"vm","domain":"x"}`, `unknown field "domain"`},
	}
	for _, tc := range tests {
		_, err := stages.New("hostname", json.RawMessage(tc.options))
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("New(hostname, %s) = %v, want error %q", tc.options, err, tc.err)
		}
	}
}

func TestHostnameRun(t *testing.T) {
	root := tcEmptyTree(t)
	env := tcEnv(t, root)
	tcWrite(t, root, "/etc/hosts", "127.0.0.1\tlocalhost\n127.0.1.1\tbuilder\n")
	tcRun(t, env, "hostname", `{"hostname":"web.example.com"}`)
	if got := tcRead(t, root, "/etc/hostname"); got != "web.example.com\n" {
		t.Errorf("/etc/hostname = %q", got)
	}
	if got, want := tcRead(t, root, "/etc/hosts"), "127.0.0.1\tlocalhost\n127.0.1.1\tweb.example.com\tweb\n"; got != want {
		t.Errorf("/etc/hosts = %q, want %q", got, want)
	}
	if mode, _, _ := tcStat(t, root, "/etc/hostname"); mode.Perm() != 0o644 {
		t.Errorf("/etc/hostname mode %v", mode)
	}
}
