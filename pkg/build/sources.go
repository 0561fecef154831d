package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/stages"
)

// Sources downloads pinned packages into a content-addressed directory,
// <dir>/sha256/<hex>, and hands out their paths. A file is published there
// only by renaming a temp file whose sha256 and size were checked while it
// was written, so a file present under its digest's name is trusted without
// hashing it again (only its size is checked).
type Sources struct {
	dir         string
	client      *http.Client
	concurrency int
	retries     int
	backoff     time.Duration
	events      func(Event)

	mu   sync.Mutex
	pkgs map[string]*manifest.Package // by ref

	// Bytes received but not yet reported by a DownloadProgress.
	progMu      sync.Mutex
	progPending int64
	progLast    time.Time
}

// downloadTick is the least time between two DownloadProgress events.
const downloadTick = 100 * time.Millisecond

var _ stages.PackageSource = (*Sources)(nil)

// NewSources returns a package store rooted at dir (the cache's "sources"
// directory) that knows the given packages.
func NewSources(dir string, pkgs []manifest.Package, client *http.Client, concurrency int, events func(Event)) *Sources {
	if client == nil {
		client = http.DefaultClient
	}
	if concurrency < 1 {
		concurrency = 8
	}
	if events == nil {
		events = func(Event) {}
	}
	s := &Sources{dir: dir, client: client, concurrency: concurrency, retries: 3, backoff: 500 * time.Millisecond, events: events,
		pkgs: make(map[string]*manifest.Package, len(pkgs))}
	for i := range pkgs {
		p := pkgs[i]
		s.pkgs[p.Ref()] = &p
	}
	return s
}

// path is where a package with this digest is stored.
func (s *Sources) path(sha string) string { return filepath.Join(s.dir, "sha256", sha) }

// Path returns the local path of ref's verified file. The package must have
// been fetched.
func (s *Sources) Path(ref string) (string, error) {
	s.mu.Lock()
	p, ok := s.pkgs[ref]
	s.mu.Unlock()
	if !ok {
		return "", fmt.Errorf("package %s is not in the lockfile", ref)
	}
	fp := s.path(p.SHA256)
	fi, err := os.Stat(fp)
	if err != nil {
		return "", fmt.Errorf("package %s: not downloaded: %w", ref, err)
	}
	if p.Size > 0 && fi.Size() != p.Size {
		return "", fmt.Errorf("package %s: stored file %s has %d bytes, want %d", ref, fp, fi.Size(), p.Size)
	}
	return fp, nil
}

// Fetch downloads the packages named by refs that are not stored yet, in
// parallel, each verified while streaming.
func (s *Sources) Fetch(ctx context.Context, refs []string) error {
	var todo []*manifest.Package
	seen := map[string]bool{}
	for _, ref := range refs {
		p, ok := s.pkgs[ref]
		if !ok {
			return fmt.Errorf("fetching packages: %s is not in the lockfile", ref)
		}
		if seen[p.SHA256] {
			continue
		}
		seen[p.SHA256] = true
		if fi, err := os.Stat(s.path(p.SHA256)); err == nil && (p.Size <= 0 || fi.Size() == p.Size) {
			// Mark it used for the cache's LRU eviction.
			now := time.Now()
			os.Chtimes(s.path(p.SHA256), now, now)
			s.events(Download{Ref: ref, Bytes: fi.Size(), Cached: true})
			continue
		}
		todo = append(todo, p)
	}
	if len(todo) == 0 {
		return nil
	}
	// Big files first so the tail of the run is not one large download.
	sort.Slice(todo, func(i, j int) bool { return todo[i].Size > todo[j].Size })
	var total int64
	for _, p := range todo {
		total += max(p.Size, 0)
	}
	s.events(DownloadStart{Packages: len(todo), Bytes: total})
	if err := os.MkdirAll(filepath.Join(s.dir, "sha256"), 0o755); err != nil {
		return fmt.Errorf("fetching packages: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(s.dir, "tmp"), 0o755); err != nil {
		return fmt.Errorf("fetching packages: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan *manifest.Package)
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var errs []error
	n := min(s.concurrency, len(todo))
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range work {
				if err := s.fetchOne(ctx, p); err != nil {
					errMu.Lock()
					errs = append(errs, err)
					errMu.Unlock()
					cancel()
				}
			}
		}()
	}
loop:
	for _, p := range todo {
		select {
		case work <- p:
		case <-ctx.Done():
			break loop
		}
	}
	close(work)
	wg.Wait()
	if len(errs) > 0 {
		// The first error is the cause; later ones are usually cancellations.
		return errs[0]
	}
	return ctx.Err()
}

// permanentError is a download failure retrying cannot fix.
type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

func (s *Sources) fetchOne(ctx context.Context, p *manifest.Package) error {
	var err error
	for attempt := 0; attempt <= s.retries; attempt++ {
		if attempt > 0 {
			select {
			case <-time.After(time.Duration(attempt*attempt) * s.backoff):
			case <-ctx.Done():
				return fmt.Errorf("downloading %s: %w", p.Ref(), ctx.Err())
			}
		}
		err = s.download(ctx, p)
		var perm permanentError
		if err == nil || errors.As(err, &perm) || ctx.Err() != nil {
			break
		}
	}
	return err
}

// download fetches p into a temp file, checks size and digest, and renames
// it into place.
func (s *Sources) download(ctx context.Context, p *manifest.Package) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL, nil)
	if err != nil {
		return permanentError{fmt.Errorf("downloading %s: %w", p.Ref(), err)}
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("downloading %s from %s: %w", p.Ref(), p.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		err := fmt.Errorf("downloading %s from %s: %s", p.Ref(), p.URL, resp.Status)
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout {
			return err
		}
		return permanentError{err}
	}
	f, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), p.SHA256+".*")
	if err != nil {
		return permanentError{fmt.Errorf("downloading %s: %w", p.Ref(), err)}
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op after the rename
	h := sha256.New()
	// Read one byte more than announced to notice an oversized body.
	limit := p.Size + 1
	if p.Size <= 0 {
		limit = 1 << 40
	}
	counter := &progressWriter{s: s}
	stored := false
	defer func() {
		if !stored {
			// A retry downloads these bytes again.
			s.progress(-counter.n, true)
		}
	}()
	n, err := io.Copy(io.MultiWriter(f, h, counter), io.LimitReader(resp.Body, limit))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("downloading %s from %s: %w", p.Ref(), p.URL, err)
	}
	if p.Size > 0 && n != p.Size {
		// A short body is a broken transfer (retried); a long one is the
		// wrong file.
		err := fmt.Errorf("downloading %s from %s: got %d bytes, the lockfile says %d", p.Ref(), p.URL, n, p.Size)
		if n > p.Size {
			return permanentError{err}
		}
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != p.SHA256 {
		return permanentError{fmt.Errorf("downloading %s from %s: sha256 mismatch: got %s, the lockfile says %s", p.Ref(), p.URL, got, p.SHA256)}
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return permanentError{err}
	}
	if err := os.Rename(tmp, s.path(p.SHA256)); err != nil {
		return permanentError{fmt.Errorf("storing %s: %w", p.Ref(), err)}
	}
	stored = true
	s.progress(0, true)
	s.events(Download{Ref: p.Ref(), Bytes: n})
	return nil
}

// progressWriter counts the bytes of one download attempt into the
// Sources' progress.
type progressWriter struct {
	s *Sources
	n int64
}

func (w *progressWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	w.s.progress(int64(len(p)), false)
	return len(p), nil
}

// progress adds d received bytes and reports what is pending as a
// DownloadProgress when downloadTick has passed since the last one, or
// at once with flush.
func (s *Sources) progress(d int64, flush bool) {
	s.progMu.Lock()
	s.progPending += d
	now := time.Now()
	if s.progPending == 0 || !flush && now.Sub(s.progLast) < downloadTick {
		s.progMu.Unlock()
		return
	}
	d, s.progPending, s.progLast = s.progPending, 0, now
	s.progMu.Unlock()
	s.events(DownloadProgress{Bytes: d})
}
