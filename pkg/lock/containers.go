package lock

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
	"github.com/image-builder-action/image-builder-action/stages"
)

// lockedContainer is one [[containers]] entry resolved at lock: the image
// of each architecture the source offers, pinned by manifest digest with
// its config and layers.
type lockedContainer struct {
	bp     *blueprint.Blueprint // for errors at the entry's line
	field  string               // containers[N]
	byArch map[string]stages.ContainerImage
	offers []string // os/arch of what the source has, for errors
}

// resolveContainer asks the source's registry for its manifest (an index
// or one image) and pins the Linux image of each architecture in it.
func resolveContainer(ctx context.Context, bp *blueprint.Blueprint, i int, c blueprint.Container, client *http.Client) (*lockedContainer, error) {
	field := fmt.Sprintf("containers[%d]", i)
	var nopts []name.Option
	if c.TLSVerify != nil && !*c.TLSVerify {
		nopts = append(nopts, name.Insecure)
	}
	ref, err := name.ParseReference(c.Source, nopts...)
	if err != nil {
		return nil, bp.Errorf(field+".source", "%v", err)
	}
	local := c.Name
	if local == "" {
		local = c.Source
	}
	if _, err := name.ParseReference(local, name.WeakValidation); err != nil {
		return nil, bp.Errorf(field+".name", "%v", err)
	}
	ropts := []remote.Option{remote.WithContext(ctx)}
	if client != nil && client.Transport != nil {
		ropts = append(ropts, remote.WithTransport(client.Transport))
	}
	desc, err := remote.Get(ref, ropts...)
	if err != nil {
		return nil, bp.Errorf(field+".source", "resolving %s: %v", c.Source, err)
	}
	lc := &lockedContainer{bp: bp, field: field, byArch: map[string]stages.ContainerImage{}}
	pin := func(img v1.Image, arch string) error {
		d, err := img.Digest()
		if err != nil {
			return err
		}
		m, err := img.Manifest()
		if err != nil {
			return err
		}
		im := stages.ContainerImage{Source: c.Source, Name: local, Digest: d.String(), Config: m.Config.Digest.String(), TLSVerify: c.TLSVerify}
		for _, l := range m.Layers {
			im.Layers = append(im.Layers, stages.ContainerLayer{Digest: l.Digest.String(), Size: l.Size, MediaType: string(l.MediaType)})
		}
		lc.byArch[arch] = im
		return nil
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, bp.Errorf(field+".source", "reading the index of %s: %v", c.Source, err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, bp.Errorf(field+".source", "reading the index of %s: %v", c.Source, err)
		}
		for _, m := range im.Manifests {
			if m.Platform == nil {
				continue
			}
			lc.offers = append(lc.offers, m.Platform.OS+"/"+m.Platform.Architecture)
			if m.Platform.OS != "linux" || !m.MediaType.IsImage() {
				continue
			}
			if _, done := lc.byArch[m.Platform.Architecture]; done {
				continue
			}
			img, err := idx.Image(m.Digest)
			if err == nil {
				err = pin(img, m.Platform.Architecture)
			}
			if err != nil {
				return nil, bp.Errorf(field+".source", "reading %s@%s: %v", c.Source, m.Digest, err)
			}
		}
	} else {
		img, err := desc.Image()
		if err != nil {
			return nil, bp.Errorf(field+".source", "reading %s: %v", c.Source, err)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			return nil, bp.Errorf(field+".source", "reading the config of %s: %v", c.Source, err)
		}
		lc.offers = append(lc.offers, cfg.OS+"/"+cfg.Architecture)
		if cfg.OS == "linux" {
			if err := pin(img, cfg.Architecture); err != nil {
				return nil, bp.Errorf(field+".source", "reading %s: %v", c.Source, err)
			}
		}
	}
	sort.Strings(lc.offers)
	return lc, nil
}

// forArch is the image for a Debian architecture (amd64, arm64): the OCI
// platform names are Go's, which Debian's match for these.
func (lc *lockedContainer) forArch(dpkgArch string) (stages.ContainerImage, error) {
	im, ok := lc.byArch[dpkgArch]
	if !ok {
		return im, lc.bp.Errorf(lc.field+".source", "it has no linux/%s image (it has %s)", dpkgArch, strings.Join(lc.offers, ", "))
	}
	return im, nil
}
