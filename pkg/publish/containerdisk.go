package publish

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	godigest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// pushContainerDisk pushes each qcow2 entry of plan as a KubeVirt
// containerDisk image (one uncompressed layer with disk/NAME.qcow2, owned
// 107:107) and an index across architectures; nothing is tagged.
func pushContainerDisk(ctx context.Context, repo name.Repository, plan []*planned, o *options, created time.Time, ropts []remote.Option) (*pushed, error) {
	var qcow []*planned
	for _, p := range plan {
		if p.entry.Type == "qcow2" {
			qcow = append(qcow, p)
		}
	}
	for _, p := range qcow {
		start := time.Now()
		layer := p.cdLayer
		if err := remote.WriteLayer(repo, layer, ropts...); err != nil {
			return nil, fmt.Errorf("publishing the containerDisk of %s: pushing its layer to %s: %w", p.entry.Name(), repo, err)
		}
		cfg := ocispec.Image{
			Created:  &created,
			Platform: ocispec.Platform{OS: "linux", Architecture: Platform(p.entry.Arch)},
			RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []godigest.Digest{toDigest(layer.digest)}},
			History:  []ocispec.History{{Created: &created, CreatedBy: "ibuild publish --containerdisk", Comment: p.entry.Name()}},
		}
		cfgRaw, err := json.Marshal(cfg)
		if err != nil {
			return nil, err
		}
		cfgLayer := static.NewLayer(cfgRaw, types.OCIConfigJSON)
		if err := remote.WriteLayer(repo, cfgLayer, ropts...); err != nil {
			return nil, fmt.Errorf("publishing the containerDisk of %s: pushing its config to %s: %w", p.entry.Name(), repo, err)
		}
		cfgDigest, _ := cfgLayer.Digest()
		ann := o.annotations(created)
		ann[AnnotationDistro] = p.entry.Distro
		ann[AnnotationArch] = p.entry.Arch
		ann[AnnotationType] = p.entry.Type
		m := ocispec.Manifest{
			MediaType: ocispec.MediaTypeImageManifest,
			Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: toDigest(cfgDigest), Size: int64(len(cfgRaw))},
			Layers: []ocispec.Descriptor{{
				MediaType: ContainerDiskLayerMediaType,
				Digest:    toDigest(layer.digest),
				Size:      layer.size,
			}},
			Annotations: ann,
		}
		m.SchemaVersion = 2
		raw, err := json.Marshal(m)
		if err != nil {
			return nil, err
		}
		d, err := putManifest(ctx, repo, raw, types.OCIManifestSchema1, ropts)
		if err != nil {
			return nil, fmt.Errorf("publishing the containerDisk of %s: %w", p.entry.Name(), err)
		}
		p.cdRaw, p.cdDigest = raw, d
		o.emit(Event{Kind: "push", What: p.entry.Name() + " containerDisk", Ref: repo.Digest(d.String()).String(), Bytes: layer.size, Duration: time.Since(start)})
	}
	out := &pushed{typ: "containerdisk", plan: qcow, manifest: func(p *planned) ([]byte, v1.Hash) { return p.cdRaw, p.cdDigest }}
	// A containerDisk is a regular image: its index has no artifactType.
	if err := out.pushIndex(ctx, repo, "", o, created, ropts); err != nil {
		return nil, err
	}
	return out, nil
}
