package repo

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// hostBookworm returns the host's apt sources for the bookworm suites
// (bookworm, -updates, -security) that have main, or skips.
func hostBookworm(t testing.TB) []Source {
	t.Helper()
	if testing.Short() {
		t.Skip("network test: skipped with -short")
	}
	srcs, err := HostSources("/")
	if err != nil {
		t.Skipf("cannot read the host's apt sources: %v", err)
	}
	var out []Source
	for _, s := range srcs {
		if strings.HasPrefix(s.Suite, "bookworm") && slices.Contains(s.Components, "main") {
			s.Components = []string{"main"}
			out = append(out, s)
		}
	}
	if len(out) == 0 || out[0].Suite != "bookworm" {
		t.Skipf("the host's apt sources have no bookworm main (got %d sources)", len(srcs))
	}
	return out
}

// skipIfUnreachable skips when err is a network failure (the archive is
// not reachable from here) and fails on anything else.
func skipIfUnreachable(t *testing.T, err error) {
	t.Helper()
	var se *StatusError
	if isTransient(err) && !errors.As(err, &se) {
		t.Skipf("archive not reachable: %v", err)
	}
	t.Fatal(err)
}

func TestFetchHostArchive(t *testing.T) {
	srcs := hostBookworm(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := &Client{CacheDir: t.TempDir()}
	rel, _, err := c.FetchRelease(ctx, srcs[0])
	if err != nil {
		skipIfUnreachable(t, err)
	}
	// Debian signs a release with its archive keys and the release's key.
	if len(rel.Keys) < 2 {
		t.Errorf("%s is signed by %v, want Debian's keys", srcs[0].Suite, rel.Keys)
	}

	start := time.Now()
	idx, err := c.Fetch(ctx, srcs[:1], "amd64")
	if err != nil {
		t.Fatal(err)
	}
	cold := time.Since(start)
	if n := len(idx.Packages); n <= 50000 {
		t.Errorf("bookworm main amd64: %d packages, want > 50,000", n)
	}
	bash := slices.IndexFunc(idx.Packages, func(p Package) bool { return p.Name == "bash" })
	if bash < 0 {
		t.Fatal("bookworm main amd64 has no bash")
	}
	p := idx.Packages[bash]
	if !p.Essential || p.Architecture != "amd64" || !strings.HasPrefix(p.URL, srcs[0].URI+"/pool/main/b/bash/") || len(p.SHA256) != 64 {
		t.Errorf("bash = %+v", p)
	}
	t.Logf("bookworm main amd64, cold cache: %d packages in %v", len(idx.Packages), cold)

	start = time.Now()
	again, err := c.Fetch(ctx, srcs[:1], "amd64")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bookworm main amd64, warm cache: %v", time.Since(start))
	if len(again.Packages) != len(idx.Packages) {
		t.Errorf("warm fetch: %d packages, cold %d", len(again.Packages), len(idx.Packages))
	}

	// All the host's bookworm suites, as lock uses them.
	c2 := &Client{CacheDir: t.TempDir()}
	start = time.Now()
	all, err := c2.Fetch(ctx, srcs, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d suites, cold cache: %d packages in %v", len(srcs), len(all.Packages), time.Since(start))
	start = time.Now()
	if all, err = c2.Fetch(ctx, srcs, "amd64"); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d suites, warm cache: %d packages in %v", len(srcs), len(all.Packages), time.Since(start))
	c2.Offline = true
	start = time.Now()
	if all, err = c2.Fetch(ctx, srcs, "amd64"); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d suites, offline: %d packages in %v", len(srcs), len(all.Packages), time.Since(start))
}
