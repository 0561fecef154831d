package cmd

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/image-builder-action/image-builder-action/pkg/ibuild"
	"github.com/image-builder-action/image-builder-action/pkg/repo"
)

func defaultCacheDir() string {
	if d := os.Getenv("IBUILD_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "ibuild")
	}
	return filepath.Join(os.TempDir(), "ibuild-cache")
}

type lockFlags struct {
	distro   string
	arches   []string
	types    []string
	output   string
	check    bool
	repos    []string
	keyring  string
	cacheDir string
	offline  bool
	newIDs   bool
}

func newLock() *cobra.Command {
	var f lockFlags
	c := &cobra.Command{
		Use:   "lock BLUEPRINT",
		Short: "Resolve a blueprint into a lockfile (or check one with --check)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			bpPath := args[0]
			repos, err := f.repositories()
			if err != nil {
				return err
			}
			if f.check {
				res, err := ibuild.Check(c.Context(), ibuild.CheckRequest{Blueprint: bpPath, Lockfile: f.output, Repositories: repos})
				if err != nil {
					return err
				}
				if se := res.Stale; se != nil {
					if se.Diff != nil {
						fmt.Fprint(c.OutOrStdout(), se.Diff.Text())
					}
					return &ExitError{Code: 1, Err: se}
				}
				fmt.Fprintf(c.ErrOrStderr(), "%s is up to date with %s\n", res.Path, bpPath)
				return nil
			}
			res, err := ibuild.Lock(c.Context(), ibuild.LockRequest{
				Blueprint: bpPath, Lockfile: f.output,
				Distro: f.distro, Arches: f.arches, Types: f.types,
				Repositories: repos, NewIDs: f.newIDs,
			})
			if err != nil {
				return err
			}
			for _, w := range res.Warnings {
				fmt.Fprintln(c.ErrOrStderr(), "warning: "+w)
			}
			fmt.Fprintf(c.ErrOrStderr(), "wrote %s: %d entries, %d packages\n", res.Path, len(res.Lockfile.Entries), len(res.Lockfile.Packages))
			return nil
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.distro, "distro", "", "distro (default: the blueprint's)")
	fl.StringSliceVar(&f.arches, "arch", nil, "architectures, comma-separated (default: the host's)")
	fl.StringSliceVar(&f.types, "type", nil, "image types, comma-separated (default: qcow2)")
	fl.StringVarP(&f.output, "output", "o", "", "lockfile path (default: BLUEPRINT with .lock.json)")
	fl.BoolVar(&f.check, "check", false, "exit 1 if the lockfile no longer matches the blueprint or image definitions")
	fl.StringArrayVar(&f.repos, "repo", nil, `repository as "URI SUITE COMPONENT…" (repeatable; default: the host's apt sources)`)
	fl.StringVar(&f.keyring, "keyring", "", "keyring verifying --repo repositories (default: the distro's)")
	fl.StringVar(&f.cacheDir, "cache", defaultCacheDir(), "metadata cache directory")
	fl.BoolVar(&f.offline, "offline", false, "use cached repository metadata only")
	fl.BoolVar(&f.newIDs, "new-ids", false, "draw a new id seed: new partition and file system UUIDs (default: keep the lockfile's)")
	return c
}

func (f *lockFlags) repositories() (ibuild.Repositories, error) {
	r := ibuild.Repositories{Keyring: f.keyring, CacheDir: f.cacheDir, Offline: f.offline}
	if len(f.repos) > 0 {
		srcs, err := ParseRepoFlags(f.repos, f.keyring)
		if err != nil {
			return r, err
		}
		r.Sources = srcs
	}
	return r, nil
}

// ParseRepoFlags reads --repo values: "URI SUITE COMPONENT…", as a
// one-line apt source without its "deb".
func ParseRepoFlags(values []string, keyring string) ([]repo.Source, error) {
	var out []repo.Source
	for _, v := range values {
		fs := strings.Fields(v)
		if len(fs) > 0 && fs[0] == "deb" {
			fs = fs[1:]
		}
		if len(fs) < 3 {
			return nil, fmt.Errorf("--repo %q: want \"URI SUITE COMPONENT…\"", v)
		}
		if !strings.HasPrefix(fs[0], "http://") && !strings.HasPrefix(fs[0], "https://") && !strings.HasPrefix(fs[0], "file:") {
			return nil, fmt.Errorf("--repo %q: %q is not an http, https or file URI", v, fs[0])
		}
		out = append(out, repo.Source{URI: strings.TrimRight(fs[0], "/"), Suite: fs[1], Components: fs[2:], SignedBy: keyring})
	}
	return out, nil
}
