package repo

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const sourcesTestdata = "../../testdata/repo/sources"

func TestHostSources(t *testing.T) {
	inline := "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZ1234BYJKwYBBAHaRw8BAQdA\n=abcd\n-----END PGP PUBLIC KEY BLOCK-----\n"
	tests := []struct {
		root string
		want func(root string) []Source
	}{{
		root: "full",
		want: func(root string) []Source {
			key := func(p string) string { return filepath.Join(root, p) }
			debian := key("/usr/share/keyrings/debian-archive-keyring.gpg")
			mc := []string{"main", "non-free-firmware"}
			return []Source{
				// sources.list first, then sources.list.d in name order.
				{URI: "http://mirror.example/debian", Suite: "bookworm", Components: []string{"main", "contrib"}},
				{URI: "http://mirror.example/extra", Suite: "stable", Components: []string{"main"},
					SignedBy: key("/usr/share/keyrings/example.gpg"), Architectures: []string{"amd64", "arm64"}},
				{URI: "https://mirror.example/security", Suite: "bookworm-security", Components: []string{"main"},
					SignedBy: key("/etc/apt/keyrings/a.asc")},
				{URI: "http://a.example/debian", Suite: "trixie", Components: []string{"main"}},
				{URI: "http://one.example/debian", Suite: "bookworm", Components: mc, SignedBy: debian},
				{URI: "http://one.example/debian", Suite: "bookworm-updates", Components: mc, SignedBy: debian},
				{URI: "http://two.example/debian", Suite: "bookworm", Components: mc, SignedBy: debian},
				{URI: "http://two.example/debian", Suite: "bookworm-updates", Components: mc, SignedBy: debian},
				{URI: "https://inline.example/repo", Suite: "stable", Components: []string{"main"},
					SignedBy: inline, Architectures: []string{"amd64"}},
			}
		},
	}, {
		root: "deb822only",
		want: func(root string) []Source {
			debian := filepath.Join(root, "/usr/share/keyrings/debian-archive-keyring.gpg")
			return []Source{
				{URI: "http://mirror.example/debian", Suite: "bookworm", Components: []string{"main"}, SignedBy: debian},
				{URI: "http://mirror.example/debian", Suite: "bookworm-updates", Components: []string{"main"}, SignedBy: debian},
				{URI: "http://mirror.example/debian-security", Suite: "bookworm-security", Components: []string{"main"}, SignedBy: debian},
			}
		},
	}, {
		root: "empty",
		want: func(string) []Source { return nil },
	}, {
		root: "does-not-exist",
		want: func(string) []Source { return nil },
	}}
	for _, tt := range tests {
		t.Run(tt.root, func(t *testing.T) {
			root := filepath.Join(sourcesTestdata, tt.root)
			got, err := HostSources(root)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want(root), got); diff != "" {
				t.Errorf("HostSources(%s) mismatch (-want +got):\n%s", root, diff)
			}
		})
	}
}

func TestHostSourcesErrors(t *testing.T) {
	tests := []struct {
		root string
		// want is the file (below root) and line, then the message.
		where, msg string
	}{
		{"unknown-type", "etc/apt/sources.list:3", `unknown type "rpm"`},
		{"unclosed-options", "etc/apt/sources.list:1", "missing ']'"},
		{"bad-option", "etc/apt/sources.list:2", `option "arch": want key=value`},
		{"no-suite", "etc/apt/sources.list:1", "want \"deb [options] uri suite component...\""},
		{"flat", "etc/apt/sources.list.d/flat.list:1", "flat repositories are not supported"},
		{"no-components", "etc/apt/sources.list.d/n.list:1", "suite bookworm has no components"},
		{"no-scheme", "etc/apt/sources.list.d/n.list:1", `URI "/srv/debian" has no scheme`},
		{"no-uris", "etc/apt/sources.list.d/x.sources:6", "paragraph has no URIs field"},
		{"bad-enabled", "etc/apt/sources.list.d/x.sources:5", `Enabled: want yes or no, got "maybe"`},
		{"bad-types", "etc/apt/sources.list.d/x.sources:1", `unknown type "rpm"`},
		{"no-types", "etc/apt/sources.list.d/x.sources:1", "paragraph has no Types field"},
		{"deb822-syntax", "etc/apt/sources.list.d/x.sources:2", `invalid field name "URIs http"`},
	}
	for _, tt := range tests {
		t.Run(tt.root, func(t *testing.T) {
			root := filepath.Join(sourcesTestdata, "bad", tt.root)
			got, err := HostSources(root)
			if err == nil {
				t.Fatalf("HostSources(%s) = %v, want an error", root, got)
			}
			want := filepath.Join(root, tt.where) + ": "
			if !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("err = %q, want prefix %q and %q", err, want, tt.msg)
			}
		})
	}
}
