package ibuild

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/image-builder-action/image-builder-action/pkg/publish"
	"github.com/image-builder-action/image-builder-action/pkg/upload"
)

// SignMode is how Publish signs: not at all, with a key, or keyless (an
// OIDC identity certified by Fulcio, logged in Rekor).
type SignMode string

const (
	SignNone    SignMode = "none"
	SignKey     SignMode = "key"
	SignKeyless SignMode = "keyless"
)

// SignRequest says how to sign.
type SignRequest struct {
	// Mode defaults to SignNone.
	Mode SignMode
	// Key is a cosign private key (SignKey): a file's path, or the PEM
	// text itself (a secret handed over in a variable).
	Key string
	// KeyName is how errors name a key given as PEM text (default "the
	// key"): its temporary file means nothing to the user.
	KeyName string
	// Password gives the key's password.
	Password publish.PassFunc
	// Keyless configures SignKeyless.
	Keyless publish.KeylessOptions
}

// Signer makes the signer req asks for; nil for SignNone. Call release
// when done with it: it removes the key's temporary file, if any.
func Signer(ctx context.Context, req SignRequest) (s *publish.Signer, release func(), err error) {
	none := func() {}
	switch req.Mode {
	case "", SignNone:
		return nil, none, nil
	case SignKeyless:
		s, err := publish.Keyless(ctx, req.Keyless)
		return s, none, err
	case SignKey:
	default:
		return nil, none, fmt.Errorf("signing mode %q: want key, keyless or none", req.Mode)
	}
	if req.Key == "" {
		return nil, none, errors.New("signing with a key: no key given")
	}
	if !strings.Contains(req.Key, "PRIVATE KEY") {
		s, err := publish.LoadKey(req.Key, req.Password)
		return s, none, err
	}
	// The key itself: into a private temporary file that the library
	// reads, removed when done.
	dir, err := os.MkdirTemp("", "ibuild-key-")
	if err != nil {
		return nil, none, fmt.Errorf("writing cosign key: %w", err)
	}
	release = func() { os.RemoveAll(dir) }
	p := filepath.Join(dir, "cosign.key")
	if err := os.WriteFile(p, []byte(strings.TrimSpace(req.Key)+"\n"), 0o600); err != nil {
		release()
		return nil, none, fmt.Errorf("writing cosign key: %w", err)
	}
	s, err = publish.LoadKey(p, req.Password)
	if err != nil {
		release()
		name := req.KeyName
		if name == "" {
			name = "the key"
		}
		return nil, none, errors.New(strings.ReplaceAll(err.Error(), p, name))
	}
	return s, release, nil
}

// PublishRequest asks for the built images of a lockfile to be pushed.
type PublishRequest struct {
	Lockfile string
	// LockfileName is the lockfile as the provenance names it (default:
	// Lockfile with forward slashes).
	LockfileName string
	// From is the output directory the images were built into (see
	// pkg/layout for where each entry's file is looked for).
	From string
	// Ref is the repository, optionally with a tag; empty when the images
	// go only to Uploads.
	Ref                 string
	Arches, Types, Tags []string
	Sign                SignRequest
	Events              func(publish.Event)
	// Options come after the request's (insecure registries, attach mode,
	// keychain, source, containerDisk…).
	Options []publish.Option
	// Uploads are cloud targets the same images go to after the push
	// (composer's upload targets; the Action's publish input targets).
	Uploads []UploadTarget
}

// PublishResult is what was pushed.
type PublishResult struct {
	Lockfile *Lockfile
	// Result is nil when nothing was pushed to a registry (no Ref).
	*publish.Result
	// Uploads are what the images became in each cloud target.
	Uploads []upload.Result `json:"uploads,omitempty"`
}

// Publish pushes every built output of the lockfile found in From to Ref:
// an artifact per (arch, type), an index per type, then, when signing,
// signatures, an SPDX SBOM and SLSA provenance, then the tags. The
// blueprint beside the lockfile, when there, names the image and gives
// its version.
func Publish(ctx context.Context, req PublishRequest) (*PublishResult, error) {
	if req.Ref == "" && len(req.Uploads) == 0 {
		return nil, errors.New("publishing: no registry reference and no upload target")
	}
	l, err := ReadLockfile(req.Lockfile)
	if err != nil {
		return nil, err
	}
	out := &PublishResult{Lockfile: l}
	if req.Ref != "" {
		if out.Result, err = push(ctx, req, l); err != nil {
			return nil, err
		}
	}
	if out.Uploads, err = uploadTo(ctx, req.Lockfile, req.From, req.Arches, req.Types, req.Uploads); err != nil {
		return out, err
	}
	return out, nil
}

// push is Publish's registry half.
func push(ctx context.Context, req PublishRequest, l *Lockfile) (*publish.Result, error) {
	lname := req.LockfileName
	if lname == "" {
		lname = req.Lockfile
	}
	opts := []publish.Option{
		publish.WithLockfile(filepath.ToSlash(lname), l.SHA256),
		publish.WithArches(req.Arches...),
		publish.WithTypes(req.Types...),
		publish.WithTags(req.Tags...),
	}
	if req.Events != nil {
		opts = append(opts, publish.WithEvents(req.Events))
	}
	name, version := l.ImageInfo()
	if version != "" {
		opts = append(opts, publish.WithVersion(version))
	}
	if name != "" {
		opts = append(opts, publish.WithName(name))
	}
	signer, release, err := Signer(ctx, req.Sign)
	if err != nil {
		return nil, err
	}
	defer release()
	if signer != nil {
		opts = append(opts, publish.WithSigner(signer))
	}
	return publish.Publish(ctx, l.File, req.From, req.Ref, append(opts, req.Options...)...)
}
