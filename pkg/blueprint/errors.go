package blueprint

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Error is one problem found in a blueprint: a syntax error, an unknown or
// mistyped field, or a value that fails validation. Parse returns either a
// single *Error or several joined with errors.Join; use Errors to get them
// back as a list (for annotations, say).
type Error struct {
	// File is the name the blueprint was parsed under; empty for a
	// blueprint built in code.
	File string
	// Line and Column locate the offending key (1-based); 0 when unknown.
	Line, Column int
	// Field is the dotted path of the field the message is about, with
	// array indexes: "customizations.user[1].uid". Empty for syntax errors
	// and for problems with the document as a whole.
	Field string
	// Msg says what is wrong.
	Msg string
}

// Error formats the error as "file:line:col: field: message", leaving out
// the parts that are unknown.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":" + strconv.Itoa(e.Line))
			if e.Column > 0 {
				b.WriteString(":" + strconv.Itoa(e.Column))
			}
		}
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors flattens err (as returned by Parse, Load or Validate) into the
// *Error values it holds, in document order. Errors that are not *Error
// (an unreadable file, say) are not included.
func Errors(err error) []*Error {
	var out []*Error
	var walk func(error)
	walk = func(err error) {
		if err == nil {
			return
		}
		var e *Error
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		if errors.As(err, &e) {
			out = append(out, e)
		}
	}
	walk(err)
	return out
}

// Position is a place in a blueprint file (1-based).
type Position struct {
	Line, Column int
}

// Source records where a parsed blueprint came from, so that code that
// refuses a field later (a distro that cannot honour it) can point at the
// line. It is nil for a blueprint built in code.
type Source struct {
	// File is the name the blueprint was parsed under.
	File string
	// Positions maps each field path present in the file, with array
	// indexes ("customizations.user[1].uid"), to the position of its key.
	Positions map[string]Position
}

// Position returns where field is in the file. field is a dotted path,
// with or without array indexes: "customizations.user[1].uid" names that
// exact key, "customizations.user.uid" the first one in the file. If the
// field itself is absent, the nearest enclosing field that is present is
// used. ok is false if nothing is known.
func (s *Source) Position(field string) (Position, bool) {
	if s == nil {
		return Position{}, false
	}
	for p := field; ; p = parentPath(p) {
		if pos, ok := s.Positions[p]; ok {
			return pos, true
		}
		if !strings.Contains(p, "[") {
			if pos, ok := s.firstUnindexed(p); ok {
				return pos, true
			}
		}
		if p == "" {
			return Position{}, false
		}
	}
}

// firstUnindexed finds the earliest position of any indexed path that reads
// as p once its indexes are removed.
func (s *Source) firstUnindexed(p string) (Position, bool) {
	var best Position
	found := false
	for k, pos := range s.Positions {
		if !strings.Contains(k, "[") || stripIndexes(k) != p {
			continue
		}
		if !found || pos.Line < best.Line || (pos.Line == best.Line && pos.Column < best.Column) {
			best, found = pos, true
		}
	}
	return best, found
}

// Errorf returns an *Error about field (a dotted path, see
// Source.Position) located in the blueprint's file when it came from one.
// Distros use it to refuse a customization by name.
func (b *Blueprint) Errorf(field, format string, args ...any) *Error {
	e := &Error{Field: field, Msg: fmt.Sprintf(format, args...)}
	if b != nil && b.Source != nil {
		e.File = b.Source.File
		if pos, ok := b.Source.Position(field); ok {
			e.Line, e.Column = pos.Line, pos.Column
		}
	}
	return e
}

// parentPath strips the last segment of a field path: "a.b[1]" -> "a.b",
// "a.b" -> "a", "a" -> "".
func parentPath(p string) string {
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndexByte(p, '['); i >= 0 {
			return p[:i]
		}
	}
	// A quoted last key may contain dots: find the dot before it.
	if strings.HasSuffix(p, `"`) {
		if i := strings.LastIndex(p, `."`); i >= 0 {
			return p[:i]
		}
		if strings.HasPrefix(p, `"`) {
			return ""
		}
	}
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return p[:i]
	}
	return ""
}

// stripIndexes removes array indexes from a field path.
func stripIndexes(p string) string {
	if !strings.Contains(p, "[") {
		return p
	}
	var b strings.Builder
	depth := 0
	for _, r := range p {
		switch {
		case r == '[':
			depth++
		case r == ']' && depth > 0:
			depth--
		case depth == 0:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// joinKey appends key to the field path p, quoting keys that are not plain
// identifiers so that paths stay unambiguous.
func joinKey(p, key string) string {
	k := key
	if !isBareKey(key) {
		k = strconv.Quote(key)
	}
	if p == "" {
		return k
	}
	return p + "." + k
}

func joinIndex(p string, i int) string {
	return p + "[" + strconv.Itoa(i) + "]"
}

func isBareKey(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// locate fills in file and positions on errors that lack them and returns
// them joined, in document order.
func locate(errs []*Error, src *Source) error {
	if len(errs) == 0 {
		return nil
	}
	for _, e := range errs {
		if src != nil {
			if e.File == "" {
				e.File = src.File
			}
			if e.Line == 0 {
				if pos, ok := src.Position(e.Field); ok {
					e.Line, e.Column = pos.Line, pos.Column
				}
			}
		}
	}
	sort.SliceStable(errs, func(i, j int) bool {
		a, b := errs[i], errs[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
	if len(errs) == 1 {
		return errs[0]
	}
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = e
	}
	return errors.Join(out...)
}

// lineIndex converts byte offsets into line and column numbers.
type lineIndex []int // offsets at which lines start

func newLineIndex(data []byte) lineIndex {
	li := lineIndex{0}
	for i, c := range data {
		if c == '\n' {
			li = append(li, i+1)
		}
	}
	return li
}

func (li lineIndex) position(offset int) Position {
	n := sort.Search(len(li), func(i int) bool { return li[i] > offset }) - 1
	if n < 0 {
		n = 0
	}
	return Position{Line: n + 1, Column: offset - li[n] + 1}
}
