package stages

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// OCIArchive writes a tree as a container image: an OCI image layout in a
// tar (what `skopeo copy oci-archive:` and `podman load` read) with one
// gzip-compressed layer, its config and manifest, reproducibly.
type OCIArchive struct {
	// Filename is the archive's name in the output directory.
	Filename string `json:"filename"`
	// Source is the root file system of the image.
	Source Source `json:"source"`
	// Config is the image's run configuration.
	Config OCIConfig `json:"config"`
	// Architecture is the image's platform architecture, in Go's names
	// (amd64, arm64…); empty means the entry's (Env.Arch), which lets one
	// image definition serve every architecture.
	Architecture string `json:"architecture,omitempty"`
}

// OCIConfig is the run configuration of an image (the OCI image config's
// "config" object).
type OCIConfig struct {
	Cmd        []string          `json:"cmd"`
	Entrypoint []string          `json:"entrypoint"`
	Env        []string          `json:"env"`
	WorkingDir string            `json:"working_dir"`
	User       string            `json:"user"`
	Labels     map[string]string `json:"labels"`
	// ExposedPorts are "port/protocol" ("8080/tcp"); a bare port is TCP.
	ExposedPorts []string `json:"exposed_ports"`
	StopSignal   string   `json:"stop_signal"`
}

// ociArchitectures are the architectures the OCI image spec names (as
// GOARCH values) that a Linux image here can have.
var ociArchitectures = map[string]bool{
	"amd64": true, "arm64": true, "arm": true, "386": true, "ppc64le": true,
	"s390x": true, "riscv64": true, "mips64le": true, "loong64": true,
}

var (
	ociEnvName    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)
	ociPort       = regexp.MustCompile(`^[0-9]{1,5}(/(tcp|udp|sctp))?$`)
	ociStopSignal = regexp.MustCompile(`^(SIG[A-Z0-9+-]+|[0-9]+)$`)
)

func init() { register[OCIArchive]("oci-archive", 1) }

func (s *OCIArchive) validate() error {
	if err := checkFilename("filename", s.Filename); err != nil {
		return err
	}
	if err := s.Source.validate("source"); err != nil {
		return err
	}
	if s.Architecture != "" && !ociArchitectures[s.Architecture] {
		return fmt.Errorf("architecture: %q is not one of %s", s.Architecture, strings.Join(sortedKeys(ociArchitectures), ", "))
	}
	c := s.Config
	for i, e := range c.Env {
		if !ociEnvName.MatchString(e) {
			return fmt.Errorf("config.env[%d]: %q is not NAME=value", i, e)
		}
	}
	for _, list := range []struct {
		field string
		args  []string
	}{{"config.cmd", c.Cmd}, {"config.entrypoint", c.Entrypoint}, {"config.env", c.Env}} {
		for i, a := range list.args {
			if strings.ContainsRune(a, 0) {
				return fmt.Errorf("%s[%d]: contains a NUL", list.field, i)
			}
		}
	}
	if c.WorkingDir != "" && !strings.HasPrefix(c.WorkingDir, "/") {
		return fmt.Errorf("config.working_dir: %q is not absolute", c.WorkingDir)
	}
	if strings.ContainsAny(c.User, "\x00\n ") {
		return fmt.Errorf("config.user: %q is not a user[:group]", c.User)
	}
	for k := range c.Labels {
		if k == "" {
			return fmt.Errorf("config.labels: empty key")
		}
	}
	for i, p := range c.ExposedPorts {
		if !ociPort.MatchString(p) {
			return fmt.Errorf("config.exposed_ports[%d]: %q is not port[/tcp|/udp|/sctp]", i, p)
		}
	}
	if c.StopSignal != "" && !ociStopSignal.MatchString(c.StopSignal) {
		return fmt.Errorf("config.stop_signal: %q is not a signal name (SIGTERM) or number", c.StopSignal)
	}
	return nil
}

// ociArchOfDpkg maps dpkg architectures (Env.Arch) to the OCI spec's.
var ociArchOfDpkg = map[string]string{
	"amd64": "amd64", "arm64": "arm64", "armhf": "arm", "armel": "arm", "i386": "386",
	"ppc64el": "ppc64le", "s390x": "s390x", "riscv64": "riscv64", "mips64el": "mips64le", "loong64": "loong64",
}

// architecture is the image's: the option, else the entry's.
func (s *OCIArchive) architecture(env *Env) (string, error) {
	if s.Architecture != "" {
		return s.Architecture, nil
	}
	if a, ok := ociArchOfDpkg[env.Arch]; ok {
		return a, nil
	}
	return "", fmt.Errorf("architecture: not set, and the entry's architecture %q has no OCI name", env.Arch)
}

// OCI media types.
const (
	ociIndexType    = "application/vnd.oci.image.index.v1+json"
	ociManifestType = "application/vnd.oci.image.manifest.v1+json"
	ociConfigType   = "application/vnd.oci.image.config.v1+json"
	ociLayerType    = "application/vnd.oci.image.layer.v1.tar+gzip"
)

type ociDescriptor struct {
	MediaType string       `json:"mediaType"`
	Digest    string       `json:"digest"`
	Size      int64        `json:"size"`
	Platform  *ociPlatform `json:"platform,omitempty"`
}

type ociPlatform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

type ociImageConfig struct {
	Created      string         `json:"created"`
	Architecture string         `json:"architecture"`
	OS           string         `json:"os"`
	Config       ociRunConfig   `json:"config"`
	RootFS       ociRootFS      `json:"rootfs"`
	History      []ociHistoryEl `json:"history"`
}

type ociRunConfig struct {
	User         string              `json:"User,omitempty"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts,omitempty"`
	Env          []string            `json:"Env,omitempty"`
	Entrypoint   []string            `json:"Entrypoint,omitempty"`
	Cmd          []string            `json:"Cmd,omitempty"`
	WorkingDir   string              `json:"WorkingDir,omitempty"`
	Labels       map[string]string   `json:"Labels,omitempty"`
	StopSignal   string              `json:"StopSignal,omitempty"`
}

type ociRootFS struct {
	Type    string   `json:"type"`
	DiffIDs []string `json:"diff_ids"`
}

type ociHistoryEl struct {
	Created   string `json:"created"`
	CreatedBy string `json:"created_by"`
}

type ociManifest struct {
	SchemaVersion int             `json:"schemaVersion"`
	MediaType     string          `json:"mediaType"`
	Config        ociDescriptor   `json:"config"`
	Layers        []ociDescriptor `json:"layers"`
}

type ociIndex struct {
	SchemaVersion int             `json:"schemaVersion"`
	MediaType     string          `json:"mediaType"`
	Manifests     []ociDescriptor `json:"manifests"`
}

// Run writes the layer to a temporary file, then the archive under a
// temporary name, and renames it into place.
func (s *OCIArchive) Run(ctx context.Context, env *Env) error {
	src, err := s.Source.sourceDir(env)
	if err != nil {
		return err
	}
	arch, err := s.architecture(env)
	if err != nil {
		return err
	}
	tmp, err := outputTemp(env.Tree, "oci-archive")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	layerPath := filepath.Join(tmp, "layer")
	diffID, layer, err := writeLayer(ctx, layerPath, src, env.SourceDateEpoch)
	if err != nil {
		return err
	}
	created := time.Unix(env.SourceDateEpoch, 0).UTC().Format(time.RFC3339)
	rc := ociRunConfig{
		User: s.Config.User, Env: s.Config.Env, Entrypoint: s.Config.Entrypoint, Cmd: s.Config.Cmd,
		WorkingDir: s.Config.WorkingDir, Labels: s.Config.Labels, StopSignal: s.Config.StopSignal,
	}
	for _, p := range s.Config.ExposedPorts {
		if !strings.Contains(p, "/") {
			p += "/tcp"
		}
		if rc.ExposedPorts == nil {
			rc.ExposedPorts = map[string]struct{}{}
		}
		rc.ExposedPorts[p] = struct{}{}
	}
	config, err := json.Marshal(ociImageConfig{
		Created: created, Architecture: arch, OS: "linux", Config: rc,
		RootFS:  ociRootFS{Type: "layers", DiffIDs: []string{diffID}},
		History: []ociHistoryEl{{Created: created, CreatedBy: "ibuild oci-archive"}},
	})
	if err != nil {
		return fmt.Errorf("writing image config: %w", err)
	}
	configDesc := ociDescriptor{MediaType: ociConfigType, Digest: sha256Digest(config), Size: int64(len(config))}
	manifest, err := json.Marshal(ociManifest{SchemaVersion: 2, MediaType: ociManifestType, Config: configDesc, Layers: []ociDescriptor{layer}})
	if err != nil {
		return fmt.Errorf("writing image manifest: %w", err)
	}
	index, err := json.Marshal(ociIndex{SchemaVersion: 2, MediaType: ociIndexType, Manifests: []ociDescriptor{{
		MediaType: ociManifestType, Digest: sha256Digest(manifest), Size: int64(len(manifest)),
		Platform: &ociPlatform{Architecture: arch, OS: "linux"},
	}}})
	if err != nil {
		return fmt.Errorf("writing image index: %w", err)
	}

	blobs := map[string]tarFile{
		blobName(configDesc.Digest):      {data: config},
		blobName(sha256Digest(manifest)): {data: manifest},
		blobName(layer.Digest):           {path: layerPath},
	}
	files := []tarFile{
		{name: "oci-layout", data: []byte(`{"imageLayoutVersion":"1.0.0"}`), mode: 0o644},
		{name: "index.json", data: index, mode: 0o644},
		{name: "blobs/", dir: true, mode: 0o755},
		{name: "blobs/sha256/", dir: true, mode: 0o755},
	}
	for _, n := range sortedKeys(blobs) {
		f := blobs[n]
		f.name, f.mode = n, 0o644
		files = append(files, f)
	}
	return writeOutput(env.Tree, s.Filename, func(w io.Writer) error {
		if err := writeFilesTar(ctx, w, files, env.SourceDateEpoch); err != nil {
			return fmt.Errorf("writing %s: %w", s.Filename, err)
		}
		return nil
	})
}

// writeLayer writes the gzip-compressed tar of src to p and returns the
// uncompressed tar's digest (the diff ID) and the layer's descriptor.
func writeLayer(ctx context.Context, p, src string, epoch int64) (string, ociDescriptor, error) {
	f, err := os.Create(p)
	if err != nil {
		return "", ociDescriptor{}, fmt.Errorf("writing layer: %w", err)
	}
	defer f.Close()
	blob := &countingHash{h: sha256.New()}
	gz, err := compressor(io.MultiWriter(f, blob), "gzip")
	if err != nil {
		return "", ociDescriptor{}, err
	}
	diff := sha256.New()
	if err := writeTreeTar(ctx, io.MultiWriter(gz, diff), src, treeTarOptions{epoch: epoch}); err != nil {
		return "", ociDescriptor{}, fmt.Errorf("writing layer: %w", err)
	}
	if err := gz.Close(); err != nil {
		return "", ociDescriptor{}, fmt.Errorf("writing layer: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", ociDescriptor{}, fmt.Errorf("writing layer: %w", err)
	}
	return "sha256:" + hex.EncodeToString(diff.Sum(nil)), ociDescriptor{
		MediaType: ociLayerType,
		Digest:    "sha256:" + hex.EncodeToString(blob.h.Sum(nil)),
		Size:      blob.n,
	}, nil
}

// countingHash hashes and counts what is written to it.
type countingHash struct {
	h hash.Hash
	n int64
}

func (c *countingHash) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.h.Write(p)
}

func sha256Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// blobName is a digest's path in an image layout.
func blobName(digest string) string {
	return "blobs/sha256/" + strings.TrimPrefix(digest, "sha256:")
}
