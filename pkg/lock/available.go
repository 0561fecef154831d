package lock

import (
	"context"
	"errors"
	"fmt"

	"github.com/image-builder-action/image-builder-action/pkg/distro"
	"github.com/image-builder-action/image-builder-action/pkg/repo"
)

// Available returns the package index Lock resolves against for a distro
// and one architecture: the distro's suites on the host's mirror (or the
// sources WithSources sets), fetched and verified by the options' fetcher.
// A blueprint's own repositories are not included. It is what a package
// search offers, so that a name found there is one lock can resolve.
func Available(ctx context.Context, distroName, arch string, opts ...Option) (*repo.Index, error) {
	o := options{}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if o.defs == nil {
		d, err := distro.Load()
		if err != nil {
			return nil, err
		}
		o.defs = d
	}
	if o.fetcher == nil {
		return nil, errors.New("lock: no repository fetcher")
	}
	d, err := o.defs.Distro(distroName)
	if err != nil {
		return nil, err
	}
	if arch == "" {
		arch = HostArch()
	}
	a, err := d.Arch(arch)
	if err != nil {
		return nil, err
	}
	srcs := o.sources
	if len(srcs) == 0 {
		root := o.hostRoot
		if root == "" {
			root = "/"
		}
		host, err := repo.HostSources(root)
		if err != nil {
			return nil, fmt.Errorf("reading the host's apt sources: %w", err)
		}
		if srcs, err = DistroSources(d, host); err != nil {
			return nil, err
		}
	}
	return o.fetcher.Fetch(ctx, srcs, a.Dpkg)
}
