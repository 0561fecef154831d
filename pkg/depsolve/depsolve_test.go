package depsolve

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/image-builder-action/image-builder-action/pkg/repo"
)

// index builds packages from deb822-like text: stanzas separated by blank
// lines, "Field: value" lines. Architecture defaults to amd64; "Origin: N"
// sets the origin.
func index(t *testing.T, text string) []repo.Package {
	t.Helper()
	var out []repo.Package
	for _, para := range strings.Split(strings.TrimSpace(text), "\n\n") {
		p := repo.Package{Architecture: "amd64"}
		for _, line := range strings.Split(strings.TrimSpace(para), "\n") {
			k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
			if !ok {
				t.Fatalf("bad line %q", line)
			}
			v = strings.TrimSpace(v)
			switch k {
			case "Package":
				p.Name = v
			case "Version":
				p.Version = v
			case "Architecture":
				p.Architecture = v
			case "Multi-Arch":
				p.MultiArch = v
			case "Essential":
				p.Essential = v == "yes"
			case "Priority":
				p.Priority = v
			case "Depends":
				p.Depends = v
			case "Pre-Depends":
				p.PreDepends = v
			case "Provides":
				p.Provides = v
			case "Conflicts":
				p.Conflicts = v
			case "Breaks":
				p.Breaks = v
			case "Recommends":
				p.Recommends = v
			case "Origin":
				n, err := strconv.Atoi(v)
				if err != nil {
					t.Fatal(err)
				}
				p.Origin = n
			default:
				t.Fatalf("unknown field %q", k)
			}
		}
		p.Filename = fmt.Sprintf("pool/%s_%s_%s.deb", p.Name, p.Version, p.Architecture)
		out = append(out, p)
	}
	return out
}

// names renders a solution as name=version, sorted.
func names(sol *Solution) []string {
	var out []string
	for _, p := range sol.Packages {
		out = append(out, p.Name+"="+p.Version)
	}
	return out
}

// solveBare resolves without the base, as apt-get install does on an empty
// system.
func solveBare(t *testing.T, pkgs []repo.Package, install ...string) (*Solution, error) {
	t.Helper()
	return NewUniverse(pkgs, "amd64").solve(context.Background(), Request{Arch: "amd64", Install: install}, false)
}

func TestSolveSemantics(t *testing.T) {
	tests := []struct {
		name    string
		index   string
		install []string
		exclude []string
		want    []string // name=version, sorted
		wantErr string   // substring of the error
	}{{
		name: "depends chain",
		index: `Package: a
Version: 1
Depends: b

Package: b
Version: 2
Pre-Depends: c (>= 1)

Package: c
Version: 3

Package: unrelated
Version: 1`,
		install: []string{"a"},
		want:    []string{"a=1", "b=2", "c=3"},
	}, {
		name: "candidate is the highest version",
		index: `Package: a
Version: 1.0-1

Package: a
Version: 1.0-10

Package: a
Version: 1:0.1`,
		install: []string{"a"},
		want:    []string{"a=1:0.1"},
	}, {
		name: "first alternative that installs",
		index: `Package: a
Version: 1
Depends: missing | b | c

Package: b
Version: 1

Package: c
Version: 1`,
		install: []string{"a"},
		want:    []string{"a=1", "b=1"},
	}, {
		name: "alternative already selected wins",
		index: `Package: a
Version: 1
Depends: b | c

Package: b
Version: 1

Package: c
Version: 1`,
		install: []string{"a", "c"},
		want:    []string{"a=1", "c=1"},
	}, {
		name: "alternative whose dependencies fail is skipped",
		index: `Package: a
Version: 1
Depends: b | c

Package: b
Version: 1
Depends: d (>= 2)

Package: d
Version: 1

Package: c
Version: 1`,
		install: []string{"a"},
		want:    []string{"a=1", "c=1"},
	}, {
		name: "what a failed alternative pulled in is garbage",
		index: `Package: a
Version: 1
Depends: b | c

Package: b
Version: 1
Depends: d, e

Package: d
Version: 1

Package: e
Version: 1
Depends: f (>= 2)

Package: f
Version: 1

Package: c
Version: 1`,
		install: []string{"a"},
		want:    []string{"a=1", "c=1"},
	}, {
		name: "version relations",
		index: `Package: a
Version: 1
Depends: lt (<< 2), le (<= 2), eq (= 2), ge (>= 2), gt (>> 2)

Package: lt
Version: 1.9

Package: le
Version: 2

Package: eq
Version: 2

Package: ge
Version: 2

Package: gt
Version: 2.0.1`,
		install: []string{"a"},
		want:    []string{"a=1", "eq=2", "ge=2", "gt=2.0.1", "le=2", "lt=1.9"},
	}, {
		name: "only candidates are installed",
		index: `Package: a
Version: 1
Depends: b (<< 2)

Package: b
Version: 1

Package: b
Version: 2`,
		install: []string{"a"},
		wantErr: "cannot install a: a depends on b (<< 2) but only 2 is available (a → b)",
	}, {
		name: "unsatisfiable chain names it",
		index: `Package: nginx
Version: 1.22.1-9
Depends: nginx-common (>= 1.22.1-9)

Package: nginx-common
Version: 1.22.1-9
Depends: foo (>= 3)

Package: foo
Version: 2.1`,
		install: []string{"nginx"},
		wantErr: "cannot install nginx: nginx-common (>= 1.22.1-9) depends on foo (>= 3) but only 2.1 is available (nginx → nginx-common → foo)",
	}, {
		name: "missing dependency",
		index: `Package: a
Version: 1
Depends: gone`,
		install: []string{"a"},
		wantErr: "cannot install a: a depends on gone but it is not available (a → gone)",
	}, {
		name:    "unknown package",
		index:   "Package: a\nVersion: 1",
		install: []string{"nope"},
		wantErr: `package "nope" not found in any repository`,
	}, {
		name: "virtual package with one provider",
		index: `Package: a
Version: 1
Depends: mta

Package: exim
Version: 4
Provides: mta`,
		install: []string{"a"},
		want:    []string{"a=1", "exim=4"},
	}, {
		name: "providers sorted by priority",
		index: `Package: a
Version: 1
Depends: mta

Package: postfix
Version: 3
Priority: optional
Provides: mta

Package: exim
Version: 4
Priority: standard
Provides: mta`,
		install: []string{"a"},
		want:    []string{"a=1", "exim=4"},
	}, {
		name: "essential provider first",
		index: `Package: a
Version: 1
Depends: awk

Package: gawk
Version: 5
Priority: optional
Provides: awk

Package: mawk
Version: 1.3
Priority: optional
Essential: yes
Provides: awk`,
		install: []string{"a"},
		want:    []string{"a=1", "mawk=1.3"},
	}, {
		name: "real package before providers",
		index: `Package: a
Version: 1
Depends: foo

Package: bar
Version: 1
Priority: required
Provides: foo

Package: foo
Version: 1
Priority: optional`,
		install: []string{"a"},
		want:    []string{"a=1", "foo=1"},
	}, {
		name: "equal providers: the one apt numbers last",
		index: `Package: a
Version: 1
Depends: virt

Package: p1
Version: 1
Provides: virt

Package: p2
Version: 1
Provides: virt`,
		install: []string{"a"},
		want:    []string{"a=1", "p2=1"},
	}, {
		name: "versioned provides",
		index: `Package: a
Version: 1
Depends: libfoo (>= 2)

Package: old
Version: 1
Provides: libfoo

Package: new
Version: 1
Provides: libfoo (= 2.5)`,
		install: []string{"a"},
		want:    []string{"a=1", "new=1"},
	}, {
		name: "unversioned provides do not satisfy a versioned dependency",
		index: `Package: a
Version: 1
Depends: libfoo (>= 2)

Package: old
Version: 1
Provides: libfoo`,
		install: []string{"a"},
		wantErr: "a depends on libfoo (>= 2) but only old provides unversioned",
	}, {
		name: "requested virtual package with one provider",
		index: `Package: exim
Version: 4
Provides: mta`,
		install: []string{"mta"},
		want:    []string{"exim=4"},
	}, {
		name: "requested virtual package with several providers",
		index: `Package: exim
Version: 4
Provides: mta

Package: postfix
Version: 3
Provides: mta`,
		install: []string{"mta"},
		wantErr: `package "mta" is a virtual package provided by exim, postfix: request one of them`,
	}, {
		name: "conflicting alternative is skipped",
		index: `Package: a
Version: 1
Depends: b | c

Package: b
Version: 1
Conflicts: x

Package: c
Version: 1

Package: x
Version: 1`,
		install: []string{"x", "a"},
		want:    []string{"a=1", "c=1", "x=1"},
	}, {
		name: "breaks works like conflicts",
		index: `Package: a
Version: 1
Depends: b | c

Package: b
Version: 1
Breaks: x (<< 2)

Package: c
Version: 1

Package: x
Version: 1`,
		install: []string{"x", "a"},
		want:    []string{"a=1", "c=1", "x=1"},
	}, {
		name: "breaks with an unmet version does not conflict",
		index: `Package: a
Version: 1
Depends: b | c

Package: b
Version: 1
Breaks: x (<< 1)

Package: c
Version: 1

Package: x
Version: 1`,
		install: []string{"x", "a"},
		want:    []string{"a=1", "b=1", "x=1"},
	}, {
		name: "a requested package rules out what it conflicts with",
		index: `Package: a
Version: 1
Depends: b | c

Package: b
Version: 1

Package: c
Version: 1

Package: x
Version: 1
Conflicts: b`,
		install: []string{"x", "a"},
		want:    []string{"a=1", "c=1", "x=1"},
	}, {
		name: "a later request's conflict is repaired with the next alternative",
		index: `Package: a
Version: 1
Depends: b | c

Package: b
Version: 1

Package: c
Version: 1

Package: x
Version: 1
Conflicts: b`,
		install: []string{"a", "x"},
		want:    []string{"a=1", "c=1", "x=1"},
	}, {
		name: "conflict unselects a replaced package",
		index: `Package: base
Version: 1
Depends: libsys (>= 1)

Package: libsys
Version: 252

Package: tool
Version: 1
Depends: libelog

Package: libelog
Version: 246
Conflicts: libsys
Provides: libsys (= 246)`,
		install: []string{"base", "tool"},
		want:    []string{"base=1", "libelog=246", "tool=1"},
	}, {
		name: "two requests that conflict",
		index: `Package: exim
Version: 4
Conflicts: mta
Provides: mta

Package: postfix
Version: 3
Conflicts: mta
Provides: mta`,
		install: []string{"exim", "postfix"},
		wantErr: "cannot install exim: exim conflicts with postfix 3, also selected (Conflicts: mta) (exim → postfix)",
	}, {
		name: "self-conflict through provides is ignored",
		index: `Package: a
Version: 1
Provides: virt
Conflicts: virt`,
		install: []string{"a"},
		want:    []string{"a=1"},
	}, {
		name: "multi-arch any needs allowed",
		index: `Package: a
Version: 1
Depends: python3:any (>= 3.11), perl:any

Package: python3
Version: 3.11.2
Multi-Arch: allowed

Package: perl
Version: 5.36
Multi-Arch: allowed`,
		install: []string{"a"},
		want:    []string{"a=1", "perl=5.36", "python3=3.11.2"},
	}, {
		name: "multi-arch any is not met by a package without allowed",
		index: `Package: a
Version: 1
Depends: tool:any

Package: tool
Version: 1
Multi-Arch: foreign`,
		install: []string{"a"},
		wantErr: "a depends on tool:any but tool is not Multi-Arch: allowed",
	}, {
		name: "multi-arch any through an allowed package's provides",
		index: `Package: a
Version: 1
Depends: python3-api:any

Package: python3
Version: 3.11
Multi-Arch: allowed
Provides: python3-api`,
		install: []string{"a"},
		want:    []string{"a=1", "python3=3.11"},
	}, {
		name: "native and own-arch qualifiers, arch all",
		index: `Package: a
Version: 1
Depends: b:native, c:amd64

Package: b
Version: 1

Package: c
Version: 1
Architecture: all`,
		install: []string{"a"},
		want:    []string{"a=1", "b=1", "c=1"},
	}, {
		name: "foreign arch qualifier cannot be met",
		index: `Package: a
Version: 1
Depends: b:arm64

Package: b
Version: 1`,
		install: []string{"a"},
		wantErr: "a depends on b:arm64 but arm64 is not an architecture being installed (amd64)",
	}, {
		name: "other architectures are not in the universe",
		index: `Package: a
Version: 1
Depends: b

Package: b
Version: 9
Architecture: arm64

Package: b
Version: 1`,
		install: []string{"a"},
		want:    []string{"a=1", "b=1"},
	}, {
		name: "pinned version",
		index: `Package: a
Version: 2
Depends: b

Package: a
Version: 1
Depends: c

Package: b
Version: 1

Package: c
Version: 1`,
		install: []string{"a=1"},
		want:    []string{"a=1", "c=1"},
	}, {
		name: "version glob picks the highest match",
		index: `Package: go
Version: 1.21.3

Package: go
Version: 1.22.1

Package: go
Version: 1.22.7

Package: go
Version: 1.23.0`,
		install: []string{"go=1.22.*"},
		want:    []string{"go=1.22.7"},
	}, {
		name:    "no version matches",
		index:   "Package: go\nVersion: 1.21.3",
		install: []string{"go=1.22.*"},
		wantErr: `package "go": no version matches "1.22.*" (available: 1.21.3)`,
	}, {
		name: "a pin changes what dependencies see",
		index: `Package: a
Version: 1
Depends: b (<< 2)

Package: b
Version: 2

Package: b
Version: 1.5`,
		install: []string{"a", "b=1.5"},
		want:    []string{"a=1", "b=1.5"},
	}, {
		name: "arch-qualified request",
		index: `Package: a
Version: 1

Package: b
Version: 1
Architecture: all`,
		install: []string{"a:amd64", "b:all"},
		want:    []string{"a=1", "b=1"},
	}, {
		name:    "request for another arch",
		index:   "Package: a\nVersion: 1",
		install: []string{"a:arm64"},
		wantErr: `package "a:arm64": architecture arm64 is not amd64`,
	}, {
		name: "excluded package is never picked",
		index: `Package: a
Version: 1
Depends: b | c

Package: b
Version: 1

Package: c
Version: 1`,
		install: []string{"a"},
		exclude: []string{"b"},
		want:    []string{"a=1", "c=1"},
	}, {
		name: "excluded package that is needed",
		index: `Package: a
Version: 1
Depends: b

Package: b
Version: 1`,
		install: []string{"a"},
		exclude: []string{"b"},
		wantErr: "cannot install a: a depends on b but it is excluded (a → b)",
	}, {
		name:    "excluded and requested",
		index:   "Package: a\nVersion: 1",
		install: []string{"a"},
		exclude: []string{"a"},
		wantErr: `package "a" is both requested and excluded`,
	}, {
		name: "Recommends are not installed",
		index: `Package: a
Version: 1
Recommends: b

Package: b
Version: 1`,
		install: []string{"a"},
		want:    []string{"a=1"},
	}, {
		name: "dependency cycle",
		index: `Package: a
Version: 1
Depends: b

Package: b
Version: 1
Depends: a`,
		install: []string{"a"},
		want:    []string{"a=1", "b=1"},
	}, {
		name: "architecture restriction in a binary index is refused",
		index: `Package: a
Version: 1
Depends: b [amd64]

Package: b
Version: 1`,
		install: []string{"a"},
		wantErr: `package a 1: Depends: architecture restriction in a binary package index: "b [amd64]"`,
	}, {
		name: "build profile in a binary index is refused",
		index: `Package: a
Version: 1
Depends: b <!nocheck>

Package: b
Version: 1`,
		install: []string{"a"},
		wantErr: `package a 1: Depends: build profile in a binary package index: "b <!nocheck>"`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkgs := index(t, tt.index)
			// apt itself must agree with each expectation (apt-get has
			// no Exclude).
			if len(tt.exclude) == 0 {
				t.Run("apt agrees", func(t *testing.T) {
					t.Parallel()
					aptOracleLimit <- struct{}{}
					defer func() { <-aptOracleLimit }()
					got, err := aptOracle(t, pkgs, tt.install)
					switch {
					case tt.wantErr != "" && err == nil:
						t.Errorf("apt installs %v; depsolve expects an error", got)
					case tt.wantErr == "" && err != nil:
						t.Errorf("apt fails: %v", err)
					case tt.wantErr == "":
						if diff := cmp.Diff(tt.want, got); diff != "" {
							t.Errorf("apt's solution (-depsolve +apt):\n%s", diff)
						}
					}
				})
			}
			u := NewUniverse(pkgs, "amd64")
			sol, err := u.solve(context.Background(), Request{Arch: "amd64", Install: tt.install, Exclude: tt.exclude}, false)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("got %v, want an error containing %q", names(sol), tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %q, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, names(sol)); diff != "" {
				t.Errorf("solution (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEqualVersionsFirstOriginWins(t *testing.T) {
	pkgs := index(t, `Package: a
Version: 1
Origin: 0

Package: a
Version: 1
Origin: 1

Package: b
Version: 2
Origin: 1

Package: b
Version: 1
Origin: 0`)
	sol, err := solveBare(t, pkgs, "a", "b")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, p := range sol.Packages {
		got[p.Name+"="+p.Version] = p.Origin
	}
	if diff := cmp.Diff(map[string]int{"a=1": 0, "b=2": 1}, got); diff != "" {
		t.Errorf("origins (-want +got):\n%s", diff)
	}
}

func TestBase(t *testing.T) {
	pkgs := index(t, `Package: bash
Version: 5
Essential: yes
Priority: required
Depends: libc

Package: libc
Version: 2
Priority: optional

Package: mawk
Version: 1
Priority: required

Package: e2fsprogs
Version: 1
Priority: required

Package: vim
Version: 9
Priority: optional

Package: nginx
Version: 1
Depends: libc`)
	u := NewUniverse(pkgs, "amd64")
	if diff := cmp.Diff([]string{"bash", "e2fsprogs", "mawk"}, u.Base()); diff != "" {
		t.Errorf("Base (-want +got):\n%s", diff)
	}
	req := Request{Arch: "amd64", Install: []string{"nginx", "mawk"}, Exclude: []string{"e2fsprogs"}}
	if diff := cmp.Diff([]string{"bash", "nginx", "mawk"}, u.CommandLine(req)); diff != "" {
		t.Errorf("CommandLine (-want +got):\n%s", diff)
	}
	sol, err := u.Solve(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"bash=5", "libc=2", "mawk=1", "nginx=1"}, names(sol)); diff != "" {
		t.Errorf("Solve (-want +got):\n%s", diff)
	}
	_, err = u.Solve(context.Background(), Request{Arch: "amd64", Exclude: []string{"bash"}})
	if err == nil || !strings.Contains(err.Error(), "excluding bash: it is Essential") {
		t.Errorf("excluding an Essential package: got %v", err)
	}
	_, err = u.Solve(context.Background(), Request{Arch: "arm64"})
	if !errors.Is(err, ErrArch) {
		t.Errorf("solving for another arch: got %v, want ErrArch", err)
	}
}

func TestErrorsAreTyped(t *testing.T) {
	pkgs := index(t, "Package: a\nVersion: 1\nDepends: b (>= 2)\n\nPackage: b\nVersion: 1")
	_, err := solveBare(t, pkgs, "nope")
	var nf *NotFoundError
	if !errors.As(err, &nf) || nf.Name != "nope" {
		t.Errorf("got %v, want a NotFoundError for nope", err)
	}
	_, err = solveBare(t, pkgs, "a")
	var ue *UnsatisfiableError
	if !errors.As(err, &ue) {
		t.Fatalf("got %v, want an UnsatisfiableError", err)
	}
	if diff := cmp.Diff(&UnsatisfiableError{Package: "a", Reason: "a depends on b (>= 2) but only 1 is available", Chain: []string{"a", "b"}}, ue); diff != "" {
		t.Errorf("error (-want +got):\n%s", diff)
	}
}

func TestDeterministic(t *testing.T) {
	var text []string
	// Many equal providers and alternatives: the answer must not depend on
	// map order.
	for i := 0; i < 30; i++ {
		text = append(text, fmt.Sprintf("Package: p%02d\nVersion: 1\nProvides: virt\nDepends: v%d | w%d", i, i%3, i%5))
		text = append(text, fmt.Sprintf("Package: v%d\nVersion: 1\nProvides: w%d", i, i))
	}
	text = append(text, "Package: top\nVersion: 1\nDepends: virt, w1 | v1, w2")
	pkgs := index(t, strings.Join(text, "\n\n"))
	var first []string
	for i := 0; i < 20; i++ {
		sol, err := solveBare(t, pkgs, "top")
		if err != nil {
			t.Fatal(err)
		}
		got := names(sol)
		if i == 0 {
			first = got
			if !sort.StringsAreSorted(got) {
				t.Errorf("not sorted by name: %v", got)
			}
		} else if diff := cmp.Diff(first, got); diff != "" {
			t.Fatalf("run %d differs (-first +got):\n%s", i, diff)
		}
	}
}

func TestCancelled(t *testing.T) {
	var text []string
	for i := 0; i < 3000; i++ {
		text = append(text, fmt.Sprintf("Package: p%d\nVersion: 1\nDepends: p%d", i, i+1))
	}
	text = append(text, "Package: p3000\nVersion: 1")
	u := NewUniverse(index(t, strings.Join(text, "\n\n")), "amd64")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := u.Solve(ctx, Request{Arch: "amd64", Install: []string{"p0"}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}

func TestParseRelations(t *testing.T) {
	tests := []struct {
		in      string
		want    string // groups joined by ", ", alternatives rendered name/qual/op/ver
		wantErr string
	}{
		{in: "a", want: "a"},
		{in: "a (>= 1.0), b | c:any (<< 2), d:native, e:amd64 (= 1:2-3), f:arm64",
			want: "a>=1.0, b|c:any<<2, d:native, e:native=1:2-3, f:foreign"},
		{in: "a (<= 1), b (< 1), c (> 1), d (>> 1),", want: "a<=1, b<=1, c>=1, d>>1"},
		{in: "  a  (  >=  1  )  ", want: "a>=1"},
		{in: "a (>= 1", wantErr: "unterminated"},
		{in: "a (1)", wantErr: "missing relation operator"},
		{in: "a, , b", wantErr: "empty relation"},
		{in: "a | | b", wantErr: "empty alternative"},
		{in: "a [amd64]", wantErr: "architecture restriction"},
		{in: "a <!nocheck>", wantErr: "build profile"},
		{in: "a b", wantErr: "unexpected"},
		{in: "Ä", wantErr: "invalid package name"},
	}
	quals := [...]string{"", ":any", ":native", ":foreign"}
	for _, tt := range tests {
		gs, err := parseRelations(tt.in, "amd64", true)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseRelations(%q): got %v, want error containing %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseRelations(%q): %v", tt.in, err)
			continue
		}
		var rels []string
		for _, g := range gs {
			var alts []string
			for _, p := range g {
				alts = append(alts, p.name+quals[p.qual]+p.op.String()+p.ver)
			}
			rels = append(rels, strings.Join(alts, "|"))
		}
		if got := strings.Join(rels, ", "); got != tt.want {
			t.Errorf("parseRelations(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if _, err := parseRelations("a | b", "amd64", false); err == nil {
		t.Error("alternatives accepted where they are not allowed")
	}
}

// Pin priorities choose the candidate as apt does: the highest priority
// first, then the highest version; below 0 never.
func TestPinnedUniverse(t *testing.T) {
	pkgs := index(t, `Package: tool
Version: 2

Package: tool
Version: 1

Package: lib
Version: 3

Package: lib
Version: 4`)
	// Source a has tool 2 and lib 3, source b tool 1 and lib 4.
	for i := range pkgs {
		pkgs[i].Origin = i % 2
	}
	for _, tc := range []struct {
		pins map[int]int // origin → priority
		want []string
	}{
		{nil, []string{"lib=4", "tool=2"}},
		{map[int]int{1: 600}, []string{"lib=4", "tool=1"}},
		{map[int]int{0: 990}, []string{"lib=3", "tool=2"}},
		{map[int]int{0: -1}, []string{"lib=4", "tool=1"}},
	} {
		u := NewPinnedUniverse(pkgs, "amd64", func(p *repo.Package) int {
			if v, ok := tc.pins[p.Origin]; ok {
				return v
			}
			return 500
		})
		sol, err := u.Solve(context.Background(), Request{Arch: "amd64", Install: []string{"tool", "lib"}})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tc.want, names(sol)); diff != "" {
			t.Errorf("pins %v (-want +got):\n%s", tc.pins, diff)
		}
	}
}
