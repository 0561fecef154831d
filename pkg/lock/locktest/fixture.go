package locktest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/distro"
	"github.com/image-builder-action/image-builder-action/pkg/lock"
	"github.com/image-builder-action/image-builder-action/pkg/repo"
)

// FixtureFetcher serves a Packages file as one verified release per
// source, so lock and check run offline and fast.
type FixtureFetcher struct{ Packages string }

// Fetch implements lock.Fetcher.
func (f *FixtureFetcher) Fetch(ctx context.Context, srcs []repo.Source, arch string) (*repo.Index, error) {
	fh, err := os.Open(f.Packages)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	pkgs, err := repo.ParsePackages(fh, srcs[0].URI, 0)
	if err != nil {
		return nil, err
	}
	idx := &repo.Index{Packages: pkgs}
	for i, s := range srcs {
		idx.Releases = append(idx.Releases, repo.Release{Source: s, SHA256: strings.Repeat("ab", 32),
			Date: time.Date(2026, 11, 20+i, 8, 0, 0, 0, time.UTC)})
	}
	return idx, nil
}

// FixtureOptions lock against the fixture under testdata/lock (dir):
// its image definitions, its Packages file behind a made-up mirror, and a
// fixed tool version, as testdata/lock/blueprint.lock.json was locked.
func FixtureOptions(t testing.TB, dir string) []lock.Option {
	t.Helper()
	defs, err := distro.LoadFS(os.DirFS(filepath.Join(dir, "defs")))
	if err != nil {
		t.Fatal(err)
	}
	return []lock.Option{
		lock.WithDefs(defs),
		lock.WithFetcher(&FixtureFetcher{Packages: filepath.Join(dir, "Packages")}),
		lock.WithSources(repo.Source{URI: "http://archive.invalid/debian", Suite: "bookworm", Components: []string{"main"}}),
		lock.WithToolVersion("ibuild test"),
	}
}
