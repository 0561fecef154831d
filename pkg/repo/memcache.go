package repo

import (
	"container/list"
	"context"
	"sync"
	"unsafe"
)

// IndexCache keeps parsed Packages indices in memory, keyed by the SHA256 of
// the verified index and the repository URI its URLs are made from. A
// service locks many blueprints of one distro at once: without it, each
// lock reads, hashes and parses the same 50 MB index again (measured: a
// quarter of the service's CPU while 10 composes lock). With it, one index
// is parsed once for all: a Fetch that finds another parsing the same index
// waits for its result instead of parsing it too.
//
// Only verified indices enter the cache (the digest is the one the
// caller's signed InRelease lists, and the content was checked against it),
// so a hit is as trustworthy as a fresh parse. The cached packages are
// shared and never modified; Client hands out copies. The cache holds at
// most its size in bytes, least recently used indices leaving first.
//
// An IndexCache is safe for concurrent use; share one between the Clients
// of a process.
type IndexCache struct {
	max int64

	mu      sync.Mutex
	used    int64
	entries map[indexKey]*indexEntry
	lru     list.List // of *indexEntry, most recently used first; only loaded ones
	loads   int       // indices parsed to be cached (for tests)
}

// NewIndexCache returns a cache holding at most maxBytes of parsed indices
// (as counted by the packages' strings and structs). bookworm's main amd64
// index (63,000 packages) counts about 60 MB.
func NewIndexCache(maxBytes int64) *IndexCache {
	return &IndexCache{max: maxBytes, entries: map[indexKey]*indexEntry{}}
}

type indexKey struct {
	sha256 string // of the uncompressed index when listed, else of the form read
	prefix string // the repository URI the URLs start with
}

type indexEntry struct {
	key  indexKey
	done chan struct{} // closed when the load ends
	// Set before done is closed: ok when pkgs is the index's content.
	pkgs []Package
	ok   bool
	cost int64
	elem *list.Element // nil once evicted
}

// get returns the packages cached under key, or calls load once for all
// the callers that ask for key at the same time. load returns the packages
// parsed and the digest of what it verified; only when that digest is the
// key's are they kept (an index read in another form than the key names is
// returned to its caller alone). When the load that others waited for fails
// or is not kept, each of them loads on its own: its error is its own.
func (c *IndexCache) get(ctx context.Context, key indexKey, load func() ([]Package, string, error)) ([]Package, error) {
	c.mu.Lock()
	e := c.entries[key]
	if e == nil {
		e = &indexEntry{key: key, done: make(chan struct{})}
		c.entries[key] = e
		c.mu.Unlock()
		pkgs, digest, err := load()
		c.finish(e, pkgs, err == nil && digest == key.sha256)
		return pkgs, err
	}
	c.mu.Unlock()
	select {
	case <-e.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if e.ok {
		c.mu.Lock()
		if e.elem != nil {
			c.lru.MoveToFront(e.elem)
		}
		c.mu.Unlock()
		return e.pkgs, nil
	}
	pkgs, _, err := load()
	return pkgs, err
}

// finish records the end of e's load and evicts what no longer fits.
func (c *IndexCache) finish(e *indexEntry, pkgs []Package, keep bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer close(e.done)
	cost := indexCost(pkgs)
	if !keep || cost > c.max {
		delete(c.entries, e.key)
		return
	}
	c.loads++
	e.pkgs, e.ok, e.cost = pkgs, true, cost
	e.elem = c.lru.PushFront(e)
	c.used += cost
	for c.used > c.max {
		old := c.lru.Back().Value.(*indexEntry)
		c.lru.Remove(old.elem)
		old.elem = nil
		delete(c.entries, old.key)
		c.used -= old.cost
	}
}

// indexCost estimates the memory pkgs hold: the structs and the bytes of
// their strings. Strings shared between packages (interned field values)
// are counted each time, so the estimate errs high.
func indexCost(pkgs []Package) int64 {
	n := int64(len(pkgs)) * int64(unsafe.Sizeof(Package{}))
	for i := range pkgs {
		p := &pkgs[i]
		n += int64(len(p.Name) + len(p.Version) + len(p.Architecture) + len(p.MultiArch) + len(p.Priority) +
			len(p.Section) + len(p.Depends) + len(p.PreDepends) + len(p.Provides) + len(p.Conflicts) +
			len(p.Breaks) + len(p.Replaces) + len(p.Recommends) + len(p.Filename) + len(p.URL) + len(p.SHA256))
	}
	return n
}
