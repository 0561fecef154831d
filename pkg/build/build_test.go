package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/stages"
)

// Test stages, registered once for this test binary. They count their runs
// by pipeline tag so tests can tell what ran and what came from the cache.
var (
	runsMu sync.Mutex
	runs   = map[string]int{}
)

func countRun(tag string) {
	runsMu.Lock()
	runs[tag]++
	runsMu.Unlock()
}

func runCount(tag string) int {
	runsMu.Lock()
	defer runsMu.Unlock()
	return runs[tag]
}

// testWrite appends Data to Tree/Path; it needs its packages downloaded.
type testWrite struct {
	Tag      string   `json:"tag"`
	Path     string   `json:"path"`
	Data     string   `json:"data"`
	Packages []string `json:"packages,omitempty"`
	Fail     bool     `json:"fail,omitempty"`
	Files    int      `json:"files,omitempty"` // empty files /many/N to write too
}

func (s *testWrite) Run(ctx context.Context, env *stages.Env) error {
	countRun(s.Tag)
	if s.Fail {
		return errors.New("failing as asked")
	}
	for _, ref := range s.Packages {
		p, err := env.Packages.Path(ref)
		if err != nil {
			return err
		}
		if _, err := os.Stat(p); err != nil {
			return err
		}
	}
	if s.Files > 0 {
		if err := os.MkdirAll(filepath.Join(env.Tree, "many"), 0o755); err != nil {
			return err
		}
	}
	for i := range s.Files {
		if err := os.WriteFile(filepath.Join(env.Tree, "many", fmt.Sprint(i)), nil, 0o644); err != nil {
			return err
		}
	}
	f, err := os.OpenFile(filepath.Join(env.Tree, s.Path), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteString(s.Data)
	return err
}

// testCopy copies a file of an input tree into Tree.
type testCopy struct {
	Tag    string `json:"tag"`
	Source struct {
		Pipeline string `json:"pipeline"`
		Path     string `json:"path"`
	} `json:"source"`
	Filename string `json:"filename"`
}

func (s *testCopy) Run(ctx context.Context, env *stages.Env) error {
	countRun(s.Tag)
	in, ok := env.Inputs[s.Source.Pipeline]
	if !ok {
		return fmt.Errorf("no input %s", s.Source.Pipeline)
	}
	data, err := os.ReadFile(filepath.Join(in, s.Source.Path))
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(env.Tree, s.Filename), append([]byte("copied:"), data...), 0o644)
}

func init() {
	stages.Register("test-write", 1, func(o json.RawMessage) (stages.Stage, error) {
		var s testWrite
		if err := stages.Decode(o, &s); err != nil {
			return nil, err
		}
		if s.Path == "" {
			return nil, errors.New("path is required")
		}
		return &s, nil
	})
	stages.Register("test-copy", 1, func(o json.RawMessage) (stages.Stage, error) {
		var s testCopy
		if err := stages.Decode(o, &s); err != nil {
			return nil, err
		}
		return &s, nil
	})
}

// pkgServer serves packages' contents by URL path and counts requests.
type pkgServer struct {
	*httptest.Server
	files    map[string][]byte
	requests atomic.Int64
}

func newPkgServer(t *testing.T) *pkgServer {
	s := &pkgServer{files: map[string][]byte{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		data, ok := s.files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(data)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *pkgServer) add(name string, data []byte) manifest.Package {
	s.files["/"+name+".deb"] = data
	sum := sha256.Sum256(data)
	return manifest.Package{Name: name, Version: "1.0", Arch: "amd64", URL: s.URL + "/" + name + ".deb",
		SHA256: hex.EncodeToString(sum[:]), Size: int64(len(data))}
}

func opts(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testLockfile has pipelines "os" (three writes, the first needing a
// package) and "out" (a copy of os's file); tag prefixes the run counters.
func testLockfile(t *testing.T, srv *pkgServer, tag string, second string) *manifest.Lockfile {
	p := srv.add("pkg-"+tag, []byte("package "+tag))
	ref := p.Ref()
	return &manifest.Lockfile{
		Version:         manifest.FormatVersion,
		SourceDateEpoch: 1700000000,
		Packages:        []manifest.Package{p},
		Entries: []manifest.Entry{{
			Distro: "test", Arch: "amd64", Type: "test",
			Pipelines: []manifest.Pipeline{
				{Name: "os", Stages: []manifest.Stage{
					{Type: "test-write", Options: opts(t, map[string]any{"tag": tag + "/a", "path": "/f", "data": "a", "packages": []string{ref}})},
					{Type: "test-write", Options: opts(t, map[string]any{"tag": tag + "/b", "path": "/f", "data": second})},
					{Type: "test-write", Options: opts(t, map[string]any{"tag": tag + "/c", "path": "/f", "data": "c"})},
				}},
				{Name: "out", Stages: []manifest.Stage{
					{Type: "test-copy", Options: opts(t, map[string]any{"tag": tag + "/copy", "source": map[string]string{"pipeline": "os", "path": "/f"}, "filename": "image.raw"})},
				}},
			},
		}},
	}
}

func commitEveryStage() Option {
	return func(o *options) error { o.commitAfter = 0; return nil }
}

// TestBuildKeepsSlowTreesOfManyFiles: past the commit threshold an
// intermediate tree of many files (a root file system) is kept, one of few
// files (a disk image) is not; the last stage's always is.
func TestBuildKeepsSlowTreesOfManyFiles(t *testing.T) {
	srv := newPkgServer(t)
	for _, tc := range []struct {
		name  string
		files int
		want  int // stored trees of pipeline os
	}{
		{"few files", 1, 1},
		{"many files", dirFormatMax + 1, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cache := t.TempDir()
			lf := testLockfile(t, srv, "slow", tc.name)
			write := func(tag string, files int) manifest.Stage {
				return manifest.Stage{Type: "test-write", Options: opts(t, map[string]any{"tag": tag, "path": "/f", "data": tag, "files": files})}
			}
			lf.Entries[0].Pipelines[0].Stages = []manifest.Stage{write("slow/a", tc.files), write("slow/b", 0), write("slow/c", 0)}
			everySlow := func(o *options) error { o.commitAfter = time.Nanosecond; return nil }
			if _, err := Build(context.Background(), lf, "amd64", "test", WithCacheDir(cache), WithOutputDir(t.TempDir()), everySlow); err != nil {
				t.Fatal(err)
			}
			metas, err := filepath.Glob(filepath.Join(cache, "objects", "*", "meta.json"))
			if err != nil {
				t.Fatal(err)
			}
			var stored []int
			for _, p := range metas {
				var m objectMeta
				data, err := os.ReadFile(p)
				if err == nil {
					err = json.Unmarshal(data, &m)
				}
				if err != nil {
					t.Fatal(err)
				}
				if m.Pipeline == "os" {
					stored = append(stored, m.Stage)
				}
			}
			if len(stored) != tc.want || !slices.Contains(stored, 2) {
				t.Errorf("stored trees of os: stages %v, want %d of them with the last (2)", stored, tc.want)
			}
		})
	}
}

func TestBuildCachesStages(t *testing.T) {
	srv := newPkgServer(t)
	cache := t.TempDir()
	outDir := t.TempDir()
	lf := testLockfile(t, srv, "cache", "b")
	var events []Event
	var mu sync.Mutex
	rec := WithEvents(func(e Event) { mu.Lock(); events = append(events, e); mu.Unlock() })

	res, err := Build(context.Background(), lf, "amd64", "test", WithCacheDir(cache), WithOutputDir(outDir), commitEveryStage(), rec)
	if err != nil {
		t.Fatal(err)
	}
	want := "copied:abc"
	sum := sha256.Sum256([]byte(want))
	if len(res.Files) != 1 || res.Files[0].Name != "image.raw" || res.Files[0].Size != int64(len(want)) ||
		res.Files[0].SHA256 != hex.EncodeToString(sum[:]) || res.Files[0].Path != filepath.Join(outDir, "image.raw") {
		t.Fatalf("result files: %+v", res.Files)
	}
	if b, _ := os.ReadFile(filepath.Join(outDir, "image.raw")); string(b) != want {
		t.Errorf("output: %q", b)
	}
	for _, tag := range []string{"a", "b", "c", "copy"} {
		if n := runCount("cache/" + tag); n != 1 {
			t.Errorf("stage %s ran %d times, want 1", tag, n)
		}
	}
	if srv.requests.Load() != 1 {
		t.Errorf("downloads: %d, want 1", srv.requests.Load())
	}

	// Same lockfile again: the last pipeline's tree is cached; nothing runs
	// and nothing is downloaded.
	if _, err := Build(context.Background(), lf, "", "", WithCacheDir(cache), WithOutputDir(outDir)); err != nil {
		t.Fatal(err)
	}
	for _, tag := range []string{"a", "b", "c", "copy"} {
		if n := runCount("cache/" + tag); n != 1 {
			t.Errorf("after a cached build, stage %s ran %d times, want 1", tag, n)
		}
	}
	if srv.requests.Load() != 1 {
		t.Errorf("downloads after a cached build: %d, want 1", srv.requests.Load())
	}

	// Change the second stage: it and the later ones rerun, the first hits.
	lf2 := testLockfile(t, srv, "cache", "B")
	events = nil
	res, err = Build(context.Background(), lf2, "", "", WithCacheDir(cache), WithOutputDir(outDir), commitEveryStage(), rec)
	if err != nil {
		t.Fatal(err)
	}
	for tag, want := range map[string]int{"a": 1, "b": 2, "c": 2, "copy": 2} {
		if n := runCount("cache/" + tag); n != want {
			t.Errorf("after changing stage b, stage %s ran %d times, want %d", tag, n, want)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(outDir, "image.raw")); string(b) != "copied:aBc" {
		t.Errorf("output: %q", b)
	}
	var hit []string
	for _, e := range events {
		if s, ok := e.(StageStart); ok && s.CacheHit {
			hit = append(hit, fmt.Sprintf("%s/%d", s.Pipeline, s.Index))
		}
	}
	if strings.Join(hit, " ") != "os/0" {
		t.Errorf("cache hits reported: %v, want os/0", hit)
	}
	// Nothing left in the cache's temp area.
	if entries, _ := os.ReadDir(filepath.Join(cache, "tmp")); len(entries) != 0 {
		t.Errorf("cache tmp not cleaned: %v", entries)
	}
}

func TestBuildValidatesBeforeWork(t *testing.T) {
	srv := newPkgServer(t)
	for _, tc := range []struct {
		name   string
		mutate func(lf *manifest.Lockfile)
		want   string
	}{
		{"unknown stage", func(lf *manifest.Lockfile) {
			lf.Entries[0].Pipelines[1].Stages = append(lf.Entries[0].Pipelines[1].Stages, manifest.Stage{Type: "no-such-stage"})
		}, `entry amd64/test pipeline out stage 1 (no-such-stage): unknown stage type "no-such-stage"`},
		{"bad options", func(lf *manifest.Lockfile) {
			lf.Entries[0].Pipelines[0].Stages[2].Options = json.RawMessage(`{"tag":"x"}`)
		}, "entry amd64/test pipeline os stage 2 (test-write): path is required"},
		{"unknown field", func(lf *manifest.Lockfile) {
			lf.Entries[0].Pipelines[0].Stages[2].Options = json.RawMessage(`{"path":"/f","colour":"red"}`)
		}, `unknown field "colour"`},
		{"unknown package", func(lf *manifest.Lockfile) {
			lf.Entries[0].Pipelines[0].Stages[1].Options = json.RawMessage(`{"path":"/f","packages":["nope:amd64=1"]}`)
		}, "package nope:amd64=1 is not in the lockfile's packages"},
		{"unknown input", func(lf *manifest.Lockfile) {
			lf.Entries[0].Pipelines[1].Stages[0].Options = json.RawMessage(`{"source":{"pipeline":"image","path":"/"}}`)
		}, `references pipeline "image", which is not defined before it`},
		{"no entry", func(lf *manifest.Lockfile) { lf.Entries[0].Arch = "arm64" }, `no entry for arch "amd64"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lf := testLockfile(t, srv, "validate-"+tc.name, "b")
			tc.mutate(lf)
			cache := t.TempDir()
			_, err := Build(context.Background(), lf, "amd64", "test", WithCacheDir(cache), WithOutputDir(t.TempDir()))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
			if runCount("validate-"+tc.name+"/a") != 0 {
				t.Errorf("a stage ran before validation failed")
			}
		})
	}
	if srv.requests.Load() != 0 {
		t.Errorf("%d downloads before validation failed", srv.requests.Load())
	}
}

func TestBuildFailingStageLeavesNoTemp(t *testing.T) {
	srv := newPkgServer(t)
	lf := testLockfile(t, srv, "fail", "b")
	lf.Entries[0].Pipelines[0].Stages[2].Options = opts(t, map[string]any{"tag": "fail/c", "path": "/f", "fail": true})
	cache := t.TempDir()
	_, err := Build(context.Background(), lf, "", "", WithCacheDir(cache), WithOutputDir(t.TempDir()))
	if err == nil || !strings.Contains(err.Error(), "pipeline os stage 2 (test-write): failing as asked") {
		t.Fatalf("error: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(cache, "tmp")); len(entries) != 0 {
		t.Errorf("cache tmp not cleaned: %v", entries)
	}
	if entries, _ := os.ReadDir(filepath.Join(cache, "objects")); len(entries) != 0 {
		t.Errorf("objects published by a failed pipeline: %v", entries)
	}
}

func TestBuildConcurrentSharedCache(t *testing.T) {
	srv := newPkgServer(t)
	cache := t.TempDir()
	lf := testLockfile(t, srv, "concurrent", "b")
	var wg sync.WaitGroup
	errs := make([]error, 4)
	outs := make([]string, 4)
	for i := range errs {
		outs[i] = t.TempDir()
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = Build(context.Background(), lf, "", "", WithCacheDir(cache), WithOutputDir(outs[i]), commitEveryStage())
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("build %d: %v", i, err)
			continue
		}
		if b, _ := os.ReadFile(filepath.Join(outs[i], "image.raw")); string(b) != "copied:abc" {
			t.Errorf("build %d output: %q", i, b)
		}
	}
	// Four objects (os has three stages, out one), each published once.
	entries, _ := os.ReadDir(filepath.Join(cache, "objects"))
	if len(entries) != 4 {
		t.Errorf("objects: %d, want 4", len(entries))
	}
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(cache, "objects", e.Name(), "meta.json")); err != nil {
			t.Errorf("object %s: %v", e.Name(), err)
		}
	}
}

func TestBuildEvicts(t *testing.T) {
	srv := newPkgServer(t)
	cache := t.TempDir()
	lf := testLockfile(t, srv, "evict", "b")
	if _, err := Build(context.Background(), lf, "", "", WithCacheDir(cache), WithOutputDir(t.TempDir()), commitEveryStage()); err != nil {
		t.Fatal(err)
	}
	size := func() int64 {
		var total int64
		entries, _ := os.ReadDir(filepath.Join(cache, "objects"))
		for _, e := range entries {
			var m objectMeta
			data, _ := os.ReadFile(filepath.Join(cache, "objects", e.Name(), "meta.json"))
			json.Unmarshal(data, &m)
			total += m.Size
		}
		srcs, _ := os.ReadDir(filepath.Join(cache, "sources", "sha256"))
		for _, e := range srcs {
			fi, _ := e.Info()
			total += fi.Size()
		}
		return total
	}
	before := size()
	// Make the first stage's object the least recently used.
	entries, _ := os.ReadDir(filepath.Join(cache, "objects"))
	var oldest string
	for _, e := range entries {
		data, _ := os.ReadFile(filepath.Join(cache, "objects", e.Name(), "meta.json"))
		var m objectMeta
		json.Unmarshal(data, &m)
		if m.Pipeline == "os" && m.Stage == 0 {
			oldest = e.Name()
		}
		os.Chtimes(filepath.Join(cache, "objects", e.Name()), time.Now(), time.Now())
	}
	old := time.Now().Add(-time.Hour)
	os.Chtimes(filepath.Join(cache, "objects", oldest), old, old)

	st, err := OpenStore(cache)
	if err != nil {
		t.Fatal(err)
	}
	// A second holder of the cache blocks eviction.
	other, err := OpenStore(cache)
	if err != nil {
		t.Fatal(err)
	}
	if ran, err := st.Evict(0); ran || err != nil {
		t.Errorf("evicting while another build holds the cache: ran %v, err %v", ran, err)
	}
	other.Close()
	if ran, err := st.Evict(before - 1); !ran || err != nil {
		t.Fatalf("evict: ran %v, err %v", ran, err)
	}
	st.Close()
	if _, err := os.Stat(filepath.Join(cache, "objects", oldest)); !os.IsNotExist(err) {
		t.Errorf("the least recently used object was kept: %v", err)
	}
	if after := size(); after >= before || after < before-8192 {
		t.Errorf("size %d -> %d: want one small object evicted", before, after)
	}
	// WithCacheMaxSize(1) empties the cache after the build.
	if _, err := Build(context.Background(), lf, "", "", WithCacheDir(cache), WithOutputDir(t.TempDir()), WithCacheMaxSize(1)); err != nil {
		t.Fatal(err)
	}
	if s := size(); s != 0 {
		t.Errorf("cache holds %d bytes after evicting to 1", s)
	}
}

func TestStoreCrashLeftovers(t *testing.T) {
	cache := t.TempDir()
	st, err := OpenStore(cache)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	// What a SIGKILLed build leaves: its temp dir with a half-copied tree,
	// a half-written download.
	junk := filepath.Join(cache, "tmp", "build-dead", "commit-x", "tree")
	if err := os.MkdirAll(junk, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(cache, "sources", "tmp", "abc.123"), []byte("half"), 0o644)
	// An object directory without meta.json is not an object.
	os.MkdirAll(filepath.Join(cache, "objects", "deadbeef", "tree"), 0o755)

	st, err = OpenStore(cache)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := os.Stat(filepath.Join(cache, "tmp", "build-dead")); !os.IsNotExist(err) {
		t.Errorf("leftover temp dir kept: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cache, "sources", "tmp", "abc.123")); !os.IsNotExist(err) {
		t.Errorf("leftover download kept: %v", err)
	}
	if st.Lookup("deadbeef") {
		t.Errorf("an object without meta.json was found")
	}
	// A second store opened while the first holds the cache leaves the
	// first one's temp area alone.
	mine, _ := st.TempDir("work-")
	st2, err := OpenStore(cache)
	if err != nil {
		t.Fatal(err)
	}
	st2.Close()
	if _, err := os.Stat(mine); err != nil {
		t.Errorf("another build removed a running build's temp dir: %v", err)
	}
}

// TestBuildPinsUmask: the caller's umask does not reach the files a build
// makes, and is back afterwards.
func TestBuildPinsUmask(t *testing.T) {
	srv := newPkgServer(t)
	outDir := t.TempDir()
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	res, err := Build(context.Background(), testLockfile(t, srv, "umask", "b"), "", "", WithCacheDir(t.TempDir()), WithOutputDir(outDir))
	if err != nil {
		t.Fatal(err)
	}
	if now := syscall.Umask(0o077); now != 0o077 {
		t.Errorf("umask after the build: %03o, want 077", now)
	}
	fi, err := os.Stat(res.Files[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("output mode %v under umask 077, want 0644", fi.Mode().Perm())
	}
}

// testMeet waits until Count stages have reached the same Point, so a test
// can tell that pipelines run at the same time; with Fail it fails instead,
// and with Block it waits until the build is cancelled.
type testMeet struct {
	Name  string `json:"name"` // tells otherwise equal stages apart
	Point string `json:"point"`
	Count int    `json:"count"`
	Fail  bool   `json:"fail,omitempty"`
	Block bool   `json:"block,omitempty"`
	Path  string `json:"path"`
}

var (
	meetMu     sync.Mutex
	meetPoints = map[string]*meetPoint{}
)

type meetPoint struct {
	arrived int
	all     chan struct{}
}

func (s *testMeet) Run(ctx context.Context, env *stages.Env) error {
	if s.Fail {
		return errors.New("failing as asked")
	}
	if s.Block {
		<-ctx.Done()
		countRun(s.Point + "/cancelled")
		return ctx.Err()
	}
	meetMu.Lock()
	mp := meetPoints[s.Point]
	if mp == nil {
		mp = &meetPoint{all: make(chan struct{})}
		meetPoints[s.Point] = mp
	}
	mp.arrived++
	if mp.arrived == s.Count {
		close(mp.all)
	}
	meetMu.Unlock()
	select {
	case <-mp.all:
	case <-time.After(20 * time.Second):
		return fmt.Errorf("alone at %s: pipelines did not run at the same time", s.Point)
	}
	return os.WriteFile(filepath.Join(env.Tree, s.Path), []byte(s.Point), 0o644)
}

func init() {
	stages.Register("test-meet", 1, func(o json.RawMessage) (stages.Stage, error) {
		var s testMeet
		if err := stages.Decode(o, &s); err != nil {
			return nil, err
		}
		return &s, nil
	})
}

// meetLockfile has two independent pipelines whose first stages are given
// by a and b, and a last pipeline taking a file from each.
func meetLockfile(t *testing.T, tag string, a, b map[string]any) *manifest.Lockfile {
	copyFrom := func(tag, pipeline, file string) manifest.Stage {
		return manifest.Stage{Type: "test-copy", Options: opts(t, map[string]any{"tag": tag, "source": map[string]string{"pipeline": pipeline, "path": "/f"}, "filename": file})}
	}
	return &manifest.Lockfile{
		Version: manifest.FormatVersion, SourceDateEpoch: 1700000000,
		Entries: []manifest.Entry{{
			Distro: "test", Arch: "amd64", Type: "test",
			Pipelines: []manifest.Pipeline{
				{Name: "a", Stages: []manifest.Stage{{Type: "test-meet", Options: opts(t, a)}}},
				{Name: "b", Stages: []manifest.Stage{{Type: "test-meet", Options: opts(t, b)}}},
				{Name: "out", Build: "a", Stages: []manifest.Stage{
					copyFrom(tag+"/copy-a", "a", "a.txt"), copyFrom(tag+"/copy-b", "b", "b.txt"),
				}},
			},
		}},
	}
}

func TestBuildRunsIndependentPipelinesConcurrently(t *testing.T) {
	lf := meetLockfile(t, "concurrent",
		map[string]any{"name": "a", "point": "concurrent", "count": 2, "path": "/f"},
		map[string]any{"name": "b", "point": "concurrent", "count": 2, "path": "/f"})
	out := t.TempDir()
	res, err := Build(context.Background(), lf, "", "", WithCacheDir(t.TempDir()), WithOutputDir(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Files) != 2 {
		t.Fatalf("files: %+v", res.Files)
	}
	for _, f := range []string{"a.txt", "b.txt"} {
		if b, _ := os.ReadFile(filepath.Join(out, f)); string(b) != "copied:concurrent" {
			t.Errorf("%s: %q", f, b)
		}
	}
}

func TestBuildFailureCancelsOtherPipelines(t *testing.T) {
	lf := meetLockfile(t, "cancel",
		map[string]any{"point": "failing", "fail": true, "path": "/f"},
		map[string]any{"point": "blocking", "block": true, "path": "/f"})
	cache := t.TempDir()
	_, err := Build(context.Background(), lf, "", "", WithCacheDir(cache), WithOutputDir(t.TempDir()))
	if err == nil || err.Error() != "pipeline a stage 0 (test-meet): failing as asked" {
		t.Fatalf("error: %v, want the failing pipeline's", err)
	}
	if runCount("blocking/cancelled") != 1 {
		t.Error("the other pipeline was not cancelled")
	}
	if runCount("cancel/copy-a") != 0 {
		t.Error("a pipeline ran after its build pipeline failed")
	}
	if entries, _ := os.ReadDir(filepath.Join(cache, "tmp")); len(entries) != 0 {
		t.Errorf("cache tmp not cleaned: %v", entries)
	}
}

func TestBuildRunsSharedStagesOnce(t *testing.T) {
	write := func(tag, data string) manifest.Stage {
		return manifest.Stage{Type: "test-write", Options: opts(t, map[string]any{"tag": tag, "path": "/f", "data": data})}
	}
	copyFrom := func(pipeline, file string) manifest.Stage {
		return manifest.Stage{Type: "test-copy", Options: opts(t, map[string]any{"tag": "shared/copy", "source": map[string]string{"pipeline": pipeline, "path": "/f"}, "filename": file})}
	}
	lf := &manifest.Lockfile{
		Version: manifest.FormatVersion, SourceDateEpoch: 1700000000,
		Entries: []manifest.Entry{{
			Distro: "test", Arch: "amd64", Type: "test",
			Pipelines: []manifest.Pipeline{
				{Name: "a", Stages: []manifest.Stage{write("shared/base", "base"), write("shared/a", "+a")}},
				{Name: "b", Stages: []manifest.Stage{write("shared/base", "base"), write("shared/b", "+b")}},
				{Name: "out", Build: "a", Stages: []manifest.Stage{copyFrom("a", "a.txt"), copyFrom("b", "b.txt")}},
			},
		}},
	}
	var mu sync.Mutex
	var hits []string
	rec := WithEvents(func(e Event) {
		if s, ok := e.(StageDone); ok && (s.CacheHit || s.SharedWith != "") {
			mu.Lock()
			hits = append(hits, fmt.Sprintf("%s/%d from %s cached=%v", s.Pipeline, s.Index, s.SharedWith, s.CacheHit))
			mu.Unlock()
		}
	})
	out := t.TempDir()
	if _, err := Build(context.Background(), lf, "", "", WithCacheDir(t.TempDir()), WithOutputDir(out), rec); err != nil {
		t.Fatal(err)
	}
	if n := runCount("shared/base"); n != 1 {
		t.Errorf("the shared stage ran %d times, want 1", n)
	}
	if len(hits) != 1 || (hits[0] != "a/0 from b cached=false" && hits[0] != "b/0 from a cached=false") {
		t.Errorf("stages taken from the other pipeline: %v, want a/0 from b or b/0 from a, not cache hits", hits)
	}
	for f, want := range map[string]string{"a.txt": "copied:base+a", "b.txt": "copied:base+b"} {
		if b, _ := os.ReadFile(filepath.Join(out, f)); string(b) != want {
			t.Errorf("%s: %q, want %q", f, b, want)
		}
	}
}
