package publish

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/image-builder-action/image-builder-action/pkg/layout"
	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/pkg/provenance"
	"github.com/image-builder-action/image-builder-action/pkg/sbom"
	"github.com/image-builder-action/image-builder-action/pkg/version"
)

// Result is what Publish pushed, by digest.
type Result struct {
	// Repository is where the artifacts are.
	Repository string `json:"repository"`
	// Mode is how signatures were attached ("referrers" or "tags"); empty
	// when nothing was signed.
	Mode Mode `json:"attach,omitempty"`
	// Images are the indexes, one per image type.
	Images []Image `json:"images"`
	// ContainerDisk is the KubeVirt containerDisk, when asked for.
	ContainerDisk *Image `json:"containerdisk,omitempty"`
}

// Image is an index across architectures.
type Image struct {
	Type         string       `json:"type"`
	ArtifactType string       `json:"artifactType,omitempty"`
	Digest       string       `json:"digest"`
	Ref          string       `json:"ref"`
	Tags         []string     `json:"tags,omitempty"`
	Attachments  []Attachment `json:"attachments,omitempty"`
	Artifacts    []Artifact   `json:"artifacts"`
}

// Artifact is the manifest of one (arch, type).
type Artifact struct {
	Arch        string       `json:"arch"`
	Platform    string       `json:"platform"`
	File        string       `json:"file"`
	Size        int64        `json:"size"`
	SHA256      string       `json:"sha256"`
	Digest      string       `json:"digest"`
	Ref         string       `json:"ref"`
	Attachments []Attachment `json:"attachments,omitempty"`
}

// Attachment is a signature or attestation and where it is: a referrer
// (repo@digest) or cosign's tag (repo:sha256-HEX.sig / .att).
type Attachment struct {
	Kind string `json:"kind"`
	Ref  string `json:"ref"`
}

// Event reports progress; the library prints nothing itself.
type Event struct {
	// Kind is "hash", "push", "sign" or "tag".
	Kind     string
	What     string
	Ref      string
	Bytes    int64
	Duration time.Duration
}

// Option configures Publish.
type Option func(*options) error

type options struct {
	arches, types        []string
	tags                 []string
	lockPath, lockDigest string
	signer               *Signer
	mode                 Mode
	containerDisk        string
	keychain             authn.Keychain
	transport            http.RoundTripper
	insecure             bool
	source, revision     string
	version              string
	name                 string
	getenv               func(string) string
	events               func(Event)
	now                  func() time.Time
	remoteOpts           []remote.Option
}

// WithArches publishes only the entries of these architectures.
func WithArches(arches ...string) Option {
	return func(o *options) error { o.arches = append(o.arches, arches...); return nil }
}

// WithTypes publishes only the entries of these image types.
func WithTypes(types ...string) Option {
	return func(o *options) error { o.types = append(o.types, types...); return nil }
}

// WithTags adds tags to each image type's index (besides the reference's
// own tag). When several image types are published, each tag T becomes
// T-TYPE.
func WithTags(tags ...string) Option {
	return func(o *options) error {
		for _, t := range tags {
			if _, err := name.NewTag("example.invalid/x:"+t, name.StrictValidation); err != nil {
				return fmt.Errorf("tag %q: %w", t, err)
			}
		}
		o.tags = append(o.tags, tags...)
		return nil
	}
}

// WithLockfile names the lockfile's path (as recorded in the provenance)
// and the sha256 (hex) of its bytes. Default: "lockfile.json" and the
// digest of the canonical serialisation.
func WithLockfile(path, sha256Hex string) Option {
	return func(o *options) error {
		if len(sha256Hex) != 64 {
			return fmt.Errorf("lockfile digest %q is not a sha256 hex digest", sha256Hex)
		}
		if _, err := hex.DecodeString(sha256Hex); err != nil {
			return fmt.Errorf("lockfile digest %q is not a sha256 hex digest", sha256Hex)
		}
		o.lockPath, o.lockDigest = path, sha256Hex
		return nil
	}
}

// WithSigner signs every manifest and index and attaches the SBOM and
// provenance. Without it nothing is signed or attested.
func WithSigner(s *Signer) Option {
	return func(o *options) error { o.signer = s; return nil }
}

// WithMode chooses how signatures are attached (default ModeAuto).
func WithMode(m Mode) Option {
	return func(o *options) error {
		switch m {
		case ModeAuto, ModeReferrers, ModeTags:
			o.mode = m
			return nil
		}
		return fmt.Errorf("attach mode %q: want auto, referrers or tags", m)
	}
}

// WithContainerDisk also publishes the qcow2 entries as a KubeVirt
// containerDisk to ref (repository, optionally with a tag; the tags of
// WithTags apply too).
func WithContainerDisk(ref string) Option {
	return func(o *options) error { o.containerDisk = ref; return nil }
}

// WithKeychain sets where registry credentials come from (default
// authn.DefaultKeychain: docker's config.json).
func WithKeychain(kc authn.Keychain) Option {
	return func(o *options) error { o.keychain = kc; return nil }
}

// WithTransport sets the HTTP transport (default remote.DefaultTransport).
func WithTransport(rt http.RoundTripper) Option {
	return func(o *options) error { o.transport = rt; return nil }
}

// WithInsecure allows plain HTTP to any registry (loopback and private
// addresses use it anyway).
func WithInsecure(insecure bool) Option {
	return func(o *options) error { o.insecure = insecure; return nil }
}

// WithSource sets the org.opencontainers.image.source and .revision
// annotations (default: from the GitHub Actions environment).
func WithSource(source, revision string) Option {
	return func(o *options) error { o.source, o.revision = source, revision; return nil }
}

// WithVersion sets the org.opencontainers.image.version annotation.
func WithVersion(v string) Option {
	return func(o *options) error { o.version = v; return nil }
}

// WithName names the image in the SBOM and the containerDisk's file
// (disk/NAME.qcow2). Default: the repository's last path element.
func WithName(n string) Option {
	return func(o *options) error {
		if n == "" || strings.ContainsAny(n, "/\\") || n == "." || n == ".." {
			return fmt.Errorf("image name %q: want a plain file name", n)
		}
		o.name = n
		return nil
	}
}

// WithGetenv sets how the environment is read (default os.Getenv).
func WithGetenv(getenv func(string) string) Option {
	return func(o *options) error { o.getenv = getenv; return nil }
}

// WithEvents receives progress events.
func WithEvents(f func(Event)) Option {
	return func(o *options) error { o.events = f; return nil }
}

// WithRemoteOptions adds go-containerregistry remote options (retries,
// jobs, user agent) to every registry call.
func WithRemoteOptions(ro ...remote.Option) Option {
	return func(o *options) error { o.remoteOpts = append(o.remoteOpts, ro...); return nil }
}

func (o *options) emit(e Event) {
	if o.events != nil {
		o.events(e)
	}
}

// planned is one entry to publish and its file.
type planned struct {
	entry *manifest.Entry
	path  string
	layer *fileLayer
	// set while pushing
	raw    []byte
	digest v1.Hash
	// set for the containerDisk
	cdLayer  *diskTarLayer
	cdRaw    []byte
	cdDigest v1.Hash
}

// Publish pushes the built outputs of lf found in dir to ref (a repository,
// optionally with a tag) and returns what it pushed.
//
// An entry's file is the first of DIR/ARCH/TYPE/FILENAME, DIR/ARCH/FILENAME
// and DIR/FILENAME that exists; the last only counts when no other selected
// entry has the same file name. With WithArches or WithTypes, every entry
// selected must have its file; otherwise the entries without one are left
// out, and at least one must have it.
func Publish(ctx context.Context, lf *manifest.Lockfile, dir, ref string, opts ...Option) (*Result, error) {
	o := &options{mode: ModeAuto, getenv: os.Getenv, keychain: authn.DefaultKeychain, now: time.Now, lockPath: "lockfile.json"}
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, fmt.Errorf("publishing: %w", err)
		}
	}
	var nopts []name.Option
	if o.insecure {
		nopts = append(nopts, name.Insecure)
	}
	repo, refTag, err := parseRef(ref, nopts)
	if err != nil {
		return nil, err
	}
	tags := dedupe(append(nonEmpty(refTag), o.tags...))
	if o.name == "" {
		o.name = path.Base(repo.RepositoryStr())
	}
	if o.lockDigest == "" {
		b, err := lf.Marshal()
		if err != nil {
			return nil, fmt.Errorf("publishing: %w", err)
		}
		sum := sha256.Sum256(b)
		o.lockDigest = hex.EncodeToString(sum[:])
	}
	if o.source == "" {
		if gh := provenance.GitHubFromEnv(o.getenv); gh != nil {
			o.source, o.revision = gh.Server+"/"+gh.Repository, gh.SHA
		}
	}
	var cdRepo name.Repository
	var cdTags []string
	if o.containerDisk != "" {
		r, t, err := parseRef(o.containerDisk, nopts)
		if err != nil {
			return nil, fmt.Errorf("--containerdisk: %w", err)
		}
		cdRepo, cdTags = r, dedupe(append(nonEmpty(t), o.tags...))
	}
	plan, err := selectEntries(lf, dir, o)
	if err != nil {
		return nil, err
	}
	if o.containerDisk != "" && !hasType(plan, "qcow2") {
		return nil, fmt.Errorf("publishing a containerDisk needs a built qcow2 image; found only %s in %s", describe(plan), dir)
	}
	created := time.Unix(lf.SourceDateEpoch, 0).UTC()
	// Hash every file before the first request: a missing or unreadable
	// file fails here, with nothing pushed.
	if err := hashFiles(ctx, plan, o, created); err != nil {
		return nil, err
	}
	ropts, err := o.remoteOptions(ctx)
	if err != nil {
		return nil, err
	}

	// 1. Blobs, manifests and indexes, by digest: nothing is tagged yet.
	if err := writeEmptyConfig(repo, ropts); err != nil {
		return nil, err
	}
	var outs []*pushed
	for _, g := range groupByType(plan) {
		out, err := pushType(ctx, repo, g, o, created, ropts)
		if err != nil {
			return nil, err
		}
		outs = append(outs, out)
	}
	var cd *pushed
	if o.containerDisk != "" {
		if cd, err = pushContainerDisk(ctx, cdRepo, plan, o, created, ropts); err != nil {
			return nil, err
		}
	}

	// 2. Signatures and attestations, by digest.
	res := &Result{Repository: repo.Name()}
	if o.signer != nil {
		if err := o.signer.ready(ctx); err != nil {
			return nil, err
		}
		for _, g := range outs {
			if res.Mode, err = signPushed(ctx, lf, repo, g, o, ropts); err != nil {
				return nil, err
			}
		}
		if cd != nil {
			if _, err := signPushed(ctx, lf, cdRepo, cd, o, ropts); err != nil {
				return nil, err
			}
		}
	}

	// 3. Tags, last.
	for _, g := range outs {
		suffix := ""
		if len(outs) > 1 {
			suffix = "-" + g.typ
		}
		if err := tagPushed(repo, g, tags, suffix, o, ropts); err != nil {
			return nil, err
		}
		res.Images = append(res.Images, *g.img)
	}
	if cd != nil {
		if err := tagPushed(cdRepo, cd, cdTags, "", o, ropts); err != nil {
			return nil, err
		}
		res.ContainerDisk = cd.img
	}
	return res, nil
}

// pushed is an index pushed by digest, and what it holds.
type pushed struct {
	typ    string
	plan   []*planned
	raw    []byte
	digest v1.Hash
	img    *Image
	// manifest gives an entry's manifest in this index.
	manifest func(*planned) ([]byte, v1.Hash)
}

func (o *options) remoteOptions(ctx context.Context) ([]remote.Option, error) {
	ropts := append([]remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(o.keychain),
		remote.WithUserAgent("ibuild/" + version.String()),
	}, o.remoteOpts...)
	if o.transport != nil {
		ropts = append(ropts, remote.WithTransport(o.transport))
	}
	// One pusher for every call: registries are pinged and tokens fetched
	// once per repository, not once per blob.
	pusher, err := remote.NewPusher(ropts...)
	if err != nil {
		return nil, fmt.Errorf("publishing: %w", err)
	}
	return append(ropts, remote.Reuse(pusher)), nil
}

// hashFiles computes each file's digest in one pass (and, for a
// containerDisk, its tar's digest in the same pass).
func hashFiles(ctx context.Context, plan []*planned, o *options, created time.Time) error {
	for _, p := range plan {
		start := time.Now()
		var dt *diskTar
		var also []io.Writer
		if o.containerDisk != "" && p.entry.Type == "qcow2" {
			fi, err := os.Stat(p.path)
			if err != nil {
				return fmt.Errorf("publishing %s: %w", p.entry.Name(), err)
			}
			if dt, err = newDiskTar(o.name+".qcow2", fi.Size(), created); err != nil {
				return fmt.Errorf("publishing the containerDisk of %s: %w", p.entry.Name(), err)
			}
			also = append(also, dt.hasher())
		}
		l, err := newFileLayer(ctx, p.path, types.MediaType(LayerMediaType(p.entry.Type)), also...)
		if err != nil {
			return fmt.Errorf("publishing %s: %w", p.entry.Name(), err)
		}
		p.layer = l
		if dt != nil {
			if p.cdLayer, err = dt.layer(l); err != nil {
				return fmt.Errorf("publishing the containerDisk of %s: %w", p.entry.Name(), err)
			}
		}
		o.emit(Event{Kind: "hash", What: p.entry.Name(), Ref: p.path, Bytes: l.size, Duration: time.Since(start)})
	}
	return nil
}

// pushType pushes the artifacts of one image type and their index.
func pushType(ctx context.Context, repo name.Repository, g []*planned, o *options, created time.Time, ropts []remote.Option) (*pushed, error) {
	for _, p := range g {
		start := time.Now()
		if err := remote.WriteLayer(repo, p.layer, ropts...); err != nil {
			return nil, fmt.Errorf("publishing %s: pushing %s to %s: %w", p.entry.Name(), p.path, repo, err)
		}
		var err error
		if p.raw, err = artifactManifest(p, o, created); err != nil {
			return nil, err
		}
		if p.digest, err = putManifest(ctx, repo, p.raw, types.OCIManifestSchema1, ropts); err != nil {
			return nil, fmt.Errorf("publishing %s: %w", p.entry.Name(), err)
		}
		o.emit(Event{Kind: "push", What: p.entry.Name(), Ref: repo.Digest(p.digest.String()).String(), Bytes: p.layer.size, Duration: time.Since(start)})
	}
	typ := g[0].entry.Type
	out := &pushed{typ: typ, plan: g, manifest: func(p *planned) ([]byte, v1.Hash) { return p.raw, p.digest }}
	if err := out.pushIndex(ctx, repo, ArtifactType(typ), o, created, ropts); err != nil {
		return nil, err
	}
	return out, nil
}

// pushIndex pushes the index of out's manifests and fills out.img.
func (out *pushed) pushIndex(ctx context.Context, repo name.Repository, artifactType string, o *options, created time.Time, ropts []remote.Option) error {
	raw, err := typeIndex(out.plan, out.typ, artifactType, o, created, out.manifest)
	if err != nil {
		return err
	}
	d, err := putManifest(ctx, repo, raw, types.OCIImageIndex, ropts)
	if err != nil {
		return fmt.Errorf("publishing the %s index: %w", out.typ, err)
	}
	out.raw, out.digest = raw, d
	out.img = &Image{Type: out.typ, ArtifactType: artifactType, Digest: d.String(), Ref: repo.Digest(d.String()).String()}
	for _, p := range out.plan {
		_, md := out.manifest(p)
		out.img.Artifacts = append(out.img.Artifacts, Artifact{
			Arch: p.entry.Arch, Platform: "linux/" + Platform(p.entry.Arch), File: p.path,
			Size: p.layer.size, SHA256: p.layer.digest.Hex,
			Digest: md.String(), Ref: repo.Digest(md.String()).String(),
		})
	}
	o.emit(Event{Kind: "push", What: out.typ + " index", Ref: out.img.Ref})
	return nil
}

// signPushed signs and attests an index and its manifests, in the mode the
// repository calls for.
func signPushed(ctx context.Context, lf *manifest.Lockfile, repo name.Repository, g *pushed, o *options, ropts []remote.Option) (Mode, error) {
	rt := o.transport
	if rt == nil {
		rt = remote.DefaultTransport
	}
	_, first := g.manifest(g.plan[0])
	mode, err := resolveMode(ctx, o, repo, first, rt)
	if err != nil {
		return "", err
	}
	a := &attacher{signer: o.signer, mode: mode, ropts: ropts, now: o.now}
	return mode, signGroup(ctx, a, lf, repo, g, o)
}

// tagPushed tags an index, each tag with suffix.
func tagPushed(repo name.Repository, g *pushed, tags []string, suffix string, o *options, ropts []remote.Option) error {
	for _, t := range tags {
		tag := repo.Tag(t + suffix)
		if err := remote.Put(tag, rawManifest{g.raw, types.OCIImageIndex}, ropts...); err != nil {
			return fmt.Errorf("tagging the %s index %s as %s: %w", g.typ, g.digest, tag, err)
		}
		g.img.Tags = append(g.img.Tags, tag.String())
		o.emit(Event{Kind: "tag", What: g.typ, Ref: tag.String()})
	}
	return nil
}

func resolveMode(ctx context.Context, o *options, repo name.Repository, d v1.Hash, rt http.RoundTripper) (Mode, error) {
	if o.mode != ModeAuto {
		return o.mode, nil
	}
	ok, err := referrersSupported(ctx, repo, d, o.keychain, rt)
	if err != nil {
		return "", err
	}
	if ok {
		return ModeReferrers, nil
	}
	return ModeTags, nil
}

// signGroup signs and attests every manifest of a group and its index. An
// entry's SBOM and provenance are signed once, with the manifest, the index
// and the file as subjects, and attached to both.
func signGroup(ctx context.Context, a *attacher, lf *manifest.Lockfile, repo name.Repository, g *pushed, o *options) error {
	var all []*signedStatement
	for i, p := range g.plan {
		raw, d := g.manifest(p)
		subjects := []Subject{
			{Name: repo.Name(), Digest: map[string]string{"sha256": d.Hex}},
			{Name: repo.Name(), Digest: map[string]string{"sha256": g.digest.Hex}},
			{Name: p.entry.Filename, Digest: map[string]string{"sha256": p.layer.digest.Hex}},
		}
		doc, err := sbom.New(lf, p.entry, sbom.WithName(o.name), sbom.WithLockfileDigest(o.lockDigest), sbom.WithImageFile(p.entry.Filename, p.layer.digest.Hex))
		if err != nil {
			return err
		}
		prov, err := provenance.New(lf, p.entry, provenance.WithLockfile(o.lockPath, o.lockDigest), provenance.WithGetenv(o.getenv), provenance.WithSource(o.source, o.revision))
		if err != nil {
			return err
		}
		if err := readBack(doc, prov); err != nil {
			return fmt.Errorf("publishing %s: %w", p.entry.Name(), err)
		}
		start := time.Now()
		sb, err := a.signer.signStatement(ctx, "sbom", Statement{Type: InTotoStatementType, Subject: subjects, PredicateType: sbom.PredicateType, Predicate: doc})
		if err != nil {
			return err
		}
		pv, err := a.signer.signStatement(ctx, "provenance", Statement{Type: InTotoStatementType, Subject: subjects, PredicateType: provenance.PredicateType, Predicate: prov})
		if err != nil {
			return err
		}
		desc := v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: d, Size: int64(len(raw))}
		att, err := a.attach(ctx, repo.Digest(d.String()), desc, []*signedStatement{sb, pv})
		if err != nil {
			return err
		}
		g.img.Artifacts[i].Attachments = att
		all = append(all, sb, pv)
		o.emit(Event{Kind: "sign", What: p.entry.Name(), Ref: repo.Digest(d.String()).String(), Duration: time.Since(start)})
	}
	start := time.Now()
	desc := v1.Descriptor{MediaType: types.OCIImageIndex, Digest: g.digest, Size: int64(len(g.raw))}
	att, err := a.attach(ctx, repo.Digest(g.digest.String()), desc, all)
	if err != nil {
		return err
	}
	g.img.Attachments = att
	o.emit(Event{Kind: "sign", What: g.typ + " index", Ref: g.img.Ref, Duration: time.Since(start)})
	return nil
}

// readBack reads the SBOM and the provenance back with their own
// libraries (SPDX's, in-toto's) before they are signed: what is signed must
// be what a consumer of the attestations can read and validate.
func readBack(doc *sbom.Document, prov *provenance.Provenance) error {
	b, err := sbom.Marshal(doc)
	if err != nil {
		return err
	}
	if _, err := sbom.Parse(b); err != nil {
		return err
	}
	if b, err = prov.MarshalJSON(); err != nil {
		return err
	}
	_, err = provenance.Parse(b)
	return err
}

// parseRef splits a reference into repository and tag ("" when none was
// written); a digest reference is refused.
func parseRef(s string, nopts []name.Option) (name.Repository, string, error) {
	if _, err := name.NewDigest(s, nopts...); err == nil {
		return name.Repository{}, "", fmt.Errorf("reference %q names a digest: give a repository, optionally with a tag", s)
	}
	if t, err := name.NewTag(s, append(nopts, name.StrictValidation)...); err == nil {
		return t.Context(), t.TagStr(), nil
	}
	r, err := name.NewRepository(s, nopts...)
	if err != nil {
		return name.Repository{}, "", fmt.Errorf("reference %q: %w", s, err)
	}
	return r, "", nil
}

// selectEntries finds the entries to publish and their files.
func selectEntries(lf *manifest.Lockfile, dir string, o *options) ([]*planned, error) {
	named := len(o.arches) > 0 || len(o.types) > 0
	var sel []*manifest.Entry
	for i := range lf.Entries {
		e := &lf.Entries[i]
		if (len(o.arches) == 0 || contains(o.arches, e.Arch)) && (len(o.types) == 0 || contains(o.types, e.Type)) {
			sel = append(sel, e)
		}
	}
	if len(sel) == 0 {
		var names []string
		for i := range lf.Entries {
			names = append(names, lf.Entries[i].Name())
		}
		return nil, fmt.Errorf("no entry of the lockfile matches --arch %s --type %s (it has %s)", strings.Join(o.arches, ","), strings.Join(o.types, ","), strings.Join(names, ", "))
	}
	byName := map[string]int{}
	for _, e := range sel {
		byName[e.Filename]++
	}
	var plan []*planned
	var missing []string
	for _, e := range sel {
		found, cands, err := layout.Find(dir, e, byName[e.Filename] == 1)
		if err != nil {
			return nil, fmt.Errorf("publishing %s: %w", e.Name(), err)
		}
		if found == "" {
			missing = append(missing, fmt.Sprintf("%s (looked for %s)", e.Name(), strings.Join(cands, ", ")))
			continue
		}
		plan = append(plan, &planned{entry: e, path: found})
	}
	if len(missing) > 0 && (named || len(plan) == 0) {
		return nil, fmt.Errorf("publishing: no built file for %s: run `ibuild build` first, with -o %s", strings.Join(missing, "; "), dir)
	}
	return plan, nil
}

func groupByType(plan []*planned) [][]*planned {
	m := map[string][]*planned{}
	for _, p := range plan {
		m[p.entry.Type] = append(m[p.entry.Type], p)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out [][]*planned
	for _, k := range keys {
		g := m[k]
		sort.Slice(g, func(i, j int) bool { return g[i].entry.Arch < g[j].entry.Arch })
		out = append(out, g)
	}
	return out
}

func (o *options) annotations(created time.Time) map[string]string {
	a := map[string]string{
		ocispec.AnnotationCreated: created.Format(time.RFC3339),
		AnnotationLockfileDigest:  "sha256:" + o.lockDigest,
	}
	if o.source != "" {
		a[ocispec.AnnotationSource] = o.source
	}
	if o.revision != "" {
		a[ocispec.AnnotationRevision] = o.revision
	}
	if o.version != "" {
		a[ocispec.AnnotationVersion] = o.version
	}
	return a
}

// artifactManifest is the OCI 1.1 artifact manifest of one entry.
func artifactManifest(p *planned, o *options, created time.Time) ([]byte, error) {
	ann := o.annotations(created)
	ann[AnnotationDistro] = p.entry.Distro
	ann[AnnotationArch] = p.entry.Arch
	ann[AnnotationType] = p.entry.Type
	m := ocispec.Manifest{
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: ArtifactType(p.entry.Type),
		Config:       emptyConfigDescriptor(),
		Layers: []ocispec.Descriptor{{
			MediaType:   LayerMediaType(p.entry.Type),
			Digest:      toDigest(p.layer.digest),
			Size:        p.layer.size,
			Annotations: map[string]string{ocispec.AnnotationTitle: p.entry.Filename},
		}},
		Annotations: ann,
	}
	m.SchemaVersion = 2
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encoding the manifest of %s: %w", p.entry.Name(), err)
	}
	return b, nil
}

// typeIndex is the index of a group, one descriptor per architecture.
func typeIndex(g []*planned, typ, at string, o *options, created time.Time, get func(*planned) ([]byte, v1.Hash)) ([]byte, error) {
	ann := o.annotations(created)
	ann[AnnotationType] = typ
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, ArtifactType: at, Annotations: ann}
	idx.SchemaVersion = 2
	for _, p := range g {
		raw, d := get(p)
		idx.Manifests = append(idx.Manifests, ocispec.Descriptor{
			MediaType:    ocispec.MediaTypeImageManifest,
			ArtifactType: at,
			Digest:       toDigest(d),
			Size:         int64(len(raw)),
			Platform:     &ocispec.Platform{OS: "linux", Architecture: Platform(p.entry.Arch)},
		})
	}
	b, err := json.Marshal(idx)
	if err != nil {
		return nil, fmt.Errorf("encoding the %s index: %w", typ, err)
	}
	return b, nil
}

func hasType(plan []*planned, t string) bool {
	for _, p := range plan {
		if p.entry.Type == t {
			return true
		}
	}
	return false
}

func describe(plan []*planned) string {
	var s []string
	for _, p := range plan {
		s = append(s, p.entry.Name())
	}
	return strings.Join(s, ", ")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
