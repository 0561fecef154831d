package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/pkg/sources"
)

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestSourcesFetch(t *testing.T) {
	good := []byte("the real package")
	var flaky, truncated atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/good.deb", "/good2.deb":
			w.Write(good)
		case "/evil.deb":
			w.Write([]byte("not the real one"))
		case "/long.deb":
			w.Write(append(good, '!'))
		case "/flaky.deb":
			if flaky.Add(1) == 1 {
				http.Error(w, "try later", http.StatusServiceUnavailable)
				return
			}
			w.Write(good)
		case "/truncated.deb":
			// Announce the full length, send half, close: an unexpected EOF.
			truncated.Add(1)
			w.Header().Set("Content-Length", strconv.Itoa(len(good)))
			w.Write(good[:len(good)/2])
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	pkg := func(name string) manifest.Package {
		return manifest.Package{Name: name, Version: "1", Arch: "amd64", URL: srv.URL + "/" + name + ".deb", SHA256: digest(good), Size: int64(len(good))}
	}
	for _, tc := range []struct {
		name    string
		want    string // error substring; "" for success
		entries int    // files stored afterwards
	}{
		{"good", "", 1},
		{"flaky", "", 1},
		{"evil", "downloading evil:amd64=1 (sha256 " + digest(good) + "): no source has it: mirror: " + srv.URL + "/evil.deb: sha256 mismatch: got " + digest([]byte("not the real one")) + ", the lockfile says " + digest(good), 0},
		{"long", "got 17 bytes, the lockfile says 16", 0},
		{"truncated", "unexpected EOF", 0},
		{"missing", "404 Not Found", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := pkg(tc.name)
			var events []Event
			s := NewSources(dir, []manifest.Package{p}, srv.Client(), 2, func(e Event) { events = append(events, e) })
			s.retries = 2
			s.backoff = time.Millisecond
			err := s.Fetch(context.Background(), []string{p.Ref()})
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				path, err := s.Path(p.Ref())
				if err != nil {
					t.Fatal(err)
				}
				if b, _ := os.ReadFile(path); string(b) != string(good) {
					t.Errorf("stored %q", b)
				}
				if path != filepath.Join(dir, "sha256", digest(good)) {
					t.Errorf("path %s", path)
				}
				if len(downloads(events)) != 1 || downloads(events)[0] != (Download{Ref: p.Ref(), Bytes: int64(len(good)), Source: "mirror"}) {
					t.Errorf("events: %#v", events)
				}
			} else {
				if d := downloads(events); len(d) != 0 {
					t.Errorf("failed download reported as stored: %#v", d)
				}
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want %q", err, tc.want)
				}
				if _, err := s.Path(p.Ref()); err == nil {
					t.Errorf("Path of a failed package succeeded")
				}
			}
			// Bytes of failed attempts are given back: the progress adds up
			// to what was stored.
			if len(events) == 0 || events[0] != (DownloadStart{Packages: 1, Bytes: int64(len(good))}) {
				t.Errorf("first event %#v, want DownloadStart", events)
			}
			if got, want := progressSum(events), int64(tc.entries*len(good)); got != want {
				t.Errorf("progress adds up to %d bytes, want %d: %#v", got, want, events)
			}
			stored, _ := os.ReadDir(filepath.Join(dir, "sha256"))
			if len(stored) != tc.entries {
				t.Errorf("%d files stored, want %d", len(stored), tc.entries)
			}
			tmp, _ := os.ReadDir(filepath.Join(dir, "tmp"))
			if len(tmp) != 0 {
				t.Errorf("temp files left: %v", tmp)
			}
		})
	}
	if n := truncated.Load(); n != 3 {
		t.Errorf("truncated download tried %d times, want 3 (retried)", n)
	}
}

// downloads returns the Download events among events.
func downloads(events []Event) []Download {
	var out []Download
	for _, e := range events {
		if d, ok := e.(Download); ok {
			out = append(out, d)
		}
	}
	return out
}

// progressSum adds up the DownloadProgress events.
func progressSum(events []Event) int64 {
	var n int64
	for _, e := range events {
		if p, ok := e.(DownloadProgress); ok {
			n += p.Bytes
		}
	}
	return n
}

// Packages arriving slowly are reported while they arrive, not only when
// stored; a second fetch of stored packages downloads nothing.
func TestSourcesProgress(t *testing.T) {
	// Package pN is 3 KiB starting with byte N, sent a KiB at a time.
	content := func(i byte) []byte {
		b := make([]byte, 3<<10)
		for j := range b {
			b[j] = byte(j)
		}
		b[0] = i
		return b
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := content(r.URL.Path[len(r.URL.Path)-1] - '0')
		for i := 0; i < 3; i++ {
			w.Write(b[i<<10 : (i+1)<<10])
			w.(http.Flusher).Flush()
			time.Sleep(3 * downloadTick / 2)
		}
	}))
	defer srv.Close()
	var pkgs []manifest.Package
	var refs []string
	for i := range 3 {
		name := "p" + strconv.Itoa(i)
		pkgs = append(pkgs, manifest.Package{Name: name, Version: "1", Arch: "all", URL: srv.URL + "/" + name,
			SHA256: digest(content(byte(i))), Size: 3 << 10})
		refs = append(refs, pkgs[i].Ref())
	}
	const total = 3 * 3 << 10
	var mu sync.Mutex
	var events []Event
	rec := func(e Event) { mu.Lock(); events = append(events, e); mu.Unlock() }
	s := NewSources(t.TempDir(), pkgs, srv.Client(), 2, rec)
	if err := s.Fetch(context.Background(), refs); err != nil {
		t.Fatal(err)
	}
	if len(events) == 0 || events[0] != (DownloadStart{Packages: 3, Bytes: total}) {
		t.Fatalf("first event %#v, want DownloadStart of 3 packages", events)
	}
	// Reports while the first packages arrive, then the rest at once when
	// one is stored.
	firstDone := slices.IndexFunc(events, func(e Event) bool { _, ok := e.(Download); return ok })
	ticks := 0
	for _, e := range events[:max(firstDone, 0)] {
		if _, ok := e.(DownloadProgress); ok {
			ticks++
		}
	}
	if ticks < 2 {
		t.Errorf("%d progress reports before the first package was stored, want some while it arrived: %#v", ticks, events)
	}
	if got := progressSum(events); got != total {
		t.Errorf("progress adds up to %d, want %d", got, total)
	}
	if n := len(downloads(events)); n != 3 {
		t.Errorf("%d packages reported stored, want 3", n)
	}
	events = nil
	if err := s.Fetch(context.Background(), refs); err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if d, ok := e.(Download); !ok || !d.Cached {
			t.Errorf("second fetch reported %#v, want only cached packages", e)
		}
	}
}

func TestSourcesCachedAndShared(t *testing.T) {
	content := []byte("shared content")
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write(content)
	}))
	defer srv.Close()
	// Two refs with the same content are stored (and downloaded) once.
	pkgs := []manifest.Package{
		{Name: "a", Version: "1", Arch: "all", URL: srv.URL + "/a", SHA256: digest(content), Size: int64(len(content))},
		{Name: "b", Version: "1", Arch: "all", URL: srv.URL + "/b", SHA256: digest(content), Size: int64(len(content))},
	}
	dir := t.TempDir()
	s := NewSources(dir, pkgs, srv.Client(), 8, nil)
	if err := s.Fetch(context.Background(), []string{"a:all=1", "b:all=1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Fetch(context.Background(), []string{"a:all=1", "b:all=1"}); err != nil {
		t.Fatal(err)
	}
	if hits.Load() != 1 {
		t.Errorf("%d requests, want 1", hits.Load())
	}
	pa, _ := s.Path("a:all=1")
	pb, _ := s.Path("b:all=1")
	if pa != pb || pa == "" {
		t.Errorf("paths %q %q", pa, pb)
	}
	if err := s.Fetch(context.Background(), []string{"c:all=1"}); err == nil || !strings.Contains(err.Error(), "c:all=1 is not in the lockfile") {
		t.Errorf("unknown ref: %v", err)
	}
	// A stored file of the wrong size is not trusted.
	os.WriteFile(pa, []byte("short"), 0o644)
	if _, err := s.Path("a:all=1"); err == nil {
		t.Errorf("Path trusted a file of the wrong size")
	}
}

func TestSourcesCancel(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-block
	}))
	defer srv.Close()
	defer close(block)
	p := manifest.Package{Name: "slow", Version: "1", Arch: "all", URL: srv.URL + "/slow", SHA256: digest([]byte("x")), Size: 1}
	s := NewSources(t.TempDir(), []manifest.Package{p}, srv.Client(), 1, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Fetch(ctx, []string{p.Ref()}); err == nil {
		t.Errorf("a cancelled fetch succeeded")
	}
}

// The sources are asked in order; one serving wrong bytes is reported and
// passed over, and its bytes never reach the cache; one that cannot be
// reached is not asked again.
func TestSourcesChain(t *testing.T) {
	good := []byte("the package the lockfile pins")
	mirror := httptest.NewServer(http.NotFoundHandler())
	defer mirror.Close()
	// A snapshot archive laid out as snapshot.debian.org: archive/NAME/T/.
	date := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	var snapHits atomic.Int64
	snap := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		snapHits.Add(1)
		if r.URL.Path == "/archive/debian/20261120T140000Z/pool/main/g/good/good_1_amd64.deb" {
			w.Write(good)
			return
		}
		http.NotFound(w, r)
	}))
	defer snap.Close()
	// A store whose file under the digest's name was tampered with.
	tampered := sources.NewDir(t.TempDir())
	p := manifest.Package{Name: "good", Version: "1", Arch: "amd64", URL: mirror.URL + "/debian/pool/main/g/good/good_1_amd64.deb",
		SHA256: digest(good), Size: int64(len(good))}
	if err := tampered.Put(context.Background(), &p, strings.NewReader("the package the lockfile PINS")); err != nil {
		t.Fatal(err)
	}
	repos := []manifest.Repository{
		{URI: mirror.URL + "/debian", Suite: "bookworm", Date: "2026-11-01T08:00:00Z"},
		{URI: mirror.URL + "/debian", Suite: "bookworm-updates", Date: date.Format(time.RFC3339)},
	}
	// Nothing listens on a port just closed: the source is unreachable.
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	deadStore, err := sources.OpenStore(context.Background(), "oci://"+strings.TrimPrefix(dead.URL, "http://")+"/pkgs")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("next source", func(t *testing.T) {
		dir := t.TempDir()
		var mu sync.Mutex
		var events []Event
		chain := []sources.Source{sources.Mirror(nil), deadStore, tampered, sources.Snapshot(snap.URL, repos, nil)}
		s := NewSources(dir, []manifest.Package{p}, nil, 2, func(e Event) { mu.Lock(); events = append(events, e); mu.Unlock() }, chain...)
		s.backoff = time.Millisecond
		if err := s.Fetch(context.Background(), []string{p.Ref()}); err != nil {
			t.Fatal(err)
		}
		path, err := s.Path(p.Ref())
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(path); string(b) != string(good) {
			t.Errorf("stored %q", b)
		}
		var warned []SourceWarning
		for _, e := range events {
			if w, ok := e.(SourceWarning); ok {
				warned = append(warned, w)
			}
		}
		if len(warned) != 1 || warned[0].Source != tampered.String() || !strings.Contains(warned[0].Err.Error(), "sha256 mismatch") {
			t.Errorf("warnings %v, want one naming %s", warned, tampered)
		}
		if d := downloads(events); len(d) != 1 || d[0].Source != "snapshot "+snap.URL+"/" {
			t.Errorf("downloads %#v, want one from the snapshot", d)
		}
		if got := s.Counts(); !slices.Equal(got, []SourceCount{{Source: "snapshot " + snap.URL + "/", Packages: 1, Bytes: int64(len(good))}}) {
			t.Errorf("counts %#v", got)
		}
		if n := progressSum(events); n != int64(len(good)) {
			t.Errorf("progress adds up to %d, want %d", n, len(good))
		}
		if tmp, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(tmp) != 0 {
			t.Errorf("temp files left: %v", tmp)
		}
		if _, ok := s.down[1]; !ok {
			t.Errorf("the unreachable registry is not marked down")
		}
	})

	t.Run("none has it", func(t *testing.T) {
		other := p
		other.Name, other.URL = "gone", mirror.URL+"/debian/pool/main/g/gone/gone_1_amd64.deb"
		other.SHA256 = digest([]byte("gone"))
		chain := []sources.Source{sources.Mirror(nil), tampered, sources.Snapshot(snap.URL, repos, nil)}
		s := NewSources(t.TempDir(), []manifest.Package{other}, nil, 1, nil, chain...)
		err := s.Fetch(context.Background(), []string{other.Ref()})
		if err == nil {
			t.Fatal("fetch succeeded")
		}
		for _, want := range []string{
			"downloading gone:amd64=1 (sha256 " + other.SHA256 + "): no source has it",
			"mirror: " + other.URL + ": 404 Not Found",
			tampered.String() + ": " + tampered.Locate(&other) + ": not found",
			"snapshot " + snap.URL + "/: " + snap.URL + "/archive/debian/20261120T140000Z/pool/main/g/gone/gone_1_amd64.deb: 404 Not Found",
		} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q\nlacks %q", err, want)
			}
		}
	})
}
