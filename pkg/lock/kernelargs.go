package lock

import "strings"

// cumulativeArgs are kernel parameters every occurrence of which counts:
// each console= adds an output (the last one is /dev/console), so a
// blueprint's console= is added to the defaults', not put in their place.
var cumulativeArgs = map[string]bool{"console": true}

// mergeKernelArgs joins the image's default kernel arguments with the
// blueprint's, each argument once: a blueprint argument with the key of a
// default one replaces it (the blueprint's value wins, in the blueprint's
// place), an identical one is not repeated. Arguments are split on
// spaces outside double quotes, so a quoted value with spaces stays one.
func mergeKernelArgs(defaults, blueprint string) string {
	bp := splitKernelArgs(blueprint)
	keys, same := map[string]bool{}, map[string]bool{}
	for _, a := range bp {
		keys[kernelArgKey(a)] = true
		same[a] = true
	}
	var out []string
	seen := map[string]bool{}
	add := func(a string) {
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	for _, a := range splitKernelArgs(defaults) {
		k := kernelArgKey(a)
		if same[a] || keys[k] && !cumulativeArgs[k] {
			continue
		}
		add(a)
	}
	for _, a := range bp {
		add(a)
	}
	return strings.Join(out, " ")
}

// kernelArgKey is the parameter's name: the part before "=", with "-"
// read as "_" as the kernel does.
func kernelArgKey(arg string) string {
	k, _, _ := strings.Cut(arg, "=")
	return strings.ReplaceAll(k, "-", "_")
}

// splitKernelArgs splits a command line on whitespace outside double
// quotes.
func splitKernelArgs(s string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
			cur.WriteRune(r)
		case !quoted && (r == ' ' || r == '\t' || r == '\n'):
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}
