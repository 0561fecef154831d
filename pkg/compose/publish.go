package compose

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/image-builder-action/image-builder-action/pkg/ibuild"
	"github.com/image-builder-action/image-builder-action/pkg/publish"
)

// PublishConfig is what the operator lets requests publish to, and how
// the service signs.
type PublishConfig struct {
	// Repositories are where requests may push: a registry ("HOST[:PORT]",
	// every repository on it) or a repository prefix ("HOST/PATH", that
	// repository and those under it). None: requests cannot publish. A
	// request names only the place; credentials come from the worker's
	// keychain (~/.docker/config.json), so a request cannot make the
	// service push somewhere with the operator's credentials unless the
	// operator listed it here.
	Repositories []string
	// Sign is how published images are signed when a request asks: the
	// operator's key (a request never gives one). Mode "" or "none":
	// requests that ask to sign are refused.
	Sign ibuild.SignRequest
	// Options go to pkg/publish after the service's (tests pass
	// publish.WithInsecure for a plain-HTTP registry).
	Options []publish.Option
}

// CanSign says whether the service signs what it publishes.
func (c PublishConfig) CanSign() bool {
	return c.Sign.Mode != "" && c.Sign.Mode != ibuild.SignNone
}

// allowed says whether repo (HOST/PATH, as pkg/name spells it) is under
// one of the operator's prefixes.
func (c PublishConfig) allowed(repo name.Repository) bool {
	full := repo.RegistryStr() + "/" + repo.RepositoryStr()
	for _, p := range c.Repositories {
		p = strings.TrimSuffix(strings.TrimSpace(p), "/")
		if p == "" {
			continue
		}
		// The registry as pkg/name spells it (docker.io is
		// index.docker.io); the path as written, since a one-element
		// Docker Hub path would become library/….
		host, path, _ := strings.Cut(p, "/")
		if r, err := name.NewRegistry(host); err == nil {
			host = r.RegistryStr()
		}
		if path == "" {
			if repo.RegistryStr() == host {
				return true
			}
			continue
		}
		p = host + "/" + path
		if full == p || strings.HasPrefix(full, p+"/") {
			return true
		}
	}
	return false
}

// checkPublish refuses a publish target the operator does not allow.
func (s *Service) checkPublish(field string, t *PublishTarget) error {
	if len(s.cfg.Publish.Repositories) == 0 {
		return &RequestError{Field: field, Msg: "this service publishes to no registry (its operator allows none)"}
	}
	ref := strings.TrimSpace(t.Ref)
	if ref == "" {
		return &RequestError{Field: field + ".ref", Msg: "no repository given"}
	}
	if _, err := name.NewDigest(ref); err == nil {
		return &RequestError{Field: field + ".ref", Msg: fmt.Sprintf("%q names a digest: give a repository, optionally with a tag", ref)}
	}
	var repo name.Repository
	if tag, err := name.NewTag(ref, name.StrictValidation); err == nil {
		repo = tag.Repository
	} else if repo, err = name.NewRepository(ref, name.StrictValidation); err != nil {
		return &RequestError{Field: field + ".ref", Msg: fmt.Sprintf("%q is not a repository reference: %v", ref, err)}
	}
	if !s.cfg.Publish.allowed(repo) {
		return &RequestError{Field: field + ".ref", Msg: fmt.Sprintf("repository %s is not one this service publishes to (allowed: %s)", repo.Name(), strings.Join(s.cfg.Publish.Repositories, ", "))}
	}
	if t.Sign && !s.cfg.Publish.CanSign() {
		return &RequestError{Field: field + ".sign", Msg: "this service has no signing key"}
	}
	return nil
}

// publishTag is ref's tag in full (registry/repository:tag), when ref
// names one.
func publishTag(ref string) (string, bool) {
	tag, err := name.NewTag(strings.TrimSpace(ref), name.StrictValidation)
	if err != nil {
		return "", false
	}
	return tag.String(), true
}

// publishImage pushes one built image (in dir, from the lockfile at
// lockPath) to the request's repository and says where it went.
func (s *Service) publishImage(ctx context.Context, lockPath, dir string, req ImageRequest) (*Published, error) {
	if err := s.checkPublish("publish", req.Publish); err != nil {
		// The operator changed the allowed list since the request.
		return nil, err
	}
	pr := ibuild.PublishRequest{
		Lockfile: lockPath, LockfileName: "blueprint.lock.json", From: dir, Ref: strings.TrimSpace(req.Publish.Ref),
		Arches: []string{req.Arch}, Types: []string{req.Type}, Options: s.cfg.Publish.Options,
	}
	if req.Publish.Sign {
		pr.Sign = s.cfg.Publish.Sign
	}
	res, err := ibuild.Publish(ctx, pr)
	if err != nil {
		return nil, err
	}
	if res.Result == nil || len(res.Images) != 1 || len(res.Images[0].Artifacts) != 1 {
		return nil, errors.New("publishing: the registry push reported no single image")
	}
	img := res.Images[0]
	a := img.Artifacts[0]
	p := &Published{Ref: a.Ref, Index: img.Ref, Tags: img.Tags, Attach: string(res.Mode)}
	for _, at := range a.Attachments {
		if at.Kind == "signature" {
			p.Signed, p.Signature = true, at.Ref
		}
	}
	if req.Publish.Sign && !p.Signed {
		return nil, fmt.Errorf("publishing %s: signed, but no signature was attached", a.Ref)
	}
	return p, nil
}
