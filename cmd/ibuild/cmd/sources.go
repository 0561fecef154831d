package cmd

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"github.com/image-builder-action/image-builder-action/pkg/build"
	"github.com/image-builder-action/image-builder-action/pkg/sources"
)

// sourceFlags name where a build takes packages from besides the mirror.
type sourceFlags struct {
	stores      []string
	snapshotURL string
}

func (f *sourceFlags) register(fl *pflag.FlagSet) {
	fl.StringSliceVar(&f.stores, "sources", nil, "content-addressed stores to take packages from when the mirror and the snapshot archive do not have them, in order: DIR, oci://REGISTRY/REPO (or REGISTRY/REPO), s3://BUCKET[/PREFIX][?endpoint=URL&region=R]; repeatable or comma-separated")
	fl.StringVar(&f.snapshotURL, "snapshot-url", sources.DefaultSnapshotURL, `snapshot archive asked when a mirror URL fails, at the time the lockfile's repositories were read ("" for none)`)
}

func (f *sourceFlags) options(ctx context.Context) ([]build.Option, error) {
	opts := []build.Option{build.WithSnapshotURL(f.snapshotURL)}
	for _, ref := range f.stores {
		st, err := sources.OpenStore(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("--sources: %w", err)
		}
		opts = append(opts, build.WithStores(st))
	}
	return opts, nil
}

// reportSources says where the downloaded packages came from.
func reportSources(w io.Writer, counts []build.SourceCount) {
	for _, s := range counts {
		fmt.Fprintf(w, "packages from %s: %d (%s MiB)\n", s.Source, s.Packages, mib(s.Bytes))
	}
}
