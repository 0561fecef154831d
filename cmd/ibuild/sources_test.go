package main

// TestBuildFromSources: a lockfile whose mirror URLs all answer 404 builds
// from the snapshot archive (a local server laid out as
// snapshot.debian.org), from a registry on 127.0.0.1 filled by `ibuild
// mirror`, and from a directory, and each image is byte for byte the one
// built from the mirror. The registry build also meets a store serving a
// tampered package first. The image is the cheapest there is (the minimal
// blueprint as a tar). Each source build starts from a cache that holds
// the build root's trees and nothing else (no package, no tree of the
// image's own pipelines), so every package of the image's root file
// system comes from the source under test, and the build root, the same
// whatever the source, is not built three more times.

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/pkg/publish/publishtest"
	"github.com/image-builder-action/image-builder-action/pkg/sources"
)

func TestBuildFromSources(t *testing.T) {
	if testing.Short() {
		t.Skip("builds four images: skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("building needs root")
	}
	needArchive(t)
	dir := t.TempDir()
	cache := testCache(t)
	bin := filepath.Join(dir, "ibuild")
	run(t, "go", "build", "-o", bin, ".")
	lockPath := filepath.Join(dir, "minimal.lock.json")
	run(t, bin, "lock", "../../testdata/blueprints/minimal.toml", "--type", "tar", "--arch", "x86_64", "-o", lockPath, "--cache", cache)

	// The reference, from the mirror (the shared cache: warm on a re-run).
	build := func(name, lock, cacheDir string, args ...string) (sha, log string) {
		t.Helper()
		out := filepath.Join(dir, "out-"+name)
		start := time.Now()
		log = run(t, bin, append([]string{"build", lock, "-o", out, "--cache", cacheDir}, args...)...)
		t.Logf("build from %s: %s\n%s", name, time.Since(start).Round(time.Second), log)
		return sha256File(t, filepath.Join(out, "root.tar.zst")), log
	}
	want, _ := build("mirror", lockPath, cache)

	// A directory store filled by ibuild mirror (from the cache the
	// reference build filled).
	store := filepath.Join(dir, "store")
	out := run(t, bin, "mirror", lockPath, "--to", store, "--cache", cache)
	t.Logf("mirror to a directory: %s", out)

	// The same lockfile, its mirror gone: every URL answers 404.
	gone := httptest.NewServer(http.NotFoundHandler())
	defer gone.Close()
	lf, err := manifest.Load(lockPath)
	if err != nil {
		t.Fatal(err)
	}
	moved := map[string]string{} // old URI → new
	for i := range lf.Repositories {
		r := &lf.Repositories[i]
		u := strings.TrimRight(r.URI, "/")
		moved[u] = gone.URL + "/" + filepath.Base(u)
		r.URI = moved[u]
	}
	for i := range lf.Packages {
		p := &lf.Packages[i]
		for old, now := range moved {
			if strings.HasPrefix(p.URL, old+"/") {
				p.URL = now + p.URL[len(old):]
			}
		}
		if !strings.HasPrefix(p.URL, gone.URL) {
			t.Fatalf("%s: %s is under none of the repositories", p.Ref(), p.URL)
		}
	}
	goneLock := filepath.Join(dir, "gone", "minimal.lock.json")
	if err := os.MkdirAll(filepath.Dir(goneLock), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := lf.Write(goneLock); err != nil {
		t.Fatal(err)
	}

	t.Run("snapshot", func(t *testing.T) {
		// Laid out as snapshot.debian.org: archive/NAME/TIMESTAMP/POOL-PATH,
		// the timestamp from the lockfile's Release Dates, nothing else.
		root := filepath.Join(dir, "snapshot")
		snap := sources.Snapshot("http://snapshot.invalid/", lf.Repositories, nil)
		for i := range lf.Packages {
			p := &lf.Packages[i]
			rel := strings.TrimPrefix(snap.Locate(p), "http://snapshot.invalid/")
			if rel == "" || rel == snap.Locate(p) {
				t.Fatalf("%s: no snapshot path", p.Ref())
			}
			dst := filepath.Join(root, filepath.FromSlash(rel))
			os.MkdirAll(filepath.Dir(dst), 0o755)
			if err := os.Link(filepath.Join(store, "sha256", p.SHA256), dst); err != nil && !os.IsExist(err) {
				t.Fatal(err)
			}
		}
		srv := httptest.NewServer(http.FileServer(http.Dir(root)))
		defer srv.Close()
		got, log := build("snapshot", goneLock, buildRootsOnly(t, cache), "--snapshot-url", srv.URL+"/")
		if got != want {
			t.Errorf("built from the snapshot archive: sha256 %s, from the mirror %s", got, want)
		}
		if !strings.Contains(log, "packages from snapshot "+srv.URL+"/: ") || strings.Contains(log, "packages from mirror") {
			t.Errorf("the report does not say every package came from the snapshot:\n%s", log)
		}
	})

	t.Run("registry", func(t *testing.T) {
		host := publishtest.DockerRegistry(t)
		ref := "oci://" + host + "/ibuild/packages"
		first := run(t, bin, "mirror", goneLock, "--to", ref, "--cache", cache, "--snapshot-url", "")
		second := run(t, bin, "mirror", goneLock, "--to", ref, "--cache", cache, "--snapshot-url", "")
		t.Logf("mirror to the registry, twice:\n%s%s", first, second)
		if !strings.Contains(first, "package list "+"packages-") || !strings.Contains(first, ": pushed") {
			t.Errorf("first mirror run pushed no package list:\n%s", first)
		}
		if !strings.Contains(second, ", 0 uploaded (0.0 MiB), ") || !strings.Contains(second, ": there already") {
			t.Errorf("second mirror run uploaded something:\n%s", second)
		}
		// A store that serves a tampered package, asked first: the
		// smallest of those only the root file system installs (the
		// build root's trees, the essential set's stage shared with the
		// os pipeline among them, come from the cache, so their
		// packages are never fetched).
		tampered := filepath.Join(dir, "tampered")
		victim := osPackages(t, lf)[0]
		for _, p := range osPackages(t, lf) {
			if p.Size < victim.Size {
				victim = p
			}
		}
		b, err := os.ReadFile(filepath.Join(store, "sha256", victim.SHA256))
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.Clone(b)
		b[len(b)/2] ^= 0xff
		os.MkdirAll(filepath.Join(tampered, "sha256"), 0o755)
		if err := os.WriteFile(filepath.Join(tampered, "sha256", victim.SHA256), b, 0o644); err != nil {
			t.Fatal(err)
		}
		fresh := buildRootsOnly(t, cache)
		got, log := build("registry", goneLock, fresh, "--snapshot-url", "", "--sources", tampered+","+ref)
		if got != want {
			t.Errorf("built from the registry: sha256 %s, from the mirror %s", got, want)
		}
		if !strings.Contains(log, "warning: dir "+tampered+" served a wrong file for "+victim.Ref()) {
			t.Errorf("no warning naming the tampered store:\n%s", log)
		}
		if !strings.Contains(log, "packages from oci://"+host+"/ibuild/packages: ") {
			t.Errorf("the report does not name the registry:\n%s", log)
		}
		// The cache holds the real file, never the tampered one.
		if got := sha256File(t, filepath.Join(fresh, "build", "sources", "sha256", victim.SHA256)); got != victim.SHA256 {
			t.Errorf("the cache holds %s under %s", got, victim.SHA256)
		}
	})

	t.Run("dir", func(t *testing.T) {
		got, log := build("dir", goneLock, buildRootsOnly(t, cache), "--snapshot-url", "", "--sources", store)
		if got != want {
			t.Errorf("built from a directory: sha256 %s, from the mirror %s", got, want)
		}
		if !strings.Contains(log, "packages from dir "+store+": ") {
			t.Errorf("the report does not name the directory:\n%s", log)
		}
	})
}

// buildRootsOnly returns a new cache holding the build root trees of
// cache (objects of the "build" pipeline, hard-linked: objects are never
// changed in place), and nothing else.
func buildRootsOnly(t *testing.T, cache string) string {
	t.Helper()
	fresh := t.TempDir()
	if err := os.MkdirAll(filepath.Join(fresh, "build", "objects"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, obj := range pipelineObjects(t, filepath.Join(cache, "build"), "build") {
		run(t, "cp", "-al", obj, filepath.Join(fresh, "build", "objects", filepath.Base(obj)))
	}
	return fresh
}

// osPackages are the packages the os pipeline of the lockfile's tar entry
// installs and no other pipeline (the build root's) does.
func osPackages(t *testing.T, lf *manifest.Lockfile) []manifest.Package {
	t.Helper()
	entry, err := lf.Entry("x86_64", "tar")
	if err != nil {
		t.Fatal(err)
	}
	refs := map[string]bool{}   // the os pipeline's
	others := map[string]bool{} // the other pipelines'
	for _, p := range entry.Pipelines {
		for _, st := range p.Stages {
			var o struct{ Packages []string }
			if st.Type == "debs" {
				if err := json.Unmarshal(st.Options, &o); err != nil {
					t.Fatal(err)
				}
			}
			for _, r := range o.Packages {
				if p.Name == "os" {
					refs[r] = true
				} else {
					others[r] = true
				}
			}
		}
	}
	var out []manifest.Package
	for _, p := range lf.Packages {
		if refs[p.Ref()] && !others[p.Ref()] {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		t.Fatal("the lockfile's os pipeline installs no package of its own")
	}
	return out
}
