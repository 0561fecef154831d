package action

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
	"github.com/image-builder-action/image-builder-action/pkg/build"
	"github.com/image-builder-action/image-builder-action/pkg/ibuild"
	"github.com/image-builder-action/image-builder-action/pkg/lock"
	"github.com/image-builder-action/image-builder-action/pkg/manifest"
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

// repositories are where lock and check find metadata: the cache below
// cache-dir, the host's apt sources.
func (r *runner) repositories() ibuild.Repositories {
	return ibuild.Repositories{CacheDir: r.cacheDir()}
}

// blueprintPath is the blueprint input, resolved.
func (r *runner) blueprintPath() (string, error) {
	if r.in.Blueprint == "" {
		return "", errors.New("input blueprint: required")
	}
	return r.path(r.in.Blueprint), nil
}

func (r *runner) lock(ctx context.Context) error {
	bpPath, err := r.blueprintPath()
	if err != nil {
		return err
	}
	lockPath, err := r.lockPath()
	if err != nil {
		return err
	}
	var res *ibuild.LockResult
	err = r.log.group("lock "+r.rel(bpPath), func() error {
		var err error
		res, err = ibuild.Lock(ctx, ibuild.LockRequest{
			Blueprint: bpPath, Lockfile: lockPath,
			Distro: r.in.Distro, Arches: r.in.Arches, Types: r.in.Types,
			Repositories: r.repositories(), Options: r.opts.lock,
		})
		if err != nil {
			return err
		}
		for _, w := range res.Warnings {
			// A plaintext password in the blueprint, say: the lock
			// honours it, the pull request should show it.
			r.gh.WithFieldsMap(map[string]string{"title": "blueprint"}).Warningf("%s", r.relText(w))
		}
		fmt.Fprintf(r.log, "%d entries, %d packages\n", len(res.Lockfile.Entries), len(res.Lockfile.Packages))
		return nil
	})
	if err != nil {
		return err
	}
	lf := res.Lockfile
	var sum strings.Builder
	fmt.Fprintf(&sum, "## ibuild lock\n\n")
	diffMD := ""
	switch {
	case !res.Existed:
		diffMD = fmt.Sprintf("New lockfile `%s`: %d entries, %d packages.\n", r.rel(lockPath), len(lf.Entries), len(lf.Packages))
	case !res.Changed:
		diffMD = fmt.Sprintf("`%s` is up to date: locking again changed nothing.\n", r.rel(lockPath))
	case res.PreviousErr != nil:
		diffMD = fmt.Sprintf("`%s` was rewritten; the old file could not be read to compare (%v).\n", r.rel(lockPath), r.relText(res.PreviousErr.Error()))
	default:
		diffMD = fmt.Sprintf("`%s` changed:\n\n%s", r.rel(lockPath), res.Diff.Markdown())
		if err := r.log.group("changes", func() error { return r.log.untrusted(res.Diff.Text()) }); err != nil {
			return err
		}
	}
	if res.Changed {
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
	if err := r.setOutputs("lockfile", r.rel(lockPath), "changed", fmt.Sprint(res.Changed), "matrix", string(matrix), "diff", truncate(diffMD, maxDiffOut)); err != nil {
		return err
	}
	return r.files.AddStepSummary(truncate(sum.String(), maxSummary))
}

func (r *runner) check(ctx context.Context) error {
	bpPath, err := r.blueprintPath()
	if err != nil {
		return err
	}
	lockPath, err := r.lockPath()
	if err != nil {
		return err
	}
	res, cerr := ibuild.Check(ctx, ibuild.CheckRequest{
		Blueprint: bpPath, Lockfile: lockPath, Name: r.rel(lockPath),
		Repositories: r.repositories(), Options: r.opts.lock,
	})
	var edited *ibuild.EditedError
	switch {
	case errors.Is(cerr, fs.ErrNotExist):
		msg := fmt.Sprintf("%s does not exist: lock the blueprint (`ibuild lock %s`, or this action with command: lock) and commit the lockfile", r.rel(lockPath), r.rel(bpPath))
		r.annotateFile(bpPath, 0, "no lockfile", msg)
		r.files.AddStepSummary("## ibuild check\n\n" + msg + "\n")
		return reported{errors.New(msg)}
	case errors.As(cerr, &edited):
		// A lockfile edited by hand or merged badly is refused here, on
		// the pull request, rather than when main builds it.
		msg := fmt.Sprintf("%s: %v", r.rel(lockPath), edited.Err)
		r.annotateFile(lockPath, 1, "lockfile changed by hand", msg)
		if err := r.setOutputs("lockfile", r.rel(lockPath), "changed", "true", "diff", ""); err != nil {
			return err
		}
		r.files.AddStepSummary("## ibuild check\n\n" + msg + "\n")
		return reported{errors.New(msg)}
	case cerr != nil:
		return cerr
	}
	matrix, err := json.Marshal(res.Lockfile.Matrix())
	if err != nil {
		return err
	}
	se := res.Stale
	if se == nil {
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
	return reported{se}
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

func (r *runner) build(ctx context.Context) error {
	lockPath, err := r.lockPath()
	if err != nil {
		return err
	}
	// Without arches, the machine's architecture.
	arches := r.in.Arches
	if len(arches) == 0 {
		arches = []string{lock.HostArch()}
	}
	outDir := r.path(r.in.OutputDir)
	stores, err := r.stores(ctx)
	if err != nil {
		return err
	}
	var bl *buildLog
	res, err := ibuild.Build(ctx, ibuild.BuildRequest{
		Lockfile: lockPath, Arches: arches, Types: r.in.Types,
		OutputDir: outDir, CacheDir: r.cacheDir(), Log: r.log,
		// An entry of another architecture runs through the handler
		// docker/setup-qemu-action registered: the build's container
		// mounts binfmt_misc to see it (and unmounts it again).
		RegisterBinfmt: true,
		Options:        append([]build.Option{build.WithStores(stores...)}, r.opts.build...),
		Events: func(e ibuild.BuildEvent) {
			switch {
			case e.Event != nil:
				bl.event(e.Event)
			case e.Result == nil:
				fmt.Fprintf(r.log, "building %s from %s into %s\n", e.Entry.Name(), r.rel(lockPath), r.rel(e.Dir))
				bl = &buildLog{log: r.log}
			default:
				bl.close()
				fmt.Fprintf(r.log, "built %s: %d stages ran, %d from the cache\n", e.Entry.Name(), bl.ran, bl.hits)
				for _, s := range e.Result.Sources {
					fmt.Fprintf(r.log, "packages from %s: %d (%.1f MiB)\n", s.Source, s.Packages, float64(s.Bytes)/(1<<20))
				}
				r.adopt(outDir, filepath.Dir(e.Dir), e.Dir)
				for _, f := range e.Result.Files {
					r.adopt(f.Path)
					fmt.Fprintf(r.log, "%s\t%d\tsha256:%s\n", r.rel(f.Path), f.Size, f.SHA256)
				}
			}
		},
	})
	if bl != nil {
		bl.close()
	}
	var ne *ibuild.NoEntryError
	if errors.As(err, &ne) {
		return fmt.Errorf("input arches %q, types %q: no such entry in the lockfile (it has %s)",
			strings.Join(ne.Arches, ","), strings.Join(ne.Types, ","), strings.Join(ne.Have, ", "))
	}
	if err != nil {
		return err
	}
	var images []Image
	for _, img := range res.Images {
		for _, f := range img.Files {
			images = append(images, Image{Arch: img.Entry.Arch, Type: img.Entry.Type, Path: r.rel(f.Path), Size: f.Size, SHA256: f.SHA256})
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
