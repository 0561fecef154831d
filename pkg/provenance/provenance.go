// Package provenance writes SLSA v1 provenance for an image built from a
// lockfile: the lockfile and the blueprint are the inputs, the entry (distro,
// arch, type) the parameters, the repositories' InRelease files the
// resolved dependencies, and the builder the workflow that ran ibuild. The
// document is in-toto's attestation Go type for SLSA provenance v1.
package provenance

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	slsa "github.com/in-toto/attestation/go/predicates/provenance/v1"
	intoto "github.com/in-toto/attestation/go/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

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

// Provenance is SLSA v1 provenance, held in in-toto's attestation Go type
// (github.com/in-toto/attestation), which New validates. Its JSON is the
// type's protobuf JSON mapping with stable spacing.
type Provenance struct{ *slsa.Provenance }

// BuildDefinition's parameters follow BuildType's schema: the two types
// below, carried in the provenance as JSON objects.

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
func New(lf *manifest.Lockfile, e *manifest.Entry, opts ...Option) (*Provenance, error) {
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
	lockPath := filepath.ToSlash(o.lockPath)
	ext, err := toStruct(ExternalParameters{
		Blueprint: FileRef{Path: bpPath, Digest: map[string]string{"sha256": lf.Blueprint.SHA256}},
		Lockfile:  FileRef{Path: lockPath, Digest: map[string]string{"sha256": o.lockDigest}},
		Entry:     Entry{Distro: e.Distro, Arch: e.Arch, Type: e.Type, Filename: e.Filename},
		Source:    o.source,
	})
	if err != nil {
		return nil, fmt.Errorf("provenance of %s: %w", e.Name(), err)
	}
	in, err := toStruct(InternalParameters{SourceDateEpoch: lf.SourceDateEpoch, ImageDefs: map[string]string{"sha256": lf.ImageDefs.SHA256}})
	if err != nil {
		return nil, fmt.Errorf("provenance of %s: %w", e.Name(), err)
	}
	var deps []*intoto.ResourceDescriptor
	if s := o.source; s != nil && s.Revision != "" {
		if isCommit(s.Revision) {
			deps = append(deps, &intoto.ResourceDescriptor{Name: "source", Uri: "git+" + s.Repository, Digest: map[string]string{"gitCommit": s.Revision}})
		} else {
			// A tag or branch is no digest: name it in the URI, as
			// SLSA's git URIs do.
			deps = append(deps, &intoto.ResourceDescriptor{Name: "source", Uri: "git+" + s.Repository + "@" + s.Revision})
		}
	}
	deps = append(deps,
		&intoto.ResourceDescriptor{Name: "lockfile", Uri: lockPath, Digest: map[string]string{"sha256": o.lockDigest}},
		&intoto.ResourceDescriptor{Name: "blueprint", Uri: bpPath, Digest: map[string]string{"sha256": lf.Blueprint.SHA256}},
		&intoto.ResourceDescriptor{Name: "imagedefs", Digest: map[string]string{"sha256": lf.ImageDefs.SHA256}},
	)
	for _, r := range lf.Repositories {
		deps = append(deps, &intoto.ResourceDescriptor{
			Name:   "repository " + r.Suite,
			Uri:    strings.TrimRight(r.URI, "/") + "/dists/" + r.Suite + "/InRelease",
			Digest: map[string]string{"sha256": r.InReleaseSHA256},
		})
	}
	builderID := o.builderID
	if builderID == "" {
		builderID = BuilderID(o.getenv)
	}
	p := &slsa.Provenance{
		BuildDefinition: &slsa.BuildDefinition{
			BuildType:            BuildType,
			ExternalParameters:   ext,
			InternalParameters:   in,
			ResolvedDependencies: deps,
		},
		RunDetails: &slsa.RunDetails{
			Builder: &slsa.Builder{Id: builderID, Version: map[string]string{"ibuild": version.String()}},
		},
	}
	if gh != nil && gh.RunID != "" {
		id := gh.Server + "/" + gh.Repository + "/actions/runs/" + gh.RunID
		if gh.RunAttempt != "" {
			id += "/attempts/" + gh.RunAttempt
		}
		p.RunDetails.Metadata = &slsa.BuildMetadata{InvocationId: id}
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("provenance of %s: %w", e.Name(), err)
	}
	return &Provenance{p}, nil
}

// toStruct is v as a protobuf Struct, through its JSON form.
func toStruct(v any) (*structpb.Struct, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return structpb.NewStruct(m)
}

// isCommit says whether rev is a git commit id as in-toto's gitCommit
// digest takes it (40 hex digits).
func isCommit(rev string) bool {
	if len(rev) != 40 {
		return false
	}
	_, err := hex.DecodeString(rev)
	return err == nil
}

// MarshalJSON is the protobuf JSON mapping (protojson) with stable
// spacing: protojson varies its whitespace on purpose, and a signed
// statement must be the same bytes for the same lockfile.
func (p *Provenance) MarshalJSON() ([]byte, error) {
	b, err := protojson.Marshal(p.Provenance)
	if err != nil {
		return nil, fmt.Errorf("encoding provenance: %w", err)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return nil, fmt.Errorf("encoding provenance: %w", err)
	}
	return buf.Bytes(), nil
}

// Marshal is the provenance as indented JSON with a trailing newline.
func (p *Provenance) Marshal() ([]byte, error) {
	b, err := p.MarshalJSON()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "", "  "); err != nil {
		return nil, fmt.Errorf("encoding provenance: %w", err)
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

// Parse reads SLSA v1 provenance into in-toto's type, strictly (unknown
// fields are errors), and validates it.
func Parse(data []byte) (*Provenance, error) {
	var p slsa.Provenance
	if err := protojson.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("reading provenance: %w", err)
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("validating provenance: %w", err)
	}
	return &Provenance{&p}, nil
}

// Parameters decodes the build definition's parameters by BuildType's
// schema, strictly.
func (p *Provenance) Parameters() (*ExternalParameters, *InternalParameters, error) {
	if bt := p.GetBuildDefinition().GetBuildType(); bt != BuildType {
		return nil, nil, fmt.Errorf("provenance of build type %q, not %q", bt, BuildType)
	}
	var ext ExternalParameters
	var in InternalParameters
	for _, x := range []struct {
		s *structpb.Struct
		v any
	}{{p.BuildDefinition.ExternalParameters, &ext}, {p.BuildDefinition.InternalParameters, &in}} {
		b, err := protojson.Marshal(x.s)
		if err != nil {
			return nil, nil, err
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(x.v); err != nil {
			return nil, nil, fmt.Errorf("provenance parameters: %w", err)
		}
	}
	return &ext, &in, nil
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
