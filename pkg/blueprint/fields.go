package blueprint

import (
	"reflect"
	"sort"
)

// SetFields lists the dotted names of every field that is set, without
// array indexes and sorted: containers and tables as well as their leaves
// ("customizations", "customizations.user", "customizations.user.key",
// "customizations.openscap", "packages", "packages.version", …). A distro
// refuses what it cannot honour by looking names up here, and locates them
// with Errorf.
func (b *Blueprint) SetFields() []string {
	set := map[string]bool{}
	collectSet(reflect.ValueOf(b).Elem(), "", set)
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// collectSet records the set fields of struct value v under prefix.
func collectSet(v reflect.Value, prefix string, set map[string]bool) {
	si := structFields(v.Type())
	for _, name := range si.names {
		fi := si.fields[name]
		fv := v.FieldByIndex(fi.index)
		if isUnset(fv) {
			continue
		}
		p := joinKey(prefix, name)
		set[p] = true
		if fi.raw || fi.owner || fi.size {
			continue
		}
		for fv.Kind() == reflect.Pointer {
			fv = fv.Elem()
		}
		switch fv.Kind() {
		case reflect.Struct:
			collectSet(fv, p, set)
		case reflect.Slice:
			for i := 0; i < fv.Len(); i++ {
				if el := fv.Index(i); el.Kind() == reflect.Struct {
					collectSet(el, p, set)
				}
			}
		}
	}
}

// isUnset reports whether a field holds nothing: nil, empty or zero.
// Pointers to zero values (fips = false) count as set: the user wrote them.
func isUnset(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		return v.IsNil()
	case reflect.Slice, reflect.Map:
		return v.Len() == 0
	default:
		return v.IsZero()
	}
}
