package stages

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func init() { register[Containers]("containers", 1) }

// Containers embeds container images, pinned by digest at lock, as
// composer's [[containers]] does. Each image is fetched from its registry
// by digest (every blob checked against it) into ContainersDir/N in the
// tree, in the layout of containers/image's "dir:" transport (the manifest
// exactly as the registry served it, so the digest stays the locked one,
// and each blob in a file named by its digest); a run-once unit,
// ContainersUnit, copies them into containers-storage with the tree's
// skopeo at the first boot, after which `podman images` lists them under
// their names and locked digests.
//
// Why not containers-storage at build time: its layer and image
// databases (layers.json, images.json, the diff directories with their
// whiteouts) are written only by containers/storage itself, which would
// have to run on the tree from the build root with an overlay mount in
// the build's namespace; writing them by hand would be guessing a format
// without a specification. Why not an OCI layout: skopeo reads from one
// only images with OCI media types, and converting Docker ones would
// change their digests.
type Containers struct {
	Images []ContainerImage `json:"images"`
}

// ContainerImage is one image as lock resolved it.
type ContainerImage struct {
	// Source is the reference the blueprint gave; Name the local name the
	// image gets in containers-storage.
	Source string `json:"source"`
	Name   string `json:"name"`
	// Digest is the image manifest's digest for the entry's architecture.
	Digest string `json:"digest"`
	// Config and Layers are what the manifest lists, pinned so that a
	// reviewer sees each layer and a change of one shows in the diff.
	Config string           `json:"config"`
	Layers []ContainerLayer `json:"layers"`
	// TLSVerify false allows a registry without a valid certificate
	// (composer's tls-verify).
	TLSVerify *bool `json:"tls_verify,omitempty"`
}

// ContainerLayer is one layer blob of an image.
type ContainerLayer struct {
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
	MediaType string `json:"media_type"`
}

const (
	// ContainersDir is where the images are in the tree, one directory
	// each, numbered from 0 in the blueprint's order.
	ContainersDir = "/usr/share/containers/ibuild"
	// ContainersUnit loads them into containers-storage at first boot.
	ContainersUnit = "ibuild-containers.service"
)

func (s *Containers) validate() error {
	if len(s.Images) == 0 {
		return errors.New("images: none given")
	}
	for i, im := range s.Images {
		if _, err := v1.NewHash(im.Digest); err != nil {
			return fmt.Errorf("images[%d].digest: %w", i, err)
		}
		if _, err := name.ParseReference(im.Source, name.WeakValidation); err != nil {
			return fmt.Errorf("images[%d].source: %w", i, err)
		}
		if _, err := name.ParseReference(im.Name, name.WeakValidation); err != nil {
			return fmt.Errorf("images[%d].name: %w", i, err)
		}
		if len(im.Layers) == 0 {
			return fmt.Errorf("images[%d].layers: none pinned", i)
		}
	}
	return nil
}

// Run fetches each image by digest, checks it is what lock pinned, and
// writes the images and the unit.
func (s *Containers) Run(ctx context.Context, env *Env) error {
	top, err := treeMkdirAll(env.Tree, ContainersDir)
	if err != nil {
		return fmt.Errorf("containers: %w", err)
	}
	var unit strings.Builder
	unit.WriteString(`[Unit]
Description=Copy the blueprint's container images into containers-storage (once)
ConditionPathExists=!/var/lib/ibuild/containers-loaded
After=local-fs.target
Before=podman.service

[Service]
Type=oneshot
RemainAfterExit=yes
`)
	for i, im := range s.Images {
		dir := filepath.Join(top, strconv.Itoa(i))
		if err := writeImageDir(ctx, im, dir); err != nil {
			return fmt.Errorf("containers: images[%d] %s: %w", i, im.Source, err)
		}
		fmt.Fprintf(&unit, "ExecStart=/usr/bin/skopeo copy --quiet --preserve-digests dir:%s/%d containers-storage:%s\n",
			ContainersDir, i, im.Name)
	}
	unit.WriteString(`ExecStartPost=/usr/bin/mkdir -p /var/lib/ibuild
ExecStartPost=/usr/bin/touch /var/lib/ibuild/containers-loaded

[Install]
WantedBy=multi-user.target
`)
	if err := treeWriteConfig(env.Tree, path.Join("/etc/systemd/system", ContainersUnit), []byte(unit.String()), 0o644); err != nil {
		return fmt.Errorf("containers: %w", err)
	}
	return nil
}

// writeImageDir writes im as containers/image's dir: transport lays it
// out: manifest.json, each blob as a file named by its digest's hex, and
// the version file.
func writeImageDir(ctx context.Context, im ContainerImage, dir string) error {
	img, err := fetchImage(ctx, im)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	raw, err := img.RawManifest()
	if err != nil {
		return err
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	for name, data := range map[string][]byte{
		"manifest.json":                          raw,
		"version":                                []byte("Directory Transport Version: 1.1\n"),
		strings.TrimPrefix(im.Config, "sha256:"): cfg,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for i, l := range layers {
		rc, err := l.Compressed() // checked against its digest as it is read
		if err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
		f, err := os.Create(filepath.Join(dir, strings.TrimPrefix(im.Layers[i].Digest, "sha256:")))
		if err == nil {
			_, err = io.Copy(f, rc)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		rc.Close()
		if err != nil {
			return fmt.Errorf("layer %d %s: %w", i, im.Layers[i].Digest, err)
		}
	}
	return nil
}

// fetchImage gets im by digest and checks its config and layers are the
// ones lock pinned. go-containerregistry checks the manifest against the
// digest, and each blob against its digest as it is read.
func fetchImage(ctx context.Context, im ContainerImage) (v1.Image, error) {
	var opts []name.Option
	if im.TLSVerify != nil && !*im.TLSVerify {
		opts = append(opts, name.Insecure)
	}
	src, err := name.ParseReference(im.Source, append(opts, name.WeakValidation)...)
	if err != nil {
		return nil, err
	}
	ref, err := name.NewDigest(src.Context().Name()+"@"+im.Digest, opts...)
	if err != nil {
		return nil, err
	}
	img, err := remote.Image(ref, remote.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", ref, err)
	}
	cfg, err := img.ConfigName()
	if err != nil {
		return nil, err
	}
	if cfg.String() != im.Config {
		return nil, fmt.Errorf("config %s, locked %s", cfg, im.Config)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	if len(layers) != len(im.Layers) {
		return nil, fmt.Errorf("%d layers, locked %d", len(layers), len(im.Layers))
	}
	for i, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return nil, err
		}
		if d.String() != im.Layers[i].Digest {
			return nil, fmt.Errorf("layer %d is %s, locked %s", i, d, im.Layers[i].Digest)
		}
	}
	return img, nil
}
