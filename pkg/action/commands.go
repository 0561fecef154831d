package action

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
	"github.com/image-builder-action/image-builder-action/pkg/build"
	"github.com/image-builder-action/image-builder-action/pkg/lock"
	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/pkg/repo"
)

// Limits GitHub sets: the runner drops a step summary over 128 KiB
// (actions/runner CreateStepSummaryCommand), a pull request's body holds
// 65,536 characters (the "diff" output is meant for one).
const (
	maxSummary = 120 << 10
	maxDiffOut = 60000
)

// Image is one entry of the "images" output: a built (and, after publish,
// pushed) image file.
type Image struct {
	Arch string `json:"arch"`
	Type string `json:"type"`
	// Path is relative to the workspace when the file lies inside it.
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// Digest is the pushed manifest's digest (publish only).
	Digest string `json:"digest,omitempty"`
}

// lockOptions are the lock options the inputs give, then the caller's.
func (r *runner) lockOptions(lockPath string) []lock.Option {
	client := &repo.Client{CacheDir: filepath.Join(r.cacheDir(), "metadata")}
	opts := []lock.Option{
		lock.WithFetcher(client),
		lock.WithLockDir(filepath.Dir(lockPath)),
		lock.WithPrevious(lockPath),
	}
	return append(opts, r.opts.lock...)
}

func (r *runner) loadBlueprint() (*blueprint.Blueprint, string, error) {
	if r.in.Blueprint == "" {
		return nil, "", errors.New("input blueprint: required")
	}
	p := r.path(r.in.Blueprint)
	bp, err := blueprint.Load(p)
	return bp, p, err
}

func (r *runner) lock(ctx context.Context) error {
	bp, bpPath, err := r.loadBlueprint()
	if err != nil {
		return err
	}
	lockPath, err := r.lockPath()
	if err != nil {
		return err
	}
	opts := append([]lock.Option{
		lock.WithDistro(r.in.Distro),
		lock.WithArches(r.in.Arches...),
		lock.WithTypes(r.in.Types...),
	}, r.lockOptions(lockPath)...)
	var lf *manifest.Lockfile
	err = r.log.group("lock "+r.rel(bpPath), func() error {
		var err error
		if lf, err = lock.Lock(ctx, bp, bpPath, opts...); err != nil {
			return err
		}
		fmt.Fprintf(r.log, "%d entries, %d packages\n", len(lf.Entries), len(lf.Packages))
		return nil
	})
	if err != nil {
		return err
	}
	data, err := lf.Marshal()
	if err != nil {
		return err
	}
	old, err := os.ReadFile(lockPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("reading lockfile %s: %w", lockPath, err)
	}
	changed := !bytes.Equal(old, data)
	var sum strings.Builder
	fmt.Fprintf(&sum, "## ibuild lock\n\n")
	diffMD := ""
	switch {
	case old == nil:
		diffMD = fmt.Sprintf("New lockfile `%s`: %d entries, %d packages.\n", r.rel(lockPath), len(lf.Entries), len(lf.Packages))
	case !changed:
		diffMD = fmt.Sprintf("`%s` is up to date: locking again changed nothing.\n", r.rel(lockPath))
	default:
		prev, perr := manifest.Parse(lockPath, old)
		if perr != nil {
			diffMD = fmt.Sprintf("`%s` was rewritten; the old file could not be read to compare (%v).\n", r.rel(lockPath), r.relText(perr.Error()))
			break
		}
		d := manifest.Compare(prev, lf)
		diffMD = fmt.Sprintf("`%s` changed:\n\n%s", r.rel(lockPath), d.Markdown())
		if err := r.log.group("changes", func() error { return r.log.untrusted(d.Text()) }); err != nil {
			return err
		}
	}
	if changed {
		if err := lf.Write(lockPath); err != nil {
			return err
		}
		r.adopt(lockPath)
		fmt.Fprintf(r.log, "wrote %s\n", r.rel(lockPath))
	} else {
		fmt.Fprintf(r.log, "%s is up to date\n", r.rel(lockPath))
	}
	sum.WriteString(diffMD)
	matrix, err := json.Marshal(lf.Matrix())
	if err != nil {
		return err
	}
	if err := r.setOutputs("lockfile", r.rel(lockPath), "changed", fmt.Sprint(changed), "matrix", string(matrix), "diff", truncate(diffMD, maxDiffOut)); err != nil {
		return err
	}
	return r.files.AddStepSummary(truncate(sum.String(), maxSummary))
}

func (r *runner) check(ctx context.Context) error {
	bp, bpPath, err := r.loadBlueprint()
	if err != nil {
		return err
	}
	lockPath, err := r.lockPath()
	if err != nil {
		return err
	}
	lf, err := manifest.Load(lockPath)
	if errors.Is(err, fs.ErrNotExist) {
		msg := fmt.Sprintf("%s does not exist: lock the blueprint (`ibuild lock %s`, or this action with command: lock) and commit the lockfile", r.rel(lockPath), r.rel(bpPath))
		r.annotateFile(bpPath, 0, "no lockfile", msg)
		r.files.AddStepSummary("## ibuild check\n\n" + msg + "\n")
		return reported{errors.New(msg)}
	}
	if err != nil {
		return err
	}
	// A lockfile edited by hand or merged badly is refused here, on the
	// pull request, rather than when main builds it.
	if err := lf.VerifyDigest(); err != nil {
		msg := fmt.Sprintf("%s: %v", r.rel(lockPath), err)
		r.annotateFile(lockPath, 1, "lockfile changed by hand", msg)
		if err := r.setOutputs("lockfile", r.rel(lockPath), "changed", "true", "diff", ""); err != nil {
			return err
		}
		r.files.AddStepSummary("## ibuild check\n\n" + msg + "\n")
		return reported{errors.New(msg)}
	}
	var cerr error
	r.log.group("check "+r.rel(lockPath), func() error {
		cerr = lock.Check(ctx, lf, r.rel(lockPath), bp, bpPath, r.lockOptions(lockPath)...)
		return nil
	})
	matrix, err := json.Marshal(lf.Matrix())
	if err != nil {
		return err
	}
	var se *lock.StaleError
	if !errors.As(cerr, &se) {
		if cerr != nil {
			return cerr
		}
		fmt.Fprintf(r.log, "%s is up to date with %s\n", r.rel(lockPath), r.rel(bpPath))
		if err := r.setOutputs("lockfile", r.rel(lockPath), "changed", "false", "matrix", string(matrix), "diff", ""); err != nil {
			return err
		}
		return r.files.AddStepSummary(fmt.Sprintf("## ibuild check\n\n`%s` is up to date with `%s`.\n", r.rel(lockPath), r.rel(bpPath)))
	}

	// Stale: say why and what locking again would change, on the
	// lockfile (annotation), in the summary and in the outputs.
	var sum strings.Builder
	fmt.Fprintf(&sum, "## ibuild check: `%s` is stale\n\n", r.rel(lockPath))
	for _, reason := range se.Reasons {
		fmt.Fprintf(&sum, "- %s\n", r.relText(reason))
	}
	fmt.Fprintf(&sum, "\nLock again (`ibuild lock %s`, or this action with `command: lock`) and commit the result.\n\n", r.rel(bpPath))
	diffMD := ""
	switch {
	case se.Diff != nil:
		diffMD = se.Diff.Markdown()
		sum.WriteString("Locking again would change:\n\n" + diffMD)
		r.log.group("what locking again would change", func() error { return r.log.untrusted(se.Diff.Text()) })
	case se.RelockErr != nil:
		fmt.Fprintf(&sum, "Locking again to show the changes failed: %s\n", r.relText(se.RelockErr.Error()))
	}
	msg := fmt.Sprintf("%s is stale: %s. Lock again and commit the result.", r.rel(lockPath), strings.Join(se.Reasons, "; "))
	if se.Diff != nil && !se.Diff.Empty() {
		msg += " Locking again would change:\n" + truncate(se.Diff.Text(), 4000)
	}
	r.annotateFile(lockPath, 1, "stale lockfile", msg)
	if len(blueprint.Errors(se.RelockErr)) > 0 {
		// Locking again failed on the blueprint: point at the lines.
		r.annotate(se.RelockErr, "ibuild check")
	}
	if err := r.setOutputs("lockfile", r.rel(lockPath), "changed", "true", "matrix", string(matrix), "diff", truncate(diffMD, maxDiffOut)); err != nil {
		return err
	}
	if err := r.files.AddStepSummary(truncate(sum.String(), maxSummary)); err != nil {
		return err
	}
	return reported{cerr}
}

func (r *runner) matrix() error {
	lockPath, err := r.lockPath()
	if err != nil {
		return err
	}
	lf, err := manifest.Load(lockPath)
	if err != nil {
		return err
	}
	m := lf.Matrix()
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	fmt.Fprintf(r.log, "%s\n", data)
	var sum strings.Builder
	fmt.Fprintf(&sum, "## ibuild matrix\n\n`%s`: %d entries.\n\n| Distro | Arch | Type |\n|---|---|---|\n", r.rel(lockPath), len(m["include"]))
	for _, e := range m["include"] {
		fmt.Fprintf(&sum, "| %s | %s | %s |\n", e.Distro, e.Arch, e.Type)
	}
	if err := r.setOutputs("lockfile", r.rel(lockPath), "matrix", string(data)); err != nil {
		return err
	}
	return r.files.AddStepSummary(sum.String())
}

// selected lists the lockfile's entries the arches and types inputs name;
// without arches, the entries of the machine's architecture (an image is
// built on a host of its architecture).
func (r *runner) selected(lf *manifest.Lockfile) ([]manifest.Entry, error) {
	arches := r.in.Arches
	if len(arches) == 0 {
		arches = []string{lock.HostArch()}
	}
	var out []manifest.Entry
	for _, e := range lf.Entries {
		if contains(arches, e.Arch) && (len(r.in.Types) == 0 || contains(r.in.Types, e.Type)) {
			out = append(out, e)
		}
	}
	if len(out) == 0 {
		var have []string
		for _, e := range lf.Entries {
			have = append(have, e.Name())
		}
		return nil, fmt.Errorf("input arches %q, types %q: no such entry in the lockfile (it has %s)",
			strings.Join(arches, ","), strings.Join(r.in.Types, ","), strings.Join(have, ", "))
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (r *runner) build(ctx context.Context) error {
	lockPath, err := r.lockPath()
	if err != nil {
		return err
	}
	lf, err := manifest.Load(lockPath)
	if err != nil {
		return err
	}
	entries, err := r.selected(lf)
	if err != nil {
		return err
	}
	// As `ibuild build` does: a lockfile edited by hand, or stale against
	// its blueprint or these image definitions, is refused before any
	// work.
	if err := lock.Verify(lf, lockPath); err != nil {
		return err
	}
	outDir := r.path(r.in.OutputDir)
	var images []Image
	for _, e := range entries {
		// One entry (a matrix job) writes straight into output-dir;
		// several would collide on file names, so each gets ARCH/TYPE/,
		// one of the places publish looks.
		dir := outDir
		if len(entries) > 1 {
			dir = filepath.Join(outDir, e.Arch, e.Type)
		}
		fmt.Fprintf(r.log, "building %s from %s into %s\n", e.Name(), r.rel(lockPath), r.rel(dir))
		bl := &buildLog{log: r.log}
		opts := append([]build.Option{
			build.WithOutputDir(dir),
			build.WithCacheDir(filepath.Join(r.cacheDir(), "build")),
			build.WithEvents(bl.event),
			build.WithLog(r.log),
		}, r.opts.build...)
		res, err := build.Build(ctx, lf, e.Arch, e.Type, opts...)
		bl.close()
		if err != nil {
			return fmt.Errorf("building %s: %w", e.Name(), err)
		}
		fmt.Fprintf(r.log, "built %s: %d stages ran, %d from the cache\n", e.Name(), bl.ran, bl.hits)
		r.adopt(outDir, filepath.Dir(dir), dir)
		for _, f := range res.Files {
			r.adopt(f.Path)
			images = append(images, Image{Arch: e.Arch, Type: e.Type, Path: r.rel(f.Path), Size: f.Size, SHA256: f.SHA256})
			fmt.Fprintf(r.log, "%s\t%d\tsha256:%s\n", r.rel(f.Path), f.Size, f.SHA256)
		}
	}
	data, err := json.Marshal(images)
	if err != nil {
		return err
	}
	if err := r.setOutputs("lockfile", r.rel(lockPath), "images", string(data)); err != nil {
		return err
	}
	return r.files.AddStepSummary("## ibuild build\n\n" + imagesTable(images))
}

// imagesTable renders images as the summary's table.
func imagesTable(images []Image) string {
	var b strings.Builder
	withDigest := false
	for _, im := range images {
		withDigest = withDigest || im.Digest != ""
	}
	b.WriteString("| Arch | Type | File | Size | SHA-256 |")
	if withDigest {
		b.WriteString(" Digest |")
	}
	b.WriteString("\n|---|---|---|---:|---|")
	if withDigest {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, im := range images {
		fmt.Fprintf(&b, "| %s | %s | `%s` | %s | `%s` |", mdCell(im.Arch), mdCell(im.Type), mdCell(im.Path), humanSize(im.Size), im.SHA256)
		if withDigest {
			fmt.Fprintf(&b, " `%s` |", mdCell(im.Digest))
		}
		b.WriteString("\n")
	}
	return b.String()
}

func mdCell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ", "`", "'").Replace(s)
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// truncate cuts s to at most max bytes at a line boundary, saying so.
func truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	const note = "\n… (truncated; the job's log has the whole text)\n"
	cut := s[:max-len(note)]
	if i := strings.LastIndexByte(cut, '\n'); i > 0 {
		cut = cut[:i]
	}
	return cut + note
}
