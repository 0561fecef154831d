package cmd

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/image-builder-action/image-builder-action/pkg/action"
)

// newAction is the GitHub Action's entrypoint: the action's container runs
// `ibuild action`, which reads its inputs from INPUT_* variables.
func newAction() *cobra.Command {
	return &cobra.Command{
		Use:    "action",
		Short:  "Run as the GitHub Action (inputs from INPUT_* variables)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return action.Run(c.Context(), os.Getenv, c.OutOrStdout())
		},
	}
}
