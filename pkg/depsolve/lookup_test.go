package depsolve

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLookup(t *testing.T) {
	pkgs := index(t, `
Package: openssh-server
Version: 1:9.2p1-2+deb12u3
Provides: ssh-server

Package: openssh-server
Version: 1:8.4p1-5

Package: openssh-client
Version: 1:9.2p1-2+deb12u3

Package: dropbear
Version: 2022.83-1
Provides: ssh-server

Package: python3-yaml
Version: 6.0-3
`)
	u := NewUniverse(pkgs, "amd64")
	for name, want := range map[string]bool{"openssh-server": true, "ssh-server": true, "httpd": false} {
		if got := u.Has(name); got != want {
			t.Errorf("Has(%s) = %v", name, got)
		}
	}
	if d := cmp.Diff([]string{"dropbear", "openssh-server"}, u.Providers("ssh-server")); d != "" {
		t.Errorf("Providers: %s", d)
	}
	got, err := u.Match("openssh-*")
	if err != nil || !cmp.Equal(got, []string{"openssh-client", "openssh-server"}) {
		t.Errorf("Match = %v, %v", got, err)
	}
	if _, err := u.Match("[x"); err == nil {
		t.Error("bad pattern accepted")
	}
	// Versions without the epoch, as composer writes them.
	for _, tc := range []struct{ req, want string }{
		{"openssh-server=9.*", "openssh-server=1:9.2p1-2+deb12u3"},
		{"openssh-server=8.4p1-5", "openssh-server=1:8.4p1-5"},
		{"openssh-server=1:8.*", "openssh-server=1:8.4p1-5"},
	} {
		sol, err := solveBare(t, pkgs, tc.req)
		if err != nil {
			t.Errorf("%s: %v", tc.req, err)
			continue
		}
		if d := cmp.Diff([]string{tc.want}, names(sol)); d != "" {
			t.Errorf("%s: %s", tc.req, d)
		}
	}
	if _, err := solveBare(t, pkgs, "openssh-server=2:9.*"); err == nil {
		t.Error("a wrong epoch matched")
	}
}
