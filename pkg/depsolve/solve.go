// Package depsolve resolves requested Debian package sets to a closed,
// installable set the way `apt-get install --no-install-recommends` does on
// a system with nothing installed.
//
// The algorithm is apt's own (apt 2.6: pkgDepCache::MarkInstall and
// apt-get's handling of the command line and of garbage), for an empty dpkg
// status and one architecture:
//
//   - every requested package is protected and selected first, then the
//     requests are resolved depth-first in command-line order;
//   - only candidate versions are installed: the highest version, the first
//     source winning a tie (all sources at the default pin priority), unless
//     the request pins a version;
//   - an or-group already satisfied by the selection is skipped; otherwise
//     its alternatives are tried in order, the versions satisfying one
//     alternative (the package it names and its providers) sorted as apt's
//     CompareProviders sorts them, and the first that installs wins;
//   - a version whose Depends nothing could satisfy, or that fails to
//     install, loses its candidate for the rest of the run; what a failed
//     attempt pulled in stays selected until the end, when apt drops it as
//     garbage (nothing requested needs it);
//   - Conflicts and Breaks of a version being installed unselect what they
//     name, which fails if that is protected; a protected package's
//     Conflicts also rule out the candidates they name; protection spreads
//     from a request to a dependency that only one package satisfies.
//
// Where apt would leave breakage to its problem resolver (a package whose
// own Conflicts name a later selection, dependents of an unselected
// package), depsolve tries the other alternatives of a protected package's
// broken dependency and unselects broken packages that are not protected.
// That covers what the differential test against apt meets; apt's scored
// resolver can decide otherwise in tangled cases. Recommends and Suggests
// are not installed.
package depsolve

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/image-builder-action/image-builder-action/pkg/repo"
)

// Request is what to resolve.
type Request struct {
	// Arch is the dpkg architecture to install for (amd64, arm64).
	Arch string
	// Install names packages to install: "name", "name=version",
	// "name=1.22.*" (a version glob; the highest match wins), "name:arch"
	// (arch must be Arch, "all" or "native"), or "name:arch=version".
	Install []string
	// Exclude names packages never to pick. Excluding an Essential
	// package or a package named in Install is an error; excluding a
	// Priority: required package drops it from the base; resolution
	// that cannot do without an excluded package fails.
	Exclude []string
}

// Solution is a closed, installable package set.
type Solution struct {
	// Packages are the chosen versions, sorted by name. They point into
	// the slice the Universe was built from.
	Packages []*repo.Package
}

// NotFoundError reports a requested name that no repository has, neither as
// a package nor as a virtual package.
type NotFoundError struct {
	Name string
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("package %q not found in any repository", e.Name)
}

// UnsatisfiableError reports a requested package that cannot be installed,
// with the chain of dependencies that leads to the failure.
type UnsatisfiableError struct {
	// Package is the requested package.
	Package string
	// Reason says what failed at the end of the chain, e.g.
	// "nginx-common (>= 1.22.1-9) depends on foo (>= 3) but only 2.1 is available".
	Reason string
	// Chain names the packages from the requested one to the one that
	// cannot be had.
	Chain []string
}

func (e *UnsatisfiableError) Error() string {
	return fmt.Sprintf("cannot install %s: %s (%s)", e.Package, e.Reason, strings.Join(e.Chain, " → "))
}

// ErrArch is returned when a request's architecture is not the universe's.
var ErrArch = errors.New("architecture mismatch")

// Solve resolves req over pkgs. To resolve several requests over the same
// packages, build a Universe once and call its Solve.
func Solve(ctx context.Context, pkgs []repo.Package, req Request) (*Solution, error) {
	if req.Arch == "" {
		return nil, fmt.Errorf("resolving packages: request has no architecture")
	}
	return NewUniverse(pkgs, req.Arch).Solve(ctx, req)
}

// Base returns the packages every solution starts from, sorted by name:
// those whose candidate is Essential: yes or Priority: required. It is what
// `mmdebstrap --variant=required` installs (its essential set plus
// ?priority(required)) before anything else.
func (u *Universe) Base() []string {
	var out []string
	for id, c := range u.cand {
		if c >= 0 && (u.pkgs[c].Essential || u.pkgs[c].Priority == "required") {
			out = append(out, u.names[id])
		}
	}
	sort.Strings(out)
	return out
}

// CommandLine returns the package list Solve resolves for req, in order: the
// base (Base, less what req excludes or names itself) followed by
// req.Install. `apt-get install --no-install-recommends` given this list on a
// system with an empty dpkg status selects what Solve selects.
func (u *Universe) CommandLine(req Request) []string {
	named := map[string]bool{}
	for _, s := range req.Install {
		named[requestName(s)] = true
	}
	excluded := map[string]bool{}
	for _, s := range req.Exclude {
		excluded[s] = true
	}
	var out []string
	for _, n := range u.Base() {
		if !named[n] && !excluded[n] {
			out = append(out, n)
		}
	}
	return append(out, req.Install...)
}

// requestName is the package name of an Install entry.
func requestName(s string) string {
	if i := strings.IndexByte(s, '='); i >= 0 {
		s = s[:i]
	}
	if i := strings.IndexByte(s, ':'); i >= 0 {
		s = s[:i]
	}
	return s
}

// Solve resolves req: the base (see Base) plus req.Install, as one apt-get
// install command line (see CommandLine).
func (u *Universe) Solve(ctx context.Context, req Request) (*Solution, error) {
	if req.Arch != u.arch {
		return nil, fmt.Errorf("resolving packages for %s over a %s universe: %w", req.Arch, u.arch, ErrArch)
	}
	return u.solve(ctx, req, true)
}

// solve is Solve with the base optional: the differential test also
// resolves bare requests, as apt-get install does on an empty system.
func (u *Universe) solve(ctx context.Context, req Request, withBase bool) (*Solution, error) {
	s := &solver{
		u:      u,
		ctx:    ctx,
		cand:   append([]int32(nil), u.cand...),
		flags:  make([]uint8, len(u.names)),
		deps:   map[int32]*relations{},
		why:    map[int32]*failure{},
		ousted: map[int32]ouster{},
		broke:  map[int32]breakage{},
	}
	for _, name := range req.Exclude {
		id, ok := u.ids[name]
		if !ok {
			continue // nothing to keep out
		}
		if s.cand[id] >= 0 && u.ess[id] && name != "apt" {
			return nil, fmt.Errorf("excluding %s: it is Essential", name)
		}
		s.flags[id] |= fExcluded
		s.setCand(id, -1)
	}

	var list []string
	if withBase {
		list = u.CommandLine(req)
	} else {
		list = req.Install
	}
	// Parse the command line first: pins change candidates, which every
	// later step sees (apt: SetCandidateVersion before any marking).
	var users []int32
	seen := map[int32]bool{}
	for _, arg := range list {
		id, err := s.resolveArg(arg)
		if err != nil {
			return nil, err
		}
		if !seen[id] {
			seen[id] = true
			users = append(users, id)
		}
	}
	s.initCand = append([]int32(nil), s.cand...)

	// apt-get: protect and mark every request without its dependencies,
	// then resolve them in command-line order.
	for _, id := range users {
		s.flags[id] |= fUser | fProtected
		s.markInstall(id, false, 0, true)
	}
	for _, id := range users {
		s.markInstall(id, true, 0, true)
		if s.err != nil {
			return nil, s.err
		}
	}
	if err := s.settle(users); err != nil {
		return nil, err
	}

	sol := &Solution{}
	for id, f := range s.flags {
		if f&fMarked != 0 {
			sol.Packages = append(sol.Packages, &u.pkgs[s.cand[id]])
		}
	}
	sort.Slice(sol.Packages, func(i, j int) bool { return sol.Packages[i].Name < sol.Packages[j].Name })
	return sol, nil
}

// resolveArg turns one command-line entry into a package id, pinning its
// candidate when the entry names a version.
func (s *solver) resolveArg(arg string) (int32, error) {
	name, ver, hasVer := strings.Cut(arg, "=")
	if n, a, ok := strings.Cut(name, ":"); ok {
		switch a {
		case s.u.arch, "all", "native":
		default:
			return 0, fmt.Errorf("package %q: architecture %s is not %s", arg, a, s.u.arch)
		}
		name = n
	}
	if name == "" || (hasVer && ver == "") {
		return 0, fmt.Errorf("bad package request %q", arg)
	}
	id, ok := s.u.ids[name]
	if ok {
		if err := s.u.badVer[id]; err != nil {
			return 0, err
		}
	}
	if ok && s.flags[id]&fExcluded != 0 {
		return 0, fmt.Errorf("package %q is both requested and excluded", name)
	}
	if !ok || s.cand[id] < 0 {
		// apt-get: a name without a candidate may be a virtual package
		// with exactly one provider.
		if hasVer {
			if !ok {
				return 0, &NotFoundError{Name: name}
			}
		} else {
			var provs []int32
			for _, p := range s.providers(name) {
				if s.cand[p.pkg] == p.stanza && !containsID(provs, p.pkg) {
					provs = append(provs, p.pkg)
				}
			}
			switch {
			case len(provs) == 1:
				return provs[0], nil
			case len(provs) > 1:
				names := make([]string, len(provs))
				for i, p := range provs {
					names[i] = s.u.names[p]
				}
				sort.Strings(names)
				return 0, fmt.Errorf("package %q is a virtual package provided by %s: request one of them", name, strings.Join(names, ", "))
			case !ok:
				return 0, &NotFoundError{Name: name}
			}
		}
	}
	if !hasVer {
		if s.cand[id] < 0 {
			return 0, &NotFoundError{Name: name}
		}
		return id, nil
	}
	glob := strings.ContainsAny(ver, "*?[")
	if glob {
		if _, err := path.Match(ver, ""); err != nil {
			return 0, fmt.Errorf("package %q: bad version pattern %q: %w", name, ver, err)
		}
	}
	var avail []string
	for _, st := range s.u.vers[id] { // best first, so the highest match wins
		v := s.u.pkgs[st].Version
		avail = append(avail, v)
		match := strings.EqualFold(v, ver) // apt compares versions case-insensitively here
		if glob {
			match, _ = path.Match(ver, v)
		}
		if !match && !strings.Contains(ver, ":") && strings.Contains(v, ":") {
			// A request without an epoch matches the version without
			// its epoch, as composer's RPM requests do ("9.*" matches
			// 1:9.2p1-2): apt alone would need the epoch.
			_, bare, _ := strings.Cut(v, ":")
			match = strings.EqualFold(bare, ver)
			if glob {
				match, _ = path.Match(ver, bare)
			}
		}
		if match {
			s.setCand(id, st)
			return id, nil
		}
	}
	return 0, fmt.Errorf("package %q: no version matches %q (available: %s)", name, ver, strings.Join(avail, ", "))
}

func containsID(ids []int32, id int32) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}
