package repo

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestIndexCacheParsesOnce: Clients sharing an IndexCache read each index
// once, however many Fetch at the same time, and each gets its own copy
// with its own origins.
func TestIndexCacheParsesOnce(t *testing.T) {
	r := newFixtureRepo(t, repoOpts{})
	src := r.source()
	mem := NewIndexCache(64 << 20)
	client := func() *Client {
		// No cache directory: without Memory every Fetch downloads.
		c := testClient("")
		c.Memory = mem
		return c
	}
	const n = 8
	idxs := make([]*Index, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			idxs[i], errs[i] = client().Fetch(context.Background(), []Source{src}, "amd64")
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if diff := cmp.Diff(wantPackages(src.URI), idxs[i].Packages); diff != "" {
			t.Errorf("fetch %d: packages (-want +got):\n%s", i, diff)
		}
	}
	if got := r.indexRequests(); len(got) != 2 {
		t.Errorf("%d fetches made index requests %v, want one per index (2)", n, got)
	}
	if mem.loads != 2 {
		t.Errorf("the cache parsed %d indices, want 2", mem.loads)
	}

	// A caller's changes stay its own.
	idxs[0].Packages[0].Name = "changed"
	// The same index as the second source: its packages have origin 1.
	r.resetRequests()
	idx, err := client().Fetch(context.Background(), []Source{src, src}, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	want := wantPackages(src.URI)
	for _, p := range wantPackages(src.URI) {
		p.Origin = 1
		want = append(want, p)
	}
	if diff := cmp.Diff(want, idx.Packages); diff != "" {
		t.Errorf("two sources: packages (-want +got):\n%s", diff)
	}
	if got := r.indexRequests(); len(got) != 0 {
		t.Errorf("a fetch from memory made index requests %v", got)
	}
	ri := mustRelease(t, client(), src)
	pkgs, err := client().FetchPackages(context.Background(), ri, "main", "amd64", 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) != 2 || pkgs[0].Origin != 3 || pkgs[1].Origin != 3 || pkgs[0].Name != "base-files" {
		t.Errorf("FetchPackages with origin 3: %+v", pkgs)
	}
}

func mustRelease(t *testing.T, c *Client, src Source) *ReleaseIndex {
	t.Helper()
	_, ri, err := c.FetchRelease(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	return ri
}

// TestIndexCacheBounded: what does not fit is not kept, and the least
// recently used index leaves first.
func TestIndexCacheBounded(t *testing.T) {
	r := newFixtureRepo(t, repoOpts{})
	src := r.source()
	c := testClient("")
	c.Memory = NewIndexCache(1)
	for range 2 {
		if _, err := c.Fetch(context.Background(), []Source{src}, "amd64"); err != nil {
			t.Fatal(err)
		}
	}
	if got := r.indexRequests(); len(got) != 4 {
		t.Errorf("a cache too small for any index: index requests %v, want 4", got)
	}

	pkgs := func(name string) []Package { return []Package{{Name: name, Version: "1"}} }
	one := indexCost(pkgs("a"))
	mem := NewIndexCache(2 * one)
	loads := map[string]int{}
	get := func(name string) {
		t.Helper()
		got, err := mem.get(context.Background(), indexKey{sha256: name}, func() ([]Package, string, error) {
			loads[name]++
			return pkgs(name), name, nil
		})
		if err != nil || len(got) != 1 || got[0].Name != name {
			t.Fatalf("get %s: %v %v", name, got, err)
		}
	}
	get("a")
	get("b")
	get("a") // a is now the most recently used
	get("c") // evicts b
	get("a")
	get("b")
	if diff := cmp.Diff(map[string]int{"a": 1, "b": 2, "c": 1}, loads); diff != "" {
		t.Errorf("loads (-want +got):\n%s", diff)
	}
	if mem.used > mem.max {
		t.Errorf("the cache holds %d bytes, more than its %d", mem.used, mem.max)
	}
	// A load that verified another digest than the key's is not kept.
	for range 2 {
		if _, err := mem.get(context.Background(), indexKey{sha256: "d"}, func() ([]Package, string, error) {
			loads["d"]++
			return pkgs("d"), "other", nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if loads["d"] != 2 {
		t.Errorf("an index read in another form was kept (%d loads)", loads["d"])
	}
}

// BenchmarkFetchBookworm fetches bookworm, bookworm-updates and
// bookworm-security main for amd64 from a warm cache directory, as every
// lock does: "disk" reads, hashes and parses each index, "memory" takes them
// from a shared IndexCache.
func BenchmarkFetchBookworm(b *testing.B) {
	srcs := hostBookworm(b)
	cache := os.Getenv("IBUILD_TEST_CACHE")
	if cache == "" {
		cache = filepath.Join(os.TempDir(), "ibuild-test-cache")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := filepath.Join(cache, "bench-metadata")
	if _, err := (&Client{CacheDir: dir}).Fetch(ctx, srcs, "amd64"); err != nil {
		b.Skipf("the archive is not reachable: %v", err)
	}
	mem := NewIndexCache(512 << 20)
	for _, bc := range []struct {
		name string
		mem  *IndexCache
	}{{"disk", nil}, {"memory", mem}} {
		b.Run(bc.name, func(b *testing.B) {
			c := &Client{CacheDir: dir, Offline: true, Memory: bc.mem}
			for b.Loop() {
				if _, err := c.Fetch(ctx, srcs, "amd64"); err != nil {
					b.Fatal(err)
				}
			}
			if bc.mem != nil {
				b.ReportMetric(float64(bc.mem.used)/(1<<20), "cached-MiB")
			}
		})
	}
}
