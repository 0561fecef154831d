package cmd

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/image-builder-action/image-builder-action/pkg/ibuild"
)

type verifyFlags struct {
	arch, typ  string
	cacheDir   string
	output     string
	reuseTrees bool
	verbose    bool
	allowStale bool
}

func newVerify() *cobra.Command {
	var f verifyFlags
	c := &cobra.Command{
		Use:   "verify LOCKFILE IMAGE",
		Short: "Rebuild a lockfile's entry and check that IMAGE is what it produces (as root)",
		Long: `Rebuilds the entry of LOCKFILE and compares IMAGE with the result, byte
for byte (sha256). IMAGE is an output file (a renamed one too, when the entry
has a single output) or a directory holding what "ibuild build" wrote.

Every stage runs again; packages come from the cache, checked against the
lockfile's digests. --reuse-trees trusts the stage trees cached by earlier
builds instead (fast, but it then checks IMAGE against those trees).

Exit status: 0 when IMAGE is what LOCKFILE produces, 1 when it is not or the
rebuild fails.`,
		Args: cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			lockPath, image := args[0], args[1]
			progress := &progress{w: c.ErrOrStderr()}
			req := ibuild.VerifyRequest{
				Lockfile: lockPath, Arch: f.arch, Type: f.typ, Image: image,
				OutputDir: f.output, CacheDir: f.cacheDir, ReuseTrees: f.reuseTrees, AllowStale: f.allowStale,
				Events: progress.event,
			}
			if f.verbose {
				req.Log = c.ErrOrStderr()
			}
			start := time.Now()
			v, err := ibuild.Verify(c.Context(), req)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.ErrOrStderr(), "rebuilt %s in %s\n", v.Entry, time.Since(start).Round(100*time.Millisecond))
			if bad := v.Mismatch(); bad != nil {
				var msg string
				switch {
				case bad.Path == "":
					msg = fmt.Sprintf("%s is not what %s produces: it has no %s (the rebuild's has sha256 %s)",
						image, lockPath, bad.Name, bad.Want)
				default:
					which := "it"
					if bad.Path != image {
						which = bad.Path
					}
					msg = fmt.Sprintf("%s is not what %s produces: %s has sha256 %s, the rebuild's %s has sha256 %s",
						image, lockPath, which, bad.SHA256, bad.Name, bad.Want)
				}
				if f.output != "" {
					msg += " (kept in " + bad.Rebuilt + ")"
				}
				return &ExitError{Code: 1, Err: errors.New(msg)}
			}
			var sums []string
			for _, fc := range v.Files {
				s := "sha256 " + fc.SHA256
				if len(v.Files) > 1 {
					s = fc.Name + " " + s
				}
				sums = append(sums, s)
			}
			fmt.Fprintf(c.OutOrStdout(), "%s is what %s produces (%s)\n", image, lockPath, strings.Join(sums, ", "))
			return nil
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.arch, "arch", "", "architecture of the entry (may be left out when the lockfile has one)")
	fl.StringVar(&f.typ, "type", "", "image type of the entry (may be left out when the lockfile has one)")
	fl.StringVar(&f.cacheDir, "cache", defaultCacheDir(), "cache directory (packages, and stage trees with --reuse-trees)")
	fl.StringVarP(&f.output, "output", "o", "", "keep the rebuilt files in this directory (default: a temporary one, removed)")
	fl.BoolVar(&f.reuseTrees, "reuse-trees", false, "trust the stage trees cached by earlier builds instead of running every stage")
	fl.BoolVar(&f.allowStale, "allow-stale", false, "verify even when the blueprint or image definitions changed since locking")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "show the output of the tools stages run")
	return c
}
