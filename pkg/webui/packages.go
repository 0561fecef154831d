package webui

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"pault.ag/go/debian/version"

	"github.com/image-builder-action/image-builder-action/pkg/compose"
	"github.com/image-builder-action/image-builder-action/pkg/lock"
	"github.com/image-builder-action/image-builder-action/pkg/repo"
)

// PackageSearcher finds packages by name in what a distro's repositories
// offer. It is optional: without one the editor has no search.
type PackageSearcher interface {
	SearchPackages(ctx context.Context, distro, arch, query string, limit int) ([]PackageHit, error)
}

// PackageHit is one package a search found: its newest version in the
// repositories.
type PackageHit struct {
	Name, Version, Arch, Section, Suite string
}

// IndexFunc returns the package index of a distro's repositories for one
// architecture.
type IndexFunc func(ctx context.Context, distro, arch string) (*repo.Index, error)

// RepoPackages searches the package indices lock resolves against. An
// index is read once and kept for TTL: a live search asks on every key
// press, and fetching and parsing Debian's indices takes seconds.
type RepoPackages struct {
	Index IndexFunc
	// DefaultDistro is searched when the blueprint names none.
	DefaultDistro string
	// TTL is how long an index is kept (default 10 minutes).
	TTL time.Duration

	mu    sync.Mutex
	cache map[string]*packageList
}

var _ PackageSearcher = (*RepoPackages)(nil)

type packageList struct {
	once    sync.Once
	fetched time.Time
	hits    []PackageHit // by name, one each
	err     error
}

// ServicePackages searches the repositories the compose service locks
// against (its --repo sources or the host's mirror, its metadata cache).
func ServicePackages(svc *compose.Service) *RepoPackages {
	cfg := svc.Config()
	opts := append(cfg.Repositories.LockOptions(), lock.WithDefs(svc.Defs()))
	opts = append(opts, cfg.LockOptions...)
	return &RepoPackages{
		DefaultDistro: cfg.DefaultDistro,
		Index: func(ctx context.Context, distro, arch string) (*repo.Index, error) {
			return lock.Available(ctx, distro, arch, opts...)
		},
	}
}

// SearchPackages implements PackageSearcher: names that start with query
// come first, then names that contain it, each in name order.
func (p *RepoPackages) SearchPackages(ctx context.Context, distro, arch, query string, limit int) ([]PackageHit, error) {
	if distro == "" {
		distro = p.DefaultDistro
	}
	if arch == "" {
		arch = lock.HostArch()
	}
	l, err := p.list(ctx, distro, arch)
	if err != nil {
		return nil, err
	}
	query = strings.ToLower(strings.TrimSpace(query))
	if query == "" {
		return nil, nil
	}
	var prefix, inner []PackageHit
	for _, h := range l.hits {
		switch {
		case strings.HasPrefix(h.Name, query):
			prefix = append(prefix, h)
		case strings.Contains(h.Name, query) && len(inner) < limit:
			inner = append(inner, h)
		}
	}
	out := append(prefix, inner...)
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (p *RepoPackages) list(ctx context.Context, distro, arch string) (*packageList, error) {
	ttl := p.TTL
	if ttl == 0 {
		ttl = 10 * time.Minute
	}
	key := distro + " " + arch
	p.mu.Lock()
	if p.cache == nil {
		p.cache = map[string]*packageList{}
	}
	l := p.cache[key]
	if l == nil || (!l.fetched.IsZero() && time.Since(l.fetched) > ttl) {
		l = &packageList{}
		p.cache[key] = l
	}
	p.mu.Unlock()
	// One fetch per key at a time; the others wait for it. The fetch is not
	// tied to one request: a search that gives up does not spoil it.
	l.once.Do(func() {
		// Bounded: the searches that wait for it would hang with it.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		idx, err := p.Index(fctx, distro, arch)
		// Under the lock: a search for the same key reads it there
		// while this fetch runs.
		p.mu.Lock()
		l.fetched = time.Now()
		p.mu.Unlock()
		if err != nil {
			l.err = err
			return
		}
		l.hits = newestByName(idx)
	})
	if l.err != nil {
		// Not kept: the next search tries again.
		p.mu.Lock()
		if p.cache[key] == l {
			delete(p.cache, key)
		}
		p.mu.Unlock()
		return nil, l.err
	}
	return l, nil
}

// newestByName keeps each name's newest version, sorted by name.
func newestByName(idx *repo.Index) []PackageHit {
	best := map[string]int{}
	var hits []PackageHit
	for _, pk := range idx.Packages {
		h := PackageHit{Name: pk.Name, Version: pk.Version, Arch: pk.Architecture, Section: pk.Section}
		if pk.Origin >= 0 && pk.Origin < len(idx.Releases) {
			h.Suite = idx.Releases[pk.Origin].Source.Suite
		}
		i, ok := best[pk.Name]
		if !ok {
			best[pk.Name] = len(hits)
			hits = append(hits, h)
			continue
		}
		a, aerr := version.Parse(hits[i].Version)
		b, berr := version.Parse(pk.Version)
		if aerr == nil && berr == nil && version.Compare(b, a) > 0 {
			hits[i] = h
		}
	}
	slices.SortFunc(hits, func(a, b PackageHit) int { return strings.Compare(a.Name, b.Name) })
	return hits
}
