// Package sources holds the places a build may take a pinned package from:
// the mirror URL in the lockfile, the distribution's snapshot archive, and
// content-addressed stores the user owns (a directory, an OCI registry, an
// S3 bucket). Every source only serves bytes; the caller checks them
// against the lockfile's sha256, so no source is trusted.
package sources

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/image-builder-action/image-builder-action/pkg/manifest"
)

// ErrNotFound is returned (wrapped) by Open when the source does not have
// the file.
var ErrNotFound = errors.New("not found")

// Source serves package files.
type Source interface {
	// String names the source in reports, warnings and errors.
	String() string
	// Locate says where the source keeps p (a URL or a path), for errors.
	Locate(p *manifest.Package) string
	// Open returns the file's bytes, unverified. It returns an error
	// wrapping ErrNotFound when the source does not have the file.
	Open(ctx context.Context, p *manifest.Package) (io.ReadCloser, error)
}

// Store is a content-addressed Source that can be filled: files are named
// by their sha256.
type Store interface {
	Source
	// Has reports whether the store holds the file with this sha256.
	Has(ctx context.Context, sha256 string) (bool, error)
	// Put stores size bytes from r under sha256. The caller has verified
	// them.
	Put(ctx context.Context, p *manifest.Package, r io.ReadSeeker) error
}

// Transient reports whether err may go away when the same request is made
// again (a network error, a 5xx answer), so a retry is worth it.
func Transient(err error) bool {
	var t interface{ Transient() bool }
	if errors.As(err, &t) {
		return t.Transient()
	}
	var ne net.Error
	var ue *url.Error
	return errors.As(err, &ne) || errors.As(err, &ue) || errors.Is(err, io.ErrUnexpectedEOF)
}

// Unreachable reports whether err says the source cannot be reached at
// all (no route, no name, refused), as opposed to an answer about one
// file: a build stops asking such a source.
func Unreachable(err error) bool {
	var oe *net.OpError
	var de *net.DNSError
	return errors.As(err, &oe) && oe.Op == "dial" || errors.As(err, &de)
}

// StoreOption configures OpenStore.
type StoreOption func(*storeOptions)

type storeOptions struct {
	insecure bool
	keychain authn.Keychain
}

// WithKeychain sets where an OCI registry store's credentials come from
// (default authn.DefaultKeychain: docker's config.json).
func WithKeychain(kc authn.Keychain) StoreOption { return func(o *storeOptions) { o.keychain = kc } }

// WithInsecureRegistry lets an OCI registry store use plain HTTP on any
// host (go-containerregistry already does for localhost and 127.0.0.1).
func WithInsecureRegistry() StoreOption { return func(o *storeOptions) { o.insecure = true } }

// OpenStore opens the store a user names:
//   - s3://BUCKET[/PREFIX]: an S3 bucket (credentials, region and endpoint
//     from the AWS SDK's default chain: AWS_REGION, AWS_ENDPOINT_URL_S3…);
//   - oci://REGISTRY/REPOSITORY, or a registry reference whose first part
//     names a host (ghcr.io/owner/packages, 127.0.0.1:5000/packages): an OCI
//     registry, packages as blobs of that repository;
//   - file://PATH or any other path: a directory.
func OpenStore(ctx context.Context, ref string, opts ...StoreOption) (Store, error) {
	var o storeOptions
	for _, opt := range opts {
		opt(&o)
	}
	switch {
	case ref == "":
		return nil, errors.New("opening store: empty reference")
	case strings.HasPrefix(ref, "s3://"):
		return openS3(ctx, ref)
	case strings.HasPrefix(ref, "oci://"):
		return openOCI(strings.TrimPrefix(ref, "oci://"), o)
	case strings.HasPrefix(ref, "file://"):
		return NewDir(strings.TrimPrefix(ref, "file://")), nil
	case looksLikeRegistry(ref):
		return openOCI(ref, o)
	default:
		return NewDir(ref), nil
	}
}

// looksLikeRegistry: a reference whose first path element names a host
// (has a dot or a port, or is localhost) and that is not an existing local
// path.
func looksLikeRegistry(ref string) bool {
	if strings.HasPrefix(ref, "/") || strings.HasPrefix(ref, ".") || !strings.Contains(ref, "/") {
		return false
	}
	if _, err := os.Stat(ref); err == nil {
		return false
	}
	host, _, _ := strings.Cut(ref, "/")
	return strings.ContainsAny(host, ".:") || host == "localhost"
}

// StatusError is an HTTP answer other than 200.
type StatusError struct {
	URL    string
	Status string
	Code   int
}

func (e *StatusError) Error() string { return e.URL + ": " + e.Status }

// Transient: a server error or a rate limit may pass.
func (e *StatusError) Transient() bool {
	return e.Code >= 500 || e.Code == 429 || e.Code == 408
}

// Is makes a 404 or 410 ErrNotFound.
func (e *StatusError) Is(target error) bool {
	return target == ErrNotFound && (e.Code == 404 || e.Code == 410)
}

func notFound(what string) error { return fmt.Errorf("%s: %w", what, ErrNotFound) }
