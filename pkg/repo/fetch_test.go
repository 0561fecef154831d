package repo

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/google/go-cmp/cmp"
	"github.com/ulikunitz/xz"
)

// testNow is the fixture repository's clock: its Release is dated an hour
// before and valid for a week after.
var testNow = time.Date(2025, 5, 20, 12, 0, 0, 0, time.UTC)

const fixtureAmd64 = `Package: base-files
Version: 12.4
Architecture: amd64
Essential: yes
Priority: required
Section: admin
Description: Debian base system miscellaneous files
 Long text.
Filename: pool/main/b/base-files/base-files_12.4_amd64.deb
Size: 70692
SHA256: 7bd2e5b8ffd2e08d9c0ab2ba9b63f1fa2d7b5c2a0cb7a9b9d0c0a9f5d0c5e1a2

Package: bash
Version: 5.2.15-2+b2
Architecture: amd64
Pre-Depends: libc6 (>= 2.36)
Depends: base-files (>= 2.1.12)
Filename: pool/main/b/bash/bash_5.2.15-2+b2_amd64.deb
Size: 1490104
SHA256: 0d23f3d2d27a36c9a1c4e5f5f0c4bfe5ec9ec4c3dd43f6a6f5b7d4a2e8f1c0b9
`

const fixtureAll = `Package: tzdata
Version: 2025b-0+deb12u1
Architecture: all
Multi-Arch: foreign
Filename: pool/main/t/tzdata/tzdata_2025b-0+deb12u1_all.deb
Size: 260000
SHA256: 1111111111111111111111111111111111111111111111111111111111111111
`

// testKey makes an ed25519 signing key, as Debian's archive keys are.
func testKey(t testing.TB, name string) *openpgp.Entity {
	t.Helper()
	e, err := openpgp.NewEntity(name, "", name+"@example.org", &packet.Config{
		Algorithm: packet.PubKeyAlgoEdDSA,
		Time:      func() time.Time { return testNow.Add(-24 * time.Hour) },
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// writeKeyring writes the public keys to a binary keyring file, or an
// armored one when armored is set.
func writeKeyring(t testing.TB, path string, armored bool, keys ...*openpgp.Entity) string {
	t.Helper()
	var buf bytes.Buffer
	w := &buf
	var aw interface {
		Write([]byte) (int, error)
		Close() error
	}
	if armored {
		var err error
		aw, err = armor.Encode(&buf, openpgp.PublicKeyType, nil)
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range keys {
		var err error
		if armored {
			err = k.Serialize(aw)
		} else {
			err = k.Serialize(w)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if armored {
		aw.Close()
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func clearsignText(t testing.TB, text string, keys ...*openpgp.Entity) []byte {
	t.Helper()
	var privs []*packet.PrivateKey
	for _, k := range keys {
		privs = append(privs, k.PrivateKey)
	}
	var buf bytes.Buffer
	w, err := clearsign.EncodeMulti(&buf, privs, &packet.Config{Time: func() time.Time { return testNow.Add(-time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(text)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gz(t testing.TB, data []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(data)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func xzData(t testing.TB, data []byte) []byte {
	var buf bytes.Buffer
	w, err := xz.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sha(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// fixtureRepo is a signed repository served by httptest, built at test time.
type fixtureRepo struct {
	t      *testing.T
	key    *openpgp.Entity
	srv    *httptest.Server
	dir    string
	suite  string
	files  map[string][]byte // URL path -> content
	status map[string][]int  // URL path -> statuses to answer first, in turn

	mu       sync.Mutex
	requests []string
}

type repoOpts struct {
	validUntil  time.Time
	date        time.Time
	noByHash    bool
	noGz, noXz  bool // leave the form out of the Release too
	signers     []*openpgp.Entity
	releaseEdit func(string) string
	suite       string
}

func newFixtureRepo(t *testing.T, o repoOpts) *fixtureRepo {
	t.Helper()
	r := &fixtureRepo{t: t, dir: t.TempDir(), suite: "bookworm", files: map[string][]byte{}, status: map[string][]int{}}
	if o.suite != "" {
		r.suite = o.suite
	}
	r.key = testKey(t, "archive")
	if o.date.IsZero() {
		o.date = testNow.Add(-time.Hour)
	}
	if o.validUntil.IsZero() {
		o.validUntil = testNow.Add(7 * 24 * time.Hour)
	}
	dist := "/debian/dists/" + r.suite + "/"
	var sums strings.Builder
	for _, ix := range []struct{ arch, text string }{{"amd64", fixtureAmd64}, {"all", fixtureAll}} {
		dir := "main/binary-" + ix.arch + "/"
		plain := []byte(ix.text)
		forms := map[string][]byte{"": plain}
		if !o.noGz {
			forms[".gz"] = gz(t, plain)
		}
		if !o.noXz {
			forms[".xz"] = xzData(t, plain)
		}
		exts := make([]string, 0, len(forms))
		for ext := range forms {
			exts = append(exts, ext)
		}
		sort.Strings(exts)
		for _, ext := range exts {
			data := forms[ext]
			fmt.Fprintf(&sums, " %s %8d %sPackages%s\n", sha(data), len(data), dir, ext)
			if ext == "" {
				continue // Debian lists the plain index but does not serve it
			}
			r.files[dist+dir+"Packages"+ext] = data
			if !o.noByHash {
				r.files[dist+dir+"by-hash/SHA256/"+sha(data)] = data
			}
		}
	}
	byHash := "yes"
	if o.noByHash {
		byHash = "no"
	}
	release := fmt.Sprintf(`Origin: Test
Suite: stable
Codename: %s
Date: %s
Valid-Until: %s
Acquire-By-Hash: %s
Architectures: all amd64 arm64
Components: main contrib
SHA256:
%s`, r.suite, o.date.Format(time.RFC1123), o.validUntil.Format(time.RFC1123), byHash, sums.String())
	if o.releaseEdit != nil {
		release = o.releaseEdit(release)
	}
	signers := o.signers
	if signers == nil {
		signers = []*openpgp.Entity{r.key}
	}
	r.files[dist+"InRelease"] = clearsignText(t, release, signers...)

	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.requests = append(r.requests, req.URL.Path)
		var status int
		if s := r.status[req.URL.Path]; len(s) > 0 {
			status, r.status[req.URL.Path] = s[0], s[1:]
		}
		data, ok := r.files[req.URL.Path]
		r.mu.Unlock()
		switch {
		case status != 0:
			http.Error(w, http.StatusText(status), status)
		case !ok:
			http.NotFound(w, req)
		default:
			w.Write(data)
		}
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *fixtureRepo) source() Source {
	return Source{
		URI:        r.srv.URL + "/debian",
		Suite:      r.suite,
		Components: []string{"main"},
		SignedBy:   writeKeyring(r.t, filepath.Join(r.dir, "keyring.gpg"), false, r.key),
	}
}

func (r *fixtureRepo) dist() string { return "/debian/dists/" + r.suite + "/" }

// indexRequests are the requests made for anything but InRelease.
func (r *fixtureRepo) indexRequests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, p := range r.requests {
		if !strings.HasSuffix(p, "/InRelease") {
			out = append(out, p)
		}
	}
	return out
}

func (r *fixtureRepo) resetRequests() {
	r.mu.Lock()
	r.requests = nil
	r.mu.Unlock()
}

func testClient(cache string) *Client {
	return &Client{CacheDir: cache, Now: func() time.Time { return testNow }}
}

func wantPackages(uri string) []Package {
	all, err := ParsePackages(strings.NewReader(fixtureAmd64), uri, 0)
	if err != nil {
		panic(err)
	}
	more, err := ParsePackages(strings.NewReader(fixtureAll), uri, 0)
	if err != nil {
		panic(err)
	}
	return append(all, more...)
}

func TestFetchHappyPath(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts repoOpts
		// wantIndex are the index requests, relative to dists/<suite>/.
		wantIndex func(r *fixtureRepo) []string
	}{{
		name: "by-hash gz",
		wantIndex: func(r *fixtureRepo) []string {
			return []string{
				"main/binary-all/by-hash/SHA256/" + sha(gz(t, []byte(fixtureAll))),
				"main/binary-amd64/by-hash/SHA256/" + sha(gz(t, []byte(fixtureAmd64))),
			}
		},
	}, {
		name: "no by-hash",
		opts: repoOpts{noByHash: true},
		wantIndex: func(r *fixtureRepo) []string {
			return []string{"main/binary-all/Packages.gz", "main/binary-amd64/Packages.gz"}
		},
	}, {
		name: "xz only",
		opts: repoOpts{noGz: true, noByHash: true},
		wantIndex: func(r *fixtureRepo) []string {
			return []string{"main/binary-all/Packages.xz", "main/binary-amd64/Packages.xz"}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			r := newFixtureRepo(t, tc.opts)
			src := r.source()
			idx, err := testClient(t.TempDir()).Fetch(context.Background(), []Source{src}, "amd64")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(wantPackages(src.URI), idx.Packages); diff != "" {
				t.Errorf("packages (-want +got):\n%s", diff)
			}
			inRelease := r.files[r.dist()+"InRelease"]
			wantRel := []Release{{
				Source:     src,
				SHA256:     sha(inRelease),
				Date:       testNow.Add(-time.Hour),
				ValidUntil: testNow.Add(7 * 24 * time.Hour),
				Keys:       []string{strings.ToUpper(hex.EncodeToString(r.key.PrimaryKey.Fingerprint))},
			}}
			if diff := cmp.Diff(wantRel, idx.Releases); diff != "" {
				t.Errorf("releases (-want +got):\n%s", diff)
			}
			got := r.indexRequests()
			sort.Strings(got)
			var want []string
			for _, p := range tc.wantIndex(r) {
				want = append(want, r.dist()+p)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("index requests (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFetchCacheReuse(t *testing.T) {
	r := newFixtureRepo(t, repoOpts{})
	cache := t.TempDir()
	src := r.source()
	first, err := testClient(cache).Fetch(context.Background(), []Source{src}, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(r.indexRequests()); n != 2 {
		t.Fatalf("first fetch made %d index requests, want 2", n)
	}
	// The cache holds the uncompressed indices, named by the digest the
	// InRelease lists for them.
	for _, text := range []string{fixtureAmd64, fixtureAll} {
		data, err := os.ReadFile(filepath.Join(cache, "sha256", sha([]byte(text))))
		if err != nil || string(data) != text {
			t.Errorf("cache entry for %.20q: %v", text, err)
		}
	}

	r.resetRequests()
	second, err := testClient(cache).Fetch(context.Background(), []Source{src}, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	if got := r.indexRequests(); len(got) != 0 {
		t.Errorf("second fetch made index requests %v, want none", got)
	}
	if diff := cmp.Diff(first, second); diff != "" {
		t.Errorf("second fetch differs (-first +second):\n%s", diff)
	}

	// Offline, with the server gone: InRelease and indices from the cache.
	r.srv.Close()
	c := testClient(cache)
	c.Offline = true
	third, err := c.Fetch(context.Background(), []Source{src}, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(first, third); diff != "" {
		t.Errorf("offline fetch differs (-first +offline):\n%s", diff)
	}
	// Offline past Valid-Until still fails.
	c.Now = func() time.Time { return testNow.Add(30 * 24 * time.Hour) }
	if _, err := c.Fetch(context.Background(), []Source{src}, "amd64"); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("offline fetch of an expired release: err = %v, want expired", err)
	}
}

func TestFetchCorruptCacheIsRefetched(t *testing.T) {
	r := newFixtureRepo(t, repoOpts{})
	cache := t.TempDir()
	src := r.source()
	if _, err := testClient(cache).Fetch(context.Background(), []Source{src}, "amd64"); err != nil {
		t.Fatal(err)
	}
	entry := filepath.Join(cache, "sha256", sha([]byte(fixtureAmd64)))
	if err := os.WriteFile(entry, []byte(strings.Replace(fixtureAmd64, "bash", "bosh", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	r.resetRequests()
	idx, err := testClient(cache).Fetch(context.Background(), []Source{src}, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantPackages(src.URI), idx.Packages); diff != "" {
		t.Errorf("packages (-want +got):\n%s", diff)
	}
	if got := r.indexRequests(); len(got) != 1 || !strings.Contains(got[0], "binary-amd64") {
		t.Errorf("index requests = %v, want the amd64 index again", got)
	}
	if data, _ := os.ReadFile(entry); string(data) != fixtureAmd64 {
		t.Error("corrupt cache entry was not replaced")
	}
}

func TestFetchErrors(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name  string
		opts  repoOpts
		setup func(t *testing.T, r *fixtureRepo, c *Client, src *Source)
		// want are substrings of the error, after {url} is replaced by the
		// server's URL.
		want []string
		is   func(err error) bool
	}{{
		name: "signed by another key",
		setup: func(t *testing.T, r *fixtureRepo, c *Client, src *Source) {
			src.SignedBy = writeKeyring(t, filepath.Join(r.dir, "other.gpg"), false, testKey(t, "other"))
		},
		want: []string{"InRelease {url}/debian/dists/bookworm/InRelease", "signature not verified", "unknown entity"},
	}, {
		name: "tampered InRelease",
		setup: func(t *testing.T, r *fixtureRepo, c *Client, src *Source) {
			p := r.dist() + "InRelease"
			r.files[p] = bytes.Replace(r.files[p], []byte("Components: main contrib"), []byte("Components: main evil"), 1)
		},
		want: []string{"{url}/debian/dists/bookworm/InRelease", "signature not verified"},
	}, {
		name: "unsigned text before the message",
		setup: func(t *testing.T, r *fixtureRepo, c *Client, src *Source) {
			p := r.dist() + "InRelease"
			r.files[p] = append([]byte("Suite: evil\n\n"), r.files[p]...)
		},
		want: []string{"unsigned text before the signed message"},
	}, {
		name: "not signed",
		setup: func(t *testing.T, r *fixtureRepo, c *Client, src *Source) {
			r.files[r.dist()+"InRelease"] = []byte("Suite: stable\n")
		},
		want: []string{"not a clearsigned message"},
	}, {
		name: "expired",
		opts: repoOpts{validUntil: testNow.Add(-time.Minute)},
		want: []string{"{url}/debian/dists/bookworm/InRelease", "expired: Valid-Until"},
	}, {
		name: "dated in the future",
		opts: repoOpts{date: testNow.Add(time.Hour)},
		want: []string{"{url}/debian/dists/bookworm/InRelease", "is in the future"},
	}, {
		name: "other suite",
		opts: repoOpts{releaseEdit: func(s string) string {
			return strings.Replace(strings.Replace(s, "Suite: stable", "Suite: oldstable", 1), "Codename: bookworm", "Codename: bullseye", 1)
		}},
		want: []string{`is for suite "oldstable" (codename "bullseye"), not "bookworm"`},
	}, {
		name: "index checksum mismatch",
		setup: func(t *testing.T, r *fixtureRepo, c *Client, src *Source) {
			for p, d := range r.files {
				if strings.Contains(p, "binary-amd64") {
					bad := bytes.Clone(d)
					bad[len(bad)/2] ^= 0x55 // same size, other content
					r.files[p] = bad
				}
			}
		},
		want: []string{"{url}/debian/dists/bookworm/main/binary-amd64/by-hash/SHA256/" + sha(gz(t, []byte(fixtureAmd64))),
			"checksum mismatch: got sha256 ", "want sha256 " + sha(gz(t, []byte(fixtureAmd64)))},
		is: func(err error) bool { var ce *ChecksumError; return errors.As(err, &ce) },
	}, {
		name: "index longer than listed",
		setup: func(t *testing.T, r *fixtureRepo, c *Client, src *Source) {
			bad := gz(t, []byte(strings.Replace(fixtureAmd64, "5.2.15-2+b2", "6.6.66-6+b6", 1)))
			for p := range r.files {
				if strings.Contains(p, "binary-amd64") {
					r.files[p] = append(bad, make([]byte, 4096)...)
				}
			}
		},
		want: []string{"{url}/debian/dists/bookworm/main/binary-amd64/by-hash/SHA256/" + sha(gz(t, []byte(fixtureAmd64))),
			"longer than listed: got sha256 ", "want sha256 " + sha(gz(t, []byte(fixtureAmd64)))},
		is: func(err error) bool { var ce *ChecksumError; return errors.As(err, &ce) },
	}, {
		name: "truncated index",
		setup: func(t *testing.T, r *fixtureRepo, c *Client, src *Source) {
			for p, d := range r.files {
				if strings.Contains(p, "binary-amd64") {
					r.files[p] = d[:len(d)/2]
				}
			}
		},
		want: []string{"/main/binary-amd64/by-hash/SHA256/", "truncated: got sha256 ", "want sha256 " + sha(gz(t, []byte(fixtureAmd64)))},
		is:   func(err error) bool { var ce *ChecksumError; return errors.As(err, &ce) },
	}, {
		name: "index missing",
		setup: func(t *testing.T, r *fixtureRepo, c *Client, src *Source) {
			for p := range r.files {
				if strings.Contains(p, "binary-amd64") {
					delete(r.files, p)
				}
			}
		},
		want: []string{"fetching {url}/debian/dists/bookworm/main/binary-amd64/Packages: no form of it is served (HTTP 404 for {url}/debian/dists/bookworm/main/binary-amd64/by-hash/SHA256/",
			"{url}/debian/dists/bookworm/main/binary-amd64/Packages.gz, ", "{url}/debian/dists/bookworm/main/binary-amd64/Packages.xz, ",
			"{url}/debian/dists/bookworm/main/binary-amd64/Packages)"},
	}, {
		name: "InRelease forbidden",
		setup: func(t *testing.T, r *fixtureRepo, c *Client, src *Source) {
			r.status[r.dist()+"InRelease"] = []int{403}
		},
		want: []string{"fetching {url}/debian/dists/bookworm/InRelease: HTTP 403 Forbidden"},
		is:   func(err error) bool { var se *StatusError; return errors.As(err, &se) && se.StatusCode == 403 },
	}, {
		name: "server errors outlast the retries",
		setup: func(t *testing.T, r *fixtureRepo, c *Client, src *Source) {
			r.status[r.dist()+"InRelease"] = []int{503, 503, 503}
		},
		want: []string{"fetching {url}/debian/dists/bookworm/InRelease: HTTP 503 Service Unavailable"},
	}, {
		name: "unreachable",
		setup: func(t *testing.T, r *fixtureRepo, c *Client, src *Source) {
			r.srv.Close()
		},
		want: []string{"fetching {url}/debian/dists/bookworm/InRelease: ", "connect"},
	}, {
		name: "component not in release",
		setup: func(t *testing.T, r *fixtureRepo, c *Client, src *Source) {
			src.Components = []string{"main", "non-free"}
		},
		want: []string{"{url}/debian/dists/bookworm/InRelease lists no non-free/binary-amd64/Packages index (components: main contrib)"},
	}, {
		name: "component without index",
		setup: func(t *testing.T, r *fixtureRepo, c *Client, src *Source) {
			src.Components = []string{"contrib"}
		},
		want: []string{"{url}/debian/dists/bookworm/InRelease lists no contrib/binary-amd64/Packages index"},
	}, {
		name: "missing keyring",
		setup: func(t *testing.T, r *fixtureRepo, c *Client, src *Source) {
			src.SignedBy = filepath.Join(r.dir, "nope.gpg")
		},
		want: []string{"verifying {url}/debian/dists/bookworm/InRelease: reading keyring", "nope.gpg"},
	}, {
		name: "offline without cache",
		setup: func(t *testing.T, r *fixtureRepo, c *Client, src *Source) {
			c.Offline = true
		},
		want: []string{"fetching {url}/debian/dists/bookworm/InRelease offline"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newFixtureRepo(t, tt.opts)
			c := testClient(t.TempDir())
			src := r.source()
			if tt.setup != nil {
				tt.setup(t, r, c, &src)
			}
			idx, err := c.Fetch(ctx, []Source{src}, "amd64")
			if err == nil {
				t.Fatalf("Fetch = %d packages, want an error", len(idx.Packages))
			}
			for _, w := range tt.want {
				w = strings.ReplaceAll(w, "{url}", r.srv.URL)
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %q\nwant it to contain %q", err, w)
				}
			}
			if tt.is != nil && !tt.is(err) {
				t.Errorf("err = %#v: wrong type", err)
			}
		})
	}
}

func TestFetchRetriesTransientErrors(t *testing.T) {
	r := newFixtureRepo(t, repoOpts{})
	r.status[r.dist()+"InRelease"] = []int{503}
	byHash := r.dist() + "main/binary-amd64/by-hash/SHA256/" + sha(gz(t, []byte(fixtureAmd64)))
	r.status[byHash] = []int{502, 500}
	src := r.source()
	idx, err := testClient("").Fetch(context.Background(), []Source{src}, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	if len(idx.Packages) != 3 {
		t.Errorf("got %d packages, want 3", len(idx.Packages))
	}
	n := 0
	for _, p := range r.indexRequests() {
		if p == byHash {
			n++
		}
	}
	if n != 3 {
		t.Errorf("by-hash index fetched %d times, want 3 (two failures, one success)", n)
	}
}

func TestFetchByHashFallsBack(t *testing.T) {
	// A mirror without by-hash files: the canonical name is used.
	r := newFixtureRepo(t, repoOpts{})
	for p := range r.files {
		if strings.Contains(p, "/by-hash/") {
			delete(r.files, p)
		}
	}
	src := r.source()
	idx, err := testClient("").Fetch(context.Background(), []Source{src}, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantPackages(src.URI), idx.Packages); diff != "" {
		t.Errorf("packages (-want +got):\n%s", diff)
	}
}

func TestVerifyAnySignature(t *testing.T) {
	// Signed by two keys, the first unknown to the keyring: the second
	// signature is enough, as with the archive's several signing keys.
	other := testKey(t, "other")
	r := newFixtureRepo(t, repoOpts{})
	r2key := r.key
	p := r.dist() + "InRelease"
	signed := clearsignText(t, string(mustPlaintext(t, r.files[p])), other, r2key)
	r.files[p] = signed
	src := r.source()
	rel, _, err := testClient("").FetchRelease(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	// The key that verified is recorded, the unknown one not.
	if want := strings.ToUpper(hex.EncodeToString(r.key.PrimaryKey.Fingerprint)); len(rel.Keys) != 1 || rel.Keys[0] != want {
		t.Errorf("keys %v, want [%s]", rel.Keys, want)
	}
	// An armored keyring works too.
	src.SignedBy = writeKeyring(t, filepath.Join(r.dir, "k.asc"), true, r.key)
	if _, _, err := testClient("").FetchRelease(context.Background(), src); err != nil {
		t.Fatalf("armored keyring: %v", err)
	}
	// And an inline key, as deb822 sources allow.
	data, _ := os.ReadFile(src.SignedBy)
	src.SignedBy = string(data)
	if _, _, err := testClient("").FetchRelease(context.Background(), src); err != nil {
		t.Fatalf("inline key: %v", err)
	}
	// Default keyring from the client.
	src.SignedBy = ""
	c := testClient("")
	c.Keyring = writeKeyring(t, filepath.Join(r.dir, "default.gpg"), false, r.key)
	if _, _, err := c.FetchRelease(context.Background(), src); err != nil {
		t.Fatalf("client keyring: %v", err)
	}
}

func mustPlaintext(t *testing.T, data []byte) []byte {
	b, _ := clearsign.Decode(data)
	if b == nil {
		t.Fatal("fixture InRelease is not clearsigned")
	}
	return b.Plaintext
}

func TestSplitPacketsRejectsGarbage(t *testing.T) {
	for _, in := range [][]byte{{0x01}, {0xc2}, {0xc2, 0x05, 0x00}, {0x89, 0x00}} {
		if _, err := splitPackets(in); err == nil {
			t.Errorf("splitPackets(%x) succeeded", in)
		}
	}
}

func TestFetchFileURI(t *testing.T) {
	// A repository on disk, as file: sources name one.
	r := newFixtureRepo(t, repoOpts{noByHash: true})
	root := t.TempDir()
	for p, data := range r.files {
		path := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	src := r.source()
	src.URI = "file://" + filepath.ToSlash(root) + "/debian"
	idx, err := testClient(t.TempDir()).Fetch(context.Background(), []Source{src}, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantPackages(src.URI), idx.Packages); diff != "" {
		t.Errorf("packages (-want +got):\n%s", diff)
	}
}
