package depsolve

import (
	"fmt"
	"strings"
)

// explain describes why id failed. subject is how the parent named it
// ("nginx-common (>= 1.22.1-9)").
func (s *solver) explain(id int32, subject string, seen map[int32]bool) ([]string, string) {
	seen[id] = true
	name := s.u.names[id]
	f := s.why[id]
	if f == nil {
		return []string{name}, subject + " cannot be installed"
	}
	switch f.kind {
	case failDepth:
		return []string{name}, "dependency chain deeper than " + fmt.Sprint(maxDepth)
	case failConflict:
		other := s.u.names[f.other]
		ov := s.u.pkgs[s.initCandOr(f.other)].Version
		return []string{name, other}, fmt.Sprintf("%s %s %s %s, which is being installed (%s: %s)",
			subject, verbOf(f.field), other, ov, f.field, f.neg.p.text)
	}
	// failDeps: follow the first alternative some candidate could have
	// satisfied down to its own failure.
	for i := range f.grp {
		p := &f.grp[i]
		next := int32(-1)
		s.targets(p, id, false, s.selInit, func(t, _ int32) bool {
			if !seen[t] && s.why[t] != nil {
				next = t
				return false
			}
			return true
		})
		if next >= 0 {
			chain, reason := s.explain(next, p.text, seen)
			return append([]string{name}, chain...), reason
		}
	}
	p := &f.grp[0]
	return []string{name, p.name}, fmt.Sprintf("%s %s %s but %s", subject, verbOf(f.field), f.grp, s.unavailable(p))
}

// initCandOr is the stanza id had as a candidate once the command line was
// read (a discarded candidate is still worth naming).
func (s *solver) initCandOr(id int32) int32 {
	if st := s.cand[id]; st >= 0 {
		return st
	}
	return s.initCand[id]
}

// unavailable says why nothing satisfies p.
func (s *solver) unavailable(p *possibility) string {
	if p.qual == qualForeign {
		return fmt.Sprintf("%s is not an architecture being installed (%s)", p.text[strings.IndexByte(p.text, ':')+1:], s.u.arch)
	}
	id, real := s.u.ids[p.name]
	if real && s.flags[id]&fExcluded != 0 {
		return "it is excluded"
	}
	if real && s.initCand[id] >= 0 {
		st := s.initCand[id]
		if p.qual == qualAny && s.u.pkgs[st].MultiArch != "allowed" {
			return fmt.Sprintf("%s is not Multi-Arch: allowed", p.name)
		}
		if p.op != opNone {
			return fmt.Sprintf("only %s is available", s.u.pkgs[st].Version)
		}
	}
	key := p.name
	if p.qual == qualAny {
		key += ":any"
	}
	var vers []string
	for _, pr := range s.providers(key) {
		if s.initCand[pr.pkg] != pr.stanza {
			continue
		}
		v := "unversioned"
		if pr.ver != nil {
			v = pr.ver.String()
		}
		vers = append(vers, s.u.names[pr.pkg]+" provides "+v)
	}
	if len(vers) > 0 && p.op != opNone {
		return "only " + strings.Join(vers, ", ")
	}
	return "it is not available"
}

// explainBroken describes a package that resolution left unselected or
// broken, as the failure of the first request that needs it.
func (s *solver) explainBroken(id int32, users []int32) error {
	path, via := s.pathTo(id, users)
	subject := s.u.names[id]
	if via != "" {
		subject = via
	}
	chain, reason := s.brokenChain(id, subject, map[int32]bool{})
	if s.err != nil {
		return s.err
	}
	return &UnsatisfiableError{Package: s.u.names[path[0]], Reason: reason, Chain: append(s.nameList(path[:len(path)-1]), chain...)}
}

func (s *solver) nameList(ids []int32) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = s.u.names[id]
	}
	return out
}

// pathTo finds how a request leads to id through selected packages'
// dependencies: the package ids from the request to id, and the relation
// that names id ("" if id is itself requested).
func (s *solver) pathTo(id int32, users []int32) ([]int32, string) {
	type step struct {
		from int32
		via  string
	}
	prev := map[int32]step{}
	queue := []int32{}
	for _, u := range users {
		if u == id {
			return []int32{id}, ""
		}
		prev[u] = step{from: -1}
		queue = append(queue, u)
	}
	found := false
	for len(queue) > 0 && !found {
		cur := queue[0]
		queue = queue[1:]
		if s.flags[cur]&fMarked == 0 || s.cand[cur] < 0 {
			continue
		}
		r := s.depsOf(s.cand[cur])
		if r == nil {
			break
		}
		for _, fg := range r.pos {
			for i := range fg.g {
				p := &fg.g[i]
				s.targets(p, cur, false, s.selCand, func(t, _ int32) bool {
					if _, seen := prev[t]; !seen {
						prev[t] = step{from: cur, via: p.text}
						queue = append(queue, t)
						found = found || t == id
					}
					return !found
				})
			}
		}
	}
	if !found {
		return []int32{id}, ""
	}
	var path []int32
	for cur := id; cur >= 0; cur = prev[cur].from {
		path = append([]int32{cur}, path...)
	}
	return path, prev[id].via
}

// breakage is what leaves a selected package broken.
type breakage struct {
	grp   *fieldGroup // an unmet dependency
	neg   *negDep     // or a conflict with the selection
	other int32
}

// findBreakage returns what breaks selected package id now, if anything.
func (s *solver) findBreakage(id int32) (breakage, bool) {
	r := s.depsOf(s.cand[id])
	if r == nil {
		return breakage{}, false
	}
	for i := range r.pos {
		if !s.groupInstalled(id, r.pos[i].g) {
			return breakage{grp: &r.pos[i]}, true
		}
	}
	for i := range r.neg {
		b, found := breakage{}, false
		s.targets(&r.neg[i].p, id, true, s.selMarked, func(o, _ int32) bool {
			b, found = breakage{neg: &r.neg[i], other: o}, true
			return false
		})
		if found {
			return b, true
		}
	}
	return breakage{}, false
}

// brokenChain explains why id is not selected, or broken, after
// resolution. subject is how the parent named it.
func (s *solver) brokenChain(id int32, subject string, seen map[int32]bool) ([]string, string) {
	seen[id] = true
	name := s.u.names[id]
	var b breakage
	if s.flags[id]&fMarked == 0 {
		if o, ok := s.ousted[id]; ok {
			return []string{name, s.u.names[o.by]}, fmt.Sprintf("%s %s %s (%s: %s)",
				s.u.names[o.by], verbOf(o.dep.field), subject, o.dep.field, o.dep.p.text)
		}
		var ok bool
		if b, ok = s.broke[id]; !ok {
			if s.why[id] != nil {
				return s.explain(id, subject, seen)
			}
			return []string{name}, subject + " is not selected"
		}
	} else {
		var ok bool
		if b, ok = s.findBreakage(id); !ok {
			return []string{name}, subject + " is selected"
		}
	}
	if b.neg != nil {
		o := s.u.names[b.other]
		return []string{name, o}, fmt.Sprintf("%s %s %s %s, also selected (%s: %s)",
			subject, verbOf(b.neg.field), o, s.u.pkgs[s.cand[b.other]].Version, b.neg.field, b.neg.p.text)
	}
	for _, p := range b.grp.g {
		t, ok := s.u.ids[p.name]
		if !ok || seen[t] || p.qual == qualForeign {
			continue
		}
		_, ousted := s.ousted[t]
		_, broke := s.broke[t]
		if ousted || broke || s.why[t] != nil {
			chain, reason := s.brokenChain(t, p.text, seen)
			return append([]string{name}, chain...), reason
		}
	}
	return []string{name, b.grp.g[0].name}, fmt.Sprintf("%s %s %s but %s", subject, verbOf(b.grp.field), b.grp.g, s.unavailable(&b.grp.g[0]))
}

// verbOf turns a relationship field into a verb.
func verbOf(field string) string {
	switch field {
	case "Pre-Depends":
		return "pre-depends on"
	case "Conflicts":
		return "conflicts with"
	case "Breaks":
		return "breaks"
	}
	return "depends on"
}
