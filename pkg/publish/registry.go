package publish

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	godigest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/cosign/v2/pkg/oci/empty"
)

var emptyJSON = []byte("{}")

func emptyConfigDescriptor() ocispec.Descriptor {
	d := ocispec.DescriptorEmptyJSON
	d.Data = nil // not every registry keeps unknown fields; the blob is pushed
	return d
}

func writeEmptyConfig(repo name.Repository, ropts []remote.Option) error {
	if err := remote.WriteLayer(repo, static.NewLayer(emptyJSON, EmptyConfigMediaType), ropts...); err != nil {
		return fmt.Errorf("pushing the empty config to %s: %w", repo, err)
	}
	return nil
}

func emptySignatures() oci.Signatures { return empty.Signatures() }

func toDigest(h v1.Hash) godigest.Digest { return godigest.Digest(h.String()) }

// rawManifest is a manifest to PUT as is.
type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.raw, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }

// putManifest pushes raw by its digest and returns the digest.
func putManifest(_ context.Context, repo name.Repository, raw []byte, mt types.MediaType, ropts []remote.Option) (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		return v1.Hash{}, err
	}
	if err := remote.Put(repo.Digest(h.String()), rawManifest{raw, mt}, ropts...); err != nil {
		return v1.Hash{}, fmt.Errorf("pushing manifest %s to %s: %w", h, repo, err)
	}
	return h, nil
}

// referrersSupported asks the registry for the referrers of d: 200 means
// the OCI 1.1 referrers API; 404 (or 400/405 from registries that do not
// know the route) means it has none.
func referrersSupported(ctx context.Context, repo name.Repository, d v1.Hash, kc authn.Keychain, rt http.RoundTripper) (bool, error) {
	auth, err := authn.Resolve(ctx, kc, repo)
	if err != nil {
		return false, fmt.Errorf("probing %s for the referrers API: %w", repo, err)
	}
	t, err := transport.NewWithContext(ctx, repo.Registry, auth, rt, []string{repo.Scope(transport.PullScope)})
	if err != nil {
		return false, fmt.Errorf("probing %s for the referrers API: %w", repo, err)
	}
	u := url.URL{Scheme: repo.Scheme(), Host: repo.RegistryStr(), Path: fmt.Sprintf("/v2/%s/referrers/%s", repo.RepositoryStr(), d)}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Accept", string(types.OCIImageIndex))
	resp, err := (&http.Client{Transport: t}).Do(req)
	if err != nil {
		return false, fmt.Errorf("probing %s for the referrers API: %w", repo, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound, http.StatusBadRequest, http.StatusMethodNotAllowed:
		return false, nil
	}
	return false, fmt.Errorf("probing %s for the referrers API: %s", repo, resp.Status)
}
