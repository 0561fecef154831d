package depsolve

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"pault.ag/go/debian/version"

	"github.com/image-builder-action/image-builder-action/pkg/repo"
)

// Universe is an index over the binary packages one architecture can
// install: those of that architecture and of "all". Build it once and Solve
// many requests against it; it is safe for concurrent use.
type Universe struct {
	arch string
	pkgs []repo.Package

	names []string         // package id → name
	ids   map[string]int32 // name → package id
	vers  [][]int32        // package id → stanzas (indexes into pkgs), best first
	cand  []int32          // package id → candidate stanza, -1 if none
	ess   []bool           // package id → Essential (any version says so)

	ver    []version.Version // stanza → parsed Version
	badVer map[int32]error   // package id → why one of its versions does not parse

	// provides maps a virtual name ("foo", or "foo:any" for what satisfies
	// foo:any) to what the default candidates provide under it.
	provides map[string][]provider

	orderOnce sync.Once
	order     []int32 // package id → apt's package id (see aptOrder)
}

// provider is one package version providing a name.
type provider struct {
	pkg    int32
	stanza int32
	ver    *version.Version // provided version; nil when unversioned
}

// NewUniverse indexes pkgs for arch (a dpkg architecture such as amd64).
// pkgs must be in the order apt would read them: sources in sources.list
// order, each index in file order. That order decides ties between equal
// versions (first wins) and between otherwise equal providers. Solutions
// point into pkgs.
func NewUniverse(pkgs []repo.Package, arch string) *Universe {
	return NewPinnedUniverse(pkgs, arch, nil)
}

// NewPinnedUniverse is NewUniverse with apt's pin priorities: pin gives
// each package's (from its source; nil: 500 for all). As apt does, the
// candidate is the version of highest priority, the highest version among
// those; a priority below 0 keeps a version from being a candidate.
func NewPinnedUniverse(pkgs []repo.Package, arch string, pin func(*repo.Package) int) *Universe {
	prio := func(st int32) int {
		if pin == nil {
			return 500
		}
		return pin(&pkgs[st])
	}
	u := &Universe{
		arch:     arch,
		pkgs:     pkgs,
		ids:      make(map[string]int32, len(pkgs)),
		ver:      make([]version.Version, len(pkgs)),
		badVer:   map[int32]error{},
		provides: map[string][]provider{},
	}
	for i := range pkgs {
		p := &pkgs[i]
		if p.Architecture != arch && p.Architecture != "all" {
			continue
		}
		id, ok := u.ids[p.Name]
		if !ok {
			id = int32(len(u.names))
			u.ids[p.Name] = id
			u.names = append(u.names, p.Name)
			u.vers = append(u.vers, nil)
			u.ess = append(u.ess, false)
		}
		v, err := version.Parse(p.Version)
		if err != nil {
			if _, seen := u.badVer[id]; !seen {
				u.badVer[id] = fmt.Errorf("package %s: version %q: %w", p.Name, p.Version, err)
			}
			continue
		}
		u.ver[i] = v
		u.vers[id] = append(u.vers[id], int32(i))
		// apt keeps Essential on the package, not the version, and
		// forces it for apt itself (pkgCacheGen::ForceEssential).
		u.ess[id] = u.ess[id] || p.Essential || p.Name == "apt"
	}
	u.cand = make([]int32, len(u.names))
	for id, vs := range u.vers {
		// Highest version first; equal versions keep index order, so the
		// first source wins as with apt's equal pin priorities.
		sort.SliceStable(vs, func(a, b int) bool {
			if pa, pb := prio(vs[a]), prio(vs[b]); pa != pb {
				return pa > pb
			}
			return version.Compare(u.ver[vs[a]], u.ver[vs[b]]) > 0
		})
		u.cand[id] = -1
		if len(vs) > 0 && prio(vs[0]) >= 0 {
			u.cand[id] = vs[0]
		}
	}
	for id, c := range u.cand {
		if c >= 0 {
			u.addProvides(u.provides, int32(id), c)
		}
	}
	return u
}

// Arch is the architecture the universe was built for.
func (u *Universe) Arch() string { return u.arch }

// addProvides records in m what stanza st of package id provides.
func (u *Universe) addProvides(m map[string][]provider, id, st int32) {
	u.forEachProvide(st, func(key string, v *version.Version) {
		m[key] = append(m[key], provider{pkg: id, stanza: st, ver: v})
	})
}

// forEachProvide calls fn with each name stanza st provides and the
// provided version (nil if unversioned), the way apt's cache generator sees
// it on a single-architecture system: an M-A: allowed package also
// provides name:any for its own name and for each name it provides.
func (u *Universe) forEachProvide(st int32, fn func(key string, v *version.Version)) {
	p := &u.pkgs[st]
	allowed := p.MultiArch == "allowed"
	if allowed {
		v := u.ver[st]
		fn(p.Name+":any", &v)
	}
	if p.Provides == "" {
		return
	}
	rels, err := parseRelations(p.Provides, u.arch, false)
	if err != nil {
		return // reported when the package is used (solver.depsOf)
	}
	for _, g := range rels {
		q := g[0]
		if q.op != opNone && q.op != opEQ {
			continue // apt ignores non-equal Provides (with a warning)
		}
		var pv *version.Version
		if q.op == opEQ {
			v, err := version.Parse(q.ver)
			if err != nil {
				continue // reported when the package is used
			}
			pv = &v
		}
		switch q.qual {
		case qualAny:
			fn(q.name+":any", pv)
		case qualNone, qualNative:
			fn(q.name, pv)
			if allowed && q.qual == qualNone {
				fn(q.name+":any", pv)
			}
		}
	}
}

// aptOrder approximates apt's package ids, which break the last tie between
// providers (pkgDepCache's CompareProviders prefers the higher id). apt
// numbers packages as its cache generator first meets their names: reading
// the indices in order, each stanza's own name, then the names its
// Pre-Depends, Depends, Conflicts, Breaks, Recommends, Suggests, Replaces,
// Enhances and Provides mention. Suggests and Enhances are not in
// repo.Package, so a name first mentioned there is numbered a little later
// than apt would.
func (u *Universe) aptOrder() []int32 {
	u.orderOnce.Do(func() {
		order := make([]int32, len(u.names))
		for i := range order {
			order[i] = -1
		}
		next := int32(0)
		meet := func(name string) {
			if id, ok := u.ids[name]; ok && order[id] < 0 {
				order[id] = next
			}
			next++ // virtual names take a number too; only the order matters
		}
		for i := range u.pkgs {
			p := &u.pkgs[i]
			if p.Architecture != u.arch && p.Architecture != "all" {
				continue
			}
			meet(p.Name)
			for _, f := range []string{p.PreDepends, p.Depends, p.Conflicts, p.Breaks, p.Recommends, p.Replaces, p.Provides} {
				forEachName(f, meet)
			}
		}
		u.order = order
	})
	return u.order
}

// forEachName calls fn with each unqualified or native-qualified package
// name a relationship field mentions, in order. foo:any creates no package
// foo in apt, so it is skipped.
func forEachName(field string, fn func(string)) {
	for len(field) > 0 {
		i := strings.IndexAny(field, ",|")
		var tok string
		if i < 0 {
			tok, field = field, ""
		} else {
			tok, field = field[:i], field[i+1:]
		}
		tok = strings.TrimSpace(tok)
		if j := strings.IndexAny(tok, " \t("); j >= 0 {
			tok = tok[:j]
		}
		if k := strings.IndexByte(tok, ':'); k >= 0 {
			if tok[k+1:] == "any" {
				continue
			}
			tok = tok[:k]
		}
		if tok != "" {
			fn(tok)
		}
	}
}

// priorityRank maps a Priority to apt's ordering value (lower is more
// important). apt leaves it 0 when the field is missing and uses extra for
// unknown words.
func priorityRank(p string) int {
	switch p {
	case "":
		return 0
	case "required":
		return 1
	case "important":
		return 2
	case "standard":
		return 3
	case "optional":
		return 4
	default:
		return 5
	}
}
