package upload

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/image-builder-action/image-builder-action/pkg/layout"
	"github.com/image-builder-action/image-builder-action/pkg/manifest"
)

// Request is one upload of a lockfile's built images to a target.
type Request struct {
	Lockfile *manifest.Lockfile
	// LockDigest is the sha256 (hex) of the lockfile's bytes; default the
	// digest of its canonical serialisation.
	LockDigest string
	// Dir holds the built images: an entry's file is DIR/ARCH/TYPE/FILE,
	// DIR/ARCH/FILE or DIR/FILE (ibuild build -o DIR).
	Dir string
	// Arches and Types narrow the entries; each selected entry must then
	// have its file.
	Arches, Types []string
	Target        Target
	// Events, when set, hears of each image before and after its upload.
	Events func(Event)
}

// Event is progress: "verified", "uploaded" or "reused".
type Event struct {
	Kind   string
	Image  *Image
	Result *Result
}

// Upload verifies every selected image against its build record, then
// uploads each to req.Target. Nothing is sent when any image fails
// verification.
func Upload(ctx context.Context, req Request) ([]Result, error) {
	if req.Target == nil {
		return nil, errors.New("uploading: no target")
	}
	imgs, err := Images(req)
	if err != nil {
		return nil, err
	}
	for _, img := range imgs {
		if err := Verify(ctx, img); err != nil {
			return nil, &Error{Target: req.Target.Name(), Step: "verifying", Err: err}
		}
		req.emit(Event{Kind: "verified", Image: img})
	}
	var out []Result
	for _, img := range imgs {
		res, err := req.Target.Upload(ctx, img)
		if err != nil {
			return out, err
		}
		kind := "uploaded"
		if res.Reused {
			kind = "reused"
		}
		req.emit(Event{Kind: kind, Image: img, Result: res})
		out = append(out, *res)
	}
	return out, nil
}

func (r *Request) emit(e Event) {
	if r.Events != nil {
		r.Events(e)
	}
}

// Images finds the files of the entries the request selects that the
// target accepts.
func Images(req Request) ([]*Image, error) {
	lf := req.Lockfile
	digest := req.LockDigest
	if digest == "" {
		b, err := lf.Marshal()
		if err != nil {
			return nil, fmt.Errorf("uploading: %w", err)
		}
		sum := sha256.Sum256(b)
		digest = hex.EncodeToString(sum[:])
	}
	explicit := len(req.Arches) > 0 || len(req.Types) > 0
	var sel []*manifest.Entry
	var skipped []string
	names := map[string]int{}
	for i := range lf.Entries {
		e := &lf.Entries[i]
		if len(req.Arches) > 0 && !slices.Contains(req.Arches, e.Arch) || len(req.Types) > 0 && !slices.Contains(req.Types, e.Type) {
			continue
		}
		if !req.Target.Accepts(e.Type) {
			skipped = append(skipped, e.Name())
			continue
		}
		sel = append(sel, e)
		names[e.Filename]++
	}
	var imgs []*Image
	for _, e := range sel {
		p, cands, err := layout.Find(req.Dir, e, names[e.Filename] == 1)
		if err != nil {
			return nil, fmt.Errorf("uploading %s: %w", e.Name(), err)
		}
		if p == "" {
			if explicit {
				return nil, fmt.Errorf("uploading %s: none of %s exists (build it with ibuild build -o %s)", e.Name(), strings.Join(cands, ", "), req.Dir)
			}
			continue
		}
		imgs = append(imgs, &Image{Path: p, Distro: e.Distro, Arch: e.Arch, Type: e.Type, LockDigest: digest})
	}
	if len(imgs) == 0 {
		msg := fmt.Sprintf("uploading to %s: no built image of the lockfile in %s", req.Target.Name(), req.Dir)
		if len(skipped) > 0 {
			msg += fmt.Sprintf(" that the target takes (it does not take %s)", strings.Join(skipped, ", "))
		}
		return nil, errors.New(msg)
	}
	return imgs, nil
}
