package publish

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	gstatic "github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	cbundle "github.com/sigstore/cosign/v2/pkg/cosign/bundle"
	cremote "github.com/sigstore/cosign/v2/pkg/cosign/remote"
	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/cosign/v2/pkg/oci/mutate"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	ctypes "github.com/sigstore/cosign/v2/pkg/types"
	"github.com/sigstore/rekor/pkg/generated/models"
	"github.com/sigstore/sigstore/pkg/signature/dsse"
	sigpayload "github.com/sigstore/sigstore/pkg/signature/payload"
)

// Attachment media types and predicate types.
const (
	// BundleMediaType is a Sigstore bundle, the layer and artifactType of
	// a referrer.
	BundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	// SignPredicateType is the predicate of a signature as a bundle
	// (cosign's own).
	SignPredicateType = ctypes.CosignSignPredicateType
	// InTotoStatementType is the in-toto statement version written.
	InTotoStatementType = "https://in-toto.io/Statement/v1"
)

// Mode is how signatures and attestations are attached.
type Mode string

const (
	// ModeAuto uses referrers where the registry has the API, else tags.
	ModeAuto Mode = "auto"
	// ModeReferrers attaches OCI 1.1 referrers (Sigstore bundles).
	ModeReferrers Mode = "referrers"
	// ModeTags uses cosign's sha256-HEX.sig / .att tags.
	ModeTags Mode = "tags"
)

// Subject is an in-toto statement subject.
type Subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// Statement is an in-toto v1 statement.
type Statement struct {
	Type          string    `json:"_type"`
	Subject       []Subject `json:"subject"`
	PredicateType string    `json:"predicateType"`
	Predicate     any       `json:"predicate,omitempty"`
}

// signedStatement is a statement signed once (DSSE), attachable to any of
// its subjects.
type signedStatement struct {
	kind          string // "signature", "sbom", "provenance"
	predicateType string
	payload       []byte // the statement
	envelope      []byte // DSSE envelope
	entry         *models.LogEntryAnon
}

func (s *Signer) signStatement(ctx context.Context, kind string, st Statement) (*signedStatement, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	payload, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("encoding the %s statement: %w", kind, err)
	}
	env, err := dsse.WrapSigner(s.sv, ctypes.IntotoPayloadType).SignMessage(bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("signing the %s statement: %w", kind, err)
	}
	ss := &signedStatement{kind: kind, predicateType: st.PredicateType, payload: payload, envelope: env}
	if s.tlog != nil {
		if ss.entry, err = s.tlog.LogDSSE(ctx, env, s.cert); err != nil {
			return nil, err
		}
	}
	return ss, nil
}

// attacher writes signatures and attestations for subjects in one mode.
type attacher struct {
	signer *Signer
	mode   Mode // ModeReferrers or ModeTags
	ropts  []remote.Option
	now    func() time.Time
}

// attach signs subject and attaches the signature and the signed
// statements to it.
func (a *attacher) attach(ctx context.Context, subject name.Digest, desc v1.Descriptor, stmts []*signedStatement) ([]Attachment, error) {
	switch a.mode {
	case ModeReferrers:
		return a.attachReferrers(ctx, subject, desc, stmts)
	case ModeTags:
		return a.attachTags(ctx, subject, stmts)
	}
	return nil, fmt.Errorf("attaching to %s: unknown mode %q", subject, a.mode)
}

func (a *attacher) attachReferrers(ctx context.Context, subject name.Digest, desc v1.Descriptor, stmts []*signedStatement) ([]Attachment, error) {
	sig, err := a.signer.signStatement(ctx, "signature", Statement{
		Type:          InTotoStatementType,
		Subject:       []Subject{{Name: subject.Context().Name(), Digest: map[string]string{desc.Digest.Algorithm: desc.Digest.Hex}}},
		PredicateType: SignPredicateType,
	})
	if err != nil {
		return nil, err
	}
	signerPEM, err := a.signer.publicKeyOrCert()
	if err != nil {
		return nil, err
	}
	pub, err := a.signer.sv.PublicKey()
	if err != nil {
		return nil, err
	}
	var out []Attachment
	for _, st := range append([]*signedStatement{sig}, stmts...) {
		b, err := cbundle.MakeNewBundle(pub, st.entry, st.payload, st.envelope, signerPEM, nil)
		if err != nil {
			return nil, fmt.Errorf("making the %s bundle for %s: %w", st.kind, subject, err)
		}
		ref, err := a.putReferrer(ctx, subject, desc, b, st.predicateType)
		if err != nil {
			return nil, fmt.Errorf("attaching the %s of %s: %w", st.kind, subject, err)
		}
		out = append(out, Attachment{Kind: st.kind, Ref: ref})
	}
	return out, nil
}

// putReferrer pushes a bundle as a referrer of subject: empty config,
// the bundle as the layer, artifactType the bundle's media type.
func (a *attacher) putReferrer(ctx context.Context, subject name.Digest, desc v1.Descriptor, bundle []byte, predicateType string) (string, error) {
	repo := subject.Context()
	layer := gstatic.NewLayer(bundle, BundleMediaType)
	if err := remote.WriteLayer(repo, layer, a.ropts...); err != nil {
		return "", err
	}
	if err := writeEmptyConfig(repo, a.ropts); err != nil {
		return "", err
	}
	ld, err := layer.Digest()
	if err != nil {
		return "", err
	}
	m := ocispec.Manifest{
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: BundleMediaType,
		Config:       emptyConfigDescriptor(),
		Layers: []ocispec.Descriptor{{
			MediaType: BundleMediaType,
			Digest:    toDigest(ld),
			Size:      int64(len(bundle)),
		}},
		Subject: &ocispec.Descriptor{MediaType: string(desc.MediaType), Digest: toDigest(desc.Digest), Size: desc.Size},
		Annotations: map[string]string{
			ocispec.AnnotationCreated:           a.now().UTC().Format(time.RFC3339),
			"dev.sigstore.bundle.content":       "dsse-envelope",
			"dev.sigstore.bundle.predicateType": predicateType,
		},
	}
	m.SchemaVersion = 2
	raw, err := json.Marshal(m)
	if err != nil {
		return "", err
	}
	d, err := putManifest(ctx, repo, raw, types.OCIManifestSchema1, a.ropts)
	if err != nil {
		return "", err
	}
	return d.String(), nil
}

func (a *attacher) attachTags(ctx context.Context, subject name.Digest, stmts []*signedStatement) ([]Attachment, error) {
	copts := []ociremote.Option{ociremote.WithRemoteOptions(a.ropts...)}
	// The signature: cosign's simple-signing payload for the digest.
	payload, err := (&sigpayload.Cosign{Image: subject}).MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("signing %s: %w", subject, err)
	}
	sigBytes, entry, err := a.signer.signMessage(ctx, payload)
	if err != nil {
		return nil, fmt.Errorf("signing %s: %w", subject, err)
	}
	sig, err := static.NewSignature(payload, base64.StdEncoding.EncodeToString(sigBytes), a.staticOptions(entry)...)
	if err != nil {
		return nil, fmt.Errorf("signing %s: %w", subject, err)
	}
	sigTag, err := ociremote.SignatureTag(subject, copts...)
	if err != nil {
		return nil, err
	}
	existing, err := ociremote.Signatures(sigTag, copts...)
	if err != nil {
		return nil, fmt.Errorf("reading the signatures of %s: %w", subject, err)
	}
	// A signature by the same key over the same payload is not added twice.
	dupe, err := cremote.NewDupeDetector(a.signer.sv).Find(existing, sig)
	if err != nil {
		return nil, fmt.Errorf("reading the signatures of %s: %w", subject, err)
	}
	if dupe == nil {
		sigs, err := mutate.AppendSignatures(existing, false, sig)
		if err != nil {
			return nil, fmt.Errorf("signing %s: %w", subject, err)
		}
		if err := remote.Write(sigTag, sigs, a.ropts...); err != nil {
			return nil, fmt.Errorf("writing the signature of %s to %s: %w", subject, sigTag, err)
		}
	}
	out := []Attachment{{Kind: "signature", Ref: sigTag.String()}}
	if len(stmts) == 0 {
		return out, nil
	}

	// Attestations: ours replace earlier ones of the same predicate types
	// (as cosign attest --replace does); others are kept.
	attTag, err := ociremote.AttestationTag(subject, copts...)
	if err != nil {
		return nil, err
	}
	existing, err = ociremote.Signatures(attTag, copts...)
	if err != nil {
		return nil, fmt.Errorf("reading the attestations of %s: %w", subject, err)
	}
	replaced := map[string]bool{}
	for _, st := range stmts {
		replaced[st.predicateType] = true
	}
	old, err := existing.Get()
	if err != nil {
		return nil, fmt.Errorf("reading the attestations of %s: %w", subject, err)
	}
	var keep []oci.Signature
	for _, s := range old {
		if !replaced[attestationPredicateType(s)] {
			keep = append(keep, s)
		}
	}
	for _, st := range stmts {
		opts := append(a.staticOptions(st.entry),
			static.WithLayerMediaType(types.MediaType(ctypes.DssePayloadType)),
			static.WithAnnotations(map[string]string{"predicateType": st.predicateType}))
		att, err := static.NewAttestation(st.envelope, opts...)
		if err != nil {
			return nil, fmt.Errorf("attesting %s: %w", subject, err)
		}
		keep = append(keep, att)
	}
	atts, err := mutate.AppendSignatures(emptySignatures(), false, keep...)
	if err != nil {
		return nil, fmt.Errorf("attesting %s: %w", subject, err)
	}
	if err := remote.Write(attTag, atts, a.ropts...); err != nil {
		return nil, fmt.Errorf("writing the attestations of %s to %s: %w", subject, attTag, err)
	}
	for _, st := range stmts {
		out = append(out, Attachment{Kind: st.kind, Ref: attTag.String()})
	}
	return out, nil
}

func (a *attacher) staticOptions(entry *models.LogEntryAnon) []static.Option {
	var opts []static.Option
	if a.signer.cert != nil {
		opts = append(opts, static.WithCertChain(a.signer.cert, a.signer.chain))
	}
	if entry != nil {
		opts = append(opts, static.WithBundle(cbundle.EntryToBundle(entry)))
	}
	return opts
}

// attestationPredicateType reads the predicate type of a cosign
// attestation layer: its annotation, else its DSSE payload.
func attestationPredicateType(s oci.Signature) string {
	if ann, err := s.Annotations(); err == nil && ann["predicateType"] != "" {
		return ann["predicateType"]
	}
	p, err := s.Payload()
	if err != nil {
		return ""
	}
	var env struct {
		Payload string `json:"payload"`
	}
	if json.Unmarshal(p, &env) != nil {
		return ""
	}
	b, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return ""
	}
	var st struct {
		PredicateType string `json:"predicateType"`
	}
	if json.Unmarshal(b, &st) != nil {
		return ""
	}
	return st.PredicateType
}
