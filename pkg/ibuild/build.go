package ibuild

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"

	"github.com/image-builder-action/image-builder-action/pkg/binfmt"
	"github.com/image-builder-action/image-builder-action/pkg/build"
	"github.com/image-builder-action/image-builder-action/pkg/layout"
	"github.com/image-builder-action/image-builder-action/pkg/lock"
	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/pkg/upload"
)

// BuildRequest asks for entries of a lockfile to be built.
type BuildRequest struct {
	Lockfile string
	// Arches and Types select the entries; an empty list matches every
	// value.
	Arches, Types []string
	// One builds exactly one entry, refusing a selection of several (an
	// empty arch or type then matches when only one entry fits).
	// Otherwise every selected entry is built, each into
	// layout.BuildDir, and a failure names the entry.
	One bool
	// OutputDir is where the files go (default ".").
	OutputDir string
	// CacheDir is the cache's root; packages and trees go to
	// CacheDir/build.
	CacheDir string
	// AllowStale builds a lockfile whose blueprint or image definitions
	// changed since it was locked (BuildResult.Stale says so). A lockfile
	// edited by hand is refused all the same.
	AllowStale bool
	// Events receives progress; Log the output of the tools stages run.
	Events func(BuildEvent)
	Log    io.Writer
	// RegisterBinfmt registers qemu-user-static's binfmt_misc handler
	// for an entry of another architecture when none is (as root), and
	// removes it again when the build ends.
	RegisterBinfmt bool
	// Upload, when set, uploads each image as soon as it is built (before
	// the next entry builds), as ibuild upload would.
	Upload *UploadTarget
	// Options come after the request's.
	Options []build.Option
}

// BuildEvent is progress of one entry: its start (Event and Result nil),
// its build's events, then its end (Result set).
type BuildEvent struct {
	Entry *manifest.Entry
	// Dir is where the entry's files go.
	Dir    string
	Event  build.Event
	Result *build.Result
}

// BuildResult is what a build wrote.
type BuildResult struct {
	Lockfile *Lockfile
	// Stale is set when AllowStale let a stale lockfile through.
	Stale  *lock.StaleError
	Images []BuiltImage
	// Registered are the architectures whose binfmt_misc handler the
	// build registered (RegisterBinfmt), and removed again.
	Registered []string
}

// BuiltImage is one entry built.
type BuiltImage struct {
	Entry *manifest.Entry
	Dir   string
	Files []build.OutputFile
	// Sources count the packages each source served this build.
	Sources []build.SourceCount
	// Uploads are what the image became in the cloud (BuildRequest.Upload).
	Uploads []upload.Result
}

// NoEntryError is a selection that matches no entry of the lockfile.
type NoEntryError struct {
	Arches, Types []string
	// Have names the lockfile's entries (ARCH/TYPE).
	Have []string
}

func (e *NoEntryError) Error() string {
	return fmt.Sprintf("no entry of the lockfile matches arches %q, types %q (it has %s)",
		strings.Join(e.Arches, ","), strings.Join(e.Types, ","), strings.Join(e.Have, ", "))
}

// Select returns the entries of lf whose arch is in arches and type in
// types (an empty list matches every value); *NoEntryError when none is.
func Select(lf *manifest.Lockfile, arches, types []string) ([]*manifest.Entry, error) {
	var out []*manifest.Entry
	var have []string
	for i := range lf.Entries {
		e := &lf.Entries[i]
		have = append(have, e.Name())
		if (len(arches) == 0 || slices.Contains(arches, e.Arch)) && (len(types) == 0 || slices.Contains(types, e.Type)) {
			out = append(out, e)
		}
	}
	if len(out) == 0 {
		return nil, &NoEntryError{Arches: arches, Types: types, Have: have}
	}
	return out, nil
}

// verifyForBuild checks a lockfile before any work, as a build must:
// edited by hand is refused, stale is refused unless allowed.
// A stale lockfile let through is logged as a warning before any work.
func verifyForBuild(ctx context.Context, l *Lockfile, allowStale bool) (*lock.StaleError, error) {
	err := lock.Verify(l.File, l.Path)
	var se *lock.StaleError
	if err != nil && allowStale && errors.As(err, &se) {
		Logger(ctx).WarnContext(ctx, se.Error())
		return se, nil
	}
	return nil, err
}

func first(list []string) string {
	if len(list) == 0 {
		return ""
	}
	return list[0]
}

// Build checks the lockfile (see BuildRequest.AllowStale) and builds the
// selected entries, one after the other.
func Build(ctx context.Context, req BuildRequest) (_ *BuildResult, err error) {
	l, err := ReadLockfile(req.Lockfile)
	if err != nil {
		return nil, err
	}
	var entries []*manifest.Entry
	if req.One {
		if len(req.Arches) > 1 || len(req.Types) > 1 {
			return nil, errors.New("build: one entry asked for, several arches or types named")
		}
		e, err := l.File.Entry(first(req.Arches), first(req.Types))
		if err != nil {
			return nil, err
		}
		entries = []*manifest.Entry{e}
	} else if entries, err = Select(l.File, req.Arches, req.Types); err != nil {
		return nil, err
	}
	res := &BuildResult{Lockfile: l}
	if res.Stale, err = verifyForBuild(ctx, l, req.AllowStale); err != nil {
		return nil, err
	}
	out := req.OutputDir
	if out == "" {
		out = "."
	}
	emit := func(BuildEvent) {}
	if req.Events != nil {
		emit = req.Events
	}
	for _, e := range entries {
		if !req.RegisterBinfmt {
			break
		}
		reg, rerr := binfmt.Register(e.Arch)
		if rerr != nil {
			return nil, rerr
		}
		if reg.Added() {
			res.Registered = append(res.Registered, e.Arch)
		}
		defer func() {
			if uerr := reg.Undo(); uerr != nil && err == nil {
				err = uerr
			}
		}()
	}
	for _, e := range entries {
		dir := layout.BuildDir(out, e, len(entries) > 1)
		emit(BuildEvent{Entry: e, Dir: dir})
		opts := []build.Option{
			build.WithOutputDir(dir),
			build.WithEvents(func(ev build.Event) { emit(BuildEvent{Entry: e, Dir: dir, Event: ev}) }),
		}
		if req.CacheDir != "" {
			opts = append(opts, build.WithCacheDir(filepath.Join(req.CacheDir, "build")))
		}
		if req.Log != nil {
			opts = append(opts, build.WithLog(req.Log))
		}
		br, err := build.Build(ctx, l.File, e.Arch, e.Type, append(opts, req.Options...)...)
		if err != nil {
			if !req.One {
				err = fmt.Errorf("building %s: %w", e.Name(), err)
			}
			return res, err
		}
		emit(BuildEvent{Entry: e, Dir: dir, Result: br})
		img := BuiltImage{Entry: e, Dir: dir, Files: br.Files, Sources: br.Sources}
		if req.Upload != nil {
			// Straight from the build's output: the image just written,
			// verified against the record the build wrote beside it.
			up, err := uploadTo(ctx, req.Lockfile, dir, []string{e.Arch}, []string{e.Type}, []UploadTarget{*req.Upload})
			img.Uploads = up
			if err != nil {
				res.Images = append(res.Images, img)
				return res, err
			}
		}
		res.Images = append(res.Images, img)
	}
	return res, nil
}

// VerifyRequest asks whether an image is what a lockfile's entry builds.
type VerifyRequest struct {
	Lockfile string
	// Arch and Type name the entry (empty matches when only one fits).
	Arch, Type string
	// Image is the file, or a directory holding what a build wrote.
	Image string
	// OutputDir keeps the rebuilt files (default: a temporary directory).
	OutputDir string
	CacheDir  string
	// ReuseTrees trusts cached stage trees instead of running every stage.
	ReuseTrees bool
	AllowStale bool
	Events     func(build.Event)
	Log        io.Writer
	Options    []build.Option
}

// VerifyResult is a rebuild compared with the image.
type VerifyResult struct {
	Lockfile *Lockfile
	Stale    *lock.StaleError
	*build.Verification
}

// Verify checks the lockfile as Build does, rebuilds the entry and
// compares Image with it; VerifyResult.Mismatch says whether it differs.
func Verify(ctx context.Context, req VerifyRequest) (*VerifyResult, error) {
	l, err := ReadLockfile(req.Lockfile)
	if err != nil {
		return nil, err
	}
	res := &VerifyResult{Lockfile: l}
	if res.Stale, err = verifyForBuild(ctx, l, req.AllowStale); err != nil {
		return nil, err
	}
	var opts []build.Option
	if req.CacheDir != "" {
		opts = append(opts, build.WithCacheDir(filepath.Join(req.CacheDir, "build")))
	}
	if req.Events != nil {
		opts = append(opts, build.WithEvents(req.Events))
	}
	if !req.ReuseTrees {
		opts = append(opts, build.WithFreshTrees())
	}
	if req.OutputDir != "" {
		opts = append(opts, build.WithOutputDir(req.OutputDir))
	}
	if req.Log != nil {
		opts = append(opts, build.WithLog(req.Log))
	}
	if res.Verification, err = build.Verify(ctx, l.File, req.Arch, req.Type, req.Image, append(opts, req.Options...)...); err != nil {
		return nil, err
	}
	return res, nil
}
