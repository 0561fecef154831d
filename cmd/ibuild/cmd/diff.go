package cmd

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/image-builder-action/image-builder-action/pkg/manifest"
)

func newDiff() *cobra.Command {
	var format string
	c := &cobra.Command{
		Use:   "diff OLD NEW",
		Short: "Summarise what changed between two lockfiles",
		Args:  cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			old, err := manifest.Load(args[0])
			if err != nil {
				return err
			}
			nw, err := manifest.Load(args[1])
			if err != nil {
				return err
			}
			d := manifest.Compare(old, nw)
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
			default:
				return fmt.Errorf("--format %q: want text, markdown or json", format)
			}
			return nil
		},
	}
	c.Flags().StringVar(&format, "format", "text", "text, markdown or json")
	return c
}
