// Package mirror copies a lockfile's packages into a content-addressed
// store the user owns (sources.OpenStore), so the lockfile can be built
// from that store alone once the distribution's mirror has dropped them.
package mirror

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/build"
	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/pkg/sources"
)

// Request is one mirror run.
type Request struct {
	// Lockfile is the lockfile whose packages are copied: every package of
	// every entry, the build roots' too.
	Lockfile *manifest.Lockfile
	// To is the store: a directory, oci://REGISTRY/REPO (or REGISTRY/REPO),
	// s3://BUCKET[/PREFIX] (see sources.OpenStore).
	To string
	// Store, when set, is used instead of opening To.
	Store sources.Store
	// CacheDir is the build cache (its packages directory is where files
	// are downloaded to and verified before they are uploaded).
	CacheDir string
	// SnapshotURL is the snapshot archive asked when a mirror URL fails
	// (nil: sources.DefaultSnapshotURL; "" for none).
	SnapshotURL *string
	// Client downloads from the mirror and the snapshot archive.
	Client *http.Client
	// Concurrency bounds parallel uploads and downloads (default 4).
	Concurrency int
	// Events receives the download events of packages not in the cache.
	Events func(build.Event)
}

// Result says what a mirror run did.
type Result struct {
	// Store names the store.
	Store string `json:"store"`
	// Packages and Bytes are the distinct files the lockfile pins.
	Packages int   `json:"packages"`
	Bytes    int64 `json:"bytes"`
	// Uploaded and UploadedBytes are the files copied by this run; the
	// rest were in the store already.
	Uploaded      int   `json:"uploaded"`
	UploadedBytes int64 `json:"uploaded_bytes"`
	// Index is the tag of the manifest that keeps the packages in an OCI
	// registry store ("" for other stores); IndexPushed says this run
	// pushed it.
	Index       string `json:"index,omitempty"`
	IndexPushed bool   `json:"index_pushed,omitempty"`
	// Downloaded are the packages fetched into the cache first, per source.
	Downloaded []build.SourceCount `json:"downloaded,omitempty"`
	Duration   time.Duration       `json:"duration_ns"`
}

// keeper is a store whose blobs need a manifest to stay (a registry).
type keeper interface {
	KeepAlive(ctx context.Context, tag string, pkgs []manifest.Package) (bool, error)
}

// IndexTag is the tag of the manifest that keeps a lockfile's packages in
// a registry: one per lockfile content.
func IndexTag(lf *manifest.Lockfile) string {
	d := lf.ContentSHA256
	if d == "" {
		d, _ = lf.ComputeDigest()
	}
	if len(d) > 16 {
		d = d[:16]
	}
	return "packages-" + d
}

// Mirror copies every package of req.Lockfile that the store does not
// hold yet: each is taken from the cache, or downloaded into it from the
// mirror (or the snapshot archive) and verified against its sha256 first.
func Mirror(ctx context.Context, req Request) (*Result, error) {
	start := time.Now()
	if req.Lockfile == nil {
		return nil, errors.New("mirror: no lockfile")
	}
	if req.CacheDir == "" {
		return nil, errors.New("mirror: no cache directory")
	}
	conc := req.Concurrency
	if conc < 1 {
		conc = 4
	}
	store := req.Store
	if store == nil {
		var err error
		if store, err = sources.OpenStore(ctx, req.To); err != nil {
			return nil, err
		}
	}
	lf := req.Lockfile
	// One file per digest, biggest first so the run does not end on one
	// large upload.
	var pkgs []manifest.Package
	seen := map[string]bool{}
	res := &Result{Store: store.String()}
	for _, p := range lf.Packages {
		if seen[p.SHA256] {
			continue
		}
		seen[p.SHA256] = true
		pkgs = append(pkgs, p)
		res.Packages++
		res.Bytes += p.Size
	}
	sort.SliceStable(pkgs, func(i, j int) bool { return pkgs[i].Size > pkgs[j].Size })

	// Which files the store lacks.
	missing, err := missingFiles(ctx, store, pkgs, conc)
	if err != nil {
		return nil, err
	}
	if len(missing) > 0 {
		cache, err := build.OpenStore(req.CacheDir)
		if err != nil {
			return nil, err
		}
		defer cache.Close()
		snap := sources.DefaultSnapshotURL
		if req.SnapshotURL != nil {
			snap = *req.SnapshotURL
		}
		chain := []sources.Source{sources.Mirror(req.Client)}
		if snap != "" {
			chain = append(chain, sources.Snapshot(snap, lf.Repositories, req.Client))
		}
		src := build.NewSources(cache.SourcesDir(), missing, req.Client, conc, req.Events, chain...)
		refs := make([]string, len(missing))
		for i := range missing {
			refs[i] = missing[i].Ref()
		}
		if err := src.Fetch(ctx, refs); err != nil {
			return nil, fmt.Errorf("mirroring to %s: %w", store, err)
		}
		res.Downloaded = src.Counts()
		if err := upload(ctx, store, src, missing, conc); err != nil {
			return nil, err
		}
		for _, p := range missing {
			res.Uploaded++
			res.UploadedBytes += p.Size
		}
	}
	if k, ok := store.(keeper); ok {
		res.Index = IndexTag(lf)
		if res.IndexPushed, err = k.KeepAlive(ctx, res.Index, pkgs); err != nil {
			return nil, err
		}
	}
	res.Duration = time.Since(start)
	return res, nil
}

// each runs f on every package, conc at a time, stopping at the first
// error.
func each(ctx context.Context, pkgs []manifest.Package, conc int, f func(context.Context, *manifest.Package) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan *manifest.Package)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range min(conc, len(pkgs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range work {
				if err := f(ctx, p); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		}()
	}
loop:
	for i := range pkgs {
		select {
		case work <- &pkgs[i]:
		case <-ctx.Done():
			break loop
		}
	}
	close(work)
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

func missingFiles(ctx context.Context, store sources.Store, pkgs []manifest.Package, conc int) ([]manifest.Package, error) {
	has := make([]bool, len(pkgs))
	idx := map[*manifest.Package]int{}
	for i := range pkgs {
		idx[&pkgs[i]] = i
	}
	err := each(ctx, pkgs, conc, func(ctx context.Context, p *manifest.Package) error {
		ok, err := store.Has(ctx, p.SHA256)
		if err != nil {
			return fmt.Errorf("looking for %s in %s: %w", p.Ref(), store, err)
		}
		has[idx[p]] = ok
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []manifest.Package
	for i, p := range pkgs {
		if !has[i] {
			out = append(out, p)
		}
	}
	return out, nil
}

func upload(ctx context.Context, store sources.Store, src *build.Sources, pkgs []manifest.Package, conc int) error {
	return each(ctx, pkgs, conc, func(ctx context.Context, p *manifest.Package) error {
		path, err := src.Path(p.Ref())
		if err != nil {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		return store.Put(ctx, p, f)
	})
}
