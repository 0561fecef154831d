package cmd

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/image-builder-action/image-builder-action/pkg/distro"
)

type listed struct {
	Distros []listedDistro `json:"distros"`
	Types   []listedType   `json:"types"`
}

type listedDistro struct {
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Arches      []string `json:"arches"`
}

type listedType struct {
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Filename    string   `json:"filename"`
	Arches      []string `json:"arches"`
	Bootable    bool     `json:"bootable"`
}

func newList() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "list",
		Short: "List distros, architectures and image types",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			defs, err := distro.Load()
			if err != nil {
				return err
			}
			var l listed
			for _, n := range defs.DistroNames() {
				d := defs.Distros[n]
				l.Distros = append(l.Distros, listedDistro{Name: n, Description: d.Description, Arches: d.ArchNames()})
			}
			for _, n := range defs.TypeNames() {
				t := defs.Types[n]
				l.Types = append(l.Types, listedType{Name: n, Description: t.Description, Filename: t.Filename, Arches: t.Arches, Bootable: t.Bootable})
			}
			out := c.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(l)
			}
			w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "DISTRO\tARCHES\tDESCRIPTION")
			for _, d := range l.Distros {
				fmt.Fprintf(w, "%s\t%s\t%s\n", d.Name, strings.Join(d.Arches, ","), d.Description)
			}
			fmt.Fprintln(w, "\nTYPE\tFILE\tBOOTS\tDESCRIPTION")
			for _, t := range l.Types {
				fmt.Fprintf(w, "%s\t%s\t%v\t%s\n", t.Name, t.Filename, t.Bootable, t.Description)
			}
			return w.Flush()
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}
