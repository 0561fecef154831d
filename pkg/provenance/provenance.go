// Package provenance writes SLSA v1 provenance for an image built from a
// lockfile: the lockfile and the blueprint are the inputs, the entry (distro,
// arch, type) the parameters, the repositories' InRelease files the
// resolved dependencies, and the builder the workflow that ran ibuild.
package provenance

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/pkg/version"
)

// PredicateType is the in-toto predicate type of SLSA v1 provenance (what
// cosign calls "slsaprovenance1").
const PredicateType = "https://slsa.dev/provenance/v1"

// BuildType names how ibuild builds: a lockfile entry, run by the executor.
// Its externalParameters are "blueprint", "lockfile", "entry" and, when
// known, "source".
const BuildType = "https://github.com/image-builder-action/image-builder-action/buildtypes/lockfile/v1"

// BuilderURI is the builder id outside GitHub Actions, followed by "@" and
// the tool's version.
const BuilderURI = "https://github.com/image-builder-action/image-builder-action/ibuild"

// Predicate is a SLSA v1 provenance predicate.
type Predicate struct {
	BuildDefinition BuildDefinition `json:"buildDefinition"`
	RunDetails      RunDetails      `json:"runDetails"`
}

// BuildDefinition is what was built and from what.
type BuildDefinition struct {
	BuildType            string               `json:"buildType"`
	ExternalParameters   ExternalParameters   `json:"externalParameters"`
	InternalParameters   InternalParameters   `json:"internalParameters"`
	ResolvedDependencies []ResourceDescriptor `json:"resolvedDependencies"`
}

// ExternalParameters are the inputs a user controls.
type ExternalParameters struct {
	Blueprint FileRef `json:"blueprint"`
	Lockfile  FileRef `json:"lockfile"`
	Entry     Entry   `json:"entry"`
	Source    *Source `json:"source,omitempty"`
}

// FileRef is a file by path and digest.
type FileRef struct {
	Path   string            `json:"path"`
	Digest map[string]string `json:"digest"`
}

// Entry is the lockfile entry that was built.
type Entry struct {
	Distro   string `json:"distro"`
	Arch     string `json:"arch"`
	Type     string `json:"type"`
	Filename string `json:"filename"`
}

// Source is the repository the lockfile came from, when known.
type Source struct {
	Repository string `json:"repository"`
	Revision   string `json:"revision,omitempty"`
}

// InternalParameters are set by the lockfile and the tool, not the user.
type InternalParameters struct {
	SourceDateEpoch int64             `json:"sourceDateEpoch"`
	ImageDefs       map[string]string `json:"imagedefs"`
}

// ResourceDescriptor is an in-toto v1 resource descriptor.
type ResourceDescriptor struct {
	Name   string            `json:"name,omitempty"`
	URI    string            `json:"uri,omitempty"`
	Digest map[string]string `json:"digest,omitempty"`
}

// RunDetails says who ran the build.
type RunDetails struct {
	Builder  Builder   `json:"builder"`
	Metadata *Metadata `json:"metadata,omitempty"`
}

// Builder identifies the build platform.
type Builder struct {
	ID      string            `json:"id"`
	Version map[string]string `json:"version,omitempty"`
}

// Metadata identifies the run.
type Metadata struct {
	InvocationID string `json:"invocationId,omitempty"`
}

// Option configures New.
type Option func(*options) error

type options struct {
	lockPath, lockDigest string
	builderID            string
	getenv               func(string) string
	source               *Source
}

// WithLockfile names the lockfile file (as the user gave it) and the sha256
// (hex) of its bytes. Default: "lockfile.json" and the digest of its
// canonical serialisation.
func WithLockfile(path, sha256Hex string) Option {
	return func(o *options) error {
		if !isHex64(sha256Hex) {
			return fmt.Errorf("lockfile digest %q is not a sha256 hex digest", sha256Hex)
		}
		o.lockPath, o.lockDigest = path, sha256Hex
		return nil
	}
}

// WithBuilderID overrides the builder id derived from the environment.
func WithBuilderID(id string) Option {
	return func(o *options) error {
		if !strings.Contains(id, ":") {
			return fmt.Errorf("builder id %q is not a URI", id)
		}
		o.builderID = id
		return nil
	}
}

// WithGetenv sets how the environment is read (default os.Getenv): the
// GITHUB_* variables name the builder, the run and the source.
func WithGetenv(getenv func(string) string) Option {
	return func(o *options) error { o.getenv = getenv; return nil }
}

// WithSource sets the source repository and revision (default: from the
// GitHub Actions environment, if any).
func WithSource(repository, revision string) Option {
	return func(o *options) error {
		if repository == "" {
			o.source = nil
			return nil
		}
		o.source = &Source{Repository: repository, Revision: revision}
		return nil
	}
}

// New builds the provenance of entry e of lf.
func New(lf *manifest.Lockfile, e *manifest.Entry, opts ...Option) (*Predicate, error) {
	o := options{getenv: os.Getenv, lockPath: "lockfile.json"}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("provenance of %s: %w", e.Name(), err)
		}
	}
	if o.lockDigest == "" {
		b, err := lf.Marshal()
		if err != nil {
			return nil, fmt.Errorf("provenance of %s: %w", e.Name(), err)
		}
		sum := sha256.Sum256(b)
		o.lockDigest = hex.EncodeToString(sum[:])
	}
	gh := GitHubFromEnv(o.getenv)
	if o.source == nil && gh != nil {
		o.source = &Source{Repository: gh.Server + "/" + gh.Repository, Revision: gh.SHA}
	}
	// The lockfile records the blueprint's path relative to itself.
	bpPath := lf.Blueprint.Path
	if bpPath != "" && !path.IsAbs(bpPath) {
		bpPath = path.Join(path.Dir(filepath.ToSlash(o.lockPath)), bpPath)
	}
	p := &Predicate{
		BuildDefinition: BuildDefinition{
			BuildType: BuildType,
			ExternalParameters: ExternalParameters{
				Blueprint: FileRef{Path: bpPath, Digest: map[string]string{"sha256": lf.Blueprint.SHA256}},
				Lockfile:  FileRef{Path: filepath.ToSlash(o.lockPath), Digest: map[string]string{"sha256": o.lockDigest}},
				Entry:     Entry{Distro: e.Distro, Arch: e.Arch, Type: e.Type, Filename: e.Filename},
				Source:    o.source,
			},
			InternalParameters: InternalParameters{
				SourceDateEpoch: lf.SourceDateEpoch,
				ImageDefs:       map[string]string{"sha256": lf.ImageDefs.SHA256},
			},
		},
		RunDetails: RunDetails{
			Builder: Builder{ID: o.builderID, Version: map[string]string{"ibuild": version.String()}},
		},
	}
	deps := &p.BuildDefinition.ResolvedDependencies
	if s := o.source; s != nil && s.Revision != "" {
		*deps = append(*deps, ResourceDescriptor{Name: "source", URI: "git+" + s.Repository, Digest: map[string]string{"gitCommit": s.Revision}})
	}
	*deps = append(*deps,
		ResourceDescriptor{Name: "lockfile", URI: filepath.ToSlash(o.lockPath), Digest: map[string]string{"sha256": o.lockDigest}},
		ResourceDescriptor{Name: "blueprint", URI: bpPath, Digest: map[string]string{"sha256": lf.Blueprint.SHA256}},
		ResourceDescriptor{Name: "imagedefs", Digest: map[string]string{"sha256": lf.ImageDefs.SHA256}},
	)
	for _, r := range lf.Repositories {
		*deps = append(*deps, ResourceDescriptor{
			Name:   "repository " + r.Suite,
			URI:    strings.TrimRight(r.URI, "/") + "/dists/" + r.Suite + "/InRelease",
			Digest: map[string]string{"sha256": r.InReleaseSHA256},
		})
	}
	if p.RunDetails.Builder.ID == "" {
		p.RunDetails.Builder.ID = BuilderID(o.getenv)
	}
	if gh != nil && gh.RunID != "" {
		id := gh.Server + "/" + gh.Repository + "/actions/runs/" + gh.RunID
		if gh.RunAttempt != "" {
			id += "/attempts/" + gh.RunAttempt
		}
		p.RunDetails.Metadata = &Metadata{InvocationID: id}
	}
	return p, nil
}

// GitHub is what the GitHub Actions environment says about a run.
type GitHub struct {
	Server, Repository, SHA, WorkflowRef, RunID, RunAttempt string
}

// GitHubFromEnv reads the GITHUB_* variables; nil outside GitHub Actions
// (GITHUB_ACTIONS is not "true" or the repository is unknown).
func GitHubFromEnv(getenv func(string) string) *GitHub {
	if getenv("GITHUB_ACTIONS") != "true" || getenv("GITHUB_REPOSITORY") == "" {
		return nil
	}
	g := &GitHub{
		Server:      strings.TrimRight(getenv("GITHUB_SERVER_URL"), "/"),
		Repository:  getenv("GITHUB_REPOSITORY"),
		SHA:         getenv("GITHUB_SHA"),
		WorkflowRef: getenv("GITHUB_WORKFLOW_REF"),
		RunID:       getenv("GITHUB_RUN_ID"),
		RunAttempt:  getenv("GITHUB_RUN_ATTEMPT"),
	}
	if g.Server == "" {
		g.Server = "https://github.com"
	}
	return g
}

// BuilderID is the builder's id: the workflow file at its ref in GitHub
// Actions (https://github.com/OWNER/REPO/.github/workflows/F.yml@REF), else
// BuilderURI@VERSION.
func BuilderID(getenv func(string) string) string {
	if gh := GitHubFromEnv(getenv); gh != nil && gh.WorkflowRef != "" {
		return gh.Server + "/" + gh.WorkflowRef
	}
	return BuilderURI + "@" + version.String()
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
