package publish

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	intoto "github.com/in-toto/attestation/go/v1"
	"github.com/opencontainers/image-spec/schema"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/dsse"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/image-builder-action/image-builder-action/pkg/provenance"
	"github.com/image-builder-action/image-builder-action/pkg/sbom"
)

func TestPublishArtifacts(t *testing.T) {
	ctx := context.Background()
	host := inProcessRegistry(t, false)
	lf := fixture(t, true)
	dir := t.TempDir()
	amd := writeFile(t, dir, "x86_64/disk.qcow2", 3<<20+7)
	arm := writeFile(t, dir, "aarch64/qcow2/disk.qcow2", 1<<20+1)
	res, err := Publish(ctx, lf, dir, host+"/images/example:v1", WithTypes("qcow2"), WithTags("latest"),
		WithLockfile("blueprint.lock.json", strings.Repeat("ab", 32)), WithVersion("1.2.3"),
		WithSource("https://example.invalid/repo", "abc123"), WithGetenv(func(string) string { return "" }))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Images) != 1 || len(res.Images[0].Artifacts) != 2 || res.Mode != "" {
		t.Fatalf("result %+v", res)
	}
	img := res.Images[0]
	if want := []string{host + "/images/example:v1", host + "/images/example:latest"}; strings.Join(img.Tags, " ") != strings.Join(want, " ") {
		t.Errorf("tags %v, want %v", img.Tags, want)
	}
	for _, tag := range img.Tags {
		if got := digestOf(t, tag); got != img.Digest {
			t.Errorf("%s points at %s, want the index %s", tag, got, img.Digest)
		}
	}
	var idx ocispec.Index
	validateSchema(t, schema.ValidatorMediaTypeImageIndex, fetchJSON(t, img.Ref, &idx))
	if idx.MediaType != ocispec.MediaTypeImageIndex || idx.ArtifactType != "application/vnd.ibuild.disk.qcow2" || len(idx.Manifests) != 2 {
		t.Fatalf("index %+v", idx)
	}
	platforms := map[string]string{}
	for _, d := range idx.Manifests {
		platforms[d.Platform.OS+"/"+d.Platform.Architecture] = d.Digest.String()
	}
	files := map[string]string{"linux/amd64": amd, "linux/arm64": arm}
	for plat, file := range files {
		d, ok := platforms[plat]
		if !ok {
			t.Fatalf("index has no %s (has %v)", plat, platforms)
		}
		ref := host + "/images/example@" + d
		var m ocispec.Manifest
		validateSchema(t, schema.ValidatorMediaTypeManifest, fetchJSON(t, ref, &m))
		if m.ArtifactType != "application/vnd.ibuild.disk.qcow2" || m.Config.MediaType != EmptyConfigMediaType ||
			m.Config.Digest != ocispec.DescriptorEmptyJSON.Digest || m.Config.Size != 2 {
			t.Errorf("%s: manifest %+v", plat, m)
		}
		if len(m.Layers) != 1 || m.Layers[0].Annotations[ocispec.AnnotationTitle] != "disk.qcow2" || m.Layers[0].MediaType != "application/vnd.ibuild.disk.qcow2" {
			t.Errorf("%s: layers %+v", plat, m.Layers)
		}
		wantAnn := map[string]string{
			ocispec.AnnotationCreated:  time.Unix(lf.SourceDateEpoch, 0).UTC().Format(time.RFC3339),
			ocispec.AnnotationSource:   "https://example.invalid/repo",
			ocispec.AnnotationRevision: "abc123",
			ocispec.AnnotationVersion:  "1.2.3",
			AnnotationLockfileDigest:   "sha256:" + strings.Repeat("ab", 32),
			AnnotationType:             "qcow2",
		}
		for k, v := range wantAnn {
			if m.Annotations[k] != v {
				t.Errorf("%s: annotation %s = %q, want %q", plat, k, m.Annotations[k], v)
			}
		}
		// The blob is the file, byte for byte.
		r, _ := name.NewDigest(host + "/images/example@" + m.Layers[0].Digest.String())
		l, err := remote.Layer(r)
		if err != nil {
			t.Fatal(err)
		}
		rc, _ := l.Compressed()
		got, _ := io.ReadAll(rc)
		rc.Close()
		want, _ := os.ReadFile(file)
		if !bytes.Equal(got, want) {
			t.Errorf("%s: blob differs from %s", plat, file)
		}
	}
	// Publishing again gives the same digests (everything comes from the
	// lockfile and the files).
	res2, err := Publish(ctx, lf, dir, host+"/images/example:v1", WithTypes("qcow2"), WithTags("latest"),
		WithLockfile("blueprint.lock.json", strings.Repeat("ab", 32)), WithVersion("1.2.3"),
		WithSource("https://example.invalid/repo", "abc123"), WithGetenv(func(string) string { return "" }))
	if err != nil {
		t.Fatal(err)
	}
	if res2.Images[0].Digest != img.Digest {
		t.Errorf("second publish: index %s, first %s", res2.Images[0].Digest, img.Digest)
	}
}

// statementsOf decodes the in-toto statements of a DSSE envelope list.
func verifyEnvelope(t *testing.T, v signature.Verifier, env []byte) Statement {
	t.Helper()
	if err := dsse.WrapVerifier(v).VerifySignature(bytes.NewReader(env), nil); err != nil {
		t.Fatalf("DSSE signature does not verify: %v", err)
	}
	var e struct {
		Payload string `json:"payload"`
	}
	if err := json.Unmarshal(env, &e); err != nil {
		t.Fatal(err)
	}
	b, _ := base64.StdEncoding.DecodeString(e.Payload)
	var st Statement
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	// in-toto's own type reads the statement and validates it (subjects'
	// digests, the type, the predicate type).
	var it intoto.Statement
	if err := protojson.Unmarshal(b, &it); err != nil {
		t.Fatalf("in-toto cannot read the statement: %v\n%s", err, b)
	}
	if it.PredicateType == SignPredicateType && it.Predicate == nil {
		// cosign writes its signature statement without a predicate
		// (cli/sign/sign.go), which Validate requires; ours is cosign's.
		it.Predicate = &structpb.Struct{}
	}
	if err := it.Validate(); err != nil {
		t.Errorf("in-toto refuses the statement: %v\n%s", err, b)
	}
	return st
}

func TestPublishSignedTags(t *testing.T) {
	ctx := context.Background()
	host := inProcessRegistry(t, false)
	dir := t.TempDir()
	key, _ := keyPair(t, dir, "pw")
	s := loadSigner(t, key, "pw")
	lf := fixture(t, false)
	file := writeFile(t, dir, "out/disk.qcow2", 1<<20)
	res, err := Publish(ctx, lf, filepath.Join(dir, "out"), host+"/signed:v1", WithSigner(s), WithGetenv(func(string) string { return "" }))
	if err != nil {
		t.Fatal(err)
	}
	if res.Mode != ModeTags {
		t.Fatalf("mode %q without the referrers API, want tags", res.Mode)
	}
	img := res.Images[0]
	art := img.Artifacts[0]
	sum := sha256.Sum256(mustRead(t, file))
	if art.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("file digest %s", art.SHA256)
	}
	// cosign's own verification, offline with the public key.
	co := &cosign.CheckOpts{SigVerifier: s.Verifier(), IgnoreTlog: true, IgnoreSCT: true, ClaimVerifier: cosign.SimpleClaimVerifier}
	for _, ref := range []string{art.Ref, img.Ref, img.Tags[0]} {
		r, _ := name.ParseReference(ref)
		sigs, _, err := cosign.VerifyImageSignatures(ctx, r, co)
		if err != nil || len(sigs) != 1 {
			t.Errorf("verifying the signature of %s: %d signatures, %v", ref, len(sigs), err)
		}
	}
	aco := &cosign.CheckOpts{SigVerifier: s.Verifier(), IgnoreTlog: true, IgnoreSCT: true, ClaimVerifier: cosign.IntotoSubjectClaimVerifier}
	for ref, n := range map[string]int{art.Ref: 2, img.Ref: 2} {
		r, _ := name.ParseReference(ref)
		atts, _, err := cosign.VerifyImageAttestations(ctx, r, aco)
		if err != nil || len(atts) != n {
			t.Fatalf("verifying the attestations of %s: %d, %v", ref, len(atts), err)
		}
		types := map[string]bool{}
		for _, a := range atts {
			p, _ := a.Payload()
			st := verifyEnvelope(t, s.Verifier(), p)
			types[st.PredicateType] = true
			if len(st.Subject) != 3 || st.Subject[2].Name != "disk.qcow2" || st.Subject[2].Digest["sha256"] != art.SHA256 {
				t.Errorf("subjects %+v", st.Subject)
			}
			switch st.PredicateType {
			case sbom.PredicateType:
				// Read and validated by the SPDX library, as a consumer would.
				b, _ := json.Marshal(st.Predicate)
				doc, err := sbom.Parse(b)
				if err != nil || doc.SPDXVersion != "SPDX-2.3" || len(doc.Packages) < 2 || doc.Packages[0].PackageChecksums[0].Value != art.SHA256 {
					t.Errorf("SBOM: %v\n%s", err, b)
				}
			case provenance.PredicateType:
				// Read and validated by in-toto's type.
				b, _ := json.Marshal(st.Predicate)
				p, err := provenance.Parse(b)
				if err != nil {
					t.Fatalf("provenance: %v\n%s", err, b)
				}
				ext, _, err := p.Parameters()
				if err != nil || ext.Entry.Type != "qcow2" || !strings.HasPrefix(p.RunDetails.Builder.Id, provenance.BuilderURI) {
					t.Errorf("provenance (%v) %s", err, b)
				}
			}
		}
		if !types[sbom.PredicateType] || !types[provenance.PredicateType] {
			t.Errorf("%s: attestations %v", ref, types)
		}
	}
	// A wrong key does not verify.
	_, other := keyPair(t, t.TempDir(), "x")
	ov := loadVerifier(t, other)
	r, _ := name.ParseReference(img.Ref)
	if _, _, err := cosign.VerifyImageSignatures(ctx, r, &cosign.CheckOpts{SigVerifier: ov, IgnoreTlog: true, IgnoreSCT: true, ClaimVerifier: cosign.SimpleClaimVerifier}); err == nil {
		t.Error("a wrong key verified")
	}
	// Publishing again does not add a second signature by the same key,
	// and replaces the attestations.
	if _, err := Publish(ctx, lf, filepath.Join(dir, "out"), host+"/signed:v1", WithSigner(s), WithGetenv(func(string) string { return "" })); err != nil {
		t.Fatal(err)
	}
	sigTag, _ := ociremote.SignatureTag(r)
	sigs, _ := ociremote.Signatures(sigTag)
	if l, _ := sigs.Get(); len(l) != 1 {
		t.Errorf("%d signatures after publishing twice, want 1", len(l))
	}
	attTag, _ := ociremote.AttestationTag(r)
	atts, _ := ociremote.Signatures(attTag)
	if l, _ := atts.Get(); len(l) != 2 {
		t.Errorf("%d attestations after publishing twice, want 2", len(l))
	}
}

func mustRead(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPublishSignedReferrers(t *testing.T) {
	ctx := context.Background()
	host := inProcessRegistry(t, true)
	dir := t.TempDir()
	key, _ := keyPair(t, dir, "pw")
	s := loadSigner(t, key, "pw")
	lf := fixture(t, true)
	writeFile(t, dir, "out/x86_64/disk.qcow2", 1<<20)
	writeFile(t, dir, "out/aarch64/disk.qcow2", 1<<20)
	res, err := Publish(ctx, lf, filepath.Join(dir, "out"), host+"/ref:v1", WithSigner(s), WithGetenv(func(string) string { return "" }))
	if err != nil {
		t.Fatal(err)
	}
	if res.Mode != ModeReferrers {
		t.Fatalf("mode %q with the referrers API, want referrers", res.Mode)
	}
	img := res.Images[0]
	check := func(ref string, wantStatements int) {
		d, _ := name.NewDigest(ref)
		idx, err := remote.Referrers(d)
		if err != nil {
			t.Fatal(err)
		}
		im, _ := idx.IndexManifest()
		if len(im.Manifests) != wantStatements+1 {
			t.Fatalf("%s: %d referrers, want %d", ref, len(im.Manifests), wantStatements+1)
		}
		types := map[string]int{}
		for _, desc := range im.Manifests {
			var m ocispec.Manifest
			validateSchema(t, schema.ValidatorMediaTypeManifest, fetchJSON(t, d.Context().Digest(desc.Digest.String()).String(), &m))
			if m.ArtifactType != BundleMediaType || m.Subject == nil || m.Subject.Digest.String() != d.DigestStr() || len(m.Layers) != 1 {
				t.Fatalf("referrer %+v", m)
			}
			ld, _ := name.NewDigest(d.Context().Name() + "@" + m.Layers[0].Digest.String())
			l, _ := remote.Layer(ld)
			rc, _ := l.Compressed()
			b, _ := io.ReadAll(rc)
			rc.Close()
			var bundle struct {
				MediaType    string `json:"mediaType"`
				DsseEnvelope struct {
					Payload     string `json:"payload"`
					PayloadType string `json:"payloadType"`
					Signatures  []struct {
						Sig string `json:"sig"`
					} `json:"signatures"`
				} `json:"dsseEnvelope"`
			}
			if err := json.Unmarshal(b, &bundle); err != nil || bundle.MediaType != BundleMediaType {
				t.Fatalf("bundle %s: %v", b, err)
			}
			env, _ := json.Marshal(map[string]any{
				"payloadType": bundle.DsseEnvelope.PayloadType,
				"payload":     bundle.DsseEnvelope.Payload,
				"signatures":  []map[string]string{{"sig": bundle.DsseEnvelope.Signatures[0].Sig}},
			})
			st := verifyEnvelope(t, s.Verifier(), env)
			found := false
			for _, sub := range st.Subject {
				if "sha256:"+sub.Digest["sha256"] == d.DigestStr() {
					found = true
				}
			}
			if !found {
				t.Errorf("%s: statement subjects %+v do not name it", ref, st.Subject)
			}
			types[st.PredicateType]++
		}
		if types[SignPredicateType] != 1 || types[sbom.PredicateType] != wantStatements/2 || types[provenance.PredicateType] != wantStatements/2 {
			t.Errorf("%s: predicate types %v", ref, types)
		}
	}
	for _, a := range img.Artifacts {
		check(a.Ref, 2)
	}
	check(img.Ref, 4)
	// No cosign tags in this mode.
	r, _ := name.NewDigest(img.Ref)
	sigTag, _ := ociremote.SignatureTag(r)
	if _, err := remote.Head(sigTag); err == nil {
		t.Errorf("%s exists in referrers mode", sigTag)
	}
}

func TestContainerDisk(t *testing.T) {
	ctx := context.Background()
	host := inProcessRegistry(t, false)
	lf := fixture(t, false)
	dir := t.TempDir()
	file := writeFile(t, dir, "disk.qcow2", 700_001)
	res, err := Publish(ctx, lf, dir, host+"/art", WithTypes("qcow2"), WithContainerDisk(host+"/cd:v1"), WithName("example"), WithGetenv(func(string) string { return "" }))
	if err != nil {
		t.Fatal(err)
	}
	cd := res.ContainerDisk
	if cd == nil || len(cd.Tags) != 1 || digestOf(t, host+"/cd:v1") != cd.Digest {
		t.Fatalf("containerDisk %+v", cd)
	}
	if len(res.Images[0].Tags) != 0 {
		t.Errorf("artifact tags %v, want none (no tag given)", res.Images[0].Tags)
	}
	var idx ocispec.Index
	validateSchema(t, schema.ValidatorMediaTypeImageIndex, fetchJSON(t, cd.Ref, &idx))
	if len(idx.Manifests) != 1 || idx.Manifests[0].Platform.Architecture != "amd64" {
		t.Errorf("containerDisk index %+v", idx)
	}
	var m ocispec.Manifest
	validateSchema(t, schema.ValidatorMediaTypeManifest, fetchJSON(t, cd.Artifacts[0].Ref, &m))
	r, _ := name.ParseReference(cd.Artifacts[0].Ref)
	img, err := remote.Image(r)
	if err != nil {
		t.Fatal(err)
	}
	// Fast: validate's layer check assumes gzip; the layer is checked below.
	if err := validate.Image(img, validate.Fast); err != nil {
		t.Fatalf("containerDisk image: %v", err)
	}
	rawCfg, _ := img.RawConfigFile()
	validateSchema(t, schema.ValidatorMediaTypeImageConfig, rawCfg)
	cfg, _ := img.ConfigFile()
	if cfg.Architecture != "amd64" || cfg.OS != "linux" || !cfg.Created.Time.Equal(time.Unix(lf.SourceDateEpoch, 0)) {
		t.Errorf("config %+v", cfg)
	}
	layers, _ := img.Layers()
	if len(layers) != 1 {
		t.Fatalf("%d layers", len(layers))
	}
	rc, _ := layers[0].Compressed()
	b, _ := io.ReadAll(rc)
	rc.Close()
	sum := sha256.Sum256(b)
	ld, _ := layers[0].Digest()
	if ld.Hex != hex.EncodeToString(sum[:]) || cfg.RootFS.DiffIDs[0] != ld {
		t.Errorf("layer digest %s, content %x, diff id %s", ld, sum, cfg.RootFS.DiffIDs[0])
	}
	if mt, _ := layers[0].MediaType(); mt != ContainerDiskLayerMediaType {
		t.Errorf("layer media type %s", mt)
	}
	checkDiskTar(t, layers[0], "disk/example.qcow2", mustRead(t, file), time.Unix(lf.SourceDateEpoch, 0))
}

func checkDiskTar(t *testing.T, l v1.Layer, name string, want []byte, mtime time.Time) {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	entries := readTar(t, rc)
	if len(entries) != 2 || entries[0].hdr.Name != "disk/" || entries[1].hdr.Name != name {
		t.Fatalf("tar entries %v", entries)
	}
	for _, e := range entries {
		if e.hdr.Uid != 107 || e.hdr.Gid != 107 || !e.hdr.ModTime.Equal(mtime) {
			t.Errorf("%s: owner %d:%d mtime %s", e.hdr.Name, e.hdr.Uid, e.hdr.Gid, e.hdr.ModTime)
		}
	}
	if !bytes.Equal(entries[1].data, want) {
		t.Error("the disk in the tar differs from the file")
	}
}

func loadVerifier(t testing.TB, pubPath string) signature.Verifier {
	t.Helper()
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(mustRead(t, pubPath))
	if err != nil {
		t.Fatal(err)
	}
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// validateSchema checks a manifest or index against the image-spec's JSON
// schema.
func validateSchema(t *testing.T, v schema.Validator, raw []byte) {
	t.Helper()
	if err := v.Validate(bytes.NewReader(raw)); err != nil {
		t.Errorf("%s: %v\n%s", v, err, raw)
	}
}
