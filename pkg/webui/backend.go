package webui

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/manifest"
)

// The page is a front door over the service's use cases: it declares what
// it needs from them here, and ibuild serve passes the service's store,
// compose queue and token checker (see the adapters beside this file).

// ErrNotFound is what a backend returns for a blueprint, compose or file
// the owner does not have; the page answers 404.
var ErrNotFound = errors.New("not found")

// Authenticator checks an API token and says whose it is: the page takes
// the same tokens as the API and shows each owner only their own things.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (owner string, err error)
	// AuthenticateSum is Authenticate for a token known by its sha256
	// (hex) only: a session keeps that, never the token, and asks at each
	// request, so that revoking or rotating a token ends its sessions.
	AuthenticateSum(ctx context.Context, sum string) (owner string, err error)
}

// Blueprints stores an owner's blueprints with their versions.
type Blueprints interface {
	// List returns the newest version of each blueprint, by name.
	List(ctx context.Context, owner string) ([]StoredBlueprint, error)
	// Versions returns every saved version of one, oldest first.
	Versions(ctx context.Context, owner, name string) ([]StoredBlueprint, error)
	// Get returns one version; version 0 is the newest.
	Get(ctx context.Context, owner, name string, version int) (StoredBlueprint, error)
	// Put saves data (a valid blueprint in TOML, named name) as a new
	// version.
	Put(ctx context.Context, owner, name string, data []byte) (StoredBlueprint, error)
	// Delete removes the blueprint with all its versions.
	Delete(ctx context.Context, owner, name string) error
}

// StoredBlueprint is one saved version of a blueprint.
type StoredBlueprint struct {
	Name string
	// Version counts the saves, from 1.
	Version     int
	Description string
	// Data is the blueprint in TOML, as saved.
	Data  []byte
	Saved time.Time
}

// Composes starts composes and reports on them.
type Composes interface {
	Submit(ctx context.Context, req ComposeRequest) (Compose, error)
	// List returns the owner's composes, newest first.
	List(ctx context.Context, owner string) ([]Compose, error)
	Get(ctx context.Context, owner, id string) (Compose, error)
	// Log is the compose's log so far.
	Log(ctx context.Context, owner, id string) ([]byte, error)
	// Lockfile is the compose's manifest once locked (ErrNotFound before).
	Lockfile(ctx context.Context, owner, id string) (*manifest.Lockfile, error)
	// Artifact opens the file image index of the compose built.
	Artifact(ctx context.Context, owner, id string, image int) (*Artifact, error)
}

// Notifier is what a Composes may also offer: a channel that receives a
// compose's id whenever it changes, closed when ctx ends. Without it the
// live view looks every second.
type Notifier interface {
	Subscribe(ctx context.Context, owner string) (<-chan string, error)
}

// ComposeRequest asks for images of a blueprint.
type ComposeRequest struct {
	Owner string
	// Blueprint is the blueprint's TOML, as saved.
	Blueprint []byte
	// Distro overrides the blueprint's when set.
	Distro string
	Images []ImageRequest
}

// ImageRequest is one image of a compose.
type ImageRequest struct {
	Arch, Type string
	// Upload names an upload target the service knows; empty for none.
	Upload string
	// Publish, when set, is the repository (HOST/PATH[:TAG]) the image is
	// pushed to; Sign asks for the service's signature.
	Publish string
	Sign    bool
}

// Compose statuses.
const (
	StatusPending   = "pending"
	StatusBuilding  = "building"
	StatusUploading = "uploading"
	StatusSuccess   = "success"
	StatusFailure   = "failure"
)

// Compose is a compose's state.
type Compose struct {
	ID, Owner        string
	BlueprintName    string
	BlueprintVersion string
	Distro           string
	Status           string
	// Error says in words why the compose failed (locking, say); images
	// carry their own.
	Error                      string
	Created, Started, Finished time.Time
	Images                     []ImageStatus
}

// ImageStatus is one image of a compose.
type ImageStatus struct {
	Arch, Type, Status string
	// Stage is what the build is doing ("org.osbuild.apt"); Done of Total
	// steps are finished.
	Stage       string
	Done, Total int
	Error       string
	// Filename, Size and SHA256 describe the built file.
	Filename string
	Size     int64
	SHA256   string
	Upload   *UploadResult
	// Published is where the image was pushed, when asked.
	Published *Published
}

// Published is an image pushed to a registry.
type Published struct {
	// Ref is the image's manifest by digest (REPO@sha256:HEX).
	Ref string
	// Signed says it carries the service's signature, at Signature.
	Signed    bool
	Signature string
}

// UploadResult is where an image went.
type UploadResult struct {
	Target string
	// ID is the cloud's name for it (an AMI id), URL where it can be
	// fetched or seen.
	ID, URL string
	Error   string
}

// Artifact is a built file, open for reading.
type Artifact struct {
	Name    string
	Size    int64
	ModTime time.Time
	Content io.ReadSeekCloser
}

// Done says the compose will not change any more.
func (c Compose) Done() bool { return c.Status == StatusSuccess || c.Status == StatusFailure }
