package cmd

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/image-builder-action/image-builder-action/pkg/build"
	"github.com/image-builder-action/image-builder-action/pkg/ibuild"
	"github.com/image-builder-action/image-builder-action/pkg/upload"
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
	buildArch    string
	register     bool
	upload       string
	uploadOpts   upload.Options
}

func newBuild() *cobra.Command {
	var f buildFlags
	c := &cobra.Command{
		Use:   "build LOCKFILE",
		Short: "Build one image of a lockfile (as root)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			stderr := c.ErrOrStderr()
			progress := &progress{w: stderr, json: f.jsonEvents, term: !f.jsonEvents && isTerminal(stderr)}
			req := ibuild.BuildRequest{
				Lockfile: args[0], Arches: nonEmpty(f.arch), Types: nonEmpty(f.typ), One: true,
				OutputDir: f.output, CacheDir: f.cacheDir, AllowStale: f.allowStale, RegisterBinfmt: f.register,
				Events: func(e ibuild.BuildEvent) {
					if e.Event != nil {
						progress.event(e.Event)
					}
				},
			}
			srcOpts, err := f.sources.options(c.Context())
			if err != nil {
				return err
			}
			req.Options = append(req.Options, srcOpts...)
			if f.cacheMaxSize > 0 {
				req.Options = append(req.Options, build.WithCacheMaxSize(f.cacheMaxSize))
			}
			if f.buildArch != "" {
				req.Options = append(req.Options, build.WithBuildArch(f.buildArch))
			}
			if f.workDir != "" {
				req.Options = append(req.Options, build.WithWorkDir(f.workDir))
			}
			if f.upload != "" {
				// Each image as soon as it is built, through the same
				// use case as ibuild upload.
				req.Upload = &ibuild.UploadTarget{Target: f.upload, Options: f.uploadOpts, Events: uploadPrinter(progress, f.jsonEvents)}
			}
			if f.verbose {
				// Through progress, which keeps the tools' lines off the
				// download line.
				req.Log = progress
			}
			start := time.Now()
			ctx := c.Context()
			res, err := ibuild.Build(ctx, req)
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
			for _, img := range res.Images {
				for _, o := range img.Files {
					if f.jsonEvents {
						progress.emit(map[string]any{"event": "output", "path": o.Path, "size": o.Size, "sha256": o.SHA256})
						continue
					}
					fmt.Fprintf(c.OutOrStdout(), "%s\t%d\tsha256:%s\n", o.Path, o.Size, o.SHA256)
				}
			}
			if !f.jsonEvents {
				for _, img := range res.Images {
					reportSources(stderr, img.Sources)
				}
				for _, a := range res.Registered {
					fmt.Fprintf(stderr, "registered qemu-user-static's binfmt_misc handler for %s for the build, and removed it again\n", a)
				}
				fmt.Fprintf(stderr, "built in %s\n", time.Since(start).Round(100*time.Millisecond))
			} else {
				for _, img := range res.Images {
					for _, s := range img.Sources {
						progress.emit(map[string]any{"event": "source", "source": s.Source, "packages": s.Packages, "bytes": s.Bytes})
					}
				}
			}
			if f.upload == "" {
				return nil
			}
			var ups []upload.Result
			for _, img := range res.Images {
				ups = append(ups, img.Uploads...)
			}
			return printUploads(c.OutOrStdout(), ups, f.jsonEvents)
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
	fl.BoolVar(&f.register, "register-binfmt", false, "for an entry of another architecture, register qemu-user-static's binfmt_misc handler if none is (needs root; removed again at the end)")
	fl.StringVar(&f.buildArch, "build-arch", "", "build as a host of this architecture would (default: this machine's); the entry's own runs every tool as the target, as a native build does")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "show the output of the tools stages run")
	fl.StringVar(&f.upload, "upload", "", "upload the image when built: aws, aws.s3, gcp or azure (options as for ibuild upload)")
	addUploadFlags(fl, &f.uploadOpts)
	f.sources.register(fl)
	return c
}

// nonEmpty is a flag's value as a one-element list, or nil when unset.
func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}
