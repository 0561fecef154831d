package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Diff is what changed between two lockfiles, in the terms a reviewer
// reads: repositories, entries, packages per pipeline, stage options.
type Diff struct {
	Repositories []RepositoryChange `json:"repositories,omitempty"`
	Entries      []EntryDiff        `json:"entries,omitempty"`
}

// RepositoryChange is a suite added, removed, or fetched in another state.
type RepositoryChange struct {
	Suite   string `json:"suite"`
	URI     string `json:"uri"`
	OldDate string `json:"old_date,omitempty"`
	NewDate string `json:"new_date,omitempty"`
}

// EntryDiff is the change of one image.
type EntryDiff struct {
	Name    string           `json:"name"` // distro/arch/type
	Status  string           `json:"status,omitempty"`
	Changes []PipelineChange `json:"pipelines,omitempty"`
}

// PipelineChange lists what changed in one pipeline.
type PipelineChange struct {
	Pipeline string          `json:"pipeline"`
	Status   string          `json:"status,omitempty"` // added, removed
	Added    []PackageChange `json:"added,omitempty"`
	Removed  []PackageChange `json:"removed,omitempty"`
	Changed  []PackageChange `json:"changed,omitempty"`
	Stages   []StageChange   `json:"stages,omitempty"`
}

// PackageChange is one package's versions before and after.
type PackageChange struct {
	Name       string `json:"name"`
	Arch       string `json:"arch"`
	OldVersion string `json:"old_version,omitempty"`
	NewVersion string `json:"new_version,omitempty"`
}

// StageChange is a stage added, removed, or with other options (the
// package lists of debs stages are reported as package changes instead).
type StageChange struct {
	Type       string `json:"type"`
	Status     string `json:"status"` // added, removed, changed
	OldOptions string `json:"old_options,omitempty"`
	NewOptions string `json:"new_options,omitempty"`
}

// Empty reports whether nothing changed.
func (d *Diff) Empty() bool { return len(d.Repositories) == 0 && len(d.Entries) == 0 }

func entryKey(e *Entry) string { return e.Distro + "/" + e.Arch + "/" + e.Type }

// Compare lists the changes from old to new.
func Compare(old, new *Lockfile) *Diff {
	d := &Diff{}
	d.Repositories = compareRepos(old.Repositories, new.Repositories)

	oldIdx, newIdx := old.PackageIndex(), new.PackageIndex()
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
	for _, k := range keys {
		o, n := oldE[k], newE[k]
		ed := EntryDiff{Name: k}
		switch {
		case o == nil:
			ed.Status = "added"
		case n == nil:
			ed.Status = "removed"
		}
		ed.Changes = comparePipelines(o, n, oldIdx, newIdx)
		if ed.Status != "" || len(ed.Changes) > 0 {
			d.Entries = append(d.Entries, ed)
		}
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
			out = append(out, RepositoryChange{Suite: n.Suite, URI: n.URI, NewDate: n.Date})
		case o.InReleaseSHA256 != n.InReleaseSHA256 || strings.Join(o.Components, ",") != strings.Join(n.Components, ","):
			out = append(out, RepositoryChange{Suite: n.Suite, URI: n.URI, OldDate: o.Date, NewDate: n.Date})
		}
	}
	for i := range old {
		if !seen[key(&old[i])] {
			out = append(out, RepositoryChange{Suite: old[i].Suite, URI: old[i].URI, OldDate: old[i].Date})
		}
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

func comparePipelines(o, n *Entry, oldIdx, newIdx map[string]*Package) []PipelineChange {
	om, oorder := pipelineMap(o)
	nm, norder := pipelineMap(n)
	names := append([]string(nil), norder...)
	for _, name := range oorder {
		if nm[name] == nil {
			names = append(names, name)
		}
	}
	var out []PipelineChange
	for _, name := range names {
		op, np := om[name], nm[name]
		pc := PipelineChange{Pipeline: name}
		switch {
		case op == nil:
			pc.Status = "added"
		case np == nil:
			pc.Status = "removed"
		}
		pc.Added, pc.Removed, pc.Changed = comparePackages(pipelinePackages(op, oldIdx), pipelinePackages(np, newIdx))
		pc.Stages = compareStages(op, np)
		if pc.Status != "" || len(pc.Added)+len(pc.Removed)+len(pc.Changed)+len(pc.Stages) > 0 {
			out = append(out, pc)
		}
	}
	return out
}

// pipelinePackages maps "name:arch" to the version a pipeline installs.
func pipelinePackages(p *Pipeline, idx map[string]*Package) map[string]*Package {
	out := map[string]*Package{}
	if p == nil {
		return out
	}
	for _, s := range p.Stages {
		for _, ref := range stagePackageRefs(s) {
			if pkg := idx[ref]; pkg != nil {
				out[pkg.Name+":"+pkg.Arch] = pkg
			} else {
				// A dangling reference still shows in the diff.
				name, ver, _ := strings.Cut(ref, "=")
				n, a, _ := strings.Cut(name, ":")
				out[name] = &Package{Name: n, Arch: a, Version: ver}
			}
		}
	}
	return out
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

func comparePackages(old, new map[string]*Package) (added, removed, changed []PackageChange) {
	for k, n := range new {
		o := old[k]
		switch {
		case o == nil:
			added = append(added, PackageChange{Name: n.Name, Arch: n.Arch, NewVersion: n.Version})
		case o.Version != n.Version || o.SHA256 != n.SHA256:
			changed = append(changed, PackageChange{Name: n.Name, Arch: n.Arch, OldVersion: o.Version, NewVersion: n.Version})
		}
	}
	for k, o := range old {
		if new[k] == nil {
			removed = append(removed, PackageChange{Name: o.Name, Arch: o.Arch, OldVersion: o.Version})
		}
	}
	for _, l := range [][]PackageChange{added, removed, changed} {
		sort.Slice(l, func(i, j int) bool { return l[i].Name+":"+l[i].Arch < l[j].Name+":"+l[j].Arch })
	}
	return added, removed, changed
}

// compareStages pairs the k-th stage of a type in old with the k-th of the
// same type in new, so an inserted stage does not mark all later ones.
func compareStages(o, n *Pipeline) []StageChange {
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
			switch {
			case i >= len(os):
				out = append(out, StageChange{Type: t, Status: "added", NewOptions: optionsWithoutPackages(ns[i].Options)})
			case i >= len(ns):
				out = append(out, StageChange{Type: t, Status: "removed", OldOptions: optionsWithoutPackages(os[i].Options)})
			default:
				a, b := optionsWithoutPackages(os[i].Options), optionsWithoutPackages(ns[i].Options)
				if a != b {
					out = append(out, StageChange{Type: t, Status: "changed", OldOptions: a, NewOptions: b})
				}
			}
		}
	}
	return out
}

// optionsWithoutPackages is a stage's canonical options less its package
// list, which the package changes already report.
func optionsWithoutPackages(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "{}"
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		c, _ := canonicalJSON(raw)
		return string(c)
	}
	delete(m, "packages")
	b, _ := json.Marshal(m)
	c, _ := canonicalJSON(b)
	return string(c)
}

// Text renders the diff for a terminal.
func (d *Diff) Text() string {
	if d.Empty() {
		return "no changes\n"
	}
	var b bytes.Buffer
	for _, r := range d.Repositories {
		switch {
		case r.OldDate == "":
			fmt.Fprintf(&b, "repository %s %s: added (%s)\n", r.URI, r.Suite, r.NewDate)
		case r.NewDate == "":
			fmt.Fprintf(&b, "repository %s %s: removed\n", r.URI, r.Suite)
		default:
			fmt.Fprintf(&b, "repository %s %s: %s -> %s\n", r.URI, r.Suite, r.OldDate, r.NewDate)
		}
	}
	for _, e := range d.Entries {
		fmt.Fprintf(&b, "%s", e.Name)
		if e.Status != "" {
			fmt.Fprintf(&b, " (%s)", e.Status)
		}
		b.WriteString("\n")
		for _, p := range e.Changes {
			fmt.Fprintf(&b, "  pipeline %s", p.Pipeline)
			if p.Status != "" {
				fmt.Fprintf(&b, " (%s)", p.Status)
			}
			b.WriteString("\n")
			for _, c := range p.Added {
				fmt.Fprintf(&b, "    + %s:%s %s\n", c.Name, c.Arch, c.NewVersion)
			}
			for _, c := range p.Removed {
				fmt.Fprintf(&b, "    - %s:%s %s\n", c.Name, c.Arch, c.OldVersion)
			}
			for _, c := range p.Changed {
				fmt.Fprintf(&b, "    ~ %s:%s %s -> %s\n", c.Name, c.Arch, c.OldVersion, c.NewVersion)
			}
			for _, s := range p.Stages {
				switch s.Status {
				case "added":
					fmt.Fprintf(&b, "    + stage %s %s\n", s.Type, s.NewOptions)
				case "removed":
					fmt.Fprintf(&b, "    - stage %s %s\n", s.Type, s.OldOptions)
				default:
					fmt.Fprintf(&b, "    ~ stage %s\n        old: %s\n        new: %s\n", s.Type, s.OldOptions, s.NewOptions)
				}
			}
		}
	}
	return b.String()
}

// Markdown renders the diff as tables for a pull request or a step
// summary: one table of package changes per entry, then stage changes.
func (d *Diff) Markdown() string {
	if d.Empty() {
		return "No changes to the lockfile.\n"
	}
	var b bytes.Buffer
	if len(d.Repositories) > 0 {
		b.WriteString("### Repositories\n\n| Suite | Repository | Old | New |\n|---|---|---|---|\n")
		for _, r := range d.Repositories {
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", mdCell(r.Suite), mdCell(r.URI), mdCell(orDash(r.OldDate)), mdCell(orDash(r.NewDate)))
		}
		b.WriteString("\n")
	}
	for _, e := range d.Entries {
		fmt.Fprintf(&b, "### %s", mdCell(e.Name))
		if e.Status != "" {
			fmt.Fprintf(&b, " (%s)", e.Status)
		}
		b.WriteString("\n\n")
		var rows, stages []string
		for _, p := range e.Changes {
			for _, c := range p.Added {
				rows = append(rows, fmt.Sprintf("| %s | %s | %s | – | %s |", mdCell(c.Name), mdCell(c.Arch), p.Pipeline, mdCell(c.NewVersion)))
			}
			for _, c := range p.Removed {
				rows = append(rows, fmt.Sprintf("| %s | %s | %s | %s | – |", mdCell(c.Name), mdCell(c.Arch), p.Pipeline, mdCell(c.OldVersion)))
			}
			for _, c := range p.Changed {
				rows = append(rows, fmt.Sprintf("| %s | %s | %s | %s | %s |", mdCell(c.Name), mdCell(c.Arch), p.Pipeline, mdCell(c.OldVersion), mdCell(c.NewVersion)))
			}
			for _, s := range p.Stages {
				stages = append(stages, fmt.Sprintf("| %s | %s | %s | `%s` | `%s` |", p.Pipeline, s.Type, s.Status, mdCode(s.OldOptions), mdCode(s.NewOptions)))
			}
		}
		if len(rows) > 0 {
			b.WriteString("| Package | Arch | Pipeline | Old | New |\n|---|---|---|---|---|\n")
			b.WriteString(strings.Join(rows, "\n"))
			b.WriteString("\n\n")
		}
		if len(stages) > 0 {
			b.WriteString("| Pipeline | Stage | Change | Old options | New options |\n|---|---|---|---|---|\n")
			b.WriteString(strings.Join(stages, "\n"))
			b.WriteString("\n\n")
		}
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

// mdCell escapes what would break a table cell or inject markup: package
// metadata is outside data.
func mdCell(s string) string {
	r := strings.NewReplacer("|", "\\|", "\n", " ", "\r", " ", "<", "&lt;", ">", "&gt;", "`", "'", "*", "\\*", "_", "\\_", "[", "\\[", "]", "\\]")
	return r.Replace(s)
}

func mdCode(s string) string {
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return strings.NewReplacer("`", "'", "|", "\\|", "\n", " ").Replace(s)
}
