package depsolve

import (
	"context"
	"fmt"
	"regexp"
	"sort"

	"pault.ag/go/debian/version"
)

// Per-package solver flags.
const (
	fMarked    uint8 = 1 << iota // selected for installation (apt: ModeInstall)
	fProtected                   // requested, spread from a request, ruled out by one, or being resolved (apt: Protected)
	fExcluded                    // Request.Exclude names it
	fUser                        // on the command line
)

// maxDepth is apt's recursion limit in MarkInstall.
const maxDepth = 3000

// solver is the state of one Solve: apt's pkgDepCache for a system with an
// empty dpkg status.
type solver struct {
	u   *Universe
	ctx context.Context

	cand     []int32 // package id → current candidate stanza, -1 if none
	initCand []int32 // candidates once the command line is read
	flags    []uint8
	overlay  map[string][]provider // what pinned candidates provide

	deps   map[int32]*relations // stanza → parsed relations
	why    map[int32]*failure   // package id → why it could not be installed
	ousted map[int32]ouster     // package id → the conflict that unselected it
	broke  map[int32]breakage   // package id → why settle unselected it

	steps int
	err   error // a hard error (bad index data, cancellation) ends the run
}

// relations are the parsed relationships of one stanza that resolution
// follows.
type relations struct {
	pos []fieldGroup // Pre-Depends then Depends, in field order
	neg []negDep     // Conflicts then Breaks
	rec []group      // Recommends: not installed, but they keep packages from being garbage
}

type fieldGroup struct {
	field string
	g     group
}

type negDep struct {
	field string
	p     possibility
}

// ouster is the package whose Conflicts or Breaks unselected another.
type ouster struct {
	by  int32
	dep *negDep
}

type failKind uint8

const (
	failDeps     failKind = iota + 1 // an or-group could not be satisfied
	failConflict                     // conflicts with the selection
	failDepth                        // dependency chain too deep
)

// failure records why a package could not be installed, for the error
// message.
type failure struct {
	kind  failKind
	field string
	grp   group
	other int32   // failConflict: the other package
	neg   *negDep // failConflict: the relation that conflicts
}

// setCand makes st the candidate of id and records what it provides when it
// is not the default candidate.
func (s *solver) setCand(id, st int32) {
	s.cand[id] = st
	if st >= 0 && st != s.u.cand[id] {
		if s.overlay == nil {
			s.overlay = map[string][]provider{}
		}
		s.u.addProvides(s.overlay, id, st)
	}
}

// providers lists what provides key, from default and pinned candidates.
// Callers check each entry against the candidate they are looking at.
func (s *solver) providers(key string) []provider {
	base := s.u.provides[key]
	if s.overlay == nil {
		return base
	}
	extra := s.overlay[key]
	if len(extra) == 0 {
		return base
	}
	return append(append([]provider(nil), base...), extra...)
}

// depsOf parses the relations of stanza st once per solve.
func (s *solver) depsOf(st int32) *relations {
	if r, ok := s.deps[st]; ok {
		return r
	}
	p := &s.u.pkgs[st]
	r := &relations{}
	fields := [...]struct {
		name, val string
		neg       bool
	}{
		{"Pre-Depends", p.PreDepends, false},
		{"Depends", p.Depends, false},
		{"Conflicts", p.Conflicts, true},
		{"Breaks", p.Breaks, true},
		{"Recommends", p.Recommends, false},
		{"Provides", p.Provides, true}, // parsed for its errors only
	}
	for _, f := range fields {
		if f.val == "" {
			continue
		}
		gs, err := parseRelations(f.val, s.u.arch, !f.neg)
		if err == nil {
			err = parseVersions(gs)
		}
		if err != nil {
			s.err = fmt.Errorf("package %s %s: %s: %w", p.Name, p.Version, f.name, err)
			return nil
		}
		switch {
		case f.name == "Provides":
		case f.name == "Recommends":
			r.rec = gs
		case f.neg:
			for _, g := range gs {
				r.neg = append(r.neg, negDep{field: f.name, p: g[0]})
			}
		default:
			for _, g := range gs {
				r.pos = append(r.pos, fieldGroup{field: f.name, g: g})
			}
		}
	}
	s.deps[st] = r
	return r
}

// parseVersions parses the versions relations name.
func parseVersions(gs []group) error {
	for _, g := range gs {
		for i := range g {
			if g[i].op == opNone {
				continue
			}
			v, err := version.Parse(g[i].ver)
			if err != nil {
				return fmt.Errorf("%q: %w", g[i].text, err)
			}
			g[i].v = v
		}
	}
	return nil
}

// versionOK reports whether version v satisfies p's version relation.
func versionOK(v *version.Version, p *possibility) bool {
	if p.op == opNone {
		return true
	}
	if v == nil {
		return false // an unversioned Provides satisfies no versioned relation
	}
	c := version.Compare(*v, p.v)
	switch p.op {
	case opLT:
		return c < 0
	case opLE:
		return c <= 0
	case opEQ:
		return c == 0
	case opGE:
		return c >= 0
	case opGT:
		return c > 0
	}
	return false
}

// Selectors: which version of a package a check looks at (apt's
// InstallVersion, CandidateVersion, and the candidate as the dependency
// cache last saw it).
func (s *solver) selMarked(id int32) int32 {
	if s.flags[id]&fMarked != 0 {
		return s.cand[id]
	}
	return -1
}
func (s *solver) selCand(id int32) int32 { return s.cand[id] }
func (s *solver) selInit(id int32) int32 { return s.initCand[id] }

// targets calls fn for each package version, as chosen by sel, that
// satisfies p: the named package itself and its providers. For a negative
// relation, owner's own package and what it provides are ignored (apt:
// IsIgnorable). fn returns false to stop.
func (s *solver) targets(p *possibility, owner int32, neg bool, sel func(int32) int32, fn func(id, st int32) bool) {
	key := p.name
	switch p.qual {
	case qualForeign:
		return
	case qualAny:
		key = p.name + ":any"
	default:
		if id, ok := s.u.ids[p.name]; ok && !(neg && id == owner) {
			if st := sel(id); st >= 0 && versionOK(&s.u.ver[st], p) {
				if !fn(id, st) {
					return
				}
			}
		}
	}
	for _, pr := range s.providers(key) {
		if neg && pr.pkg == owner {
			continue
		}
		if sel(pr.pkg) != pr.stanza || !versionOK(pr.ver, p) {
			continue
		}
		if !fn(pr.pkg, pr.stanza) {
			return
		}
	}
}

// satisfied reports whether any version chosen by sel satisfies p.
func (s *solver) satisfied(p *possibility, owner int32, neg bool, sel func(int32) int32) bool {
	found := false
	s.targets(p, owner, neg, sel, func(int32, int32) bool { found = true; return false })
	return found
}

// groupInstalled reports whether the selection satisfies an or-group
// (apt: DepInstall on any member).
func (s *solver) groupInstalled(owner int32, g group) bool {
	for i := range g {
		if s.satisfied(&g[i], owner, false, s.selMarked) {
			return true
		}
	}
	return false
}

// groupPossible reports whether the selection or the candidates satisfy an
// or-group (apt: DepInstall or DepCVer). Candidates are those apt's
// dependency cache computed before resolution began; apt does not refresh
// them when it discards a candidate.
func (s *solver) groupPossible(owner int32, g group) bool {
	for i := range g {
		if s.satisfied(&g[i], owner, false, s.selMarked) || s.satisfied(&g[i], owner, false, s.selInit) {
			return true
		}
	}
	return false
}

// instBroken reports whether stanza st of id, selected, has an unmet
// dependency or a conflict with the selection (apt: InstBroken).
func (s *solver) instBroken(id, st int32) bool {
	r := s.depsOf(st)
	if r == nil {
		return true
	}
	for _, g := range r.pos {
		if !s.groupInstalled(id, g.g) {
			return true
		}
	}
	for i := range r.neg {
		if s.satisfied(&r.neg[i].p, id, true, s.selMarked) {
			return true
		}
	}
	return false
}

// mark selects id's candidate.
func (s *solver) mark(id int32) { s.flags[id] |= fMarked }

// discard unselects id and drops its candidate for the rest of the run
// (apt: MarkInstall_DiscardInstall).
func (s *solver) discard(id int32) {
	s.flags[id] &^= fMarked
	s.cand[id] = -1
}

// removeConflicts is apt's MarkInstall_RemoveConflictsIfNotUpgradeable on a
// system with nothing installed, for the Conflicts and Breaks of stanza st
// of id: a selected package they name is unselected (apt: MarkKeep), which
// fails if that package is protected. When id is protected (requested, or
// the only way to satisfy a requested package), the candidates they name
// are also dropped for the rest of the run and protected in that state, so
// that nothing installs them later. Only violated relations are looked at
// unless id is protected. apt does not look the other way, at selected
// packages whose Conflicts name st; what that breaks is left to the end
// (settle).
func (s *solver) removeConflicts(id, st int32, r *relations, propagate, fromUser bool) *failure {
	var fail *failure
	for i := range r.neg {
		d := &r.neg[i]
		if !propagate && !s.satisfied(&d.p, id, true, s.selMarked) {
			continue
		}
		var hit []solution
		s.targets(&d.p, id, true, s.selCand, func(o, ost int32) bool {
			hit = append(hit, solution{o, ost})
			return true
		})
		if len(hit) > 1 {
			sort.Slice(hit, func(a, b int) bool { return s.preferred(&d.p, hit[a], hit[b]) })
		}
		for _, h := range hit {
			if s.cand[h.id] != h.st {
				continue
			}
			if s.flags[h.id]&fMarked != 0 {
				if s.flags[h.id]&fProtected != 0 {
					if fail == nil {
						fail = &failure{kind: failConflict, field: d.field, other: h.id, neg: d}
					}
					if !propagate && !fromUser {
						return fail
					}
					continue
				}
				s.flags[h.id] &^= fMarked // apt: MarkKeep
				s.ousted[h.id] = ouster{by: id, dep: d}
			}
			if propagate {
				s.cand[h.id] = -1
				s.flags[h.id] |= fProtected
				if _, ok := s.ousted[h.id]; !ok {
					s.ousted[h.id] = ouster{by: id, dep: d}
				}
			}
		}
	}
	return fail
}

// solution is one version that may satisfy an or-group.
type solution struct{ id, st int32 }

// solutions lists, for an unsatisfied or-group, the candidate versions to
// try, in apt's order: alternatives in order, and within one the versions
// satisfying it sorted as apt's CompareProviders does. A protected package
// that is not selected was ruled out by a requested package's conflicts.
func (s *solver) solutions(owner int32, g group) []solution {
	var out []solution
	for i := range g {
		p := &g[i]
		start := len(out)
		s.targets(p, owner, false, s.selCand, func(id, st int32) bool {
			out = append(out, solution{id, st})
			return true
		})
		alt := out[start:]
		if len(alt) > 1 {
			sort.Slice(alt, func(a, b int) bool { return s.preferred(p, alt[a], alt[b]) })
		}
	}
	// apt removes adjacent duplicates only.
	j := 0
	for i := range out {
		if j > 0 && out[j-1] == out[i] {
			continue
		}
		if f := s.flags[out[i].id]; f&fProtected != 0 && f&fMarked == 0 {
			continue
		}
		out[j] = out[i]
		j++
	}
	return out[:j]
}

// onlySolution returns the one package whose candidate satisfies an
// or-group, if there is exactly one (apt: getAllPossibleSolutions with
// CANDANDINST, unsorted).
func (s *solver) onlySolution(owner int32, g group) (int32, bool) {
	one, n := int32(-1), 0
	for i := range g {
		s.targets(&g[i], owner, false, s.selCand, func(id, _ int32) bool {
			if f := s.flags[id]; f&fProtected != 0 && f&fMarked == 0 {
				return true
			}
			if id != one {
				one = id
				n++
			}
			return n < 2
		})
		if n > 1 {
			return -1, false
		}
	}
	return one, n == 1
}

// preferred is apt's CompareProviders for a system with nothing installed
// and one architecture: protected (being resolved) first, then the package
// the relation names over its providers, Essential, a more important
// Priority, and last the package apt numbered later. (apt also prefers
// packages flagged Important/Protected: yes, which repo.Package does not
// carry.)
func (s *solver) preferred(p *possibility, a, b solution) bool {
	if a.id == b.id {
		return false
	}
	pa, pb := s.flags[a.id]&fProtected != 0, s.flags[b.id]&fProtected != 0
	if pa != pb {
		return pa
	}
	if p.qual == qualNone {
		ga, gb := s.u.names[a.id] == p.name, s.u.names[b.id] == p.name
		if ga != gb {
			return ga
		}
	}
	if ea, eb := s.u.ess[a.id], s.u.ess[b.id]; ea != eb {
		return ea
	}
	if ra, rb := priorityRank(s.u.pkgs[a.st].Priority), priorityRank(s.u.pkgs[b.st].Priority); ra != rb {
		return ra < rb
	}
	order := s.u.aptOrder()
	return order[a.id] > order[b.id]
}

// markInstall is apt's pkgDepCache::MarkInstall for a system with nothing
// installed. fromUser is set for command-line packages, which pass one
// already selected and protected. autoInst resolves dependencies.
func (s *solver) markInstall(id int32, autoInst bool, depth int, fromUser bool) bool {
	if s.err != nil {
		return false
	}
	s.steps++
	if s.steps&1023 == 0 {
		if err := s.ctx.Err(); err != nil {
			s.err = fmt.Errorf("resolving packages: %w", err)
			return false
		}
	}
	f := s.flags[id]
	// IsModeChangeOk
	if depth > maxDepth {
		s.why[id] = &failure{kind: failDepth}
		return false
	}
	if !fromUser && f&fMarked == 0 && f&fProtected != 0 {
		return false // its state was set by a requested package
	}
	st := s.cand[id]
	if st < 0 {
		return false
	}
	protected := f&fProtected != 0
	if !protected && f&fMarked != 0 && !s.instBroken(id, st) {
		return true
	}
	r := s.depsOf(st)
	if r == nil {
		return false
	}
	// IsInstallOkDependenciesSatisfiableByCandidates: give up early on a
	// version whose dependencies nothing could satisfy, and unless it is
	// protected, drop it for good.
	if autoInst {
		for _, fg := range r.pos {
			if !s.groupPossible(id, fg.g) {
				s.why[id] = &failure{kind: failDeps, field: fg.field, grp: fg.g}
				if !protected {
					s.discard(id)
				}
				return false
			}
		}
	}
	if fromUser && f&fMarked == 0 {
		s.mark(id)
	}
	if !autoInst {
		if f&fMarked == 0 {
			s.mark(id)
		}
		return true
	}
	failEarly := !protected && !fromUser
	hasFailed := false
	if fl := s.removeConflicts(id, st, r, protected, fromUser); fl != nil {
		s.why[id] = fl
		if failEarly {
			return false
		}
		hasFailed = true
	}
	if s.flags[id]&fMarked == 0 {
		s.mark(id)
	}
	s.flags[id] |= fProtected // apt: ScopedProtected
	defer func() {
		if !protected {
			s.flags[id] &^= fProtected
		}
	}()
	for _, fg := range r.pos {
		if s.groupInstalled(id, fg.g) {
			if !protected {
				continue
			}
			// A protected package protects what alone satisfies its
			// dependencies.
			t, ok := s.onlySolution(id, fg.g)
			if !ok || s.flags[t]&fProtected != 0 {
				continue
			}
			s.flags[t] |= fProtected
			if !s.markInstall(t, true, depth+1, false) {
				hasFailed = true
			}
			if s.err != nil {
				return false
			}
			continue
		}
		sols := s.solutions(id, fg.g)
		ok := false
		for _, sol := range sols {
			if s.cand[sol.id] != sol.st {
				continue // dropped while trying an earlier one
			}
			if protected && len(sols) == 1 {
				if !s.markInstall(sol.id, false, depth+1, false) {
					continue
				}
				s.flags[sol.id] |= fProtected
			}
			if s.markInstall(sol.id, true, depth+1, false) {
				ok = true
				break
			}
			if s.err != nil {
				return false
			}
		}
		if !ok {
			s.why[id] = &failure{kind: failDeps, field: fg.field, grp: fg.g}
			if failEarly {
				s.discard(id)
				return false
			}
			hasFailed = true
			if !protected && !fromUser {
				break
			}
		}
	}
	return !hasFailed
}

// settle deals with what resolution left broken, where apt calls its
// problem resolver: a package pulled in by a failed attempt whose
// dependency was the failed package, the dependents of a package a
// conflict unselected, a package whose Conflicts name a later selection.
// Like apt's resolver it tries the other alternatives of a protected
// package's broken dependency and unselects broken packages that are not
// protected, until nothing changes. Then it drops garbage (sweep) and
// checks the result: a request left broken is an error.
func (s *solver) settle(users []int32) error {
	for round, changed := 0, true; changed && round < 20; round++ {
		changed = false
		for i, f := range s.flags {
			id := int32(i)
			if f&fMarked == 0 {
				continue
			}
			b, broken := s.findBreakage(id)
			if s.err != nil {
				return s.err
			}
			if !broken {
				continue
			}
			if f&fProtected == 0 {
				s.flags[id] &^= fMarked
				s.broke[id] = b
				changed = true
				continue
			}
			if b.grp == nil {
				continue
			}
			for _, sol := range s.solutions(id, b.grp.g) {
				if s.cand[sol.id] == sol.st && s.markInstall(sol.id, true, 1, false) {
					changed = true
					break
				}
			}
		}
	}
	s.sweep()
	if s.err != nil {
		return s.err
	}
	for _, id := range users {
		if s.flags[id]&fMarked == 0 || s.instBroken(id, s.cand[id]) {
			return s.explainBroken(id, users)
		}
	}
	// Everything selected must be installable together: this holds by
	// construction, and is checked because a lockfile must never be
	// wrong.
	for id, f := range s.flags {
		if f&fMarked != 0 && s.instBroken(int32(id), s.cand[id]) {
			return s.explainBroken(int32(id), users)
		}
	}
	return s.err
}

// neverAutoRemove is APT::NeverAutoRemove as Debian's apt ships it
// (/etc/apt/apt.conf.d/01autoremove): packages that are never garbage.
var neverAutoRemove = regexp.MustCompile(`(?i)^firmware-linux.*|^linux-firmware$|^linux-image-[a-z0-9]*$|^linux-image-[a-z0-9]*-[a-z0-9]*$`)

// sweep is apt-get's DoAutomaticRemove for new installs: a package selected
// only because of an attempt that later failed, or whose dependent a
// conflict unselected, is garbage — nothing requested needs it — and apt
// drops it from the installation. Roots are the requested packages,
// Essential packages and those APT::NeverAutoRemove names; Depends,
// Pre-Depends and Recommends keep packages alive through every alternative
// and provider that is selected. (apt also follows Suggests, counts
// Important: yes packages as roots and follows only the newest source
// version among providers from one source package: repo.Package carries
// none of that.)
func (s *solver) sweep() {
	reached := make(map[int32]bool)
	var queue []int32
	visit := func(id int32) {
		if !reached[id] && s.flags[id]&fMarked != 0 {
			reached[id] = true
			queue = append(queue, id)
		}
	}
	for id, f := range s.flags {
		if f&fMarked != 0 && (f&fUser != 0 || s.u.ess[id] || neverAutoRemove.MatchString(s.u.names[id])) {
			visit(int32(id))
		}
	}
	follow := func(id int32, g group) {
		for i := range g {
			s.targets(&g[i], id, false, s.selMarked, func(t, _ int32) bool {
				visit(t)
				return true
			})
		}
	}
	for len(queue) > 0 {
		id := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		r := s.depsOf(s.cand[id])
		if r == nil {
			return
		}
		for _, fg := range r.pos {
			follow(id, fg.g)
		}
		for _, g := range r.rec {
			follow(id, g)
		}
	}
	for id, f := range s.flags {
		if f&fMarked != 0 && !reached[int32(id)] {
			s.flags[id] &^= fMarked
		}
	}
}
