package ibuild

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
	"github.com/image-builder-action/image-builder-action/pkg/lock"
	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/pkg/repo"
)

// Repositories says where package metadata comes from, for Lock and Check.
type Repositories struct {
	// Sources replace the host's apt sources when set.
	Sources []repo.Source
	// Keyring verifies the sources (default: the distro's).
	Keyring string
	// CacheDir is the cache's root; metadata goes to CacheDir/metadata.
	CacheDir string
	// Offline uses cached metadata only.
	Offline bool
	// Memory, when set, keeps parsed indices in memory for every lock that
	// shares it (a service's); nil reads them from CacheDir each time.
	Memory *repo.IndexCache
}

func (r Repositories) options() []lock.Option {
	client := &repo.Client{CacheDir: filepath.Join(r.CacheDir, "metadata"), Keyring: r.Keyring, Offline: r.Offline, Memory: r.Memory}
	opts := []lock.Option{lock.WithFetcher(client)}
	if len(r.Sources) > 0 {
		opts = append(opts, lock.WithSources(r.Sources...))
	}
	return opts
}

// LockRequest asks for a blueprint to be locked.
type LockRequest struct {
	// Blueprint is the blueprint's path.
	Blueprint string
	// Lockfile is where the lockfile goes (default DefaultLockPath).
	Lockfile string
	// Distro overrides the blueprint's; empty Arches means the host's,
	// empty Types qcow2.
	Distro        string
	Arches, Types []string
	Repositories  Repositories
	// NewIDs draws a new id seed (new partition and file system UUIDs)
	// instead of keeping the previous lockfile's.
	NewIDs bool
	// Options come after the request's (tests pass a fixture fetcher and
	// image definitions).
	Options []lock.Option
}

// LockResult is a lockfile written (or found unchanged).
type LockResult struct {
	Path     string
	Lockfile *manifest.Lockfile
	// Existed says a lockfile was at Path before; Changed that its bytes
	// differ from the new ones (only then is the file written).
	Existed, Changed bool
	// Diff is what changed against the previous lockfile; nil when there
	// was none, nothing changed, or it could not be read (PreviousErr).
	Diff        *manifest.Diff
	PreviousErr error
	// Warnings are what lock honoured but the user should know about (a
	// plaintext password in the blueprint), located in the blueprint.
	Warnings []string
}

// Lock resolves the blueprint into a lockfile and writes it, atomically
// and only when its bytes change. A failure leaves the old file as it was.
func Lock(ctx context.Context, req LockRequest) (*LockResult, error) {
	if req.Blueprint == "" {
		return nil, errors.New("lock: no blueprint given")
	}
	out := req.Lockfile
	if out == "" {
		out = DefaultLockPath(req.Blueprint)
	}
	bp, err := blueprint.Load(req.Blueprint)
	if err != nil {
		return nil, err
	}
	opts := append([]lock.Option{
		lock.WithLockDir(filepath.Dir(out)),
		lock.WithDistro(req.Distro),
		lock.WithArches(req.Arches...),
		lock.WithTypes(req.Types...),
		lock.WithPrevious(out),
	}, req.Repositories.options()...)
	if req.NewIDs {
		opts = append(opts, lock.WithNewIDs())
	}
	var warnings []string
	opts = append(opts, lock.WithWarn(func(msg string) { warnings = append(warnings, msg) }))
	lf, err := lock.Lock(ctx, bp, req.Blueprint, append(opts, req.Options...)...)
	if err != nil {
		return nil, err
	}
	data, err := lf.Marshal()
	if err != nil {
		return nil, err
	}
	old, err := manifest.ReadFile(out)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	res := &LockResult{Path: out, Lockfile: lf, Existed: err == nil, Changed: err != nil || !bytes.Equal(old, data), Warnings: warnings}
	if res.Existed && res.Changed {
		if prev, err := manifest.Parse(out, old); err != nil {
			res.PreviousErr = err
		} else {
			res.Diff = manifest.Compare(prev, lf)
		}
	}
	if res.Changed {
		if err := manifest.WriteFileAtomic(out, data, 0o644); err != nil {
			return nil, fmt.Errorf("writing lockfile %s: %w", out, err)
		}
	}
	return res, nil
}

// CheckRequest asks whether a lockfile still matches its blueprint and the
// image definitions.
type CheckRequest struct {
	Blueprint string
	// Lockfile defaults to DefaultLockPath(Blueprint).
	Lockfile string
	// Name is how messages name the lockfile (default: Lockfile).
	Name string
	// Repositories are where locking again (to show what would change)
	// finds metadata; it locks the lockfile's own distro, arches and types.
	Repositories Repositories
	Options      []lock.Option
}

// CheckResult is a lockfile checked. Stale is nil when it is up to date.
type CheckResult struct {
	Path     string
	Lockfile *manifest.Lockfile
	// Stale says what changed and what locking again would change.
	Stale *lock.StaleError
}

// EditedError is a lockfile whose content does not match its
// content_sha256: edited by hand or merged badly.
type EditedError struct {
	Lockfile string
	Err      error
}

func (e *EditedError) Error() string { return fmt.Sprintf("lockfile %s: %v", e.Lockfile, e.Err) }
func (e *EditedError) Unwrap() error { return e.Err }

// Check reads the lockfile, refuses one edited by hand (*EditedError: what
// build would refuse must fail the check too), then compares it with the
// blueprint and image definitions. A stale lockfile is a result, not an
// error. A missing lockfile is an error that errors.Is(err,
// fs.ErrNotExist) recognises.
func Check(ctx context.Context, req CheckRequest) (*CheckResult, error) {
	if req.Blueprint == "" {
		return nil, errors.New("check: no blueprint given")
	}
	path := req.Lockfile
	if path == "" {
		path = DefaultLockPath(req.Blueprint)
	}
	name := req.Name
	if name == "" {
		name = path
	}
	bp, err := blueprint.Load(req.Blueprint)
	if err != nil {
		return nil, err
	}
	lf, err := manifest.Load(path)
	if err != nil {
		return nil, err
	}
	res := &CheckResult{Path: path, Lockfile: lf}
	if err := lf.VerifyDigest(); err != nil {
		return res, &EditedError{Lockfile: name, Err: err}
	}
	// Locking again keeps the lockfile's id seed, so the diff shows what
	// changed and not new identifiers.
	opts := append([]lock.Option{lock.WithLockDir(filepath.Dir(path)), lock.WithPrevious(path)}, req.Repositories.options()...)
	err = lock.Check(ctx, lf, name, bp, req.Blueprint, append(opts, req.Options...)...)
	var se *lock.StaleError
	if errors.As(err, &se) {
		res.Stale = se
		return res, nil
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// LockOptions are the options that make pkg/lock fetch from r, for calls
// into pkg/lock other than Lock (a package search's lock.Available).
func (r Repositories) LockOptions() []lock.Option { return r.options() }
