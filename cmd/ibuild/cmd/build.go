package cmd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/image-builder-action/image-builder-action/pkg/build"
	"github.com/image-builder-action/image-builder-action/pkg/lock"
	"github.com/image-builder-action/image-builder-action/pkg/manifest"
)

type buildFlags struct {
	arch, typ    string
	output       string
	cacheDir     string
	cacheMaxSize int64
	jsonEvents   bool
	verbose      bool
	allowStale   bool
}

func newBuild() *cobra.Command {
	var f buildFlags
	c := &cobra.Command{
		Use:   "build LOCKFILE",
		Short: "Build one image of a lockfile (as root)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			lf, err := manifest.Load(args[0])
			if err != nil {
				return err
			}
			if err := lock.Verify(lf, args[0]); err != nil {
				var se *lock.StaleError
				if !f.allowStale || !errors.As(err, &se) {
					return err
				}
				fmt.Fprintf(c.ErrOrStderr(), "warning: %v\n", err)
			}
			progress := &progress{w: c.ErrOrStderr(), json: f.jsonEvents}
			opts := []build.Option{
				build.WithOutputDir(f.output),
				build.WithCacheDir(filepath.Join(f.cacheDir, "build")),
				build.WithEvents(progress.event),
			}
			if f.cacheMaxSize > 0 {
				opts = append(opts, build.WithCacheMaxSize(f.cacheMaxSize))
			}
			if f.verbose {
				opts = append(opts, build.WithLog(c.ErrOrStderr()))
			}
			start := time.Now()
			res, err := build.Build(c.Context(), lf, f.arch, f.typ, opts...)
			if err != nil {
				return err
			}
			for _, o := range res.Files {
				if f.jsonEvents {
					progress.emit(map[string]any{"event": "output", "path": o.Path, "size": o.Size, "sha256": o.SHA256})
					continue
				}
				fmt.Fprintf(c.OutOrStdout(), "%s\t%d\tsha256:%s\n", o.Path, o.Size, o.SHA256)
			}
			if !f.jsonEvents {
				fmt.Fprintf(c.ErrOrStderr(), "built in %s\n", time.Since(start).Round(100*time.Millisecond))
			}
			return nil
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.arch, "arch", "", "architecture of the entry to build (may be left out when the lockfile has one)")
	fl.StringVar(&f.typ, "type", "", "image type of the entry to build (may be left out when the lockfile has one)")
	fl.StringVarP(&f.output, "output", "o", "out", "output directory")
	fl.StringVar(&f.cacheDir, "cache", defaultCacheDir(), "cache directory (packages and stage trees)")
	fl.Int64Var(&f.cacheMaxSize, "cache-max-size", 0, "evict least recently used stage trees above this many bytes (0: no limit)")
	fl.BoolVar(&f.jsonEvents, "json", false, "print a JSON event stream instead of progress lines")
	fl.BoolVar(&f.allowStale, "allow-stale", false, "build even when the blueprint or image definitions changed since locking")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "show the output of the tools stages run")
	return c
}

// progress turns build events into one line per stage, or JSON lines.
type progress struct {
	mu        sync.Mutex
	w         io.Writer
	json      bool
	downloads int
	bytes     int64
}

func (p *progress) emit(v map[string]any) {
	b, _ := json.Marshal(v)
	fmt.Fprintf(p.w, "%s\n", b)
}

func (p *progress) event(e build.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch e := e.(type) {
	case build.Download:
		if p.json {
			p.emit(map[string]any{"event": "download", "ref": e.Ref, "bytes": e.Bytes, "cached": e.Cached})
			return
		}
		if !e.Cached {
			p.downloads++
			p.bytes += e.Bytes
		}
	case build.StageStart:
		if p.json {
			p.emit(map[string]any{"event": "stage-start", "pipeline": e.Pipeline, "index": e.Index, "type": e.Type, "cache_hit": e.CacheHit})
			return
		}
		if p.downloads > 0 {
			fmt.Fprintf(p.w, "downloaded %d packages (%.1f MiB)\n", p.downloads, float64(p.bytes)/(1<<20))
			p.downloads, p.bytes = 0, 0
		}
	case build.StageDone:
		if p.json {
			p.emit(map[string]any{"event": "stage-done", "pipeline": e.Pipeline, "index": e.Index, "type": e.Type, "cache_hit": e.CacheHit, "seconds": e.Duration.Seconds()})
			return
		}
		state := "ran"
		if e.CacheHit {
			state = "cached"
		}
		fmt.Fprintf(p.w, "%-8s %2d %-12s %-6s %6.1fs\n", e.Pipeline, e.Index, e.Type, state, e.Duration.Seconds())
	case build.Commit:
		if p.json {
			p.emit(map[string]any{"event": "commit", "pipeline": e.Pipeline, "index": e.Index, "key": e.Key, "seconds": e.Duration.Seconds()})
		}
	}
}
