package action

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/image-builder-action/image-builder-action/pkg/ibuild"
	"github.com/image-builder-action/image-builder-action/pkg/publish"
)

// publish pushes the built images found in output-dir, as `ibuild publish`
// does: an artifact per (arch, type), an index per type, signatures, SBOM
// and provenance when sign is true.
func (r *runner) publish(ctx context.Context) error {
	if r.in.Ref == "" && len(r.in.Targets) == 0 {
		return errors.New("input ref: required (the repository to push to, e.g. ghcr.io/OWNER/IMAGES), unless input targets names clouds to upload to")
	}
	lockPath, err := r.lockPath()
	if err != nil {
		return err
	}
	sign := ibuild.SignRequest{Mode: ibuild.SignNone}
	switch key := r.in.CosignKey; {
	case !r.in.Sign && key != "":
		return errors.New("input cosign-key is set but sign is false: set sign: true, or drop the key")
	case !r.in.Sign:
	case key == "":
		// Keyless, with the workflow's OIDC identity.
		sign = ibuild.SignRequest{Mode: ibuild.SignKeyless, Keyless: publish.KeylessOptions{Token: publish.GitHubActionsToken{Getenv: r.getenv}}}
	default:
		if !strings.Contains(key, "PRIVATE KEY") {
			key = r.path(key) // a file in the workspace
		}
		sign = ibuild.SignRequest{Mode: ibuild.SignKey, Key: key, KeyName: "input cosign-key",
			Password: func() ([]byte, error) { return []byte(r.in.CosignPassword), nil }}
	}
	req := ibuild.PublishRequest{
		Lockfile: lockPath, LockfileName: r.rel(lockPath),
		From: r.path(r.in.OutputDir), Ref: r.in.Ref,
		Arches: r.in.Arches, Types: r.in.Types, Tags: r.in.Tags,
		Sign:   sign,
		Events: r.publishEvent,
		Options: append([]publish.Option{
			publish.WithGetenv(r.getenv),
			publish.WithKeychain(tokenKeychain{
				registry: "ghcr.io",
				user:     r.getenv("GITHUB_ACTOR"),
				token:    r.in.GitHubToken,
				fallback: authn.DefaultKeychain,
			}),
		}, r.opts.publish...),
	}
	for _, t := range r.in.Targets {
		req.Uploads = append(req.Uploads, ibuild.UploadTarget{Target: t, Options: r.in.Upload, NewTarget: r.opts.upload, Events: r.uploadEvent})
	}
	what := r.in.Ref
	if what == "" {
		what = strings.Join(r.in.Targets, ", ")
	}
	var out *ibuild.PublishResult
	err = r.log.group("publish "+what, func() error {
		var err error
		out, err = ibuild.Publish(ctx, req)
		return err
	})
	if err != nil {
		return uploadFailure(err)
	}
	var ups []string
	if len(out.Uploads) > 0 {
		data, err := json.Marshal(out.Uploads)
		if err != nil {
			return err
		}
		ups = []string{"uploads", string(data)}
	}
	res := out.Result
	if res == nil {
		// Clouds only.
		if err := r.setOutputs(append([]string{"lockfile", r.rel(lockPath)}, ups...)...); err != nil {
			return err
		}
		return r.files.AddStepSummary("## ibuild publish\n\n" + uploadsTable(out.Uploads))
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
	data, err := json.Marshal(images)
	if err != nil {
		return err
	}
	// One index per image type: with several types, one line each.
	if err := r.setOutputs(append([]string{"lockfile", r.rel(lockPath), "images", string(data),
		"digest", strings.Join(digests, "\n"), "ref", strings.Join(refs, "\n")}, ups...)...); err != nil {
		return err
	}
	if len(out.Uploads) > 0 {
		sum2.WriteString("\n### Uploads\n\n" + uploadsTable(out.Uploads))
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
