package lock_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
	"github.com/image-builder-action/image-builder-action/pkg/lock"
	"github.com/image-builder-action/image-builder-action/pkg/lock/locktest"
	"github.com/image-builder-action/image-builder-action/pkg/publish/publishtest"
	"github.com/image-builder-action/image-builder-action/pkg/repo"
	"github.com/image-builder-action/image-builder-action/stages"
)

// pushImage pushes a small random Linux image to host/repo: one image
// for one architecture, an index for several. It returns what was pushed
// for each architecture.
func pushImage(t *testing.T, host, repo string, arches ...string) map[string]v1.Image {
	t.Helper()
	ref, err := name.ParseReference(host + "/" + repo)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]v1.Image{}
	var adds []mutate.IndexAddendum
	for _, a := range arches {
		img, err := random.Image(2048, 2)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cfg = cfg.DeepCopy()
		cfg.OS, cfg.Architecture = "linux", a
		if img, err = mutate.ConfigFile(img, cfg); err != nil {
			t.Fatal(err)
		}
		out[a] = img
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: a}}})
	}
	if len(arches) == 1 {
		err = remote.Write(ref, out[arches[0]])
	} else {
		err = remote.WriteIndex(ref, mutate.AppendManifests(empty.Index, adds...))
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func testFetcher(t *testing.T) lock.Fetcher {
	cache := os.Getenv("IBUILD_TEST_CACHE")
	if cache == "" {
		cache = filepath.Join(os.TempDir(), "ibuild-test-cache")
	}
	return &repo.Client{CacheDir: filepath.Join(cache, "cli", "metadata")}
}

// containersStage is the options of the lockfile's containers stage.
func containersStage(t *testing.T, bp *blueprint.Blueprint, srcs []repo.Source) (*stages.Containers, error) {
	t.Helper()
	lf, err := lock.Lock(context.Background(), bp, bp.Source.File, lock.WithFetcher(testFetcher(t)), lock.WithSources(srcs...),
		lock.WithDistro("debian-12"), lock.WithArches("x86_64"), lock.WithTypes("qcow2"))
	if err != nil {
		return nil, err
	}
	e := lf.Entries[0]
	var got *stages.Containers
	pkgs := map[string]bool{}
	for _, p := range e.Pipelines {
		for _, s := range p.Stages {
			switch s.Type {
			case "containers":
				got = &stages.Containers{}
				if err := json.Unmarshal(s.Options, got); err != nil {
					t.Fatal(err)
				}
			case "systemd":
				if !strings.Contains(string(s.Options), stages.ContainersUnit) {
					t.Errorf("systemd stage does not enable %s: %s", stages.ContainersUnit, s.Options)
				}
			}
		}
	}
	for _, p := range lf.Packages {
		pkgs[p.Name] = true
	}
	if !pkgs["podman"] || !pkgs["skopeo"] {
		t.Errorf("podman and skopeo are not in the package set")
	}
	if got == nil {
		t.Fatal("no containers stage")
	}
	return got, nil
}

// [[containers]] is resolved at lock on Debian's docker-registry: the
// amd64 image of an index and a single image, each pinned by manifest
// digest with its config and layers; an architecture the source lacks
// and local-storage are refused at their fields.
func TestContainersLock(t *testing.T) {
	srcs := locktest.NeedArchive(t)
	host := publishtest.DockerRegistry(t)
	multi := pushImage(t, host, "test/multi:v1", "arm64", "amd64")
	single := pushImage(t, host, "test/single:v2", "amd64")
	pushImage(t, host, "test/arm:v3", "arm64")

	doc := `name = "ctr"
version = "1.0.0"
[[containers]]
source = "` + host + `/test/multi:v1"
[[containers]]
source = "` + host + `/test/single:v2"
name = "localhost/single:latest"
tls-verify = false
`
	bp, err := blueprint.Parse("ctr.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	got, err := containersStage(t, bp, srcs)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Images) != 2 {
		t.Fatalf("images %+v", got.Images)
	}
	for i, want := range []struct {
		img        v1.Image
		name       string
		tlsVerify  bool
		sourceRepo string
	}{{multi["amd64"], host + "/test/multi:v1", true, "multi"}, {single["amd64"], "localhost/single:latest", false, "single"}} {
		im := got.Images[i]
		d, _ := want.img.Digest()
		cfg, _ := want.img.ConfigName()
		layers, _ := want.img.Layers()
		if im.Digest != d.String() || im.Config != cfg.String() || im.Name != want.name || len(im.Layers) != len(layers) {
			t.Errorf("images[%d] = %+v, want digest %s config %s name %s", i, im, d, cfg, want.name)
		}
		for j, l := range layers {
			ld, _ := l.Digest()
			if j < len(im.Layers) && im.Layers[j].Digest != ld.String() {
				t.Errorf("images[%d].layers[%d] = %s, want %s", i, j, im.Layers[j].Digest, ld)
			}
		}
		if (im.TLSVerify == nil || *im.TLSVerify) != want.tlsVerify {
			t.Errorf("images[%d].tls_verify = %v", i, im.TLSVerify)
		}
	}

	for _, tc := range []struct{ doc, want string }{
		{`[[containers]]
source = "` + host + `/test/arm:v3"`, `containers[0].source: it has no linux/amd64 image (it has linux/arm64)`},
		{`[[containers]]
source = "` + host + `/test/none:v1"`, `containers[0].source: resolving ` + host + `/test/none:v1`},
		{`[[containers]]
source = "` + host + `/test/single:v2"
local-storage = true`, `containers[0].local-storage: debian-12 cannot honour this: it takes the image from the building host's containers-storage`},
	} {
		bp, err := blueprint.Parse("ctr.toml", []byte("name = \"ctr\"\nversion = \"1.0.0\"\n\n"+tc.doc+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := containersStage(t, bp, srcs); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got %v\nwant %q", tc.doc, err, tc.want)
		}
	}
}
