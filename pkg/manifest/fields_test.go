package manifest

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDiffFields(t *testing.T) {
	for _, tc := range []struct {
		name, a, b string
		want       []string
	}{
		{"value", `{"hostname":"base"}`, `{"hostname":"base2"}`, []string{`hostname "base" → "base2"`}},
		{"added and removed fields", `{"a":1}`, `{"b":{"c":true}}`, []string{`a 1 → (none)`, `b.c (none) → true`}},
		{"list as a set", `{"enabled":["a","b","c"]}`, `{"enabled":["a","c","d"]}`, []string{`enabled +d -b`}},
		{"order only", `{"l":["a","b"]}`, `{"l":["b","a"]}`, []string{`l ["a","b"] → ["b","a"]`}},
		{"items by name", `{"users":[{"name":"a","uid":1},{"name":"b"}]}`, `{"users":[{"name":"b"},{"name":"a","uid":2,"groups":["x"]}]}`,
			[]string{`users[a].groups (none) → ["x"]`, `users[a].uid 1 → 2`}},
		{"item added by path", `{"files":[{"path":"/a","data":"1"}]}`, `{"files":[{"path":"/a","data":"1"},{"path":"/b"}]}`,
			[]string{`files[/b] (none) → {"path":"/b"}`}},
		{"items by position", `{"p":[{"size":1},{"size":2}]}`, `{"p":[{"size":1},{"size":3}]}`, []string{`p[1].size 2 → 3`}},
		{"numbers as written", `{"size":4294967296}`, `{"size":8589934592}`, []string{`size 4294967296 → 8589934592`}},
		{"equal", `{"a":[1,2],"b":{"c":"d"}}`, `{"b":{"c":"d"},"a":[1,2]}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, f := range diffFields("", decodeJSON(json.RawMessage(tc.a)), decodeJSON(json.RawMessage(tc.b))) {
				got = append(got, f.text())
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}
