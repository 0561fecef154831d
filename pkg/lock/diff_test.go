package lock

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/pkg/repo"
)

// suiteFetcher serves a Packages text per suite, each under its source's
// URI, as verified releases.
type suiteFetcher map[string]string

func (f suiteFetcher) Fetch(ctx context.Context, srcs []repo.Source, arch string) (*repo.Index, error) {
	idx := &repo.Index{}
	for i, s := range srcs {
		text, ok := f[s.Suite]
		if !ok {
			return nil, fmt.Errorf("no Packages for suite %s", s.Suite)
		}
		pkgs, err := repo.ParsePackages(strings.NewReader(text), s.URI, i)
		if err != nil {
			return nil, err
		}
		idx.Packages = append(idx.Packages, pkgs...)
		idx.Releases = append(idx.Releases, repo.Release{Source: s, SHA256: strings.Repeat(fmt.Sprintf("%x", 10+len(text)%6), 64),
			Date: time.Date(2026, 11, 20+i, 8, 0, 0, 0, time.UTC)})
	}
	return idx, nil
}

// keyedFetcher is a suiteFetcher whose releases are signed by the keys
// given per suite.
type keyedFetcher struct {
	suiteFetcher
	keys map[string][]string
}

func (f keyedFetcher) Fetch(ctx context.Context, srcs []repo.Source, arch string) (*repo.Index, error) {
	idx, err := f.suiteFetcher.Fetch(ctx, srcs, arch)
	if err != nil {
		return nil, err
	}
	for i := range idx.Releases {
		idx.Releases[i].Keys = f.keys[idx.Releases[i].Source.Suite]
	}
	return idx, nil
}

// lockCase locks a blueprint text against packages per suite.
func lockCase(t *testing.T, bpText string, srcs []repo.Source, f Fetcher) *manifest.Lockfile {
	t.Helper()
	p := writeBlueprint(t, bpText)
	bp, err := blueprint.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	lf, err := Lock(context.Background(), bp, p, WithDefs(fixtureDefs(t)), WithFetcher(f), WithSources(srcs...),
		WithArches("x86_64"), WithTypes("qcow2", "container"), WithLockDir(filepath.Dir(p)), WithToolVersion("ibuild test"))
	if err != nil {
		t.Fatal(err)
	}
	return lf
}

func fixtureText(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../../testdata/lock", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// withoutStanza drops the stanza of pkg at version from a Packages text.
func withoutStanza(t *testing.T, text, pkg, version string) string {
	t.Helper()
	var out []string
	found := false
	for _, st := range strings.Split(text, "\n\n") {
		if strings.Contains(st, "Package: "+pkg+"\n") && strings.Contains(st, "Version: "+version+"\n") {
			found = true
			continue
		}
		out = append(out, st)
	}
	if !found {
		t.Fatalf("no stanza %s %s", pkg, version)
	}
	return strings.Join(out, "\n\n")
}

// checkGolden compares the diff's three renderings with
// testdata/diff/NAME.{txt,md,json}.
func checkGolden(t *testing.T, name string, d *manifest.Diff, exts ...string) {
	t.Helper()
	js, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	for ext, got := range map[string]string{"txt": d.Text(), "md": d.Markdown(), "json": string(js) + "\n"} {
		if len(exts) > 0 && !slices.Contains(exts, ext) {
			continue
		}
		golden := filepath.Join("../../testdata/diff", name+"."+ext)
		if *update {
			if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(string(want), got); diff != "" {
			t.Errorf("%s (-want +got; -update to accept):\n%s", golden, diff)
		}
	}
}

var bookworm = repo.Source{URI: "http://archive.invalid/debian", Suite: "bookworm", Components: []string{"main"}}

func TestDiffOneField(t *testing.T) {
	bp := fixtureText(t, "blueprint.toml")
	f := suiteFetcher{"bookworm": fixtureText(t, "Packages")}
	old := lockCase(t, bp, []repo.Source{bookworm}, f)
	nw := lockCase(t, strings.Replace(bp, `hostname = "fixture"`, `hostname = "fixture2"`, 1), []repo.Source{bookworm}, f)
	d := manifest.Compare(old, nw)
	// Exactly one stage, one field; no identifier churn.
	if len(d.Entries) != 1 || len(d.Entries[0].Stages) != 1 || len(d.Entries[0].Stages[0].Fields) != 1 || len(d.Entries[0].Packages) != 0 {
		t.Errorf("want one stage with one field changed, got %+v", d.Entries)
	}
	if got := d.Text(); !strings.Contains(got, `os/hostname: hostname "fixture" → "fixture2"`) {
		t.Errorf("text lacks the field's change:\n%s", got)
	}
	checkGolden(t, "one-field", d)
}

func TestDiffDowngrade(t *testing.T) {
	bp := fixtureText(t, "blueprint.toml")
	pk := fixtureText(t, "Packages")
	old := lockCase(t, bp, []repo.Source{bookworm}, suiteFetcher{"bookworm": pk})
	nw := lockCase(t, bp, []repo.Source{bookworm}, suiteFetcher{"bookworm": withoutStanza(t, pk, "libc6", "2.36-9+deb12u13")})
	d := manifest.Compare(old, nw)
	if len(d.Summary) != 2 || d.Summary[0].Downgraded != 1 || len(d.Notices) != 1 || d.Notices[0].Kind != manifest.NoticeDowngrade {
		t.Errorf("summary %+v, notices %+v: want the downgrade flagged", d.Summary, d.Notices)
	}
	checkGolden(t, "downgrade", d)
}

func TestDiffRepository(t *testing.T) {
	bp := fixtureText(t, "blueprint.toml")
	pk := fixtureText(t, "Packages")
	const keyA, keyB = "4CB50190207B4758A3F73A796ED0E7B82643E131", "B8B80B5B623EAB6AD8775C45B7C3B788C57B1E6D"
	sec := repo.Source{URI: "http://security.invalid/debian-security", Suite: "bookworm-security", Components: []string{"main"}}
	old := lockCase(t, bp, []repo.Source{bookworm, sec}, keyedFetcher{suiteFetcher{"bookworm": pk, "bookworm-security": ""},
		map[string][]string{"bookworm": {keyA}, "bookworm-security": {keyA}}})
	// A new release at the same URI; the security suite signed by
	// another key.
	trixie := repo.Source{URI: bookworm.URI, Suite: "trixie", Components: []string{"main", "contrib"}}
	nw := lockCase(t, bp, []repo.Source{trixie, sec}, keyedFetcher{suiteFetcher{"trixie": pk, "bookworm-security": ""},
		map[string][]string{"trixie": {keyA}, "bookworm-security": {keyB}}})
	if nw.Repositories[0].Keys == nil {
		t.Fatal("the lockfile records no signing keys")
	}
	d := manifest.Compare(old, nw)
	var got []string
	for _, n := range d.Notices {
		got = append(got, n.Kind+": "+n.Message)
	}
	want := []string{
		"repository: http://archive.invalid/debian: suite bookworm → trixie, signed by " + keyA,
		"signing key: http://security.invalid/debian-security bookworm-security: signed by " + keyB + ", was " + keyA,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("notices (-want +got):\n%s", d)
	}
	checkGolden(t, "repository", d)
}

// TestDiffTooLong locks 1,500 packages, then their next versions: the
// Markdown fits in a pull request's body and says what it left out.
func TestDiffTooLong(t *testing.T) {
	pk := fixtureText(t, "Packages")
	var bp, oldPk, newPk strings.Builder
	bp.WriteString("name = \"big\"\ndistro = \"testdist\"\n")
	oldPk.WriteString(pk)
	newPk.WriteString(pk)
	for i := 0; i < 1500; i++ {
		name := fmt.Sprintf("a-package-with-a-long-name-%04d", i)
		fmt.Fprintf(&bp, "[[packages]]\nname = %q\n", name)
		stanza := "\n\nPackage: %s\nVersion: %s\nArchitecture: amd64\nFilename: pool/main/a/%s_%s_amd64.deb\nSize: 100\nSHA256: %064x\nDescription: x\n"
		fmt.Fprintf(&oldPk, stanza, name, "1.0-1", name, "1.0-1", i)
		fmt.Fprintf(&newPk, stanza, name, "1.0-2+deb12u1", name, "1.0-2+deb12u1", i+1)
	}
	old := lockCase(t, bp.String(), []repo.Source{bookworm}, suiteFetcher{"bookworm": oldPk.String()})
	nw := lockCase(t, bp.String(), []repo.Source{bookworm}, suiteFetcher{"bookworm": newPk.String()})
	d := manifest.Compare(old, nw)
	if len(d.Text()) < 2*manifest.PullRequestBodyLimit {
		t.Fatalf("the whole diff is %d bytes: not too long for the test", len(d.Text()))
	}
	md := d.Markdown()
	if n := len([]rune(md)); n > manifest.MarkdownBudget {
		t.Errorf("markdown has %d characters, over the budget of %d", n, manifest.MarkdownBudget)
	}
	if !strings.Contains(md, "Cut to fit GitHub's limit of 65536 characters") {
		t.Errorf("markdown does not say it was cut:\n%s", md[len(md)-500:])
	}
	// Every <details> opened is closed, the cut included.
	if strings.Count(md, "<details>") != strings.Count(md, "</details>") {
		t.Error("unbalanced <details>")
	}
	// The Markdown only: the text and JSON are the whole, long diff.
	checkGolden(t, "too-long", d, "md")
}
