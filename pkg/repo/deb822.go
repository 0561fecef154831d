package repo

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
)

// paragraph is one deb822 paragraph of a small file (sources, Release),
// fields in file order. ParsePackages has its own faster parser.
type paragraph struct {
	line   int // line of the first field
	fields []deb822Field
}

type deb822Field struct {
	name string
	// value is the first line's value, trimmed, then each continuation line
	// trimmed, joined by "\n".
	value string
	line  int
}

// get returns the value of the named field (case-insensitive) and whether
// it is present.
func (p *paragraph) get(name string) (deb822Field, bool) {
	for _, f := range p.fields {
		if strings.EqualFold(f.name, name) {
			return f, true
		}
	}
	return deb822Field{}, false
}

// parseDeb822 splits r into paragraphs. Comment lines (starting with '#')
// are skipped; so apt treats them in .sources files.
func parseDeb822(r io.Reader) ([]paragraph, error) {
	var (
		paras  []paragraph
		cur    *paragraph
		lineNo int
		// The value of the field being read, continuation lines and all:
		// appending to a string would copy it at each line (an InRelease's
		// SHA256 field has hundreds).
		value []byte
		open  *deb822Field
	)
	flush := func() {
		if open != nil {
			open.value = string(value)
			open = nil
		}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		lineNo++
		line := bytes.TrimRight(sc.Bytes(), "\r")
		switch {
		case len(bytes.TrimSpace(line)) == 0:
			flush()
			cur = nil
		case line[0] == '#':
		case line[0] == ' ' || line[0] == '\t':
			if cur == nil || len(cur.fields) == 0 {
				return nil, &ParseError{lineNo, "continuation line outside a field"}
			}
			value = append(value, '\n')
			value = append(value, bytes.TrimSpace(line)...)
		default:
			colon := bytes.IndexByte(line, ':')
			if colon <= 0 {
				return nil, &ParseError{lineNo, fmt.Sprintf("expected \"Field: value\", got %q", truncate(line))}
			}
			flush()
			if cur == nil {
				paras = append(paras, paragraph{line: lineNo})
				cur = &paras[len(paras)-1]
			}
			name := string(line[:colon])
			if !validFieldName(line[:colon]) {
				return nil, &ParseError{lineNo, fmt.Sprintf("invalid field name %q", name)}
			}
			if _, dup := cur.get(name); dup {
				return nil, &ParseError{lineNo, fmt.Sprintf("duplicate field %s", name)}
			}
			cur.fields = append(cur.fields, deb822Field{name: name, line: lineNo})
			open = &cur.fields[len(cur.fields)-1]
			value = append(value[:0], bytes.TrimSpace(line[colon+1:])...)
		}
	}
	flush()
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", lineNo+1, err)
	}
	return paras, nil
}

// validFieldName is deb822's rule: printable US-ASCII except ':' and
// space, not starting with '#' or '-'.
func validFieldName(b []byte) bool {
	if len(b) == 0 || b[0] == '#' || b[0] == '-' {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c > '~' || c == ':' {
			return false
		}
	}
	return true
}
