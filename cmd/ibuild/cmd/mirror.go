package cmd

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/image-builder-action/image-builder-action/pkg/ibuild"
	"github.com/image-builder-action/image-builder-action/pkg/sources"
)

func newMirror() *cobra.Command {
	var (
		to, cacheDir, snapshotURL string
		jsonOut                   bool
	)
	c := &cobra.Command{
		Use:   "mirror LOCKFILE --to DIR|REGISTRY/REPO|s3://BUCKET[/PREFIX]",
		Short: "Copy every package of a lockfile into a store of your own",
		Long: `Copies every package the lockfile pins (the build roots' too) into a
content-addressed store, skipping what is there already, so the lockfile
can be built from that store (ibuild build --sources) once the mirror has
dropped its packages. Packages are verified against their sha256 before
they are uploaded.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if to == "" {
				return fmt.Errorf("--to: required (a directory, oci://REGISTRY/REPO or s3://BUCKET[/PREFIX])")
			}
			stderr := c.ErrOrStderr()
			progress := &progress{w: stderr, json: jsonOut, term: !jsonOut && isTerminal(stderr)}
			res, err := ibuild.Mirror(c.Context(), ibuild.MirrorRequest{
				Lockfile: args[0], To: to, CacheDir: cacheDir,
				SnapshotURL: &snapshotURL, Events: progress.event,
			})
			progress.close()
			if err != nil {
				return err
			}
			if jsonOut {
				b, _ := json.Marshal(res.Result)
				fmt.Fprintf(c.OutOrStdout(), "%s\n", b)
				return nil
			}
			reportSources(stderr, res.Downloaded)
			fmt.Fprintf(c.OutOrStdout(), "%s: %d packages (%s MiB), %d uploaded (%s MiB), %d there already, in %.1fs\n",
				res.Store, res.Packages, mib(res.Bytes), res.Uploaded, mib(res.UploadedBytes), res.Packages-res.Uploaded, res.Duration.Seconds())
			if res.Index != "" {
				state := "there already"
				if res.IndexPushed {
					state = "pushed"
				}
				fmt.Fprintf(c.OutOrStdout(), "package list %s: %s\n", res.Index, state)
			}
			return nil
		},
	}
	fl := c.Flags()
	fl.StringVar(&to, "to", "", "the store: DIR, oci://REGISTRY/REPO (or REGISTRY/REPO), s3://BUCKET[/PREFIX][?endpoint=URL&region=R]")
	fl.StringVar(&cacheDir, "cache", defaultCacheDir(), "cache directory (packages are downloaded and verified there first)")
	fl.StringVar(&snapshotURL, "snapshot-url", sources.DefaultSnapshotURL, `snapshot archive asked when a mirror URL fails ("" for none)`)
	fl.BoolVar(&jsonOut, "json", false, "print the result as JSON")
	return c
}
