package changelog

import (
	"regexp"
	"sort"
	"strings"

	"pault.ag/go/debian/version"

	"github.com/image-builder-action/image-builder-action/pkg/manifest"
)

// header is the first line of a Debian changelog entry:
// "package (version) suite...; urgency=...".
var header = regexp.MustCompile(`^([a-z0-9][a-z0-9+.-]*) \(([^ ()]+)\) [^;]*;`)

// Parse splits a Debian changelog into its entries, newest first as
// written. Text before the first entry is dropped.
func Parse(text string) []manifest.ChangelogEntry {
	var out []manifest.ChangelogEntry
	var cur *strings.Builder
	var ver string
	flush := func() {
		if cur != nil {
			out = append(out, manifest.ChangelogEntry{Version: ver, Text: strings.TrimRight(cur.String(), "\n") + "\n"})
		}
	}
	for _, line := range strings.SplitAfter(text, "\n") {
		if m := header.FindStringSubmatch(line); m != nil {
			flush()
			cur, ver = &strings.Builder{}, m[2]
		}
		if cur != nil {
			cur.WriteString(line)
		}
	}
	flush()
	return out
}

// Between returns the entries with a version after old and up to new,
// newest first.
func Between(entries []manifest.ChangelogEntry, old, new string) []manifest.ChangelogEntry {
	vo, errO := version.Parse(old)
	vn, errN := version.Parse(new)
	if errO != nil || errN != nil {
		return nil
	}
	var out []manifest.ChangelogEntry
	seen := map[string]bool{}
	for _, e := range entries {
		v, err := version.Parse(e.Version)
		if err != nil || seen[e.Version] {
			continue
		}
		if version.Compare(v, vo) > 0 && version.Compare(v, vn) <= 0 {
			seen[e.Version] = true
			out = append(out, e)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, _ := version.Parse(out[i].Version)
		b, _ := version.Parse(out[j].Version)
		return version.Compare(a, b) > 0
	})
	return out
}
