package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
)

// decodeJSON decodes raw keeping numbers as written; nil when empty or
// not JSON.
func decodeJSON(raw json.RawMessage) any {
	if len(raw) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return nil
	}
	return v
}

func encodeJSON(v any) json.RawMessage {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return json.RawMessage(`null`)
	}
	return bytes.TrimRight(buf.Bytes(), "\n")
}

// diffFields lists the leaves that differ between a and b (decoded JSON;
// nil is absent) under path. Objects are walked key by key; a list of
// plain values is compared as a set (its added and removed entries); a
// list of objects pairs its items by their name, path or mountpoint when
// every item has a distinct one, else by position.
func diffFields(path string, a, b any) []FieldChange {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if aok && bok || aok && b == nil || a == nil && bok {
		var keys []string
		for k := range am {
			keys = append(keys, k)
		}
		for k := range bm {
			if _, ok := am[k]; !ok {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		var out []FieldChange
		for _, k := range keys {
			out = append(out, diffFields(join(path, k), am[k], bm[k])...)
		}
		return out
	}
	al, aok := a.([]any)
	bl, bok := b.([]any)
	if aok && bok {
		if scalars(al) && scalars(bl) {
			return diffSet(path, al, bl)
		}
		return diffList(path, al, bl)
	}
	if a == nil && b == nil {
		return nil
	}
	ea, eb := encodeJSON(a), encodeJSON(b)
	if bytes.Equal(ea, eb) {
		return nil
	}
	c := FieldChange{Path: path}
	if a != nil {
		c.Old = ea
	}
	if b != nil {
		c.New = eb
	}
	return []FieldChange{c}
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func scalars(l []any) bool {
	for _, v := range l {
		switch v.(type) {
		case map[string]any, []any:
			return false
		}
	}
	return true
}

// diffSet reports a list of plain values by entries added and removed;
// when only the order changed, which may matter, as old → new.
func diffSet(path string, a, b []any) []FieldChange {
	count := func(l []any) map[string]int {
		m := map[string]int{}
		for _, v := range l {
			m[string(encodeJSON(v))]++
		}
		return m
	}
	ac, bc := count(a), count(b)
	c := FieldChange{Path: path}
	for _, v := range b {
		k := string(encodeJSON(v))
		if ac[k] > 0 {
			ac[k]--
			continue
		}
		c.Added = append(c.Added, plain(v))
	}
	for _, v := range a {
		k := string(encodeJSON(v))
		if bc[k] > 0 {
			bc[k]--
			continue
		}
		c.Removed = append(c.Removed, plain(v))
	}
	if len(c.Added)+len(c.Removed) > 0 {
		return []FieldChange{c}
	}
	if ea, eb := encodeJSON(a), encodeJSON(b); !bytes.Equal(ea, eb) {
		return []FieldChange{{Path: path, Old: ea, New: eb}}
	}
	return nil
}

// plain is a list entry as a reader wants it: a string without quotes.
func plain(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return string(encodeJSON(v))
}

// itemKeys are the fields that name an item of a list of objects.
var itemKeys = []string{"name", "path", "mountpoint"}

func diffList(path string, a, b []any) []FieldChange {
	for _, k := range itemKeys {
		ai, aok := byKey(a, k)
		bi, bok := byKey(b, k)
		if !aok || !bok {
			continue
		}
		var names []string
		for _, v := range b {
			names = append(names, v.(map[string]any)[k].(string))
		}
		for _, v := range a {
			n := v.(map[string]any)[k].(string)
			if _, ok := bi[n]; !ok {
				names = append(names, n)
			}
		}
		var out []FieldChange
		for _, n := range names {
			p := fmt.Sprintf("%s[%s]", path, n)
			o, nw := ai[n], bi[n]
			if o == nil || nw == nil {
				// A whole item added or removed.
				c := FieldChange{Path: p}
				if o != nil {
					c.Old = encodeJSON(o)
				}
				if nw != nil {
					c.New = encodeJSON(nw)
				}
				out = append(out, c)
				continue
			}
			out = append(out, diffFields(p, o, nw)...)
		}
		return out
	}
	var out []FieldChange
	for i := 0; i < len(a) || i < len(b); i++ {
		var o, nw any
		if i < len(a) {
			o = a[i]
		}
		if i < len(b) {
			nw = b[i]
		}
		p := fmt.Sprintf("%s[%d]", path, i)
		if o == nil || nw == nil {
			c := FieldChange{Path: p}
			if o != nil {
				c.Old = encodeJSON(o)
			}
			if nw != nil {
				c.New = encodeJSON(nw)
			}
			out = append(out, c)
			continue
		}
		out = append(out, diffFields(p, o, nw)...)
	}
	return out
}

// byKey indexes a list of objects by a string field, if every item has a
// distinct one.
func byKey(l []any, key string) (map[string]any, bool) {
	m := map[string]any{}
	for _, v := range l {
		o, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		s, ok := o[key].(string)
		if !ok || s == "" {
			return nil, false
		}
		if _, dup := m[s]; dup {
			return nil, false
		}
		m[s] = o
	}
	return m, true
}
