// Package changelog adds to a lockfile diff what a reviewer reads about an
// upgrade: the Debian changelog entries between the two versions, taken
// from the new version's .deb (downloaded and verified by sha256 the way a
// build does, into the build's package cache).
package changelog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"

	"github.com/image-builder-action/image-builder-action/pkg/build"
	"github.com/image-builder-action/image-builder-action/pkg/manifest"
)

// Packages fetches pinned packages and gives their verified files: what
// build.Sources does.
type Packages interface {
	Fetch(ctx context.Context, refs []string) error
	Path(ref string) (string, error)
}

var _ Packages = (*build.Sources)(nil)

type options struct {
	cacheDir   string
	sourcesDir string
	client     *http.Client
}

// Option configures Annotate.
type Option func(*options)

// WithCacheDir is where read changelogs are kept ("changelogs" in it),
// and packages too ("sources") unless WithSourcesDir says.
func WithCacheDir(dir string) Option { return func(o *options) { o.cacheDir = dir } }

// WithSourcesDir is the package store to download into: a build's
// (build.Store.SourcesDir), so the two share the files.
func WithSourcesDir(dir string) Option { return func(o *options) { o.sourcesDir = dir } }

// WithHTTPClient downloads with c instead of http.DefaultClient.
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.client = c } }

// Annotate fills the Changelog of every upgraded package in d from the
// new lockfile's packages. A package whose changelog cannot be had gets a
// ChangelogNote saying why; an error is returned only when the cache
// cannot be used or ctx ends.
func Annotate(ctx context.Context, d *manifest.Diff, newLF *manifest.Lockfile, opts ...Option) error {
	o := options{}
	for _, opt := range opts {
		opt(&o)
	}
	if o.cacheDir == "" {
		return errors.New("changelogs: no cache directory")
	}
	if o.sourcesDir == "" {
		o.sourcesDir = filepath.Join(o.cacheDir, "sources")
	}
	logDir := filepath.Join(o.cacheDir, "changelogs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return fmt.Errorf("changelogs: %w", err)
	}
	a := &annotator{
		idx:    newLF.PackageIndex(),
		pkgs:   newLF.Packages,
		src:    build.NewSources(o.sourcesDir, newLF.Packages, o.client, 4, nil),
		logDir: logDir,
		docs:   map[string]*docFiles{},
		errs:   map[string]error{},
	}
	// Each upgraded package once, however many images have it.
	type key struct{ name, arch, old, new string }
	found := map[key][]*manifest.PackageChange{}
	var keys []key
	for i := range d.Entries {
		for j := range d.Entries[i].Packages {
			c := &d.Entries[i].Packages[j]
			if c.Change != manifest.Upgraded {
				continue
			}
			k := key{c.Name, c.Arch, c.OldVersion, c.NewVersion}
			if found[k] == nil {
				keys = append(keys, k)
			}
			found[k] = append(found[k], c)
		}
	}
	var refs []string
	for _, k := range keys {
		refs = append(refs, k.name+":"+k.arch+"="+k.new)
	}
	if err := a.prefetch(ctx, refs); err != nil {
		return err
	}
	for _, k := range keys {
		entries, note, err := a.changelog(ctx, k.name, k.arch, k.new)
		if err != nil {
			return err
		}
		between := Between(entries, k.old, k.new)
		if note == "" && len(between) == 0 {
			note = "its changelog has no entry between the two versions"
		}
		for _, c := range found[k] {
			c.Changelog, c.ChangelogNote = between, note
		}
	}
	return nil
}

type annotator struct {
	idx    map[string]*manifest.Package
	pkgs   []manifest.Package
	src    Packages
	logDir string
	docs   map[string]*docFiles // by sha256
	errs   map[string]error     // by ref: download failures
}

// prefetch downloads, in one parallel batch, the packages whose
// changelogs are not cached yet; when the batch fails, one at a time, so
// one missing package costs only its own changelog.
func (a *annotator) prefetch(ctx context.Context, refs []string) error {
	var todo []string
	for _, ref := range refs {
		p := a.idx[ref]
		if p == nil {
			continue
		}
		if _, err := os.Stat(a.cachePath(p)); err != nil {
			todo = append(todo, ref)
		}
	}
	if len(todo) == 0 || a.src.Fetch(ctx, todo) == nil {
		return nil
	}
	for _, ref := range todo {
		if err := a.src.Fetch(ctx, []string{ref}); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			a.errs[ref] = err
		}
	}
	return nil
}

func (a *annotator) cachePath(p *manifest.Package) string {
	return filepath.Join(a.logDir, p.SHA256+".json")
}

// changelog returns all the changelog entries of name's new version, or a
// note saying why there are none.
func (a *annotator) changelog(ctx context.Context, name, arch, ver string) ([]manifest.ChangelogEntry, string, error) {
	ref := name + ":" + arch + "=" + ver
	p := a.idx[ref]
	if p == nil {
		return nil, "the package is not in the new lockfile", nil
	}
	doc, note, err := a.doc(ctx, p)
	if doc == nil || err != nil {
		return nil, note, err
	}
	if doc.Link != "" && len(doc.Files) == 0 {
		// /usr/share/doc/<name> points to a sibling built from the
		// same source: its changelog is the one.
		sib := a.sibling(doc.Link, arch)
		if sib == nil {
			return nil, fmt.Sprintf("its documentation is in package %s, which is not in the lockfile", doc.Link), nil
		}
		if doc, note, err = a.doc(ctx, sib); doc == nil || err != nil {
			return nil, note, err
		}
		name = sib.Name
	}
	if len(doc.Files) == 0 {
		return nil, "the package has no changelog in /usr/share/doc/" + name, nil
	}
	var names []string
	for n := range doc.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	var entries []manifest.ChangelogEntry
	for _, n := range names {
		entries = append(entries, Parse(doc.Files[n])...)
	}
	return entries, "", nil
}

// sibling is the lockfile's package called name for arch (or all).
func (a *annotator) sibling(name, arch string) *manifest.Package {
	for i := range a.pkgs {
		p := &a.pkgs[i]
		if p.Name == name && (p.Arch == arch || p.Arch == "all") {
			return p
		}
	}
	return nil
}

// doc reads p's documentation files, from the cache or its .deb.
func (a *annotator) doc(ctx context.Context, p *manifest.Package) (*docFiles, string, error) {
	if d := a.docs[p.SHA256]; d != nil {
		return d, "", nil
	}
	cp := a.cachePath(p)
	if b, err := os.ReadFile(cp); err == nil {
		var d docFiles
		if json.Unmarshal(b, &d) == nil {
			a.docs[p.SHA256] = &d
			return &d, "", nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, "", fmt.Errorf("changelogs: %w", err)
	}
	ref := p.Ref()
	if err := a.errs[ref]; err != nil {
		return nil, "downloading it failed: " + err.Error(), nil
	}
	if err := a.src.Fetch(ctx, []string{ref}); err != nil {
		if ctx.Err() != nil {
			return nil, "", ctx.Err()
		}
		return nil, "downloading it failed: " + err.Error(), nil
	}
	file, err := a.src.Path(ref)
	if err != nil {
		return nil, "", err
	}
	d, err := readDoc(file, p.Name)
	if err != nil {
		return nil, "reading the package failed: " + err.Error(), nil
	}
	b, err := json.Marshal(d)
	if err != nil {
		return nil, "", err
	}
	if err := manifest.WriteFileAtomic(cp, b, 0o644); err != nil {
		return nil, "", fmt.Errorf("changelogs: %w", err)
	}
	a.docs[p.SHA256] = d
	return d, "", nil
}
