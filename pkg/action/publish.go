package action

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/pkg/publish"
)

// publish pushes the built images found in output-dir, as `ibuild publish`
// does: an artifact per (arch, type), an index per type, signatures, SBOM
// and provenance when sign is true.
func (r *runner) publish(ctx context.Context) error {
	if r.in.Ref == "" {
		return errors.New("input ref: required (the repository to push to, e.g. ghcr.io/OWNER/IMAGES)")
	}
	lockPath, err := r.lockPath()
	if err != nil {
		return err
	}
	data, err := os.ReadFile(lockPath)
	if err != nil {
		return fmt.Errorf("reading lockfile: %w", err)
	}
	lf, err := manifest.Parse(lockPath, data)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	opts := []publish.Option{
		publish.WithLockfile(filepath.ToSlash(r.rel(lockPath)), hex.EncodeToString(sum[:])),
		publish.WithArches(r.in.Arches...),
		publish.WithTypes(r.in.Types...),
		publish.WithTags(r.in.Tags...),
		publish.WithGetenv(r.getenv),
		publish.WithKeychain(tokenKeychain{
			registry: "ghcr.io",
			user:     r.getenv("GITHUB_ACTOR"),
			token:    r.in.GitHubToken,
			fallback: authn.DefaultKeychain,
		}),
		publish.WithEvents(func(e publish.Event) { r.publishEvent(e) }),
	}
	if lf.Blueprint.Path != "" {
		if bp, err := blueprint.Load(filepath.Join(filepath.Dir(lockPath), filepath.FromSlash(lf.Blueprint.Path))); err == nil {
			if bp.Version != "" {
				opts = append(opts, publish.WithVersion(bp.Version))
			}
			if n := strings.ReplaceAll(bp.Name, "/", "-"); n != "" {
				opts = append(opts, publish.WithName(n))
			}
		}
	}
	signer, cleanup, err := r.signer(ctx)
	if err != nil {
		return err
	}
	defer cleanup()
	if signer != nil {
		opts = append(opts, publish.WithSigner(signer))
	}
	opts = append(opts, r.opts.publish...)

	var res *publish.Result
	err = r.log.group("publish "+r.in.Ref, func() error {
		var err error
		res, err = publish.Publish(ctx, lf, r.path(r.in.OutputDir), r.in.Ref, opts...)
		return err
	})
	if err != nil {
		return err
	}

	var images []Image
	var digests, refs []string
	var sum2 strings.Builder
	sum2.WriteString("## ibuild publish\n\n")
	for _, im := range res.Images {
		digests = append(digests, im.Digest)
		refs = append(refs, im.Ref)
		fmt.Fprintf(&sum2, "- **%s**: `%s`", mdCell(im.Type), mdCell(im.Ref))
		if len(im.Tags) > 0 {
			fmt.Fprintf(&sum2, " (tags: %s)", mdCell(strings.Join(im.Tags, ", ")))
		}
		if len(im.Attachments) > 0 {
			var kinds []string
			for _, a := range im.Attachments {
				kinds = append(kinds, a.Kind)
			}
			fmt.Fprintf(&sum2, "; %s", mdCell(strings.Join(kinds, ", ")))
		}
		sum2.WriteString("\n")
		for _, a := range im.Artifacts {
			images = append(images, Image{Arch: a.Arch, Type: im.Type, Path: r.rel(a.File), Size: a.Size, SHA256: a.SHA256, Digest: a.Digest})
		}
	}
	if res.Mode != "" {
		fmt.Fprintf(&sum2, "\nSignatures, SBOM and provenance attached as %s.\n", res.Mode)
	} else {
		sum2.WriteString("\nNot signed (input sign is false).\n")
	}
	sum2.WriteString("\n" + imagesTable(images))
	out, err := json.Marshal(images)
	if err != nil {
		return err
	}
	// One index per image type: with several types, one line each.
	if err := r.setOutputs("lockfile", r.rel(lockPath), "images", string(out),
		"digest", strings.Join(digests, "\n"), "ref", strings.Join(refs, "\n")); err != nil {
		return err
	}
	return r.files.AddStepSummary(sum2.String())
}

func (r *runner) publishEvent(e publish.Event) {
	switch e.Kind {
	case "hash":
		fmt.Fprintf(r.log, "hashed %s: %s (%s in %.1fs)\n", e.What, r.relText(e.Ref), humanSize(e.Bytes), e.Duration.Seconds())
	case "push":
		fmt.Fprintf(r.log, "pushed %s: %s\n", e.What, e.Ref)
	case "sign":
		fmt.Fprintf(r.log, "signed %s: %s\n", e.What, e.Ref)
	case "tag":
		fmt.Fprintf(r.log, "tagged %s: %s\n", e.What, e.Ref)
	}
}

// signer makes the signer the inputs ask for: none, a key (PEM in the
// input, or a path in the workspace) or keyless with the workflow's OIDC
// identity. cleanup removes a key written to a temp file.
func (r *runner) signer(ctx context.Context) (*publish.Signer, func(), error) {
	none := func() {}
	key := r.in.CosignKey
	if !r.in.Sign {
		if key != "" {
			return nil, none, errors.New("input cosign-key is set but sign is false: set sign: true, or drop the key")
		}
		return nil, none, nil
	}
	if key == "" {
		s, err := publish.Keyless(ctx, publish.KeylessOptions{Token: publish.GitHubActionsToken{Getenv: r.getenv}})
		return s, none, err
	}
	pass := func() ([]byte, error) { return []byte(r.in.CosignPassword), nil }
	if !strings.Contains(key, "PRIVATE KEY") {
		s, err := publish.LoadKey(r.path(key), pass)
		return s, none, err
	}
	// The key itself, from a secret: into a private temp file that the
	// library reads, removed when done.
	dir, err := os.MkdirTemp("", "ibuild-key-")
	if err != nil {
		return nil, none, fmt.Errorf("writing cosign key: %w", err)
	}
	cleanup := func() { os.RemoveAll(dir) }
	p := filepath.Join(dir, "cosign.key")
	if err := os.WriteFile(p, []byte(key+"\n"), 0o600); err != nil {
		cleanup()
		return nil, none, fmt.Errorf("writing cosign key: %w", err)
	}
	s, err := publish.LoadKey(p, pass)
	if err != nil {
		cleanup()
		// The temp path means nothing to the user.
		return nil, none, errors.New(strings.ReplaceAll(err.Error(), p, "input cosign-key"))
	}
	return s, cleanup, nil
}

// tokenKeychain logs in to one registry (ghcr.io) with the workflow's
// token and leaves every other registry to fallback (docker's
// config.json, which the composite action mounts when the host has one).
type tokenKeychain struct {
	registry, user, token string
	fallback              authn.Keychain
}

func (k tokenKeychain) Resolve(res authn.Resource) (authn.Authenticator, error) {
	if k.token != "" && res.RegistryStr() == k.registry {
		user := k.user
		if user == "" {
			user = "github-actions"
		}
		return &authn.Basic{Username: user, Password: k.token}, nil
	}
	return k.fallback.Resolve(res)
}

var _ authn.Keychain = tokenKeychain{}
