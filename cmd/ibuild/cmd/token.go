package cmd

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/image-builder-action/image-builder-action/pkg/auth"
	"github.com/image-builder-action/image-builder-action/pkg/serve"
)

// newToken is `ibuild serve token`: the bearer tokens of the service's
// HTTP APIs, kept (hashed) in the state directory.
func newToken() *cobra.Command {
	var dir string
	stateDir := &dir
	c := &cobra.Command{
		Use:   "token",
		Short: "Make, list and revoke the bearer tokens of ibuild serve's HTTP APIs",
	}
	c.PersistentFlags().StringVar(&dir, "dir", serve.DefaultDir, "the service's state directory (ibuild serve --dir)")
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Make a token for NAME (its composes' owner) and print it; it is not shown again",
		Long: `Make a bearer token for NAME and print it. The token file keeps only its
sha256, so the token is shown this once. Creating NAME again replaces its
token. Every compose belongs to the owner of the token that made it, and
no other token can see it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			tok, err := auth.Open(*stateDir).Create(args[0])
			if err != nil {
				return err
			}
			fmt.Fprintln(c.OutOrStdout(), tok)
			return nil
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the tokens' names and dates",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			ts, err := auth.Open(*stateDir).List()
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(c.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tCREATED")
			for _, t := range ts {
				fmt.Fprintf(w, "%s\t%s\n", t.Name, t.Created.Format("2006-01-02 15:04:05Z"))
			}
			return w.Flush()
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Remove NAME's token",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return auth.Open(*stateDir).Revoke(args[0])
		},
	}
	c.AddCommand(create, list, revoke)
	return c
}
