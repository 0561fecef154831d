// Package compose is the compose service's core: a compose is a blueprint
// locked into a lockfile, then one build per image request, then an
// optional upload, then a download. It holds the records of composes and
// runs their steps as River jobs (SQLite in one directory by default,
// PostgreSQL to scale out over workers on other machines, one queue per
// architecture), on pkg/ibuild's use cases: nothing here repeats a step
// of Lock, Build or Upload.
//
// Every method takes the owner of the compose: a compose of another owner
// is ErrNotFound, never a different error, so one owner cannot even learn
// that another's compose exists. The weldr API (one local owner) and the
// cloud API (an owner per bearer token) sit on top.
package compose

import (
	"errors"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
	"github.com/image-builder-action/image-builder-action/pkg/upload"
)

// Status is a compose's or an image's state, with the cloud API's names.
// The weldr API maps them: pending → WAITING, building and uploading →
// RUNNING, success → FINISHED, failure → FAILED.
type Status string

const (
	StatusPending   Status = "pending"
	StatusBuilding  Status = "building"
	StatusUploading Status = "uploading"
	StatusSuccess   Status = "success"
	StatusFailure   Status = "failure"
)

// Final says the status will not change any more.
func (s Status) Final() bool { return s == StatusSuccess || s == StatusFailure }

// Errors the service returns; check them with errors.Is.
var (
	// ErrNotFound is a compose that does not exist or belongs to another
	// owner.
	ErrNotFound = errors.New("compose not found")
	// ErrNotFinished is a request for what only a finished compose has
	// (its artifact), or a delete of a compose still running.
	ErrNotFinished = errors.New("compose not finished")
	// ErrFinished is a cancel of a compose that has finished.
	ErrFinished = errors.New("compose already finished")
	// ErrClosed is a call on a closed service.
	ErrClosed = errors.New("compose service closed")
)

// RequestError is a request refused before anything was queued; Field
// names what is wrong the way the request spells it ("images[0].arch").
type RequestError struct {
	Field string
	Msg   string
}

func (e *RequestError) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// Request asks for a compose.
type Request struct {
	// Blueprint is the blueprint's text, TOML or JSON (a JSON object
	// starts with "{"); at most blueprint.MaxSize bytes.
	Blueprint []byte `json:"blueprint"`
	// Distro overrides the blueprint's distro when set.
	Distro string `json:"distro,omitempty"`
	// Repositories are added to the blueprint's customizations.repositories
	// and used to resolve packages. Their URLs must be http or https
	// unless the service's Config.AllowSchemes says otherwise.
	Repositories []blueprint.RepositoryCustomization `json:"repositories,omitempty"`
	// Images are the images to build: at least one.
	Images []ImageRequest `json:"images"`
}

// ImageRequest is one image of a compose.
type ImageRequest struct {
	Arch string `json:"arch"`
	Type string `json:"type"`
	// Size is the least size of the disk in bytes (0: the image type's).
	// The lockfile is one for the whole compose, so the largest size
	// asked for applies to every image of it.
	Size uint64 `json:"size,omitempty"`
	// Upload, when set, sends the built image to a cloud target.
	Upload *UploadTarget `json:"upload,omitempty"`
	// Publish, when set, pushes the built image to an OCI registry
	// repository the operator allows (Config.Publish).
	Publish *PublishTarget `json:"publish,omitempty"`
}

// PublishTarget is where an image is pushed, with pkg/ibuild.Publish:
// the image as an OCI artifact, in an index per type, then, when signed,
// a cosign signature, an SPDX SBOM and SLSA provenance. Registry
// credentials and the signing key are the operator's (the worker's
// keychain, Config.Publish.Sign), never the request's.
type PublishTarget struct {
	// Ref is a repository, optionally with a tag (HOST/PATH[:TAG]),
	// under one of Config.Publish.Repositories.
	Ref string `json:"ref"`
	// Sign asks for a signature, SBOM and provenance made with the
	// operator's key.
	Sign bool `json:"sign,omitempty"`
}

// UploadTarget names a pkg/upload target (aws, aws.s3, gcp, azure) and
// its options. Credentials come from the worker's environment (the SDKs'
// standard chains), never from the request.
type UploadTarget struct {
	Target  string         `json:"target"`
	Options upload.Options `json:"options"`
}

// Compose is a compose as the service reports it.
type Compose struct {
	ID      string  `json:"id"`
	Owner   string  `json:"owner"`
	Request Request `json:"request"`
	// BlueprintName and BlueprintVersion are the blueprint's own.
	BlueprintName    string        `json:"blueprint_name"`
	BlueprintVersion string        `json:"blueprint_version,omitempty"`
	Distro           string        `json:"distro,omitempty"`
	Status           Status        `json:"status"`
	Created          time.Time     `json:"created"`
	Started          *time.Time    `json:"started,omitempty"`
	Finished         *time.Time    `json:"finished,omitempty"`
	Images           []ImageStatus `json:"images"`
	// LockfileDigest is the sha256 of the lockfile once locked.
	LockfileDigest string `json:"lockfile_digest,omitempty"`
	// Error is why the compose failed (the lock's error, or the first
	// image's).
	Error     string `json:"error,omitempty"`
	Cancelled bool   `json:"cancelled,omitempty"`
}

// ImageStatus is one image of a compose.
type ImageStatus struct {
	Arch   string `json:"arch"`
	Type   string `json:"type"`
	Status Status `json:"status"`
	// Progress counts the build's stages done, of Total.
	Progress Progress   `json:"progress"`
	Started  *time.Time `json:"started,omitempty"`
	Finished *time.Time `json:"finished,omitempty"`
	// Attempt is the queue's attempt that ran (or runs) the build; more
	// than 1 after a worker died or an attempt failed.
	Attempt int `json:"attempt,omitempty"`
	// Worker names the process that ran the last attempt (host:pid).
	Worker   string         `json:"worker,omitempty"`
	Error    string         `json:"error,omitempty"`
	Artifact *Artifact      `json:"artifact,omitempty"`
	Files    []Artifact     `json:"files,omitempty"`
	Upload   *upload.Result `json:"upload,omitempty"`
	// Published is where the image was pushed, when the request asked.
	Published *Published `json:"published,omitempty"`
}

// Published is an image pushed to a registry.
type Published struct {
	// Ref is the image's manifest by digest, REPO@sha256:HEX: what
	// `oras pull` fetches the file from and `cosign verify` checks.
	Ref string `json:"ref"`
	// Index is the index of the image's type by digest (REPO@sha256:HEX).
	Index string `json:"index,omitempty"`
	// Tags are the tags set on the index (REPO:TAG).
	Tags []string `json:"tags,omitempty"`
	// Signed says the manifest was signed with the operator's key;
	// Signature is where the signature is (a referrer REPO@sha256:… or
	// cosign's tag REPO:sha256-HEX.sig) and Attach how ("referrers" or
	// "tags").
	Signed    bool   `json:"signed,omitempty"`
	Signature string `json:"signature,omitempty"`
	Attach    string `json:"attach,omitempty"`
}

// Progress is a count of build stages.
type Progress struct {
	Done  int `json:"done"`
	Total int `json:"total"`
	// Stage names the stage running now ("pipeline: type", e.g.
	// "os: org.osbuild.apt"), empty between stages and once the build ends.
	// A status page shows it beside the count.
	Stage string `json:"stage,omitempty"`
}

// Artifact is a file a build wrote, kept in the artifact store.
type Artifact struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// ListOptions selects composes for List.
type ListOptions struct {
	// Statuses keeps only composes with one of them (all when empty).
	Statuses []Status
	// Limit (0: no limit) and Offset page the list, newest first.
	Limit, Offset int
}
