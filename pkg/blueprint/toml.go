package blueprint

import (
	"errors"
	"fmt"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

const (
	formatTOML = "toml"
	formatJSON = "json"
)

// parseTOML decodes a TOML document into a generic tree (go-toml checks the
// syntax, duplicate keys and table redefinitions) and indexes the position
// of every key from go-toml's AST, so that later errors can name the line.
func parseTOML(filename string, data []byte) (map[string]any, *Source, *Error) {
	var tree map[string]any
	if err := toml.Unmarshal(data, &tree); err != nil {
		e := &Error{File: filename, Msg: strings.TrimPrefix(err.Error(), "toml: ")}
		var de *toml.DecodeError
		if errors.As(err, &de) {
			e.Line, e.Column = de.Position()
		}
		return nil, nil, e
	}
	if tree == nil {
		tree = map[string]any{}
	}
	pos, deep, ok := tomlPositions(data)
	if !ok {
		return nil, nil, &Error{File: filename, Line: deep.Line, Column: deep.Column, Msg: fmt.Sprintf("nested more than %d levels deep", maxDepth)}
	}
	return tree, &Source{File: filename, Positions: pos}, nil
}

// tomlPositions maps field paths ("customizations.user[1].uid") to the
// position of their key. It mirrors TOML's rules for [tables],
// [[arrays of tables]], dotted keys, inline tables and arrays. Documents
// nested deeper than maxDepth are refused (ok is false, deep says where):
// paths grow with depth, so deep nesting would cost quadratic memory.
func tomlPositions(data []byte) (pos map[string]Position, deep Position, ok bool) {
	ix := &tomlIndexer{
		lines:  newLineIndex(data),
		pos:    map[string]Position{},
		arrays: map[string]int{},
	}
	var p unstable.Parser
	p.Reset(data)
	current := ""
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table:
			keys := ix.keys(e.Key())
			if ix.tooDeep(len(keys), keys[0].pos) {
				break
			}
			current = ix.resolve(keys, len(keys))
		case unstable.ArrayTable:
			keys := ix.keys(e.Key())
			if ix.tooDeep(len(keys), keys[0].pos) {
				break
			}
			parent := ix.resolve(keys, len(keys)-1)
			last := keys[len(keys)-1]
			arr := joinKey(parent, last.name)
			ix.record(arr, last.pos)
			n := ix.arrays[arr]
			ix.arrays[arr] = n + 1
			current = joinIndex(arr, n)
			ix.record(current, last.pos)
		case unstable.KeyValue:
			ix.keyValue(current, e, pathDepth(current))
		}
		if ix.deep != nil {
			return nil, *ix.deep, false
		}
	}
	return ix.pos, Position{}, true
}

type tomlKey struct {
	name string
	pos  Position
}

type tomlIndexer struct {
	lines lineIndex
	pos   map[string]Position
	// arrays counts the elements of each array of tables seen so far, by
	// concrete path.
	arrays map[string]int
	// deep is where the document first nests deeper than maxDepth.
	deep *Position
}

// pathDepth approximates the nesting depth of a field path.
func pathDepth(p string) int {
	if p == "" {
		return 0
	}
	return strings.Count(p, ".") + strings.Count(p, "[") + 1
}

func (ix *tomlIndexer) tooDeep(depth int, at Position) bool {
	if depth <= maxDepth {
		return false
	}
	if ix.deep == nil {
		ix.deep = &at
	}
	return true
}

func (ix *tomlIndexer) keys(it unstable.Iterator) []tomlKey {
	var ks []tomlKey
	for it.Next() {
		n := it.Node()
		ks = append(ks, tomlKey{name: string(n.Data), pos: ix.lines.position(int(n.Raw.Offset))})
	}
	return ks
}

// resolve turns the first n keys of a table header into a concrete path:
// a key naming an array of tables refers to its last element so far.
func (ix *tomlIndexer) resolve(keys []tomlKey, n int) string {
	path := ""
	for _, k := range keys[:n] {
		path = joinKey(path, k.name)
		ix.record(path, k.pos)
		if c := ix.arrays[path]; c > 0 {
			path = joinIndex(path, c-1)
		}
	}
	return path
}

func (ix *tomlIndexer) record(path string, pos Position) {
	if _, ok := ix.pos[path]; !ok {
		ix.pos[path] = pos
	}
}

// keyValue records a (possibly dotted) key and the value under it; depth
// is the nesting depth of base.
func (ix *tomlIndexer) keyValue(base string, kv *unstable.Node, depth int) {
	path := base
	keys := ix.keys(kv.Key())
	if ix.tooDeep(depth+len(keys), keys[0].pos) {
		return
	}
	for _, k := range keys {
		path = joinKey(path, k.name)
		ix.record(path, k.pos)
	}
	ix.value(path, kv.Value(), depth+len(keys), keys[len(keys)-1].pos)
}

// value records the elements and keys under a value; at is the position
// of the value's key or element, for values that have no range.
func (ix *tomlIndexer) value(path string, v *unstable.Node, depth int, at Position) {
	if (v.Kind == unstable.Array || v.Kind == unstable.InlineTable) && ix.tooDeep(depth+1, at) {
		return
	}
	switch v.Kind {
	case unstable.Array:
		it := v.Children()
		for i := 0; it.Next(); {
			el := it.Node()
			if el.Kind == unstable.Comment {
				continue
			}
			elPath := joinIndex(path, i)
			elPos := ix.nodePos(el)
			if elPos.Line == 0 {
				elPos = at
			}
			ix.record(elPath, elPos)
			ix.value(elPath, el, depth+1, elPos)
			i++
		}
	case unstable.InlineTable:
		it := v.Children()
		for it.Next() {
			if kv := it.Node(); kv.Kind == unstable.KeyValue {
				ix.keyValue(path, kv, depth)
			}
		}
	}
}

// nodePos is the position of a value node; containers have no range of
// their own, so they take their first key's or element's position.
func (ix *tomlIndexer) nodePos(n *unstable.Node) Position {
	for n != nil {
		if n.Raw.Length > 0 {
			return ix.lines.position(int(n.Raw.Offset))
		}
		switch n.Kind {
		case unstable.KeyValue:
			it := n.Key()
			if it.Next() {
				return ix.lines.position(int(it.Node().Raw.Offset))
			}
			return Position{}
		default:
			n = n.Child()
		}
	}
	return Position{}
}
