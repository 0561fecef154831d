package changelog

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
	"github.com/image-builder-action/image-builder-action/pkg/distro"
	"github.com/image-builder-action/image-builder-action/pkg/lock"
	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/pkg/repo"
)

var update = flag.Bool("update", false, "rewrite golden files")

const sampleChangelog = `openssh (1:9.2p1-2+deb12u7) bookworm-security; urgency=medium

  * CVE-2025-26465: Fix a MitM attack against OpenSSH clients with
    VerifyHostKeyDNS enabled.

 -- Colin Watson <cjwatson@debian.org>  Tue, 18 Feb 2025 11:38:11 +0000

openssh (1:9.2p1-2+deb12u6) bookworm; urgency=medium

  * Fix a regression in sshd's handling of MaxStartups.

 -- Colin Watson <cjwatson@debian.org>  Mon, 01 Jul 2024 12:00:00 +0100

openssh (1:9.2p1-2+deb12u5) bookworm; urgency=medium

  * Older entry.

 -- Colin Watson <cjwatson@debian.org>  Sat, 01 Jun 2024 12:00:00 +0100
`

func TestParseBetween(t *testing.T) {
	entries := Parse("preamble\n" + sampleChangelog)
	var vers []string
	for _, e := range entries {
		vers = append(vers, e.Version)
	}
	if d := cmp.Diff([]string{"1:9.2p1-2+deb12u7", "1:9.2p1-2+deb12u6", "1:9.2p1-2+deb12u5"}, vers); d != "" {
		t.Fatalf("versions (-want +got):\n%s", d)
	}
	if !strings.HasPrefix(entries[0].Text, "openssh (1:9.2p1-2+deb12u7)") || !strings.HasSuffix(entries[0].Text, "+0000\n") {
		t.Errorf("first entry: %q", entries[0].Text)
	}
	for _, tc := range []struct {
		old, new string
		want     int
	}{
		{"1:9.2p1-2+deb12u5", "1:9.2p1-2+deb12u7", 2},
		{"1:9.2p1-2+deb12u6", "1:9.2p1-2+deb12u7", 1},
		{"1:9.2p1-2+deb12u7", "1:9.2p1-2+deb12u7", 0},
		{"1:9.2p1-2", "1:9.2p1-2+deb12u6", 2},
		{"1:9.2p1-2+deb12u4+b1", "1:9.2p1-2+deb12u5", 1},
	} {
		if got := Between(entries, tc.old, tc.new); len(got) != tc.want {
			t.Errorf("Between(%s, %s): %d entries, want %d", tc.old, tc.new, len(got), tc.want)
		}
	}
}

// buildDeb builds a .deb with dpkg-deb from files (path → content; a
// content "-> target" is a symlink) and returns its bytes.
func buildDeb(t *testing.T, name, ver string, files map[string]string) []byte {
	t.Helper()
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "DEBIAN"), 0o755)
	control := fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: amd64\nMaintainer: Test <t@invalid>\nDescription: test\n", name, ver)
	if err := os.WriteFile(filepath.Join(root, "DEBIAN", "control"), []byte(control), 0o644); err != nil {
		t.Fatal(err)
	}
	for p, content := range files {
		full := filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if target, ok := strings.CutPrefix(content, "-> "); ok {
			if err := os.Symlink(target, full); err != nil {
				t.Fatal(err)
			}
			continue
		}
		var buf bytes.Buffer
		z := gzip.NewWriter(&buf)
		z.Write([]byte(content))
		z.Close()
		if err := os.WriteFile(full, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "p.deb")
	if b, err := exec.Command("dpkg-deb", "--root-owner-group", "-Zxz", "--build", root, out).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v: %s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// suiteFetcher serves a Packages text per suite under its source's URI.
type suiteFetcher map[string]string

func (f suiteFetcher) Fetch(ctx context.Context, srcs []repo.Source, arch string) (*repo.Index, error) {
	idx := &repo.Index{}
	for i, s := range srcs {
		pkgs, err := repo.ParsePackages(strings.NewReader(f[s.Suite]), s.URI, i)
		if err != nil {
			return nil, err
		}
		idx.Packages = append(idx.Packages, pkgs...)
		idx.Releases = append(idx.Releases, repo.Release{Source: s, SHA256: strings.Repeat("ab", 32), Date: time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)})
	}
	return idx, nil
}

func lockWith(t *testing.T, srcs []repo.Source, f suiteFetcher) *manifest.Lockfile {
	t.Helper()
	const bpPath = "../../testdata/lock/blueprint.toml"
	bp, err := blueprint.Load(bpPath)
	if err != nil {
		t.Fatal(err)
	}
	defs, err := distro.LoadFS(os.DirFS("../../testdata/lock/defs"))
	if err != nil {
		t.Fatal(err)
	}
	lf, err := lock.Lock(context.Background(), bp, bpPath, lock.WithDefs(defs), lock.WithFetcher(f), lock.WithSources(srcs...),
		lock.WithArches("x86_64"), lock.WithTypes("qcow2"), lock.WithToolVersion("ibuild test"))
	if err != nil {
		t.Fatal(err)
	}
	return lf
}

// stanzas splits a Packages text into the stanzas of the named packages
// and the rest.
func stanzas(text string, names ...string) (picked, rest string) {
	var p, r []string
	for _, st := range strings.Split(strings.TrimSpace(text), "\n\n") {
		hit := false
		for _, n := range names {
			hit = hit || strings.HasPrefix(st, "Package: "+n+"\n")
		}
		if hit {
			p = append(p, st)
		} else {
			r = append(r, st)
		}
	}
	return strings.Join(p, "\n\n") + "\n", strings.Join(r, "\n\n") + "\n"
}

// pin points a stanza at a file of the given bytes.
func pin(st, filename string, deb []byte) string {
	sum := sha256.Sum256(deb)
	var out []string
	for _, l := range strings.Split(st, "\n") {
		switch {
		case strings.HasPrefix(l, "Filename: "):
			l = "Filename: " + filename
		case strings.HasPrefix(l, "Size: "):
			l = fmt.Sprintf("Size: %d", len(deb))
		case strings.HasPrefix(l, "SHA256: "):
			l = "SHA256: " + hex.EncodeToString(sum[:])
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// archive is an HTTP server on 127.0.0.1 with the files under the paths
// given; a client that sends every request there, whatever the host in
// the URL, so lockfiles keep the fixture's host names.
func archive(t *testing.T, files map[string][]byte) (*http.Client, *atomic.Int64) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	tr := &http.Transport{Proxy: func(*http.Request) (*url.URL, error) { return u, nil }}
	return &http.Client{Transport: tr}, &hits
}

func TestAnnotateGolden(t *testing.T) {
	const u5, u7 = "1:9.2p1-2+deb12u5", "1:9.2p1-2+deb12u7"
	client := buildDeb(t, "openssh-client", u7, map[string]string{"usr/share/doc/openssh-client/changelog.Debian.gz": sampleChangelog})
	server := buildDeb(t, "openssh-server", u7, map[string]string{"usr/share/doc/openssh-server": "-> openssh-client"})

	fixture, err := os.ReadFile("../../testdata/lock/Packages")
	if err != nil {
		t.Fatal(err)
	}
	ssh, rest := stanzas(string(fixture), "openssh-server", "openssh-client")
	// Before: u5 from the release. After: u7 from the security suite,
	// pinned to the packages built here.
	old := lockWith(t, []repo.Source{{URI: "http://archive.invalid/debian", Suite: "bookworm", Components: []string{"main"}}},
		suiteFetcher{"bookworm": rest + "\n" + strings.ReplaceAll(ssh, "deb12u7", "deb12u5")})
	cs, ss := stanzas(ssh, "openssh-client")
	sec := pin(strings.TrimSpace(cs), "pool/main/o/openssh/openssh-client_9.2p1-2+deb12u7_amd64.deb", client) + "\n\n" +
		pin(strings.TrimSpace(ss), "pool/main/o/openssh/openssh-server_9.2p1-2+deb12u7_amd64.deb", server) + "\n"
	nw := lockWith(t, []repo.Source{
		{URI: "http://archive.invalid/debian", Suite: "bookworm", Components: []string{"main"}},
		{URI: "http://security.invalid/debian-security", Suite: "bookworm-security", Components: []string{"main"}},
	}, suiteFetcher{"bookworm": rest, "bookworm-security": sec})

	hc, hits := archive(t, map[string][]byte{
		"/debian-security/pool/main/o/openssh/openssh-client_9.2p1-2+deb12u7_amd64.deb": client,
		"/debian-security/pool/main/o/openssh/openssh-server_9.2p1-2+deb12u7_amd64.deb": server,
	})
	cache := t.TempDir()
	d := manifest.Compare(old, nw)
	if err := Annotate(context.Background(), d, nw, WithCacheDir(cache), WithHTTPClient(hc)); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range d.Entries[0].Packages {
		got = append(got, fmt.Sprintf("%s %s %d %s", c.Name, c.Change, len(c.Changelog), c.ChangelogNote))
	}
	want := []string{"openssh-client upgraded 2 ", "openssh-server upgraded 2 "}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("changelogs (-want +got):\n%s", d)
	}
	if hits.Load() != 2 {
		t.Errorf("%d downloads, want 2", hits.Load())
	}
	js, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	for ext, got := range map[string]string{"txt": d.Text(), "md": d.Markdown(), "json": string(js) + "\n"} {
		golden := filepath.Join("../../testdata/diff", "upgrade-changelog."+ext)
		if *update {
			os.WriteFile(golden, []byte(got), 0o644)
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(string(want), got); diff != "" {
			t.Errorf("%s (-want +got; -update to accept):\n%s", golden, diff)
		}
	}

	// Again: the changelogs come from the cache, nothing is downloaded
	// and the packages are not read again.
	os.RemoveAll(filepath.Join(cache, "sources"))
	d2 := manifest.Compare(old, nw)
	if err := Annotate(context.Background(), d2, nw, WithCacheDir(cache), WithHTTPClient(hc)); err != nil {
		t.Fatal(err)
	}
	if hits.Load() != 2 || len(d2.Entries[0].Packages[0].Changelog) != 2 {
		t.Errorf("second run: %d downloads in all, %d entries", hits.Load(), len(d2.Entries[0].Packages[0].Changelog))
	}
}

func TestAnnotateRefusesWrongBytes(t *testing.T) {
	const u7 = "1:9.2p1-2+deb12u7"
	good := buildDeb(t, "openssh-client", u7, map[string]string{"usr/share/doc/openssh-client/changelog.Debian.gz": sampleChangelog})
	// Same size, one byte else: only the digest tells.
	evil := bytes.Clone(good)
	evil[len(evil)-10] ^= 0xff
	fixture, _ := os.ReadFile("../../testdata/lock/Packages")
	ssh, rest := stanzas(string(fixture), "openssh-server", "openssh-client")
	src := []repo.Source{{URI: "http://archive.invalid/debian", Suite: "bookworm", Components: []string{"main"}}}
	old := lockWith(t, src, suiteFetcher{"bookworm": rest + "\n" + strings.ReplaceAll(ssh, "deb12u7", "deb12u5")})
	cs, ss := stanzas(ssh, "openssh-client")
	nw := lockWith(t, src, suiteFetcher{"bookworm": rest + "\n" + ss + "\n" + pin(strings.TrimSpace(cs), "pool/c.deb", good) + "\n"})
	// The mirror serves other bytes than the lockfile pins.
	hc, _ := archive(t, map[string][]byte{"/debian/pool/c.deb": evil})
	d := manifest.Compare(old, nw)
	if err := Annotate(context.Background(), d, nw, WithCacheDir(t.TempDir()), WithHTTPClient(hc)); err != nil {
		t.Fatal(err)
	}
	for _, c := range d.Entries[0].Packages {
		if c.Name == "openssh-client" && (len(c.Changelog) != 0 || !strings.Contains(c.ChangelogNote, "sha256")) {
			t.Errorf("a package with the wrong digest: changelog %d entries, note %q", len(c.Changelog), c.ChangelogNote)
		}
	}
}
