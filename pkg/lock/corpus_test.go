package lock_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
	"github.com/image-builder-action/image-builder-action/pkg/build"
	"github.com/image-builder-action/image-builder-action/pkg/lock"
	"github.com/image-builder-action/image-builder-action/pkg/lock/locktest"
	"github.com/image-builder-action/image-builder-action/pkg/publish/publishtest"
	"github.com/image-builder-action/image-builder-action/pkg/repo"
)

// corpusDir holds blueprints published by osbuild's projects, each with its
// source in SOURCES. NAME.map beside a blueprint records what it needs to
// lock here: Fedora package names mapped to Debian's ("FEDORA DEBIAN…",
// "-" for none), and fixes of what composer itself refuses ("@version
// 1.0.0" where a test config has "1.0", which composer's semver check
// refuses; "@name NAME" where it has none).
const corpusDir = "../../testdata/blueprints/composer/published"

// outcome is what locking a published blueprint must give: it locks as
// published (mapped false), locks after its NAME.map (mapped true), or is
// refused with an error containing refused.
type outcome struct {
	mapped  bool
	refused string
}

var (
	locks   = outcome{}
	mapped  = outcome{mapped: true}
	refused = func(why string) outcome { return outcome{refused: why} }
)

// memoFetcher fetches each (sources, arch) once for the whole table.
type memoFetcher struct {
	f  lock.Fetcher
	mu sync.Mutex
	m  map[string]*repo.Index
}

func (m *memoFetcher) Fetch(ctx context.Context, srcs []repo.Source, arch string) (*repo.Index, error) {
	key := fmt.Sprint(srcs, arch)
	m.mu.Lock()
	defer m.mu.Unlock()
	if idx, ok := m.m[key]; ok {
		return idx, nil
	}
	idx, err := m.f.Fetch(ctx, srcs, arch)
	if err == nil {
		m.m[key] = idx
	}
	return idx, err
}

// applyMap renames the blueprint's packages and groups by the NAME.map
// beside it.
func applyMap(t *testing.T, bp *blueprint.Blueprint, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("no package-name mapping: %v", err)
	}
	defer f.Close()
	m := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 2 || strings.HasPrefix(fs[0], "#") {
			continue
		}
		switch fs[0] {
		case "@version":
			bp.Version = fs[1]
			continue
		case "@name":
			bp.Name = fs[1]
			continue
		case "@registry":
			// The blueprint's container registry is not reachable here:
			// its sources are served by Debian's docker-registry on
			// 127.0.0.1 instead, holding a small image (amd64 and arm64)
			// under each source's repository path.
			for i, c := range bp.Containers {
				if repoPath, ok := strings.CutPrefix(c.Source, fs[1]+"/"); ok {
					if corpusRegistry == "" {
						t.Fatal("@registry: no registry started")
					}
					pushImage(t, corpusRegistry, repoPath, "amd64", "arm64")
					bp.Containers[i].Source = corpusRegistry + "/" + repoPath
				}
			}
			continue
		}
		if fs[1] == "-" {
			fs = fs[:1]
		}
		m[fs[0]] = fs[1:]
	}
	rename := func(list []blueprint.Package) []blueprint.Package {
		var out []blueprint.Package
		for _, p := range list {
			to, ok := m[p.Name]
			if !ok {
				out = append(out, p)
				continue
			}
			for _, n := range to {
				out = append(out, blueprint.Package{Name: n})
			}
		}
		return out
	}
	bp.Packages, bp.Modules = rename(bp.Packages), rename(bp.Modules)
	if cu := bp.Customizations; cu != nil && cu.Kernel != nil {
		if to, ok := m[cu.Kernel.Name]; ok && len(to) == 1 {
			cu.Kernel.Name = to[0]
		}
	}
}

// corpusRegistry is the docker-registry the @registry maps point at.
var corpusRegistry string

func TestPublishedBlueprints(t *testing.T) {
	srcs := locktest.NeedArchive(t)
	corpusRegistry = publishtest.DockerRegistry(t)
	cache := os.Getenv("IBUILD_TEST_CACHE")
	if cache == "" {
		cache = filepath.Join(os.TempDir(), "ibuild-test-cache")
	}
	fetcher := &memoFetcher{f: &repo.Client{CacheDir: filepath.Join(cache, "cli", "metadata")}, m: map[string]*repo.Index{}}
	files, err := filepath.Glob(filepath.Join(corpusDir, "*.*"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		if ext := filepath.Ext(f); ext == ".toml" || ext == ".json" {
			names = append(names, filepath.Base(f))
		}
	}
	sort.Strings(names)
	sources := readSources(t)
	counts := map[string]int{}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			if sources[name] == "" {
				t.Errorf("%s has no source in SOURCES", name)
			}
			want, ok := published[name]
			if !ok {
				t.Errorf("%s has no expected outcome", name)
			}
			path := filepath.Join(corpusDir, name)
			_, statErr := os.Stat(strings.TrimSuffix(path, filepath.Ext(path)) + ".map")
			hasMap := statErr == nil
			if want.refused == "" && hasMap != want.mapped {
				t.Errorf("outcome says mapped=%v but a .map file exists=%v", want.mapped, hasMap)
			}
			// A refused blueprint gets its map too: the refusal must be
			// Debian's, not the fix-ups composer needs.
			err := lockPublished(t, fetcher, srcs, path, hasMap)
			switch {
			case want.refused != "":
				counts["refused"]++
				t.Logf("refused: %v", err)
				if err == nil || !strings.Contains(err.Error(), want.refused) {
					t.Errorf("lock: %v\nwant a refusal containing %q", err, want.refused)
				}
			case err != nil:
				t.Errorf("lock: %v", err)
			case want.mapped:
				counts["mapped"]++
			default:
				counts["as published"]++
			}
		})
	}
	for name := range published {
		if _, err := os.Stat(filepath.Join(corpusDir, name)); err != nil {
			t.Errorf("%s has an outcome but no file", name)
		}
	}
	t.Logf("%d published blueprints: %d lock as published, %d after a package-name mapping, %d refused",
		len(names), counts["as published"], counts["mapped"], counts["refused"])
	if len(names) < 40 {
		t.Errorf("only %d published blueprints", len(names))
	}
}

func lockPublished(t *testing.T, fetcher lock.Fetcher, srcs []repo.Source, path string, mapped bool) error {
	if !mapped {
		bp, err := blueprint.Load(path)
		if err != nil {
			return err
		}
		return lockOne(t, fetcher, srcs, path, bp)
	}
	// The map may fix what composer itself refuses (the version, a
	// missing name): fix the document, then parse it as composer would.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	mapFile := strings.TrimSuffix(path, filepath.Ext(path)) + ".map"
	data = fixDocument(t, data, mapFile, filepath.Ext(path))
	bp, err := blueprint.Parse(path, data)
	if err != nil {
		return err
	}
	applyMap(t, bp, mapFile)
	return lockOne(t, fetcher, srcs, path, bp)
}

// fixDocument applies a map's @version and @name to a JSON blueprint's
// text (TOML blueprints in the corpus need neither).
func fixDocument(t *testing.T, data []byte, mapFile, ext string) []byte {
	t.Helper()
	m, err := os.ReadFile(mapFile)
	if err != nil {
		t.Fatalf("no package-name mapping: %v", err)
	}
	if ext != ".json" {
		return data
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		return data
	}
	for _, l := range strings.Split(string(m), "\n") {
		if fs := strings.Fields(l); len(fs) == 2 && (fs[0] == "@version" || fs[0] == "@name") {
			doc[fs[0][1:]] = fs[1]
		}
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func lockOne(t *testing.T, fetcher lock.Fetcher, srcs []repo.Source, path string, bp *blueprint.Blueprint) error {
	// Published blueprints name Fedora and RHEL; --distro debian-12 is how
	// a user locks them for Debian.
	lf, err := lock.Lock(context.Background(), bp, path, lock.WithFetcher(fetcher), lock.WithSources(srcs...),
		lock.WithDistro("debian-12"), lock.WithArches("x86_64"), lock.WithTypes("qcow2"))
	if err != nil {
		return err
	}
	for _, e := range lf.Entries {
		if err := build.Plan(lf, e.Arch, e.Type); err != nil {
			t.Errorf("lock accepted what the build refuses: %v", err)
		}
	}
	return nil
}

func readSources(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(corpusDir, "SOURCES"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, l := range strings.Split(string(data), "\n") {
		if name, src, ok := strings.Cut(l, "\t"); ok && !strings.HasPrefix(l, "#") {
			out[name] = src
		}
	}
	return out
}
