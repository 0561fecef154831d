package depsolve

import (
	"fmt"
	"strings"

	"pault.ag/go/debian/version"
)

// op is a version relation operator of Debian policy §7.1.
type op uint8

const (
	opNone op = iota
	opLT      // <<
	opLE      // <= (also the obsolete <)
	opEQ      // =
	opGE      // >= (also the obsolete >)
	opGT      // >>
)

func (o op) String() string {
	return [...]string{"", "<<", "<=", "=", ">=", ">>"}[o]
}

// qual is what an architecture qualifier on a relation means in a
// single-architecture universe.
type qual uint8

const (
	qualNone    qual = iota // foo
	qualAny                 // foo:any — only Multi-Arch: allowed packages satisfy it
	qualNative              // foo:native or foo:<the universe's arch>
	qualForeign             // foo:<another arch> — nothing in this universe satisfies it
)

// possibility is one alternative of a relation: name[:arch] [(op version)].
type possibility struct {
	name string // without the qualifier
	qual qual
	op   op
	ver  string
	v    version.Version // ver parsed (by solver.depsOf)
	text string          // as written in the index, for messages
}

// group is an or-group: a | b | c.
type group []possibility

func (g group) String() string {
	parts := make([]string, len(g))
	for i, p := range g {
		parts[i] = p.text
	}
	return strings.Join(parts, " | ")
}

// parseRelations parses a Depends-like field of a binary package index.
// Architecture restrictions ([amd64]) and build profiles (<!nocheck>) belong
// to source packages only: apt refuses them in a binary index, and so does
// this parser.
func parseRelations(s, arch string, allowOr bool) ([]group, error) {
	var out []group
	for len(s) > 0 {
		var rel string
		if i := strings.IndexByte(s, ','); i >= 0 {
			rel, s = s[:i], s[i+1:]
		} else {
			rel, s = s, ""
		}
		if strings.TrimSpace(rel) == "" {
			if strings.TrimSpace(s) == "" && len(out) > 0 {
				break // a trailing comma is harmless
			}
			return nil, fmt.Errorf("empty relation")
		}
		var g group
		for {
			var alt string
			if i := strings.IndexByte(rel, '|'); i >= 0 {
				alt, rel = rel[:i], rel[i+1:]
			} else {
				alt, rel = rel, ""
			}
			p, err := parsePossibility(alt, arch)
			if err != nil {
				return nil, err
			}
			g = append(g, p)
			if rel == "" {
				break
			}
			if !allowOr {
				return nil, fmt.Errorf("alternatives (|) are not allowed here: %q", strings.TrimSpace(alt)+" |")
			}
		}
		out = append(out, g)
	}
	return out, nil
}

// parsePossibility parses "name[:arch] [(op version)]".
func parsePossibility(s, arch string) (possibility, error) {
	text := strings.TrimSpace(s)
	t := text
	if t == "" {
		return possibility{}, fmt.Errorf("empty alternative")
	}
	end := strings.IndexAny(t, " \t(")
	if end < 0 {
		end = len(t)
	}
	full := t[:end]
	rest := strings.TrimSpace(t[end:])
	p := possibility{text: text}
	p.name = full
	if i := strings.IndexByte(full, ':'); i >= 0 {
		p.name = full[:i]
		switch a := full[i+1:]; a {
		case "any":
			p.qual = qualAny
		case "native", arch:
			p.qual = qualNative
		case "":
			return possibility{}, fmt.Errorf("empty architecture qualifier in %q", text)
		default:
			p.qual = qualForeign
		}
	}
	if !validName(p.name) {
		return possibility{}, fmt.Errorf("invalid package name %q in %q", p.name, text)
	}
	if rest == "" {
		return p, nil
	}
	switch rest[0] {
	case '[':
		return possibility{}, fmt.Errorf("architecture restriction in a binary package index: %q", text)
	case '<':
		return possibility{}, fmt.Errorf("build profile in a binary package index: %q", text)
	case '(':
	default:
		return possibility{}, fmt.Errorf("unexpected %q after package name in %q", rest, text)
	}
	closeIdx := strings.IndexByte(rest, ')')
	if closeIdx < 0 {
		return possibility{}, fmt.Errorf("unterminated version relation in %q", text)
	}
	if tail := strings.TrimSpace(rest[closeIdx+1:]); tail != "" {
		return possibility{}, fmt.Errorf("unexpected %q after version relation in %q", tail, text)
	}
	rel := strings.TrimSpace(rest[1:closeIdx])
	switch {
	case strings.HasPrefix(rel, "<<"):
		p.op, rel = opLT, rel[2:]
	case strings.HasPrefix(rel, "<="):
		p.op, rel = opLE, rel[2:]
	case strings.HasPrefix(rel, ">>"):
		p.op, rel = opGT, rel[2:]
	case strings.HasPrefix(rel, ">="):
		p.op, rel = opGE, rel[2:]
	case strings.HasPrefix(rel, "="):
		p.op, rel = opEQ, rel[1:]
	case strings.HasPrefix(rel, "<"): // obsolete, means <= (policy §7.1, apt)
		p.op, rel = opLE, rel[1:]
	case strings.HasPrefix(rel, ">"): // obsolete, means >=
		p.op, rel = opGE, rel[1:]
	default:
		return possibility{}, fmt.Errorf("missing relation operator in %q", text)
	}
	p.ver = strings.TrimSpace(rel)
	if p.ver == "" || strings.ContainsAny(p.ver, " \t") {
		return possibility{}, fmt.Errorf("bad version in %q", text)
	}
	return p, nil
}

// validName accepts Debian package names as apt does in practice: policy's
// [a-z0-9][a-z0-9+.-]+, plus upper case and underscores, which old indices
// carry.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', 'A' <= c && c <= 'Z':
		case c == '+' || c == '.' || c == '-' || c == '_':
		default:
			return false
		}
	}
	return true
}
