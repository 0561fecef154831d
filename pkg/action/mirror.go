package action

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/image-builder-action/image-builder-action/pkg/ibuild"
	"github.com/image-builder-action/image-builder-action/pkg/sources"
)

// keychain logs in to ghcr.io with the github-token input, elsewhere with
// docker's config.json.
func (r *runner) keychain() authn.Keychain {
	return tokenKeychain{registry: "ghcr.io", user: r.getenv("GITHUB_ACTOR"), token: r.in.GitHubToken, fallback: authn.DefaultKeychain}
}

// openStore opens a store named by an input: a directory relative to the
// workspace, a registry repository or an S3 bucket.
func (r *runner) openStore(ctx context.Context, ref string) (sources.Store, error) {
	st, err := sources.OpenStore(ctx, ref, sources.WithKeychain(r.keychain()))
	if err != nil {
		return nil, err
	}
	if _, ok := st.(*sources.Dir); ok && !filepath.IsAbs(ref) {
		return sources.NewDir(r.path(ref)), nil
	}
	return st, nil
}

// stores are the sources input's stores, for build.
func (r *runner) stores(ctx context.Context) ([]sources.Source, error) {
	var out []sources.Source
	for _, ref := range r.in.Sources {
		st, err := r.openStore(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("input sources: %w", err)
		}
		out = append(out, st)
	}
	return out, nil
}

// mirror copies the lockfile's packages into the store the to input names.
func (r *runner) mirror(ctx context.Context) error {
	if r.in.To == "" {
		return errors.New("input to: required (the store to fill: a directory, REGISTRY/REPO such as ghcr.io/OWNER/packages, or s3://BUCKET[/PREFIX])")
	}
	lockPath, err := r.lockPath()
	if err != nil {
		return err
	}
	store, err := r.openStore(ctx, r.in.To)
	if err != nil {
		return fmt.Errorf("input to: %w", err)
	}
	fmt.Fprintf(r.log, "mirroring the packages of %s to %s\n", r.rel(lockPath), store)
	res, err := ibuild.Mirror(ctx, ibuild.MirrorRequest{Lockfile: lockPath, Store: store, CacheDir: r.cacheDir()})
	if err != nil {
		return err
	}
	line := fmt.Sprintf("%s: %d packages (%.1f MiB), %d uploaded (%.1f MiB), %d there already, in %.1fs",
		res.Store, res.Packages, float64(res.Bytes)/(1<<20), res.Uploaded, float64(res.UploadedBytes)/(1<<20), res.Packages-res.Uploaded, res.Duration.Seconds())
	fmt.Fprintln(r.log, line)
	if err := r.setOutputs("lockfile", r.rel(lockPath)); err != nil {
		return err
	}
	return r.files.AddStepSummary("## ibuild mirror\n\n" + line + "\n")
}
