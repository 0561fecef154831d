package webui

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/atomicfile"
	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
	"github.com/image-builder-action/image-builder-action/pkg/compose"
	"github.com/image-builder-action/image-builder-action/pkg/lock"
	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/pkg/weldr"
)

// The adapters from the service's packages to what the page needs.

// OwnerBlueprints keeps each owner's blueprints in a weldr.Store of their
// own (the weldr API's store, with its versions), in a directory under
// dir named by the sha256 of the owner: owners never see each other's
// blueprints, and no owner name becomes a path.
type OwnerBlueprints struct {
	dir    string
	mu     sync.Mutex
	stores map[string]*weldr.Store
}

// NewOwnerBlueprints keeps blueprints under dir.
func NewOwnerBlueprints(dir string) *OwnerBlueprints {
	return &OwnerBlueprints{dir: dir, stores: map[string]*weldr.Store{}}
}

var _ Blueprints = (*OwnerBlueprints)(nil)

func (o *OwnerBlueprints) store(owner string) (*weldr.Store, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if s := o.stores[owner]; s != nil {
		return s, nil
	}
	sum := sha256.Sum256([]byte(owner))
	s, err := weldr.NewStore(filepath.Join(o.dir, hex.EncodeToString(sum[:16])))
	if err != nil {
		return nil, err
	}
	o.stores[owner] = s
	return s, nil
}

// textDir is where the TOML of an owner's saves is kept as the user
// wrote it (comments, order), one file per weldr change: the weldr store
// keeps JSON only.
func (o *OwnerBlueprints) textDir(owner string) string {
	sum := sha256.Sum256([]byte(owner))
	return filepath.Join(o.dir, hex.EncodeToString(sum[:16])+".toml")
}

// stored turns a weldr change (JSON) into a version with TOML: the text
// saved with it when there is one, else the JSON written as TOML.
func stored(textDir, name string, n int, c weldr.Change) (StoredBlueprint, error) {
	bp, err := blueprint.Parse(name+".json", c.Blueprint)
	if err != nil {
		return StoredBlueprint{}, fmt.Errorf("reading stored blueprint %s: %w", name, err)
	}
	bp.Source = nil
	saved, _ := time.Parse(time.RFC3339, c.Timestamp)
	out := StoredBlueprint{Name: name, Version: n, Description: bp.Description, Saved: saved}
	if validCommit(c.Commit) {
		if text, err := os.ReadFile(filepath.Join(textDir, c.Commit+".toml")); err == nil {
			out.Data = text
			return out, nil
		}
	}
	text, err := encodeTOML(bp)
	if err != nil {
		return StoredBlueprint{}, err
	}
	out.Data = []byte(text)
	return out, nil
}

func validCommit(c string) bool {
	if c == "" || len(c) > 128 {
		return false
	}
	for _, r := range c {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}

// tableRE is the first table header of a TOML text.
var tableRE = regexp.MustCompile(`(?m)^\s*\[`)

// versionLineRE is a top-level version key, as a user writes it.
var versionLineRE = regexp.MustCompile(`(?m)^(\s*version\s*=\s*)("[^"\n]*"|'[^'\n]*')`)

// keepText saves data, the TOML a user saved, beside the change the store
// made of it. The store may have bumped the version (as composer does):
// then the text's version line is set to the stored one. The text is kept
// only if it decodes to exactly the stored blueprint, so what is shown
// is always what is built.
func (o *OwnerBlueprints) keepText(owner string, c weldr.Change, data []byte) error {
	if !validCommit(c.Commit) {
		return fmt.Errorf("change %q: not a commit id", c.Commit)
	}
	want, err := blueprint.Parse("stored.json", c.Blueprint)
	if err != nil {
		return err
	}
	text := data
	// Only before the first table: a later "version" is another table's.
	head, tail := text, []byte(nil)
	if loc := tableRE.FindIndex(text); loc != nil {
		head, tail = slices.Clip(text[:loc[0]]), text[loc[0]:]
	}
	switch {
	case versionLineRE.Match(head):
		head = versionLineRE.ReplaceAll(head, []byte(`${1}"`+want.Version+`"`))
	case want.Version != "":
		// The store gave it one: written before the first table.
		if len(head) > 0 && head[len(head)-1] != '\n' {
			head = append(head, '\n')
		}
		head = append(head, "version = \""+want.Version+"\"\n"...)
	}
	text = append(append([]byte{}, head...), tail...)
	got, err := blueprint.Parse("saved.toml", text)
	if err != nil {
		return err
	}
	a, err1 := lock.BlueprintDigest(want)
	b, err2 := lock.BlueprintDigest(got)
	if err1 != nil || err2 != nil || a != b {
		return fmt.Errorf("the saved text is not the stored blueprint")
	}
	dir := o.textDir(owner)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, c.Commit+".toml"), text, 0o600)
}

// List implements Blueprints.
func (o *OwnerBlueprints) List(ctx context.Context, owner string) ([]StoredBlueprint, error) {
	s, err := o.store(owner)
	if err != nil {
		return nil, err
	}
	names, err := s.Names()
	if err != nil {
		return nil, err
	}
	var out []StoredBlueprint
	for _, n := range names {
		vs, err := o.Versions(ctx, owner, n)
		if err != nil {
			return nil, err
		}
		out = append(out, vs[len(vs)-1])
	}
	return out, nil
}

// Versions implements Blueprints.
func (o *OwnerBlueprints) Versions(_ context.Context, owner, name string) ([]StoredBlueprint, error) {
	s, err := o.store(owner)
	if err != nil {
		return nil, err
	}
	names, err := s.Names()
	if err != nil {
		return nil, err
	}
	if !slices.Contains(names, name) {
		return nil, fmt.Errorf("blueprint %s: %w", name, ErrNotFound)
	}
	cs, err := s.Changes(name)
	if err != nil {
		return nil, err
	}
	out := make([]StoredBlueprint, len(cs))
	for i, c := range cs { // newest first
		n := len(cs) - i
		if out[n-1], err = stored(o.textDir(owner), name, n, c); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Get implements Blueprints.
func (o *OwnerBlueprints) Get(ctx context.Context, owner, name string, version int) (StoredBlueprint, error) {
	vs, err := o.Versions(ctx, owner, name)
	if err != nil {
		return StoredBlueprint{}, err
	}
	if version == 0 {
		return vs[len(vs)-1], nil
	}
	if version < 0 || version > len(vs) {
		return StoredBlueprint{}, fmt.Errorf("blueprint %s has no save #%d: %w", name, version, ErrNotFound)
	}
	return vs[version-1], nil
}

// Put implements Blueprints: the weldr store keeps the blueprint as JSON
// and, as composer does, bumps its version when it is unchanged.
func (o *OwnerBlueprints) Put(ctx context.Context, owner, name string, data []byte) (StoredBlueprint, error) {
	bp, err := blueprint.Parse(name+".toml", data)
	if err != nil {
		return StoredBlueprint{}, err
	}
	s, err := o.store(owner)
	if err != nil {
		return StoredBlueprint{}, err
	}
	if err := s.Push(bp); err != nil {
		return StoredBlueprint{}, err
	}
	if cs, err := s.Changes(bp.Name); err == nil && len(cs) > 0 {
		// Without it the TOML is written from the stored JSON: the
		// blueprint is the same, only comments and layout are lost.
		_ = o.keepText(owner, cs[0], data)
	}
	return o.Get(ctx, owner, bp.Name, 0)
}

// Delete implements Blueprints.
func (o *OwnerBlueprints) Delete(ctx context.Context, owner, name string) error {
	if _, err := o.Versions(ctx, owner, name); err != nil {
		return err
	}
	s, err := o.store(owner)
	if err != nil {
		return err
	}
	cs, _ := s.Changes(name)
	if err := s.Delete(name); err != nil {
		return err
	}
	for _, c := range cs {
		if validCommit(c.Commit) {
			os.Remove(filepath.Join(o.textDir(owner), c.Commit+".toml"))
		}
	}
	return nil
}

// ServiceComposes runs the page's composes on the compose service.
type ServiceComposes struct {
	Service *compose.Service
	// Uploads are the upload targets the Build page offers, by name.
	Uploads map[string]compose.UploadTarget
}

var _ Composes = (*ServiceComposes)(nil)

func notFound(err error) error {
	if errors.Is(err, compose.ErrNotFound) || errors.Is(err, compose.ErrNotFinished) {
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	return err
}

// Submit implements Composes.
func (s *ServiceComposes) Submit(ctx context.Context, req ComposeRequest) (Compose, error) {
	r := compose.Request{Blueprint: req.Blueprint, Distro: req.Distro}
	for _, im := range req.Images {
		ir := compose.ImageRequest{Arch: im.Arch, Type: im.Type}
		if im.Upload != "" {
			t, ok := s.Uploads[im.Upload]
			if !ok {
				return Compose{}, fmt.Errorf("unknown upload target %q", im.Upload)
			}
			ir.Upload = &t
		}
		if im.Publish != "" {
			ir.Publish = &compose.PublishTarget{Ref: im.Publish, Sign: im.Sign}
		}
		r.Images = append(r.Images, ir)
	}
	c, err := s.Service.Submit(ctx, req.Owner, r)
	if err != nil {
		return Compose{}, err
	}
	return fromService(c), nil
}

func fromService(c *compose.Compose) Compose {
	out := Compose{ID: c.ID, Owner: c.Owner, BlueprintName: c.BlueprintName, BlueprintVersion: c.BlueprintVersion,
		Distro: c.Distro, Status: string(c.Status), Error: c.Error, Created: c.Created}
	if c.Started != nil {
		out.Started = *c.Started
	}
	if c.Finished != nil {
		out.Finished = *c.Finished
	}
	for _, im := range c.Images {
		st := ImageStatus{Arch: im.Arch, Type: im.Type, Status: string(im.Status), Stage: im.Progress.Stage, Done: im.Progress.Done, Total: im.Progress.Total, Error: im.Error}
		if im.Attempt > 1 {
			st.Stage = fmt.Sprintf("attempt %d", im.Attempt)
		}
		if a := im.Artifact; a != nil {
			st.Filename, st.Size, st.SHA256 = a.Name, a.Size, a.SHA256
		}
		if u := im.Upload; u != nil {
			st.Upload = &UploadResult{Target: u.Target, ID: u.ID, URL: u.URL}
		}
		if p := im.Published; p != nil {
			st.Published = &Published{Ref: p.Ref, Signed: p.Signed, Signature: p.Signature}
		}
		out.Images = append(out.Images, st)
	}
	return out
}

// List implements Composes.
func (s *ServiceComposes) List(ctx context.Context, owner string) ([]Compose, error) {
	cs, _, err := s.Service.List(ctx, owner, compose.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := make([]Compose, len(cs))
	for i, c := range cs {
		out[i] = fromService(c)
	}
	return out, nil
}

// Get implements Composes.
func (s *ServiceComposes) Get(ctx context.Context, owner, id string) (Compose, error) {
	c, err := s.Service.Get(ctx, owner, id)
	if err != nil {
		return Compose{}, notFound(err)
	}
	return fromService(c), nil
}

// Log implements Composes: every image's build log, one after the other.
func (s *ServiceComposes) Log(ctx context.Context, owner, id string) ([]byte, error) {
	c, err := s.Service.Get(ctx, owner, id)
	if err != nil {
		return nil, notFound(err)
	}
	var b strings.Builder
	for i, im := range c.Images {
		r, err := s.Service.Log(ctx, owner, id, i)
		if err != nil {
			return nil, notFound(err)
		}
		data, err := io.ReadAll(io.LimitReader(r, 64<<20))
		r.Close()
		if err != nil {
			return nil, err
		}
		if len(c.Images) > 1 {
			fmt.Fprintf(&b, "==> %s for %s\n", im.Type, im.Arch)
		}
		b.Write(data)
	}
	return []byte(b.String()), nil
}

// Lockfile implements Composes.
func (s *ServiceComposes) Lockfile(ctx context.Context, owner, id string) (*manifest.Lockfile, error) {
	data, err := s.Service.Lockfile(ctx, owner, id)
	if err != nil {
		return nil, notFound(err)
	}
	return manifest.Parse(id+".lock.json", data)
}

// Artifact implements Composes.
func (s *ServiceComposes) Artifact(ctx context.Context, owner, id string, image int) (*Artifact, error) {
	r, a, err := s.Service.Artifact(ctx, owner, id, image)
	if err != nil {
		return nil, notFound(err)
	}
	out := &Artifact{Name: a.Name, Size: a.Size, Content: r}
	if f, ok := r.(*os.File); ok {
		if fi, err := f.Stat(); err == nil {
			out.ModTime = fi.ModTime()
		}
	}
	return out, nil
}
