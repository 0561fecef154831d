package blueprint

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// maxDepth bounds nesting in JSON documents; real blueprints nest about
// six levels deep.
const maxDepth = 64

// parseJSON decodes a JSON document into the same generic tree as TOML
// (string, bool, int64, float64, []any, map[string]any; null values of
// object members are dropped, as encoding/json does) while recording the
// position of every key, and refuses duplicate keys and trailing data.
func parseJSON(filename string, data []byte) (map[string]any, *Source, *Error) {
	p := &jsonParser{
		file:  filename,
		data:  data,
		lines: newLineIndex(data),
		dec:   json.NewDecoder(bytes.NewReader(data)),
		pos:   map[string]Position{},
	}
	p.dec.UseNumber()
	v, err := p.value("", 0)
	if err != nil {
		return nil, nil, err
	}
	top, ok := v.(map[string]any)
	if !ok {
		return nil, nil, &Error{File: filename, Line: 1, Column: 1, Msg: fmt.Sprintf("expected a JSON object, got %s", kindName(v, formatJSON))}
	}
	off := p.next()
	if _, err := p.dec.Token(); err != io.EOF {
		return nil, nil, p.errAt(off, "unexpected data after the top-level object")
	}
	return top, &Source{File: filename, Positions: p.pos}, nil
}

type jsonParser struct {
	file  string
	data  []byte
	lines lineIndex
	dec   *json.Decoder
	pos   map[string]Position
}

// next returns the offset where the next token starts: the decoder's
// offset is the end of the previous token, before any separator.
func (p *jsonParser) next() int {
	off := int(p.dec.InputOffset())
	for off < len(p.data) {
		switch p.data[off] {
		case ' ', '\t', '\r', '\n', ',', ':':
			off++
		default:
			return off
		}
	}
	return off
}

func (p *jsonParser) errAt(off int, msg string) *Error {
	pos := p.lines.position(off)
	return &Error{File: p.file, Line: pos.Line, Column: pos.Column, Msg: msg}
}

func (p *jsonParser) syntaxErr(off int, err error) *Error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return p.errAt(int(se.Offset), se.Error())
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return p.errAt(len(p.data), "unexpected end of JSON input")
	}
	return p.errAt(off, err.Error())
}

func (p *jsonParser) value(path string, depth int) (any, *Error) {
	off := p.next()
	if depth > maxDepth {
		return nil, p.errAt(off, fmt.Sprintf("nested more than %d levels deep", maxDepth))
	}
	tok, err := p.dec.Token()
	if err != nil {
		return nil, p.syntaxErr(off, err)
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			return p.object(path, depth)
		case '[':
			return p.array(path, depth)
		}
		return nil, p.errAt(off, fmt.Sprintf("unexpected %q", rune(t)))
	case json.Number:
		if i, err := strconv.ParseInt(string(t), 10, 64); err == nil {
			return i, nil
		}
		f, err := strconv.ParseFloat(string(t), 64)
		if err != nil {
			return nil, p.errAt(off, fmt.Sprintf("number %s is out of range", t))
		}
		return f, nil
	default: // string, bool, nil
		return t, nil
	}
}

func (p *jsonParser) object(path string, depth int) (any, *Error) {
	m := map[string]any{}
	for p.dec.More() {
		off := p.next()
		tok, err := p.dec.Token()
		if err != nil {
			return nil, p.syntaxErr(off, err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, p.errAt(off, "expected an object key")
		}
		kpath := joinKey(path, key)
		if _, dup := p.pos[kpath]; dup {
			return nil, p.errAt(off, fmt.Sprintf("duplicate key %q", key))
		}
		p.pos[kpath] = p.lines.position(off)
		v, perr := p.value(kpath, depth+1)
		if perr != nil {
			return nil, perr
		}
		if v != nil {
			m[key] = v
		}
	}
	off := p.next()
	if _, err := p.dec.Token(); err != nil { // the closing brace
		return nil, p.syntaxErr(off, err)
	}
	return m, nil
}

func (p *jsonParser) array(path string, depth int) (any, *Error) {
	a := []any{}
	for i := 0; p.dec.More(); i++ {
		off := p.next()
		epath := joinIndex(path, i)
		p.pos[epath] = p.lines.position(off)
		v, perr := p.value(epath, depth+1)
		if perr != nil {
			return nil, perr
		}
		if v == nil {
			return nil, p.errAt(off, "null is not allowed in an array")
		}
		a = append(a, v)
	}
	off := p.next()
	if _, err := p.dec.Token(); err != nil { // the closing bracket
		return nil, p.syntaxErr(off, err)
	}
	return a, nil
}
