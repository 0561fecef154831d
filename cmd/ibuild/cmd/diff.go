package cmd

import (
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/image-builder-action/image-builder-action/pkg/changelog"
	"github.com/image-builder-action/image-builder-action/pkg/manifest"
)

func newDiff() *cobra.Command {
	var (
		format     string
		changelogs bool
		cacheDir   string
	)
	c := &cobra.Command{
		Use:   "diff OLD NEW",
		Short: "Summarise what changed between two lockfiles",
		Args:  cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			if format != "text" && format != "markdown" && format != "md" && format != "json" {
				return fmt.Errorf("--format %q: want text, markdown or json", format)
			}
			old, err := manifest.Load(args[0])
			if err != nil {
				return err
			}
			nw, err := manifest.Load(args[1])
			if err != nil {
				return err
			}
			d := manifest.Compare(old, nw)
			if changelogs {
				if err := changelog.Annotate(c.Context(), d, nw, changelog.WithCacheDir(cacheDir),
					// The build's package store (build --cache), shared.
					changelog.WithSourcesDir(filepath.Join(cacheDir, "build", "sources"))); err != nil {
					return err
				}
			}
			out := c.OutOrStdout()
			switch format {
			case "text":
				fmt.Fprint(out, d.Text())
			case "markdown", "md":
				fmt.Fprint(out, d.Markdown())
			case "json":
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(d)
			}
			return nil
		},
	}
	c.Flags().StringVar(&format, "format", "text", "text, markdown or json")
	c.Flags().BoolVar(&changelogs, "changelog", false, "add the Debian changelog entries of each upgraded package (downloads the new .debs, verified by sha256)")
	c.Flags().StringVar(&cacheDir, "cache", defaultCacheDir(), "cache directory (the build's: packages are shared)")
	return c
}
