// Package lock turns a blueprint into a lockfile: it resolves the package
// sets of every requested (arch, image type) against the repositories and
// writes the pipelines that build them.
package lock

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
	"github.com/image-builder-action/image-builder-action/pkg/depsolve"
	"github.com/image-builder-action/image-builder-action/pkg/distro"
	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/pkg/repo"
	"github.com/image-builder-action/image-builder-action/pkg/version"
)

// Fetcher gives the verified package indices of sources for one
// architecture (plus "all").
type Fetcher interface {
	Fetch(ctx context.Context, srcs []repo.Source, arch string) (*repo.Index, error)
}

type options struct {
	distro      string
	arches      []string
	types       []string
	sources     []repo.Source
	hostRoot    string
	fetcher     Fetcher
	defs        *distro.Defs
	lockDir     string
	toolVersion string
	idSeed      string
	newIDs      bool
	previous    string
	warn        func(string)
	httpClient  *http.Client
	// offline leaves out what lock would fetch (Precheck).
	offline bool
}

// Option configures Lock.
type Option func(*options) error

// WithDistro overrides the blueprint's distro.
func WithDistro(name string) Option {
	return func(o *options) error { o.distro = name; return nil }
}

// WithArches selects the architectures (default: the host's).
func WithArches(arches ...string) Option {
	return func(o *options) error { o.arches = arches; return nil }
}

// WithTypes selects the image types (default: qcow2).
func WithTypes(types ...string) Option {
	return func(o *options) error { o.types = types; return nil }
}

// WithSources replaces the repositories inferred from the host.
func WithSources(srcs ...repo.Source) Option {
	return func(o *options) error { o.sources = srcs; return nil }
}

// WithHostRoot reads the host's apt sources below root instead of "/".
func WithHostRoot(root string) Option {
	return func(o *options) error { o.hostRoot = root; return nil }
}

// WithFetcher sets how repository metadata is fetched.
func WithFetcher(f Fetcher) Option {
	return func(o *options) error { o.fetcher = f; return nil }
}

// WithDefs uses these image definitions instead of the embedded ones.
func WithDefs(d *distro.Defs) Option {
	return func(o *options) error { o.defs = d; return nil }
}

// WithLockDir is the directory the lockfile will be written to; the
// blueprint's path is recorded relative to it.
func WithLockDir(dir string) Option {
	return func(o *options) error { o.lockDir = dir; return nil }
}

// WithToolVersion overrides the tool version recorded in the lockfile
// (tests use it to keep golden files stable).
func WithToolVersion(v string) Option {
	return func(o *options) error { o.toolVersion = v; return nil }
}

// WithIDSeed sets the seed the images' identifiers derive from (hex, at
// least 128 bits), as a lockfile's id_seed holds it.
func WithIDSeed(seed string) Option {
	return func(o *options) error {
		if !isIDSeed(seed) {
			return fmt.Errorf("id seed %q: want at least 32 lower-case hex digits", seed)
		}
		o.idSeed = seed
		return nil
	}
}

// WithPrevious keeps the id_seed of the lockfile at path, when there is
// one: locking again then leaves the identifiers as they were.
func WithPrevious(path string) Option {
	return func(o *options) error { o.previous = path; return nil }
}

// WithNewIDs draws a new random id seed, so every identifier changes (for
// images that must not share file system UUIDs with earlier ones).
func WithNewIDs() Option {
	return func(o *options) error { o.newIDs = true; return nil }
}

// WithWarn receives what lock honours but the user should know about (a
// plaintext password in the blueprint); a library stays silent without it.
func WithWarn(f func(msg string)) Option {
	return func(o *options) error { o.warn = f; return nil }
}

// WithHTTPClient fetches what a blueprint names by URL (repository keys,
// files' uri) with c instead of http.DefaultClient.
func WithHTTPClient(c *http.Client) Option {
	return func(o *options) error { o.httpClient = c; return nil }
}

// HostArch is the image-definition name of the machine's architecture.
func HostArch() string { return hostArch }

// BlueprintDigest is the digest a lockfile records for a blueprint: the
// sha256 of its decoded content in canonical JSON, so comments and
// formatting do not make a lockfile stale.
func BlueprintDigest(bp *blueprint.Blueprint) (string, error) {
	b, err := json.Marshal(bp)
	if err != nil {
		return "", fmt.Errorf("digesting blueprint: %w", err)
	}
	// Round-trip through a generic value: map keys come out sorted.
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return "", err
	}
	if b, err = json.Marshal(v); err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// newOptions applies opts over the defaults every resolution needs: the
// image definitions (loaded when not given) and a repository fetcher.
func newOptions(opts []Option) (options, error) {
	o := options{}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return o, err
		}
	}
	if o.defs == nil {
		d, err := distro.Load()
		if err != nil {
			return o, err
		}
		o.defs = d
	}
	if o.fetcher == nil {
		return o, errors.New("lock: no repository fetcher")
	}
	return o, nil
}

// distroSources is where d's packages come from: the sources
// WithSources set, or else the host's apt sources mapped onto d's suites.
func (o *options) distroSources(d *distro.Distro) ([]repo.Source, error) {
	if len(o.sources) > 0 {
		return o.sources, nil
	}
	root := o.hostRoot
	if root == "" {
		root = "/"
	}
	host, err := repo.HostSources(root)
	if err != nil {
		return nil, fmt.Errorf("reading the host's apt sources: %w", err)
	}
	return DistroSources(d, host)
}

// Lock resolves bp into a lockfile. bpPath is where the blueprint was read
// from (recorded relative to the lockfile's directory).
func Lock(ctx context.Context, bp *blueprint.Blueprint, bpPath string, opts ...Option) (*manifest.Lockfile, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	if o.toolVersion == "" {
		o.toolVersion = version.Tool()
	}

	distroName := o.distro
	if distroName == "" {
		distroName = bp.Distro
	}
	if distroName == "" {
		return nil, fmt.Errorf("%s: no distro: set distro in the blueprint or pass --distro (known: %s)", bpPath, strings.Join(o.defs.DistroNames(), ", "))
	}
	d, err := o.defs.Distro(distroName)
	if err != nil {
		return nil, err
	}
	arches := o.arches
	if len(arches) == 0 {
		if bp.Architecture != "" {
			arches = []string{bp.Architecture}
		} else {
			arches = []string{HostArch()}
		}
	}
	types := o.types
	if len(types) == 0 {
		types = []string{"qcow2"}
	}
	arches, types = uniqSorted(arches), uniqSorted(types)

	cust, _, err := customizationsWith(ctx, bp, d, &o)
	if err != nil {
		return nil, err
	}
	srcs, err := o.distroSources(d)
	if err != nil {
		return nil, err
	}
	distroSrcs := srcs
	bpSrcs, err := blueprintSources(ctx, bp, d, &o)
	if err != nil {
		return nil, err
	}
	srcs = append(srcs, bpSrcs...)

	bpDigest, err := BlueprintDigest(bp)
	if err != nil {
		return nil, err
	}
	rel := bpPath
	if o.lockDir != "" && bpPath != "" {
		if r, err := filepath.Rel(o.lockDir, bpPath); err == nil {
			rel = r
		}
	}
	seed, err := o.seed(bp)
	if err != nil {
		return nil, err
	}
	lf := &manifest.Lockfile{
		Version:   manifest.FormatVersion,
		Tool:      o.toolVersion,
		Blueprint: manifest.Input{Path: filepath.ToSlash(rel), SHA256: bpDigest},
		ImageDefs: manifest.Input{SHA256: o.defs.Digest},
		IDSeed:    seed,
	}

	pkgs := map[string]manifest.Package{}
	repos := map[string]*manifest.Repository{}
	var epoch time.Time
	var recordRepo func(r repo.Release, arch string)
	// Every (arch, type) is checked before anything is fetched.
	for _, archName := range arches {
		if _, err := d.Arch(archName); err != nil {
			return nil, err
		}
		for _, typName := range types {
			t, err := o.defs.Type(typName)
			if err != nil {
				return nil, err
			}
			if !contains(t.Arches, archName) {
				return nil, fmt.Errorf("image type %s cannot be made for %s (it is made for %s)", typName, archName, strings.Join(t.Arches, ", "))
			}
		}
	}
	recordRepo = func(r repo.Release, arch string) {
		key := r.Source.URI + " " + r.Source.Suite
		mr := repos[key]
		if mr == nil {
			mr = &manifest.Repository{URI: r.Source.URI, Suite: r.Source.Suite, Components: r.Source.Components,
				InReleaseSHA256: r.SHA256, Date: r.Date.UTC().Format(time.RFC3339), Keys: r.Keys}
			repos[key] = mr
		}
		if !contains(mr.Arches, arch) {
			mr.Arches = append(mr.Arches, arch)
			sort.Strings(mr.Arches)
		}
	}
	// btrfsResolvers resolve the build root btrfs volumes are made with
	// when the distro's own mkfs.btrfs cannot (build.btrfs_tools): the
	// other release's suites on the distro's mirrors. Its repositories are
	// recorded, but their dates do not move the source epoch: the image
	// is the distro's, and its trees stay those of the distro's other
	// images.
	btrfsResolvers := map[string]*archResolver{}
	btrfsResolverFor := func(a *distro.Arch) (*archResolver, error) {
		if r, ok := btrfsResolvers[a.Name]; ok {
			return r, nil
		}
		field := layoutField(bp.Customizations)
		td, err := o.defs.Distro(d.Build.BtrfsTools)
		if err != nil {
			return nil, err
		}
		ta, err := td.Arch(a.Name)
		if err != nil {
			return nil, bp.Errorf(field, "btrfs volumes of %s are made with %s's mkfs.btrfs: %v", d.Name, td.Name, err)
		}
		tsrcs, err := DistroSources(td, distroSrcs)
		if err != nil {
			return nil, bp.Errorf(field, "btrfs volumes of %s are made with %s's mkfs.btrfs: %v", d.Name, td.Name, err)
		}
		idx, err := o.fetcher.Fetch(ctx, tsrcs, ta.Dpkg)
		if err != nil {
			return nil, bp.Errorf(field, "btrfs volumes of %s are made with %s's mkfs.btrfs, whose repositories could not be read: %v", d.Name, td.Name, err)
		}
		for _, r := range idx.Releases {
			recordRepo(r, ta.Dpkg)
		}
		r := &archResolver{arch: ta, universe: depsolve.NewPinnedUniverse(idx.Packages, ta.Dpkg, nil), memo: map[string][]manifest.Package{}, all: pkgs}
		btrfsResolvers[a.Name] = r
		return r, nil
	}
	// resolvers resolve package sets per architecture: the entries' own,
	// and the hosts' that build roots are locked for (build.cross_hosts).
	resolvers := map[string]*archResolver{}
	resolverFor := func(a *distro.Arch) (*archResolver, error) {
		if r, ok := resolvers[a.Name]; ok {
			return r, nil
		}
		idx, err := o.fetcher.Fetch(ctx, srcs, a.Dpkg)
		if err != nil {
			return nil, err
		}
		for _, r := range idx.Releases {
			recordRepo(r, a.Dpkg)
			if r.Date.After(epoch) {
				epoch = r.Date
			}
		}
		// A blueprint repository's priority pins its packages as the apt
		// preferences written into the image do, so lock picks what apt
		// on the machine would.
		pins := repoPins(bp)
		var pin func(*repo.Package) int
		if len(pins) > 0 {
			pin = func(p *repo.Package) int {
				if p.Origin >= 0 && p.Origin < len(idx.Releases) {
					if v, ok := pins[strings.TrimRight(idx.Releases[p.Origin].Source.URI, "/")]; ok {
						return v
					}
				}
				return 500
			}
		}
		r := &archResolver{arch: a, universe: depsolve.NewPinnedUniverse(idx.Packages, a.Dpkg, pin), memo: map[string][]manifest.Package{}, all: pkgs}
		resolvers[a.Name] = r
		return r, nil
	}
	for _, archName := range arches {
		a, err := d.Arch(archName)
		if err != nil {
			return nil, err
		}
		res, err := resolverFor(a)
		if err != nil {
			return nil, err
		}
		extraPkgs, err := resolveRequests(bp, res.universe, cust)
		if err != nil {
			return nil, err
		}
		var plans []*entryPlan
		for _, typName := range types {
			t, _ := o.defs.Type(typName)
			plans = append(plans, newPlan(d, a, t, cust, extraPkgs, seed))
		}
		// A btrfs build root of another release first: what it cannot
		// read is refused before anything else is resolved.
		for _, p := range plans {
			if len(p.btrfsToolPackages) == 0 {
				continue
			}
			tres, err := btrfsResolverFor(a)
			if err != nil {
				return nil, err
			}
			if p.btrfsBase, err = tres.solve(ctx, nil); err != nil {
				return nil, fmt.Errorf("resolving the essential packages of %s/%s's btrfs build root: %w", archName, p.typ.Name, err)
			}
			if p.btrfsPkgs, err = tres.solve(ctx, p.btrfsToolPackages); err != nil {
				return nil, fmt.Errorf("resolving the btrfs build root of %s/%s: %w", archName, p.typ.Name, err)
			}
		}
		// What every solution starts from, installed first by both the
		// build root and the os tree.
		base, err := res.solve(ctx, nil)
		if err != nil {
			return nil, fmt.Errorf("resolving the essential packages of %s: %w", archName, err)
		}
		for _, p := range plans {
			buildPkgs, err := res.solve(ctx, p.buildPackages)
			if err != nil {
				return nil, fmt.Errorf("resolving the build root of %s/%s: %w", archName, p.typ.Name, err)
			}
			osPkgs, err := res.solve(ctx, p.osPackages)
			if err != nil {
				return nil, fmt.Errorf("resolving the packages of %s/%s: %w", archName, p.typ.Name, err)
			}
			var liveSysPkgs []manifest.Package
			if len(p.installerPackages) > 0 {
				if liveSysPkgs, err = res.solve(ctx, p.installerPackages); err != nil {
					return nil, fmt.Errorf("resolving the installer's packages of %s/%s: %w", archName, p.typ.Name, err)
				}
			}
			var isoBuildPkgs []manifest.Package
			if len(p.isoBuildPackages) > 0 {
				if isoBuildPkgs, err = res.solve(ctx, p.isoBuildPackages); err != nil {
					return nil, fmt.Errorf("resolving the ISO build root of %s/%s: %w", archName, p.typ.Name, err)
				}
			}
			pipes, err := p.pipelines(base, buildPkgs, osPkgs, liveSysPkgs, isoBuildPkgs)
			if err != nil {
				return nil, fmt.Errorf("%s/%s: %w", archName, p.typ.Name, err)
			}
			// Build roots for other hosts: after the one they stand in for.
			var cross []manifest.Pipeline
			for _, h := range d.Build.CrossHosts {
				if h == archName || !p.usesBuildRoot(pipes) {
					continue
				}
				ha, err := d.Arch(h)
				if err != nil {
					return nil, err
				}
				hres, err := resolverFor(ha)
				if err != nil {
					return nil, err
				}
				hbase, err := hres.solve(ctx, nil)
				if err != nil {
					return nil, fmt.Errorf("resolving the essential packages of %s: %w", h, err)
				}
				hpkgs, err := hres.solve(ctx, p.buildPackages)
				if err != nil {
					return nil, fmt.Errorf("resolving the %s build root of %s/%s: %w", h, archName, p.typ.Name, err)
				}
				cross = append(cross, p.crossBuildPipeline(h, hbase, hpkgs))
			}
			pipes = append(pipes[:1], append(cross, pipes[1:]...)...)
			e := manifest.Entry{Distro: d.Name, Arch: archName, Type: p.typ.Name, Filename: p.typ.Filename, Pipelines: pipes}
			if err := validateEntry(bp, &e, p.origins); err != nil {
				return nil, err
			}
			lf.Entries = append(lf.Entries, e)
		}
	}
	lf.SourceDateEpoch = epoch.Unix()
	for _, r := range repos {
		lf.Repositories = append(lf.Repositories, *r)
	}
	sort.Slice(lf.Repositories, func(i, j int) bool {
		a, b := lf.Repositories[i], lf.Repositories[j]
		if a.URI != b.URI {
			return a.URI < b.URI
		}
		return a.Suite < b.Suite
	})
	for _, p := range pkgs {
		lf.Packages = append(lf.Packages, p)
	}
	lf.Normalize()
	if err := lf.Validate(); err != nil {
		return nil, fmt.Errorf("generated lockfile is invalid: %w", err)
	}
	return lf, nil
}

// archResolver resolves package sets for one architecture, each set once;
// every package it pins goes into all.
type archResolver struct {
	arch     *distro.Arch
	universe *depsolve.Universe
	memo     map[string][]manifest.Package
	all      map[string]manifest.Package
}

func (r *archResolver) solve(ctx context.Context, install []string) ([]manifest.Package, error) {
	key := strings.Join(install, "\x00")
	if out, ok := r.memo[key]; ok {
		return out, nil
	}
	sol, err := r.universe.Solve(ctx, depsolve.Request{Arch: r.arch.Dpkg, Install: install})
	if err != nil {
		return nil, err
	}
	out := make([]manifest.Package, 0, len(sol.Packages))
	for _, p := range sol.Packages {
		mp := manifest.Package{Name: p.Name, Version: p.Version, Arch: p.Architecture, URL: p.URL, SHA256: p.SHA256, Size: p.Size}
		out = append(out, mp)
		r.all[mp.Ref()] = mp
	}
	r.memo[key] = out
	return out, nil
}

func newPlan(d *distro.Distro, a *distro.Arch, t *distro.ImageType, c customizations, extra []string, seed string) *entryPlan {
	p := &entryPlan{distro: d, arch: a, typ: t, cust: c, seed: seed + "/" + d.Name + "/" + a.Name}
	p.buildPackages = uniqSorted(d.Build.Packages)
	if len(t.BuildPackages) > 0 {
		withTools := uniqSorted(append(append([]string(nil), d.Build.Packages...), t.BuildPackages...))
		if t.ISO != nil && t.ISO.Kind == "installer" {
			// The disk is made with the raw type's build root, so it
			// is raw's to the byte and from the same cache entries;
			// the ISO's tools come in a build root of their own.
			p.isoBuildPackages = withTools
		} else {
			p.buildPackages = withTools
		}
	}
	var os []string
	switch t.Platform {
	case "container":
		os = append(os, d.Container.Packages...)
	default:
		os = append(os, d.OS.Packages...)
	}
	if t.Bootable {
		kernel := a.Kernel[t.Kernel]
		if c.kernelName != "" {
			kernel = c.kernelName
		}
		os = append(os, kernel)
		if t.ISO == nil || t.ISO.Kind != "live" {
			os = append(os, a.Bootloader...)
		}
		os = append(os, d.Initramfs.Packages...)
	}
	if iso := t.ISO; iso != nil {
		switch iso.Kind {
		case "live":
			// The os tree is the live system: GRUB comes from the build
			// root, onto the ISO.
			os = append(os, iso.Packages...)
		case "installer":
			// The installer's own small tree, with the generic kernel
			// whatever the blueprint installs.
			inst := append([]string{a.Kernel["generic"]}, d.Initramfs.Packages...)
			p.installerPackages = uniqSorted(append(inst, iso.Packages...))
		}
	}
	os = append(os, t.Packages...)
	os = append(os, extra...)
	if t.Bootable {
		// The layout's tools: the build root makes the file systems, the
		// image activates and mounts them. An error comes back from
		// pipelines. The image needs nothing to mount xfs, which checks
		// itself when mounted; a blueprint adds xfsprogs to grow one.
		if tbl, err := p.diskTable(); err == nil {
			f := tbl.Features()
			if f.XFS {
				p.buildPackages = uniqSorted(append(p.buildPackages, "xfsprogs", "libfaketime"))
			}
			// LVM metadata is written by the lvm2 stage itself; the image
			// needs lvm2 to activate the volume group (its initramfs hook
			// and udev rules).
			if f.LVM {
				os = append(os, "lvm2")
			}
			if f.Btrfs {
				tools := []string{"btrfs-progs", "libfaketime", "util-linux"}
				if d.Build.BtrfsTools != "" && !d.Build.BtrfsSubvolumes {
					p.btrfsToolPackages = tools
				} else {
					p.buildPackages = uniqSorted(append(p.buildPackages, tools...))
				}
				os = append(os, "btrfs-progs")
			}
		}
	}
	p.osPackages = uniqSorted(os)
	return p
}

func uniqSorted(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// DistroSources maps the host's apt sources onto the distro's suites: for
// each suite, the first host source serving a suite of the same kind (the
// release, -updates, -security) gives the mirror, as composer-cli infers
// repositories from the host. The release suite must be found.
func DistroSources(d *distro.Distro, host []repo.Source) ([]repo.Source, error) {
	var out []repo.Source
	for _, s := range d.Suites {
		found := false
		for _, h := range host {
			if suiteKind(h.Suite) != s.Kind {
				continue
			}
			src := repo.Source{URI: h.URI, Suite: s.Name, Components: d.Components, SignedBy: d.Keyring}
			out = append(out, src)
			found = true
			break
		}
		if !found && s.Kind == "" {
			return nil, fmt.Errorf("no apt source on this host serves a %s release suite to take the mirror from: pass repositories with --repo \"URI SUITE COMPONENT…\"", d.Name)
		}
	}
	return out, nil
}

// suiteKind is "" for a release suite (bookworm), else its suffix from the
// first dash (bookworm-updates -> "-updates").
func suiteKind(suite string) string {
	if i := strings.IndexByte(suite, '-'); i >= 0 {
		return suite[i:]
	}
	return ""
}
