package manifest

import (
	"fmt"
	"strings"
)

// GitHub's limits the Markdown is written for: a pull request's body (or
// an issue comment) holds 65,536 characters; the runner takes a step
// summary of up to 1 MiB (older runners: 128 KiB).
const (
	PullRequestBodyLimit = 65536
	// MarkdownBudget is what Markdown fits in (bytes, so characters too):
	// a pull request's body less 8 KiB for what a caller puts around it
	// (the Action adds a heading and caps its "diff" output at 60,000).
	MarkdownBudget = 56 << 10
)

// foldAt is the number of rows above which a Markdown section is folded
// into <details>.
const foldAt = 10

// maxValue is the longest option value shown in text and Markdown (a
// file's content can be long); the JSON form has it whole.
const maxValue = 160

var changeMark = map[string]string{Added: "+", Removed: "-", Upgraded: "↑", Downgraded: "↓", Rebuilt: "!"}

// Text renders the diff for a terminal: the summary, then each image's
// packages and stage options, then the changelogs asked for.
func (d *Diff) Text() string {
	if d.Empty() {
		return "no changes\n"
	}
	var b strings.Builder
	for _, s := range d.Summary {
		fmt.Fprintf(&b, "%s: %s\n", s.Name, s.line(false))
	}
	for _, n := range d.Notices {
		fmt.Fprintf(&b, "! %s: %s\n", n.Kind, n.Message)
	}
	for _, r := range d.Repositories {
		switch r.Status {
		case Added:
			fmt.Fprintf(&b, "repository %s %s: added (%s)\n", r.URI, r.Suite, r.NewDate)
		case Removed:
			fmt.Fprintf(&b, "repository %s %s: removed\n", r.URI, r.Suite)
		default:
			fmt.Fprintf(&b, "repository %s %s: %s → %s\n", r.URI, r.Suite, r.OldDate, r.NewDate)
		}
	}
	for _, e := range d.Entries {
		b.WriteString("\n" + e.Name)
		if e.Status != "" {
			fmt.Fprintf(&b, " (%s)", e.Status)
		}
		b.WriteString("\n")
		for _, c := range e.Packages {
			fmt.Fprintf(&b, "  %s %s:%s %s (%s)%s\n", changeMark[c.Change], c.Name, c.Arch, c.versions(), strings.Join(c.Pipelines, ", "), c.flags())
		}
		for _, s := range e.Stages {
			for _, f := range s.lines() {
				fmt.Fprintf(&b, "  %s\n", f)
			}
		}
	}
	for _, e := range d.Entries {
		for _, c := range e.Packages {
			if len(c.Changelog) == 0 && c.ChangelogNote == "" {
				continue
			}
			fmt.Fprintf(&b, "\nchangelog of %s %s (%s)\n", c.Name, c.versions(), e.Name)
			if c.ChangelogNote != "" {
				fmt.Fprintf(&b, "  (%s)\n", c.ChangelogNote)
			}
			for i, ce := range c.Changelog {
				if i > 0 {
					b.WriteString("\n")
				}
				b.WriteString(indent(ce.Text, "  "))
			}
		}
	}
	return b.String()
}

func indent(s, by string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = by + l
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

// line is the summary's sentence for an entry.
func (s EntrySummary) line(md bool) string {
	var parts []string
	add := func(n int, what string) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, what))
		}
	}
	if s.Status != "" {
		// Every package of an image added or removed is; the count says
		// enough here.
		n := s.Added + s.Removed
		return fmt.Sprintf("image %s (%d packages, %d stages)", s.Status, n, s.Stages)
	}
	add(s.Upgraded, "upgraded")
	if s.Downgraded > 0 {
		w := fmt.Sprintf("%d downgraded (!)", s.Downgraded)
		if md {
			w = fmt.Sprintf("**%d downgraded** ⚠️", s.Downgraded)
		}
		parts = append(parts, w)
	}
	add(s.Added, "added")
	add(s.Removed, "removed")
	add(s.Rebuilt, "rebuilt under the same version")
	switch {
	case s.Stages == 1:
		parts = append(parts, "1 stage changed")
	case s.Stages > 1:
		parts = append(parts, fmt.Sprintf("%d stages changed", s.Stages))
	}
	if len(parts) == 0 {
		return "no change"
	}
	return strings.Join(parts, ", ")
}

func (c PackageChange) versions() string {
	switch c.Change {
	case Added:
		return c.NewVersion
	case Removed:
		return c.OldVersion
	case Rebuilt:
		return c.NewVersion + " (same version, other sha256)"
	}
	return c.OldVersion + " → " + c.NewVersion
}

func (c PackageChange) flags() string {
	var f string
	if c.Change == Downgraded {
		f += " DOWNGRADE"
	}
	if c.Security != "" {
		f += " [" + c.Security + "]"
	}
	return f
}

// lines are a stage change as "pipeline/type: path old → new", one a
// field.
func (s StageChange) lines() []string {
	name := s.Stage
	if s.Status != "changed" {
		name += " (" + s.Status + ")"
	}
	if len(s.Fields) == 0 {
		return []string{name}
	}
	var out []string
	for _, f := range s.Fields {
		out = append(out, name+": "+f.text())
	}
	return out
}

func (f FieldChange) text() string {
	path := f.Path
	if path == "" {
		path = "options"
	}
	if f.Added != nil || f.Removed != nil {
		var parts []string
		for _, a := range f.Added {
			parts = append(parts, "+"+short(a))
		}
		for _, r := range f.Removed {
			parts = append(parts, "-"+short(r))
		}
		return path + " " + strings.Join(parts, " ")
	}
	return path + " " + value(f.Old) + " → " + value(f.New)
}

func value(raw []byte) string {
	if raw == nil {
		return "(none)"
	}
	return short(string(raw))
}

func short(s string) string {
	if r := []rune(s); len(r) > maxValue {
		return string(r[:maxValue-1]) + "…"
	}
	return s
}

// Markdown renders the diff for a pull request's body or a step summary
// (the Action writes both with it; `ibuild diff --format markdown` prints
// the same): a summary table, security-relevant facts, then each image's
// packages and stage changes, long sections folded into <details>, then
// the changelogs. It fits in MarkdownBudget bytes, and says so when it
// leaves rows out to fit.
func (d *Diff) Markdown() string { return d.MarkdownSized(MarkdownBudget) }

// MarkdownSized is Markdown cut to fit in limit bytes (at least 1 KiB).
func (d *Diff) MarkdownSized(limit int) string {
	if d.Empty() {
		return "No changes to the lockfile.\n"
	}
	if limit < 1024 {
		limit = 1024
	}
	var blocks []mdBlock
	if len(d.Summary) > 0 {
		bl := mdBlock{what: "summary rows", head: "| Image | Changes |\n|---|---|\n"}
		for _, s := range d.Summary {
			bl.rows = append(bl.rows, fmt.Sprintf("| %s | %s |\n", mdCell(s.Name), mdCell2(s.line(true))))
		}
		blocks = append(blocks, bl)
	}
	if len(d.Notices) > 0 {
		bl := mdBlock{what: "security-relevant notes", head: "**Security-relevant**\n\n"}
		for _, n := range d.Notices {
			mark := "ℹ️"
			switch n.Kind {
			case NoticeDowngrade, NoticeRebuilt, NoticeKey:
				mark = "⚠️"
			case NoticeSecurity:
				mark = "🔒"
			}
			bl.rows = append(bl.rows, fmt.Sprintf("- %s %s: %s\n", mark, n.Kind, mdCell(n.Message)))
		}
		blocks = append(blocks, bl)
	}
	if len(d.Repositories) > 0 {
		bl := mdBlock{what: "repository rows", head: "**Repositories**\n\n| Suite | Repository | Change | Old | New |\n|---|---|---|---|---|\n", fold: "repositories"}
		for _, r := range d.Repositories {
			old, nw := r.OldDate, r.NewDate
			if r.OldComponents != nil || r.NewComponents != nil {
				old = strings.TrimSpace(old + " " + strings.Join(r.OldComponents, " "))
				nw = strings.TrimSpace(nw + " " + strings.Join(r.NewComponents, " "))
			}
			if r.OldKeys != nil {
				old = strings.TrimSpace(old + " key " + keyList(r.OldKeys))
			}
			if r.NewKeys != nil {
				nw = strings.TrimSpace(nw + " key " + keyList(r.NewKeys))
			}
			bl.rows = append(bl.rows, fmt.Sprintf("| %s | %s | %s | %s | %s |\n", mdCell(r.Suite), mdCell(r.URI), r.Status, mdCell(orDash(old)), mdCell(orDash(nw))))
		}
		blocks = append(blocks, bl)
	}
	for _, e := range d.Entries {
		title := "### " + mdCell(e.Name)
		if e.Status != "" {
			title += " (" + e.Status + ")"
		}
		blocks = append(blocks, mdBlock{head: title + "\n\n"})
		if len(e.Packages) > 0 {
			bl := mdBlock{what: "package rows of " + mdCell(e.Name), fold: fmt.Sprintf("%d package changes", len(e.Packages)),
				head: "| Package | Arch | Change | Old | New | Pipelines |\n|---|---|---|---|---|---|\n"}
			for _, c := range e.Packages {
				change := c.Change
				switch {
				case c.Change == Downgraded:
					change = "**downgraded** ⚠️"
				case c.Change == Rebuilt:
					change = "**rebuilt** ⚠️ (same version, other sha256)"
				case c.Security != "":
					change += " 🔒 " + mdCell(c.Security)
				}
				bl.rows = append(bl.rows, fmt.Sprintf("| %s | %s | %s | %s | %s | %s |\n", mdCell(c.Name), mdCell(c.Arch), change,
					mdCell(orDash(c.OldVersion)), mdCell(orDash(c.NewVersion)), mdCell(strings.Join(c.Pipelines, ", "))))
			}
			blocks = append(blocks, bl)
		}
		if len(e.Stages) > 0 {
			bl := mdBlock{what: "stage changes of " + mdCell(e.Name), fold: fmt.Sprintf("%d stage changes", len(e.Stages))}
			for _, s := range e.Stages {
				for _, l := range s.mdLines() {
					bl.rows = append(bl.rows, "- "+l+"\n")
				}
			}
			blocks = append(blocks, bl)
		}
	}
	var logs []string
	for _, e := range d.Entries {
		for _, c := range e.Packages {
			if len(c.Changelog) == 0 && c.ChangelogNote == "" {
				continue
			}
			logs = append(logs, mdChangelog(e.Name, c))
		}
	}
	if len(logs) > 0 {
		blocks = append(blocks, mdBlock{what: "changelogs", head: "### Changelogs\n\n", rows: logs})
	}
	return renderBlocks(blocks, limit)
}

// mdLines are a stage change's fields for Markdown.
func (s StageChange) mdLines() []string {
	name := "`" + mdCode(s.Stage) + "`"
	if s.Status != "changed" {
		name += " (" + s.Status + ")"
	}
	if len(s.Fields) == 0 {
		return []string{name}
	}
	var out []string
	for _, f := range s.Fields {
		path := f.Path
		if path == "" {
			path = "options"
		}
		line := name + ": `" + mdCode(path) + "` "
		if f.Added != nil || f.Removed != nil {
			var parts []string
			for _, a := range f.Added {
				parts = append(parts, "`+"+mdCode(short(a))+"`")
			}
			for _, r := range f.Removed {
				parts = append(parts, "`-"+mdCode(short(r))+"`")
			}
			line += strings.Join(parts, " ")
		} else {
			line += mdValue(f.Old) + " → " + mdValue(f.New)
		}
		out = append(out, line)
	}
	return out
}

func mdValue(raw []byte) string {
	if raw == nil {
		return "(none)"
	}
	return "`" + mdCode(short(string(raw))) + "`"
}

// mdChangelog folds one package's changelog entries into <details>; the
// text goes in a fenced block longer than any run of backticks or tildes
// in it, so nothing in it is markup.
func mdChangelog(entry string, c PackageChange) string {
	var b strings.Builder
	n := len(c.Changelog)
	what := fmt.Sprintf("%d entries", n)
	if n == 1 {
		what = "1 entry"
	}
	if c.ChangelogNote != "" && n == 0 {
		what = "none: " + c.ChangelogNote
	}
	fmt.Fprintf(&b, "<details><summary>%s %s (%s): %s</summary>\n\n", mdCell(c.Name), mdCell(c.versions()), mdCell(entry), mdCell(what))
	if n > 0 {
		var text strings.Builder
		for _, ce := range c.Changelog {
			text.WriteString(strings.TrimRight(ce.Text, "\n") + "\n\n")
		}
		body := strings.TrimRight(text.String(), "\n") + "\n"
		fence := strings.Repeat("~", longestRun(body, '~')+3)
		fmt.Fprintf(&b, "%s\n%s%s\n\n", fence, body, fence)
	}
	b.WriteString("</details>\n\n")
	return b.String()
}

func longestRun(s string, c byte) int {
	best, cur := 0, 0
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			cur++
			if cur > best {
				best = cur
			}
		} else {
			cur = 0
		}
	}
	return best
}

// mdBlock is a section of the Markdown: a head, rows that can be left out
// from the end to fit, folded into <details> (summary fold) when long.
type mdBlock struct {
	what string
	head string
	rows []string
	fold string
}

func (bl mdBlock) render(rows []string, left int) string {
	var b strings.Builder
	folded := bl.fold != "" && len(bl.rows) > foldAt
	if folded {
		fmt.Fprintf(&b, "<details><summary>%s</summary>\n\n", bl.fold)
	}
	b.WriteString(bl.head)
	for _, r := range rows {
		b.WriteString(r)
	}
	if left > 0 {
		fmt.Fprintf(&b, "\n_… %d more %s left out to fit._\n", left, bl.what)
	}
	if folded {
		b.WriteString("\n</details>\n")
	}
	if len(bl.rows) > 0 {
		b.WriteString("\n")
	}
	return b.String()
}

// renderBlocks writes the blocks whole when they fit in limit. When they
// do not, each block keeps its head and as many of its rows as its share
// of the room allows (small blocks first give what they leave to the
// later ones), with a line saying how many it left out, and a last line
// says that the text was cut.
func renderBlocks(blocks []mdBlock, limit int) string {
	var b strings.Builder
	full := 0
	for _, bl := range blocks {
		full += len(bl.render(bl.rows, 0))
	}
	if full <= limit {
		for _, bl := range blocks {
			b.WriteString(bl.render(bl.rows, 0))
		}
		return b.String()
	}
	const reserve = 400 // the closing note
	avail := limit - reserve
	withRows := 0
	for _, bl := range blocks {
		avail -= len(bl.render(nil, len(bl.rows)))
		if len(bl.rows) > 0 {
			withRows++
		}
	}
	var cut []string
	for _, bl := range blocks {
		if len(bl.rows) == 0 {
			b.WriteString(bl.render(nil, 0))
			continue
		}
		share := avail / withRows
		withRows--
		k, used := 0, 0
		for k < len(bl.rows) && used+len(bl.rows[k]) <= share {
			used += len(bl.rows[k])
			k++
		}
		if k == len(bl.rows) {
			b.WriteString(bl.render(bl.rows, 0))
		} else {
			b.WriteString(bl.render(bl.rows[:k], len(bl.rows)-k))
			cut = append(cut, bl.what)
		}
		avail -= used
	}
	if len(cut) > 0 {
		note := fmt.Sprintf("_Cut to fit GitHub's limit of %d characters for a pull request's body: left out some %s. `ibuild diff OLD NEW` prints it all._\n", PullRequestBodyLimit, strings.Join(cut, ", "))
		if len(note) > reserve {
			note = fmt.Sprintf("_Cut to fit GitHub's limit of %d characters for a pull request's body: %d sections shortened. `ibuild diff OLD NEW` prints it all._\n", PullRequestBodyLimit, len(cut))
		}
		b.WriteString(note)
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

// mdCell2 is a cell of the tool's own Markdown (bold, emoji): only the
// table's separator is escaped.
func mdCell2(s string) string { return strings.NewReplacer("|", "\\|", "\n", " ").Replace(s) }

// mdCode is text inside `code`: backticks cannot be escaped there, so
// they become quotes.
func mdCode(s string) string {
	return strings.NewReplacer("`", "'", "\n", " ", "\r", " ").Replace(s)
}
