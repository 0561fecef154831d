package manifest

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"pault.ag/go/debian/version"
)

// Diff is what changed between two lockfiles, in the terms a reviewer
// reads: a line per image first, the facts that matter for security, then
// repositories, packages and stage options field by field.
type Diff struct {
	Summary      []EntrySummary     `json:"summary,omitempty"`
	Notices      []Notice           `json:"notices,omitempty"`
	Repositories []RepositoryChange `json:"repositories,omitempty"`
	Entries      []EntryDiff        `json:"entries,omitempty"`
}

// EntrySummary counts one image's changes. A package counts once however
// many of the image's pipelines install it.
type EntrySummary struct {
	Name       string `json:"name"` // distro/arch/type
	Status     string `json:"status,omitempty"`
	Added      int    `json:"added,omitempty"`
	Removed    int    `json:"removed,omitempty"`
	Upgraded   int    `json:"upgraded,omitempty"`
	Downgraded int    `json:"downgraded,omitempty"`
	Rebuilt    int    `json:"rebuilt,omitempty"`
	Stages     int    `json:"stages_changed,omitempty"`
}

// Notice kinds: what a reviewer must not miss.
const (
	NoticeDowngrade  = "downgrade"
	NoticeSecurity   = "security"
	NoticeRepository = "repository"
	NoticeRebuilt    = "rebuilt"
	NoticeKey        = "signing key"
	NoticeIDs        = "identifiers"
)

// Notice is a security-relevant fact the lockfiles tell: a downgrade, a
// package from a -security suite, a repository whose suite, components or
// key changed, a package whose bytes changed under the same version.
type Notice struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

// RepositoryChange is a suite added, removed, or fetched in another state.
type RepositoryChange struct {
	Suite         string   `json:"suite"`
	URI           string   `json:"uri"`
	Status        string   `json:"status"` // added, removed, changed
	OldDate       string   `json:"old_date,omitempty"`
	NewDate       string   `json:"new_date,omitempty"`
	OldComponents []string `json:"old_components,omitempty"`
	NewComponents []string `json:"new_components,omitempty"`
	// OldKeys and NewKeys are the signing keys' fingerprints, when they
	// changed.
	OldKeys []string `json:"old_keys,omitempty"`
	NewKeys []string `json:"new_keys,omitempty"`
}

// EntryDiff is the change of one image.
type EntryDiff struct {
	Name     string          `json:"name"` // distro/arch/type
	Status   string          `json:"status,omitempty"`
	Packages []PackageChange `json:"packages,omitempty"`
	Stages   []StageChange   `json:"stages,omitempty"`
}

// Package change kinds.
const (
	Added      = "added"
	Removed    = "removed"
	Upgraded   = "upgraded"
	Downgraded = "downgraded"
	Rebuilt    = "rebuilt" // same version, other bytes
)

// PackageChange is one package's versions before and after, and which of
// the image's pipelines install it.
type PackageChange struct {
	Name       string   `json:"name"`
	Arch       string   `json:"arch"`
	Change     string   `json:"change"`
	OldVersion string   `json:"old_version,omitempty"`
	NewVersion string   `json:"new_version,omitempty"`
	Pipelines  []string `json:"pipelines"`
	// Suite is a -security suite that serves the new version.
	Security string `json:"security,omitempty"`
	// Changelog is filled on request (ibuild diff --changelog): the
	// entries between the two versions, newest first.
	Changelog []ChangelogEntry `json:"changelog,omitempty"`
	// ChangelogNote says why there is no changelog when one was asked for.
	ChangelogNote string `json:"changelog_note,omitempty"`
}

// ChangelogEntry is one entry of a Debian changelog.
type ChangelogEntry struct {
	Version string `json:"version"`
	// Text is the whole entry, header and trailer lines included.
	Text string `json:"text"`
}

// StageChange is a stage added, removed, or with other options; Fields
// say which (the package lists of debs stages are package changes).
type StageChange struct {
	// Stage is "pipeline/type", with "#k" for the k-th stage of a type
	// in the pipeline when it has several.
	Stage  string        `json:"stage"`
	Status string        `json:"status"` // added, removed, changed
	Fields []FieldChange `json:"fields,omitempty"`
}

// FieldChange is one option of a stage: a value replaced (Old, New; one
// of them absent when the field was added or removed), or a list whose
// entries were added or removed.
type FieldChange struct {
	Path    string          `json:"path"`
	Old     json.RawMessage `json:"old,omitempty"`
	New     json.RawMessage `json:"new,omitempty"`
	Added   []string        `json:"added,omitempty"`
	Removed []string        `json:"removed,omitempty"`
}

// Empty reports whether nothing changed.
func (d *Diff) Empty() bool { return len(d.Repositories) == 0 && len(d.Entries) == 0 }

func entryKey(e *Entry) string { return e.Distro + "/" + e.Arch + "/" + e.Type }

// Compare lists the changes from old to new.
func Compare(old, new *Lockfile) *Diff {
	d := &Diff{}
	d.Repositories = compareRepos(old.Repositories, new.Repositories)
	d.Notices = repoNotices(d.Repositories)
	if old.IDSeed != new.IDSeed && old.IDSeed != "" {
		d.Notices = append(d.Notices, Notice{NoticeIDs, fmt.Sprintf("id_seed %s → %s: the disks', partitions' and file systems' identifiers are new (ibuild lock --new-ids)", old.IDSeed, new.IDSeed)})
	}

	oldIdx, newIdx := old.PackageIndex(), new.PackageIndex()
	security := securitySuites(new.Repositories)
	oldE, newE := map[string]*Entry{}, map[string]*Entry{}
	var keys []string
	for i := range old.Entries {
		k := entryKey(&old.Entries[i])
		oldE[k] = &old.Entries[i]
		keys = append(keys, k)
	}
	for i := range new.Entries {
		k := entryKey(&new.Entries[i])
		newE[k] = &new.Entries[i]
		if oldE[k] == nil {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	noticed := map[string]bool{}
	for _, k := range keys {
		o, n := oldE[k], newE[k]
		ed := EntryDiff{Name: k}
		switch {
		case o == nil:
			ed.Status = Added
		case n == nil:
			ed.Status = Removed
		}
		ed.Packages = comparePackages(entryPackages(o, oldIdx), entryPackages(n, newIdx))
		for i := range ed.Packages {
			c := &ed.Packages[i]
			if c.Change != Removed {
				c.Security = security.suiteOf(newIdx[c.Name+":"+c.Arch+"="+c.NewVersion])
			}
		}
		ed.Stages = compareEntryStages(o, n)
		if ed.Status == "" && len(ed.Packages) == 0 && len(ed.Stages) == 0 {
			continue
		}
		d.Entries = append(d.Entries, ed)
		s := EntrySummary{Name: k, Status: ed.Status, Stages: len(ed.Stages)}
		for _, c := range ed.Packages {
			switch c.Change {
			case Added:
				s.Added++
			case Removed:
				s.Removed++
			case Upgraded:
				s.Upgraded++
			case Downgraded:
				s.Downgraded++
			case Rebuilt:
				s.Rebuilt++
			}
			// An image being added or removed is no news about each
			// of its packages.
			if ed.Status != "" || noticed[c.Name+":"+c.Arch+c.Change] {
				continue
			}
			noticed[c.Name+":"+c.Arch+c.Change] = true
			switch {
			case c.Change == Downgraded:
				d.Notices = append(d.Notices, Notice{NoticeDowngrade, fmt.Sprintf("%s:%s is downgraded, %s → %s", c.Name, c.Arch, c.OldVersion, c.NewVersion)})
			case c.Change == Rebuilt:
				d.Notices = append(d.Notices, Notice{NoticeRebuilt, fmt.Sprintf("%s:%s %s has other bytes under the same version", c.Name, c.Arch, c.NewVersion)})
			case c.Security != "" && c.Change == Upgraded:
				d.Notices = append(d.Notices, Notice{NoticeSecurity, fmt.Sprintf("%s:%s %s → %s comes from %s", c.Name, c.Arch, c.OldVersion, c.NewVersion, c.Security)})
			case c.Security != "" && c.Change == Added:
				d.Notices = append(d.Notices, Notice{NoticeSecurity, fmt.Sprintf("%s:%s %s (added) comes from %s", c.Name, c.Arch, c.NewVersion, c.Security)})
			}
		}
		d.Summary = append(d.Summary, s)
	}
	return d
}

func compareRepos(old, new []Repository) []RepositoryChange {
	key := func(r *Repository) string { return r.URI + " " + r.Suite }
	om := map[string]*Repository{}
	for i := range old {
		om[key(&old[i])] = &old[i]
	}
	var out []RepositoryChange
	seen := map[string]bool{}
	for i := range new {
		n := &new[i]
		seen[key(n)] = true
		o := om[key(n)]
		switch {
		case o == nil:
			out = append(out, RepositoryChange{Suite: n.Suite, URI: n.URI, Status: Added, NewDate: n.Date, NewComponents: n.Components, NewKeys: n.Keys})
		case o.InReleaseSHA256 != n.InReleaseSHA256 || !slices.Equal(o.Components, n.Components) || !slices.Equal(o.Keys, n.Keys):
			c := RepositoryChange{Suite: n.Suite, URI: n.URI, Status: "changed", OldDate: o.Date, NewDate: n.Date}
			if !slices.Equal(o.Components, n.Components) {
				c.OldComponents, c.NewComponents = o.Components, n.Components
			}
			if !slices.Equal(o.Keys, n.Keys) {
				c.OldKeys, c.NewKeys = o.Keys, n.Keys
				if c.OldKeys == nil {
					c.OldKeys = []string{}
				}
			}
			out = append(out, c)
		}
	}
	for i := range old {
		if !seen[key(&old[i])] {
			out = append(out, RepositoryChange{Suite: old[i].Suite, URI: old[i].URI, Status: Removed, OldDate: old[i].Date, OldComponents: old[i].Components, OldKeys: old[i].Keys})
		}
	}
	return out
}

// repoNotices reports what changes where packages may come from: a suite
// replaced at the same URI (a new release), suites added or removed,
// components changed.
func repoNotices(changes []RepositoryChange) []Notice {
	var out []Notice
	removed := map[string][]string{}
	for _, c := range changes {
		if c.Status == Removed {
			removed[c.URI] = append(removed[c.URI], c.Suite)
		}
	}
	replaced := map[string]bool{}
	for _, c := range changes {
		switch c.Status {
		case Added:
			if old := removed[c.URI]; len(old) > 0 && !replaced[c.URI] {
				replaced[c.URI] = true
				out = append(out, Notice{NoticeRepository, fmt.Sprintf("%s: suite %s → %s%s", c.URI, strings.Join(old, ", "), c.Suite, signedBy(c.NewKeys))})
				continue
			}
			if !replaced[c.URI] {
				out = append(out, Notice{NoticeRepository, fmt.Sprintf("%s %s: added%s", c.URI, c.Suite, signedBy(c.NewKeys))})
			}
		case Removed:
			if !replaced[c.URI] && !hasAdded(changes, c.URI) {
				out = append(out, Notice{NoticeRepository, fmt.Sprintf("%s %s: removed", c.URI, c.Suite)})
			}
		default:
			if c.OldComponents != nil || c.NewComponents != nil {
				out = append(out, Notice{NoticeRepository, fmt.Sprintf("%s %s: components %s → %s", c.URI, c.Suite, strings.Join(c.OldComponents, " "), strings.Join(c.NewComponents, " "))})
			}
			if c.OldKeys != nil || c.NewKeys != nil {
				out = append(out, Notice{NoticeKey, fmt.Sprintf("%s %s: signed by %s, was %s", c.URI, c.Suite, keyList(c.NewKeys), keyList(c.OldKeys))})
			}
		}
	}
	return out
}

func keyList(keys []string) string {
	if len(keys) == 0 {
		return "no recorded key"
	}
	return strings.Join(keys, ", ")
}

// signedBy is ", signed by KEYS" when the keys are known.
func signedBy(keys []string) string {
	if len(keys) == 0 {
		return ""
	}
	return ", signed by " + strings.Join(keys, ", ")
}

func hasAdded(changes []RepositoryChange, uri string) bool {
	for _, c := range changes {
		if c.URI == uri && c.Status == Added {
			return true
		}
	}
	return false
}

// securityRepos maps repository URIs that serve only -security suites to
// their suites: a package downloaded from one came from there. (A mirror
// serving the release and its security suite under one URI does not tell
// from the URL, and is not guessed at.)
type securityRepos map[string]string

func securitySuites(repos []Repository) securityRepos {
	out := securityRepos{}
	other := map[string]bool{}
	for _, r := range repos {
		if strings.HasSuffix(r.Suite, "-security") || strings.HasSuffix(r.Suite, "/updates") {
			out[strings.TrimRight(r.URI, "/")+"/"] = r.Suite
		} else {
			other[strings.TrimRight(r.URI, "/")+"/"] = true
		}
	}
	for u := range other {
		delete(out, u)
	}
	return out
}

func (s securityRepos) suiteOf(p *Package) string {
	if p == nil {
		return ""
	}
	for u, suite := range s {
		if strings.HasPrefix(p.URL, u) {
			return suite
		}
	}
	return ""
}

// entryPackages maps "name:arch" to the package and the pipelines of the
// entry that install it.
func entryPackages(e *Entry, idx map[string]*Package) map[string]*pkgUse {
	out := map[string]*pkgUse{}
	if e == nil {
		return out
	}
	for _, p := range e.Pipelines {
		for _, s := range p.Stages {
			for _, ref := range stagePackageRefs(s) {
				pkg := idx[ref]
				if pkg == nil {
					// A dangling reference still shows in the diff.
					name, ver, _ := strings.Cut(ref, "=")
					n, a, _ := strings.Cut(name, ":")
					pkg = &Package{Name: n, Arch: a, Version: ver}
				}
				k := pkg.Name + ":" + pkg.Arch
				u := out[k]
				if u == nil {
					u = &pkgUse{pkg: pkg}
					out[k] = u
				}
				if len(u.pipelines) == 0 || u.pipelines[len(u.pipelines)-1] != p.Name {
					u.pipelines = append(u.pipelines, p.Name)
				}
			}
		}
	}
	return out
}

type pkgUse struct {
	pkg       *Package
	pipelines []string
}

func comparePackages(old, new map[string]*pkgUse) []PackageChange {
	var out []PackageChange
	for k, n := range new {
		o := old[k]
		c := PackageChange{Name: n.pkg.Name, Arch: n.pkg.Arch, NewVersion: n.pkg.Version, Pipelines: n.pipelines}
		switch {
		case o == nil:
			c.Change = Added
		case o.pkg.Version != n.pkg.Version:
			c.OldVersion = o.pkg.Version
			c.Change = Upgraded
			if compareVersions(o.pkg.Version, n.pkg.Version) > 0 {
				c.Change = Downgraded
			}
			c.Pipelines = unionPipelines(o.pipelines, n.pipelines)
		case o.pkg.SHA256 != n.pkg.SHA256:
			c.OldVersion = o.pkg.Version
			c.Change = Rebuilt
			c.Pipelines = unionPipelines(o.pipelines, n.pipelines)
		default:
			continue
		}
		out = append(out, c)
	}
	for k, o := range old {
		if new[k] == nil {
			out = append(out, PackageChange{Name: o.pkg.Name, Arch: o.pkg.Arch, Change: Removed, OldVersion: o.pkg.Version, Pipelines: o.pipelines})
		}
	}
	rank := map[string]int{Downgraded: 0, Rebuilt: 1, Upgraded: 2, Added: 3, Removed: 4}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if rank[a.Change] != rank[b.Change] {
			return rank[a.Change] < rank[b.Change]
		}
		return a.Name+":"+a.Arch < b.Name+":"+b.Arch
	})
	return out
}

func unionPipelines(a, b []string) []string {
	out := append([]string(nil), b...)
	for _, p := range a {
		found := false
		for _, q := range out {
			found = found || p == q
		}
		if !found {
			out = append(out, p)
		}
	}
	return out
}

// compareVersions orders Debian versions as dpkg does; one that does not
// parse compares as text.
func compareVersions(a, b string) int {
	va, errA := version.Parse(a)
	vb, errB := version.Parse(b)
	if errA != nil || errB != nil {
		return strings.Compare(a, b)
	}
	return version.Compare(va, vb)
}

// stagePackageRefs returns the package references of a stage's options.
func stagePackageRefs(s Stage) []string {
	var v struct {
		Packages []string `json:"packages"`
	}
	if len(s.Options) == 0 || json.Unmarshal(s.Options, &v) != nil {
		return nil
	}
	return v.Packages
}

// compareEntryStages compares the pipelines of two entries stage by stage.
func compareEntryStages(o, n *Entry) []StageChange {
	om, oorder := pipelineMap(o)
	nm, norder := pipelineMap(n)
	names := append([]string(nil), norder...)
	for _, name := range oorder {
		if nm[name] == nil {
			names = append(names, name)
		}
	}
	var out []StageChange
	for _, name := range names {
		out = append(out, compareStages(name, om[name], nm[name])...)
	}
	return out
}

func pipelineMap(e *Entry) (map[string]*Pipeline, []string) {
	m := map[string]*Pipeline{}
	var order []string
	if e == nil {
		return m, nil
	}
	for i := range e.Pipelines {
		m[e.Pipelines[i].Name] = &e.Pipelines[i]
		order = append(order, e.Pipelines[i].Name)
	}
	return m, order
}

// compareStages pairs the k-th stage of a type in old with the k-th of the
// same type in new, so an inserted stage does not mark all later ones.
func compareStages(pipeline string, o, n *Pipeline) []StageChange {
	group := func(p *Pipeline) (map[string][]Stage, []string) {
		m := map[string][]Stage{}
		var order []string
		if p == nil {
			return m, nil
		}
		for _, s := range p.Stages {
			if m[s.Type] == nil {
				order = append(order, s.Type)
			}
			m[s.Type] = append(m[s.Type], s)
		}
		return m, order
	}
	om, oorder := group(o)
	nm, norder := group(n)
	types := append([]string(nil), norder...)
	for _, t := range oorder {
		if nm[t] == nil {
			types = append(types, t)
		}
	}
	var out []StageChange
	for _, t := range types {
		os, ns := om[t], nm[t]
		for i := 0; i < len(os) || i < len(ns); i++ {
			name := pipeline + "/" + t
			if len(os) > 1 || len(ns) > 1 {
				name += fmt.Sprintf("#%d", i+1)
			}
			var a, b any
			status := "changed"
			switch {
			case i >= len(os):
				status, b = Added, optionsWithoutPackages(ns[i].Options)
			case i >= len(ns):
				status, a = Removed, optionsWithoutPackages(os[i].Options)
			default:
				a, b = optionsWithoutPackages(os[i].Options), optionsWithoutPackages(ns[i].Options)
			}
			fields := diffFields("", a, b)
			if status == "changed" && len(fields) == 0 {
				continue
			}
			out = append(out, StageChange{Stage: name, Status: status, Fields: fields})
		}
	}
	return out
}

// optionsWithoutPackages is a stage's options, decoded, less its package
// list, which the package changes already report.
func optionsWithoutPackages(raw json.RawMessage) any {
	v := decodeJSON(raw)
	if m, ok := v.(map[string]any); ok {
		delete(m, "packages")
	}
	if v == nil {
		return map[string]any{}
	}
	return v
}
