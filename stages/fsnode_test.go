package stages_test

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/image-builder-action/image-builder-action/stages"
)

func TestOwnerMarshal(t *testing.T) {
	tests := []struct {
		owner stages.Owner
		want  string
	}{
		{"admin", `"admin"`},
		{"1000", `1000`},
		{"0", `0`},
		// Not the canonical form of an id: kept as written.
		{"01000", `"01000"`},
		{"4294967296", `"4294967296"`},
		{"", `""`},
	}
	for _, tc := range tests {
		b, err := json.Marshal(tc.owner)
		if err != nil || string(b) != tc.want {
			t.Errorf("Marshal(%q) = %s, %v; want %s", tc.owner, b, err, tc.want)
		}
	}
}

// The specs marshal flat, as the stages decode them, and round-trip.
func TestNodeSpecsJSON(t *testing.T) {
	tests := []struct {
		spec any
		want string
	}{
		{stages.Files{Files: []stages.FileSpec{
			{Node: stages.Node{Path: "/etc/motd"}, Data: "hi"},
			{Node: stages.Node{Path: "/etc/x", Mode: "0600", User: "1000", Group: "www"}, Data: ""},
		}}, `{"files":[{"path":"/etc/motd","data":"hi"},{"path":"/etc/x","mode":"0600","user":1000,"group":"www","data":""}]}`},
		{stages.Directories{Directories: []stages.DirectorySpec{
			{Node: stages.Node{Path: "/srv"}},
			{Node: stages.Node{Path: "/srv/a", Mode: "0750", User: "admin", Group: "0"}, EnsureParents: true},
		}}, `{"directories":[{"path":"/srv"},{"path":"/srv/a","mode":"0750","user":"admin","group":0,"ensure_parents":true}]}`},
	}
	for _, tc := range tests {
		b, err := json.Marshal(tc.spec)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != tc.want {
			t.Errorf("Marshal = %s, want %s", b, tc.want)
		}
		var typ string
		switch tc.spec.(type) {
		case stages.Files:
			typ = "files"
		default:
			typ = "directories"
		}
		s, err := stages.New(typ, b)
		if err != nil {
			t.Fatalf("New(%s, %s): %v", typ, b, err)
		}
		var back any
		switch v := s.(type) {
		case *stages.Files:
			back = *v
		case *stages.Directories:
			back = *v
		}
		if d := cmp.Diff(tc.spec, back); d != "" {
			t.Errorf("round trip (-want +got):\n%s", d)
		}
	}
}
