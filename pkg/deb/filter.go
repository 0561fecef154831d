package deb

import "strings"

// Filter is dpkg's --path-exclude/--path-include: rules tried in order, the
// last matching one decides; paths no rule matches are kept.
type Filter struct {
	rules []rule
}

type rule struct {
	pattern string
	include bool
}

// NewFilter returns the filter dpkg applies for a configuration listing
// the excludes, then the includes.
func NewFilter(exclude, include []string) *Filter {
	f := &Filter{}
	for _, p := range exclude {
		f.rules = append(f.rules, rule{pattern: p})
	}
	for _, p := range include {
		f.rules = append(f.rules, rule{pattern: p, include: true})
	}
	return f
}

// Skip reports whether the entry at p (absolute, as "/usr/share/doc/x")
// is left out. An excluded directory or symlink is kept when an include
// pattern could match something below it, as dpkg does.
func (f *Filter) Skip(p string, dirOrLink bool) bool {
	if f == nil || len(f.rules) == 0 {
		return false
	}
	skip := false
	for _, r := range f.rules {
		if fnmatch(r.pattern, p) {
			skip = !r.include
		}
	}
	if skip && dirOrLink {
		for _, r := range f.rules {
			if !r.include {
				continue
			}
			lit := len(r.pattern)
			if i := strings.IndexAny(r.pattern, `*?[\`); i >= 0 {
				lit = i
			}
			n := min(lit, len(p))
			if p[:n] == r.pattern[:n] {
				return false
			}
		}
	}
	return skip
}

// fnmatch is fnmatch(3) without flags: '*' matches any string, '/'
// included, '?' any character, [...] a class ('!' or '^' negates), '\'
// escapes.
func fnmatch(pattern, name string) bool {
	px, nx := 0, 0
	// Backtracking point for the last '*'.
	starP, starN := -1, -1
	for nx < len(name) || px < len(pattern) {
		if px < len(pattern) {
			switch c := pattern[px]; c {
			case '*':
				starP, starN = px, nx
				px++
				continue
			case '?':
				if nx < len(name) {
					px++
					nx++
					continue
				}
			case '[':
				if nx < len(name) {
					if ok, next, valid := matchClass(pattern, px, name[nx]); valid {
						if ok {
							px = next
							nx++
							continue
						}
					} else if name[nx] == '[' {
						px++
						nx++
						continue
					}
				}
			case '\\':
				if px+1 < len(pattern) {
					if nx < len(name) && name[nx] == pattern[px+1] {
						px += 2
						nx++
						continue
					}
				} else if nx < len(name) && name[nx] == '\\' {
					px++
					nx++
					continue
				}
			default:
				if nx < len(name) && name[nx] == c {
					px++
					nx++
					continue
				}
			}
		}
		if starP >= 0 && starN < len(name) {
			starN++
			px, nx = starP+1, starN
			continue
		}
		return false
	}
	return true
}

// matchClass matches c against the bracket expression at pattern[i] ('[').
// It returns whether c matched, the index after the expression, and
// whether the expression was well formed.
func matchClass(pattern string, i int, c byte) (bool, int, bool) {
	j := i + 1
	negate := false
	if j < len(pattern) && (pattern[j] == '!' || pattern[j] == '^') {
		negate = true
		j++
	}
	matched := false
	first := true
	for j < len(pattern) {
		ch := pattern[j]
		if ch == ']' && !first {
			return matched != negate, j + 1, true
		}
		first = false
		if ch == '\\' && j+1 < len(pattern) {
			j++
			ch = pattern[j]
		}
		lo, hi := ch, ch
		if j+2 < len(pattern) && pattern[j+1] == '-' && pattern[j+2] != ']' {
			hi = pattern[j+2]
			j += 2
		}
		if lo <= c && c <= hi {
			matched = true
		}
		j++
	}
	return false, 0, false
}
