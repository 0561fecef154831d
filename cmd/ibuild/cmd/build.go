package cmd

import (
	"errors"
	"fmt"
	"path/filepath"
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
	workDir      string
	jsonEvents   bool
	verbose      bool
	allowStale   bool
	sources      sourceFlags
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
			stderr := c.ErrOrStderr()
			progress := &progress{w: stderr, json: f.jsonEvents, term: !f.jsonEvents && isTerminal(stderr)}
			opts := []build.Option{
				build.WithOutputDir(f.output),
				build.WithCacheDir(filepath.Join(f.cacheDir, "build")),
				build.WithEvents(progress.event),
			}
			srcOpts, err := f.sources.options(c.Context())
			if err != nil {
				return err
			}
			opts = append(opts, srcOpts...)
			if f.cacheMaxSize > 0 {
				opts = append(opts, build.WithCacheMaxSize(f.cacheMaxSize))
			}
			if f.workDir != "" {
				opts = append(opts, build.WithWorkDir(f.workDir))
			}
			if f.verbose {
				// Through progress, which keeps the tools' lines off the
				// download line.
				opts = append(opts, build.WithLog(progress))
			}
			start := time.Now()
			ctx := c.Context()
			res, err := build.Build(ctx, lf, f.arch, f.typ, opts...)
			progress.close()
			if err != nil {
				if ctx.Err() != nil {
					// Build has removed its work area; what it stored in
					// the cache is complete and the next build reuses it.
					return &ExitError{Code: interruptCode(ctx), Err: fmt.Errorf("build interrupted after %s: %w",
						time.Since(start).Round(100*time.Millisecond), err)}
				}
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
				reportSources(c.ErrOrStderr(), res.Sources)
				fmt.Fprintf(c.ErrOrStderr(), "built in %s\n", time.Since(start).Round(100*time.Millisecond))
			} else {
				for _, s := range res.Sources {
					progress.emit(map[string]any{"event": "source", "source": s.Source, "packages": s.Packages, "bytes": s.Bytes})
				}
			}
			return nil
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.arch, "arch", "", "architecture of the entry to build (may be left out when the lockfile has one)")
	fl.StringVar(&f.typ, "type", "", "image type of the entry to build (may be left out when the lockfile has one)")
	fl.StringVarP(&f.output, "output", "o", "out", "output directory")
	fl.StringVar(&f.cacheDir, "cache", defaultCacheDir(), "cache directory (packages and stage trees)")
	fl.StringVar(&f.workDir, "work-dir", "", "where trees are built (default: /dev/shm when it is a tmpfs with 8 GiB free, else the cache)")
	fl.Int64Var(&f.cacheMaxSize, "cache-max-size", 0, "evict least recently used stage trees above this many bytes (0: no limit)")
	fl.BoolVar(&f.jsonEvents, "json", false, "print a JSON event stream instead of progress lines")
	fl.BoolVar(&f.allowStale, "allow-stale", false, "build even when the blueprint or image definitions changed since locking")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "show the output of the tools stages run")
	f.sources.register(fl)
	return c
}
