package sources

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/image-builder-action/image-builder-action/pkg/manifest"
)

// Media types of what a registry store holds.
const (
	// PackageMediaType is a Debian binary package pushed as a blob.
	PackageMediaType = "application/vnd.debian.binary-package"
	// PackagesArtifactType is the manifest that lists a lockfile's packages,
	// so a registry's garbage collection keeps their blobs.
	PackagesArtifactType = "application/vnd.ibuild.packages.v1"
)

// Registry is a store in an OCI registry repository: each package a blob
// named by its sha256, kept alive by a manifest per lockfile (KeepAlive).
type Registry struct {
	repo     name.Repository
	keychain authn.Keychain
	rt       http.RoundTripper

	mu     sync.Mutex
	reader *http.Client // authenticated for pulls, made on first use
}

var _ Store = (*Registry)(nil)

func openOCI(ref string, o storeOptions) (*Registry, error) {
	var nopts []name.Option
	if o.insecure {
		nopts = append(nopts, name.Insecure)
	}
	repo, err := name.NewRepository(ref, nopts...)
	if err != nil {
		return nil, fmt.Errorf("opening registry store %q: %w", ref, err)
	}
	kc := o.keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	return &Registry{repo: repo, keychain: kc, rt: remote.DefaultTransport}, nil
}

func (r *Registry) String() string { return "oci://" + r.repo.Name() }

func (r *Registry) client(ctx context.Context) (*http.Client, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reader != nil {
		return r.reader, nil
	}
	auth, err := authn.Resolve(ctx, r.keychain, r.repo)
	if err != nil {
		return nil, err
	}
	t, err := transport.NewWithContext(ctx, r.repo.Registry, auth, r.rt, []string{r.repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, err
	}
	r.reader = &http.Client{Transport: t}
	return r.reader, nil
}

func (r *Registry) blobURL(sha string) string {
	return fmt.Sprintf("%s://%s/v2/%s/blobs/sha256:%s", r.repo.Scheme(), r.repo.RegistryStr(), r.repo.RepositoryStr(), sha)
}

func (r *Registry) Locate(p *manifest.Package) string { return r.blobURL(p.SHA256) }

func (r *Registry) Open(ctx context.Context, p *manifest.Package) (io.ReadCloser, error) {
	c, err := r.client(ctx)
	if err != nil {
		return nil, err
	}
	return httpGet(ctx, c, r.blobURL(p.SHA256))
}

func (r *Registry) Has(ctx context.Context, sha string) (bool, error) {
	c, err := r.client(ctx)
	if err != nil {
		return false, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, r.blobURL(sha), nil)
	if err != nil {
		return false, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	}
	return false, &StatusError{URL: r.blobURL(sha), Status: resp.Status, Code: resp.StatusCode}
}

func (r *Registry) remoteOptions(ctx context.Context) []remote.Option {
	return []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(r.keychain), remote.WithTransport(r.rt)}
}

func (r *Registry) Put(ctx context.Context, p *manifest.Package, rs io.ReadSeeker) error {
	h, err := v1.NewHash("sha256:" + p.SHA256)
	if err != nil {
		return fmt.Errorf("pushing %s: %w", p.Ref(), err)
	}
	l := &blobLayer{r: rs, size: p.Size, digest: h}
	if err := remote.WriteLayer(r.repo, l, r.remoteOptions(ctx)...); err != nil {
		return fmt.Errorf("pushing %s to %s: %w", p.Ref(), r, err)
	}
	return nil
}

// KeepAlive pushes, under tag, a manifest listing pkgs' blobs (with an
// empty config), unless the tag already names that manifest. Registries
// delete blobs no manifest refers to; this one keeps a lockfile's packages.
// It reports whether it pushed.
func (r *Registry) KeepAlive(ctx context.Context, tag string, pkgs []manifest.Package) (bool, error) {
	m := ocispec.Manifest{
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: PackagesArtifactType,
		Config:       ocispec.DescriptorEmptyJSON,
	}
	m.SchemaVersion = 2
	m.Config.Data = nil
	seen := map[string]bool{}
	for _, p := range pkgs {
		if seen[p.SHA256] {
			continue
		}
		seen[p.SHA256] = true
		m.Layers = append(m.Layers, ocispec.Descriptor{
			MediaType:   PackageMediaType,
			Digest:      digest.Digest("sha256:" + p.SHA256),
			Size:        p.Size,
			Annotations: map[string]string{ocispec.AnnotationTitle: p.Name + "_" + p.Version + "_" + p.Arch + ".deb"},
		})
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return false, err
	}
	want, _, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		return false, err
	}
	ref := r.repo.Tag(tag)
	opts := r.remoteOptions(ctx)
	if d, err := remote.Head(ref, opts...); err == nil && d.Digest == want {
		return false, nil
	}
	empty := &blobLayer{r: bytes.NewReader([]byte("{}")), size: 2, mt: ocispec.MediaTypeEmptyJSON}
	empty.digest, _, _ = v1.SHA256(bytes.NewReader([]byte("{}")))
	if err := remote.WriteLayer(r.repo, empty, opts...); err != nil {
		return false, fmt.Errorf("pushing the empty config to %s: %w", r, err)
	}
	if err := remote.Put(ref, rawManifest{raw}, opts...); err != nil {
		return false, fmt.Errorf("pushing the package list to %s: %w", ref, err)
	}
	return true, nil
}

type rawManifest struct{ raw []byte }

func (m rawManifest) RawManifest() ([]byte, error) { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) {
	return types.MediaType(ocispec.MediaTypeImageManifest), nil
}

// blobLayer is a v1.Layer over bytes already verified against digest, sent
// as they are (no compression: a .deb is its own blob).
type blobLayer struct {
	r      io.ReadSeeker
	size   int64
	digest v1.Hash
	mt     string
}

var _ v1.Layer = (*blobLayer)(nil)

func (l *blobLayer) Digest() (v1.Hash, error) { return l.digest, nil }
func (l *blobLayer) DiffID() (v1.Hash, error) { return l.digest, nil }
func (l *blobLayer) Size() (int64, error)     { return l.size, nil }
func (l *blobLayer) MediaType() (types.MediaType, error) {
	if l.mt != "" {
		return types.MediaType(l.mt), nil
	}
	return PackageMediaType, nil
}
func (l *blobLayer) Compressed() (io.ReadCloser, error) {
	if _, err := l.r.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return io.NopCloser(l.r), nil
}
func (l *blobLayer) Uncompressed() (io.ReadCloser, error) { return l.Compressed() }
