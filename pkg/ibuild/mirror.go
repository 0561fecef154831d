package ibuild

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"

	"github.com/image-builder-action/image-builder-action/pkg/build"
	"github.com/image-builder-action/image-builder-action/pkg/mirror"
	"github.com/image-builder-action/image-builder-action/pkg/sources"
)

// MirrorRequest asks for every package of a lockfile to be copied into a
// store of the user's own (sources.OpenStore names the forms).
type MirrorRequest struct {
	Lockfile string
	// To names the store; Store, when set, is used instead (a front end
	// that opens stores with its own credentials).
	To    string
	Store sources.Store
	// CacheDir is the cache's root; packages are downloaded into
	// CacheDir/build and verified there before they are uploaded.
	CacheDir string
	// SnapshotURL is the snapshot archive asked when a mirror URL fails
	// (nil: sources.DefaultSnapshotURL; "" for none).
	SnapshotURL *string
	Client      *http.Client
	Events      func(build.Event)
}

// MirrorResult is what the run copied.
type MirrorResult struct {
	Lockfile *Lockfile
	*mirror.Result
}

// Mirror copies the lockfile's packages that the store lacks. A lockfile
// edited by hand is refused: its packages are not the reviewed ones.
func Mirror(ctx context.Context, req MirrorRequest) (*MirrorResult, error) {
	if req.To == "" && req.Store == nil {
		return nil, errors.New("mirror: no store given")
	}
	if req.CacheDir == "" {
		return nil, errors.New("mirror: no cache directory given")
	}
	l, err := ReadLockfile(req.Lockfile)
	if err != nil {
		return nil, err
	}
	if err := l.File.VerifyDigest(); err != nil {
		return nil, fmt.Errorf("lockfile %s: %w", l.Path, err)
	}
	res, err := mirror.Mirror(ctx, mirror.Request{
		Lockfile: l.File, To: req.To, Store: req.Store, CacheDir: filepath.Join(req.CacheDir, "build"),
		SnapshotURL: req.SnapshotURL, Client: req.Client, Events: req.Events,
	})
	if err != nil {
		return nil, err
	}
	return &MirrorResult{Lockfile: l, Result: res}, nil
}
