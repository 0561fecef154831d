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
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/pkg/sources"
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

	// chain is where packages come from, asked in order.
	chain []sources.Source

	mu     sync.Mutex
	pkgs   map[string]*manifest.Package // by ref
	down   map[int]error                // sources not asked again, by index in chain
	counts map[string]*SourceCount      // by source name

	// Bytes received but not yet reported by a DownloadProgress.
	progMu      sync.Mutex
	progPending int64
	progLast    time.Time
}

// downloadTick is the least time between two DownloadProgress events.
const downloadTick = 100 * time.Millisecond

var _ stages.PackageSource = (*Sources)(nil)

// NewSources returns a package store rooted at dir (the cache's "sources"
// directory) that knows the given packages and downloads them from chain,
// in order (default: the mirror URLs in the lockfile, through client).
func NewSources(dir string, pkgs []manifest.Package, client *http.Client, concurrency int, events func(Event), chain ...sources.Source) *Sources {
	if client == nil {
		client = http.DefaultClient
	}
	if concurrency < 1 {
		concurrency = 8
	}
	if events == nil {
		events = func(Event) {}
	}
	if len(chain) == 0 {
		chain = []sources.Source{sources.Mirror(client)}
	}
	s := &Sources{dir: dir, client: client, concurrency: concurrency, retries: 3, backoff: 500 * time.Millisecond, events: events,
		chain: chain, pkgs: make(map[string]*manifest.Package, len(pkgs)), down: map[int]error{}, counts: map[string]*SourceCount{}}
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
	// The first failure stops the others; later errors are usually the
	// cancellations it caused.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(s.concurrency, 1))
	for _, p := range todo {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error { return s.fetchOne(gctx, p) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}

// badBytes is a file a source served that is not the lockfile's.
type badBytes struct{ error }

func (e badBytes) Unwrap() error { return e.error }

// fetchOne asks each source in turn for p, retrying a source while its
// error may pass. A source that serves wrong bytes is reported and passed
// over; one that cannot be reached is not asked again in this fetch.
func (s *Sources) fetchOne(ctx context.Context, p *manifest.Package) error {
	var answers []string
	for i, src := range s.chain {
		if err := s.isDown(i); err != nil {
			answers = append(answers, fmt.Sprintf("%s: %v (not asked again)", src, err))
			continue
		}
		var err error
		for attempt := 0; attempt <= s.retries; attempt++ {
			if attempt > 0 {
				select {
				case <-time.After(time.Duration(attempt*attempt) * s.backoff):
				case <-ctx.Done():
					return fmt.Errorf("downloading %s: %w", p.Ref(), ctx.Err())
				}
			}
			err = s.download(ctx, src, p)
			if err == nil || !sources.Transient(err) || ctx.Err() != nil {
				break
			}
		}
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("downloading %s from %s: %w", p.Ref(), src, ctx.Err())
		}
		var bad badBytes
		if errors.As(err, &bad) {
			s.events(SourceWarning{Source: src.String(), Ref: p.Ref(), Err: err})
		}
		if sources.Unreachable(err) {
			s.setDown(i, err)
		}
		answers = append(answers, fmt.Sprintf("%s: %v", src, err))
	}
	return fmt.Errorf("downloading %s (sha256 %s): no source has it: %s", p.Ref(), p.SHA256, strings.Join(answers, "; "))
}

func (s *Sources) isDown(i int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.down[i]
}

func (s *Sources) setDown(i int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down[i] == nil {
		s.down[i] = err
	}
}

// download fetches p from src into a temp file, checks size and digest,
// and renames it into place. Wrong bytes never get a digest's name.
func (s *Sources) download(ctx context.Context, src sources.Source, p *manifest.Package) error {
	body, err := src.Open(ctx, p)
	if err != nil {
		return err
	}
	defer body.Close()
	f, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), p.SHA256+".*")
	if err != nil {
		return err
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
			// A retry, or the next source, downloads these bytes again.
			s.progress(-counter.n, true)
		}
	}()
	n, err := io.Copy(io.MultiWriter(f, h, counter), io.LimitReader(body, limit))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if p.Size > 0 && n != p.Size {
		// A transfer cut short fails in the copy (unexpected EOF, retried);
		// a whole answer of another size is another file.
		return badBytes{fmt.Errorf("%s: got %d bytes, the lockfile says %d", src.Locate(p), n, p.Size)}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != p.SHA256 {
		return badBytes{fmt.Errorf("%s: sha256 mismatch: got %s, the lockfile says %s", src.Locate(p), got, p.SHA256)}
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, s.path(p.SHA256)); err != nil {
		return fmt.Errorf("storing %s: %w", p.Ref(), err)
	}
	stored = true
	s.progress(0, true)
	s.count(src, n)
	s.events(Download{Ref: p.Ref(), Bytes: n, Source: src.String()})
	return nil
}

// count adds a stored file to its source's tally.
func (s *Sources) count(src sources.Source, n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.counts[src.String()]
	if c == nil {
		c = &SourceCount{Source: src.String()}
		s.counts[src.String()] = c
	}
	c.Packages++
	c.Bytes += n
}

// Counts reports, per source in the order they are asked, the packages
// this Sources downloaded from it and their bytes. Sources that served
// nothing are left out.
func (s *Sources) Counts() []SourceCount {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []SourceCount
	for _, src := range s.chain {
		if c := s.counts[src.String()]; c != nil {
			out = append(out, *c)
		}
	}
	return out
}

// SourceCount is how many packages, and bytes, one source served.
type SourceCount struct {
	Source   string `json:"source"`
	Packages int    `json:"packages"`
	Bytes    int64  `json:"bytes"`
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
