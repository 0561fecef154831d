package lock

import (
	"context"

	"github.com/image-builder-action/image-builder-action/pkg/repo"
)

// Available returns the package index Lock resolves against for a distro
// and one architecture: the distro's suites on the host's mirror (or the
// sources WithSources sets), fetched and verified by the options' fetcher.
// A blueprint's own repositories are not included. It is what a package
// search offers, so that a name found there is one lock can resolve.
func Available(ctx context.Context, distroName, arch string, opts ...Option) (*repo.Index, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
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
	srcs, err := o.distroSources(d)
	if err != nil {
		return nil, err
	}
	return o.fetcher.Fetch(ctx, srcs, a.Dpkg)
}
