package blueprint

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"strings"
	"sync"
)

// The generic tree produced by parseTOML and parseJSON is decoded into the
// blueprint types by one strict decoder, so that TOML and JSON accept the
// same documents and report the same errors: every key must name a field
// (the json tag names, which equal the toml ones), every value must have
// the field's type.
//
// A field's `bp` tag changes how it decodes:
//   - size: uint64 from an integer or a string with a unit (ParseSize);
//     "size,alias=K" also accepts the key K for it;
//   - owner: a user or group, a name (string) or a numeric id (int64);
//   - raw: any value, kept as decoded.

type fieldInfo struct {
	index []int
	size  bool
	owner bool
	raw   bool
}

type structInfo struct {
	fields map[string]*fieldInfo // by key, aliases included
	names  []string              // keys without aliases, for messages
}

var structCache sync.Map // reflect.Type -> *structInfo

func structFields(t reflect.Type) *structInfo {
	if si, ok := structCache.Load(t); ok {
		return si.(*structInfo)
	}
	si := &structInfo{fields: map[string]*fieldInfo{}}
	var walk func(t reflect.Type, index []int)
	walk = func(t reflect.Type, index []int) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			idx := append(append([]int(nil), index...), i)
			if f.Anonymous && f.Type.Kind() == reflect.Struct {
				walk(f.Type, idx)
				continue
			}
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" || name == "" {
				continue
			}
			fi := &fieldInfo{index: idx}
			var alias string
			for _, opt := range strings.Split(f.Tag.Get("bp"), ",") {
				switch {
				case opt == "size":
					fi.size = true
				case opt == "owner":
					fi.owner = true
				case opt == "raw":
					fi.raw = true
				case strings.HasPrefix(opt, "alias="):
					alias = strings.TrimPrefix(opt, "alias=")
				}
			}
			si.fields[name] = fi
			si.names = append(si.names, name)
			if alias != "" {
				si.fields[alias] = fi
			}
		}
	}
	walk(t, nil)
	sort.Strings(si.names)
	structCache.Store(t, si)
	return si
}

type decoder struct {
	format string
	src    *Source
	errs   []*Error
}

func decodeTree(tree map[string]any, b *Blueprint, format string, src *Source) []*Error {
	d := &decoder{format: format, src: src}
	d.structValue("", tree, reflect.ValueOf(b).Elem())
	return d.errs
}

func (d *decoder) fail(field, format string, args ...any) {
	d.errs = append(d.errs, &Error{Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) typeErr(field, want string, v any) {
	d.fail(field, "expected %s, got %s", want, kindName(v, d.format))
}

func (d *decoder) structValue(path string, m map[string]any, rv reflect.Value) {
	si := structFields(rv.Type())
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	seen := map[*fieldInfo]string{}
	for _, k := range keys {
		fpath := joinKey(path, k)
		fi, ok := si.fields[k]
		if !ok {
			// The message reads best against the parent, but the position
			// is the unknown key's own.
			e := &Error{Field: path, Msg: unknownField(k, si.names)}
			if pos, ok := d.src.Position(fpath); ok {
				e.Line, e.Column = pos.Line, pos.Column
			}
			d.errs = append(d.errs, e)
			continue
		}
		if other, dup := seen[fi]; dup {
			d.fail(fpath, "%q and %q are the same field (%q is a deprecated alias); set only one", other, k, k)
			continue
		}
		seen[fi] = k
		d.field(fpath, fi, m[k], rv.FieldByIndex(fi.index))
	}
}

func unknownField(k string, names []string) string {
	msg := fmt.Sprintf("unknown field %q", k)
	if s := suggest(k, names); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	return msg
}

func (d *decoder) field(path string, fi *fieldInfo, v any, rv reflect.Value) {
	switch {
	case fi.raw:
		rv.Set(reflect.ValueOf(v))
	case fi.owner:
		if i, ok := integral(v); ok {
			v = i
		}
		switch x := v.(type) {
		case string:
			rv.Set(reflect.ValueOf(x))
		case int64:
			rv.Set(reflect.ValueOf(x))
		default:
			d.typeErr(path, "a name (string) or a numeric id (integer)", v)
		}
	case fi.size:
		if i, ok := integral(v); ok {
			v = i
		}
		switch x := v.(type) {
		case int64:
			if x < 0 {
				d.fail(path, "size must not be negative")
				return
			}
			rv.SetUint(uint64(x))
		case string:
			n, err := ParseSize(x)
			if err != nil {
				d.fail(path, "%v", err)
				return
			}
			rv.SetUint(n)
		default:
			d.typeErr(path, `a size (an integer number of bytes or a string such as "20 GiB")`, v)
		}
	default:
		d.value(path, v, rv)
	}
}

func (d *decoder) value(path string, v any, rv reflect.Value) {
	switch rv.Kind() {
	case reflect.Pointer:
		nv := reflect.New(rv.Type().Elem())
		before := len(d.errs)
		d.value(path, v, nv.Elem())
		if len(d.errs) == before {
			rv.Set(nv)
		}
	case reflect.String:
		s, ok := v.(string)
		if !ok {
			d.typeErr(path, "a string", v)
			return
		}
		rv.SetString(s)
	case reflect.Bool:
		b, ok := v.(bool)
		if !ok {
			d.typeErr(path, "a boolean", v)
			return
		}
		rv.SetBool(b)
	case reflect.Int:
		i, ok := integral(v)
		if !ok {
			d.typeErr(path, "an integer", v)
			return
		}
		if i < math.MinInt || i > math.MaxInt || rv.OverflowInt(i) {
			d.fail(path, "integer %d is out of range", i)
			return
		}
		rv.SetInt(i)
	case reflect.Uint64:
		i, ok := integral(v)
		if !ok {
			d.typeErr(path, "an integer", v)
			return
		}
		if i < 0 {
			d.fail(path, "must not be negative")
			return
		}
		rv.SetUint(uint64(i))
	case reflect.Slice:
		a, ok := v.([]any)
		if !ok {
			d.typeErr(path, "an array", v)
			return
		}
		s := reflect.MakeSlice(rv.Type(), len(a), len(a))
		for i, el := range a {
			d.value(joinIndex(path, i), el, s.Index(i))
		}
		rv.Set(s)
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			d.typeErr(path, tableName(d.format), v)
			return
		}
		d.structValue(path, m, rv)
	default:
		// Only reachable if a type above gains a field kind this decoder
		// does not know; keep the message explicit rather than panic.
		d.fail(path, "cannot decode into %s", rv.Type())
	}
}

// integral returns v as an integer when it is one: an int64, or a float
// with no fractional part that fits (1000.0, 1e3), which JSON encoders
// such as JavaScript's and Python's write for whole numbers and composer's
// encoding/json accepts for integer fields.
func integral(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case float64:
		if x == math.Trunc(x) && x >= -(1<<63) && x < 1<<63 {
			return int64(x), true
		}
	}
	return 0, false
}

func tableName(format string) string {
	if format == formatJSON {
		return "an object"
	}
	return "a table"
}

// kindName names the type of a generic tree value in the terms of the
// document's format.
func kindName(v any, format string) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case bool:
		return "boolean"
	case int64:
		return "integer"
	case float64:
		return "float"
	case []any:
		return "array"
	case map[string]any:
		if format == formatJSON {
			return "object"
		}
		return "table"
	default:
		return "date/time"
	}
}

// suggest returns the known name closest to k when it is close enough to
// be a typo.
func suggest(k string, names []string) string {
	best, bestD := "", 3
	if len(k) <= 4 {
		bestD = 2
	}
	for _, n := range names {
		if dd := editDistance(strings.ToLower(k), n); dd < bestD {
			best, bestD = n, dd
		}
	}
	return best
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and transpositions of neighbours cost 1.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return math.MaxInt
	}
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+c)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
