package depsolve

import (
	"path"
	"sort"
)

// Has reports whether name can be installed by name: a package with a
// candidate, or a virtual package that candidates provide.
func (u *Universe) Has(name string) bool {
	return u.IsPackage(name) || len(u.Providers(name)) > 0
}

// IsPackage reports whether name is a real package with a candidate.
func (u *Universe) IsPackage(name string) bool {
	id, ok := u.ids[name]
	return ok && u.cand[id] >= 0
}

// Providers lists the packages whose candidates provide name, sorted.
func (u *Universe) Providers(name string) []string {
	var out []string
	seen := map[int32]bool{}
	for _, p := range u.provides[name] {
		if u.cand[p.pkg] == p.stanza && !seen[p.pkg] {
			seen[p.pkg] = true
			out = append(out, u.names[p.pkg])
		}
	}
	sort.Strings(out)
	return out
}

// Match lists the names of packages with a candidate that match a glob
// pattern of path.Match, sorted.
func (u *Universe) Match(pattern string) ([]string, error) {
	if _, err := path.Match(pattern, ""); err != nil {
		return nil, err
	}
	var out []string
	for id, n := range u.names {
		if u.cand[id] < 0 {
			continue
		}
		if ok, _ := path.Match(pattern, n); ok {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Names calls fn with the name of every package that has a candidate.
func (u *Universe) Names(fn func(name string)) {
	for id, n := range u.names {
		if u.cand[id] >= 0 {
			fn(n)
		}
	}
}
