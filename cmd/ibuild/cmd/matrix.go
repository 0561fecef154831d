package cmd

import (
	"encoding/json"

	"github.com/spf13/cobra"

	"github.com/image-builder-action/image-builder-action/pkg/manifest"
)

func newMatrix() *cobra.Command {
	return &cobra.Command{
		Use:   "matrix LOCKFILE",
		Short: `Print {"include":[{"arch":…,"type":…},…]} for a CI matrix`,
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			lf, err := manifest.Load(args[0])
			if err != nil {
				return err
			}
			return json.NewEncoder(c.OutOrStdout()).Encode(lf.Matrix())
		},
	}
}
