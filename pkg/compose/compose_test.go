package compose

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/cosign/v2/pkg/cosign"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
	"github.com/image-builder-action/image-builder-action/pkg/ibuild"
	"github.com/image-builder-action/image-builder-action/pkg/lock/locktest"
	"github.com/image-builder-action/image-builder-action/pkg/publish/publishtest"
	"github.com/image-builder-action/image-builder-action/pkg/sources/sourcestest"
	"github.com/image-builder-action/image-builder-action/pkg/testutil"
)

func testCache(t testing.TB) string { return testutil.Cache(t) }

// needBuild skips unless builds can run here: not -short, root, the
// archive reachable.
func needBuild(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds: skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("building needs root")
	}
	locktest.NeedArchive(t)
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testutil.LogWriter(t), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func openService(t testing.TB, cfg Config) *Service {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.CacheDir == "" {
		cfg.CacheDir = testCache(t)
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 100 * time.Millisecond
	}
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("closing service: %v", err)
		}
	})
	return s
}

// wait polls the compose until it is final or the deadline passes.
func wait(t testing.TB, s *Service, owner, id string, d time.Duration) *Compose {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	ch, err := s.Watch(ctx, owner, id)
	if err != nil {
		t.Fatal(err)
	}
	var last *Compose
	for c := range ch {
		last = c
	}
	if last == nil || !last.Status.Final() {
		t.Fatalf("compose %s not finished after %s: %+v", id, d, last)
	}
	return last
}

const tarBlueprint = `name = "compose-test"
version = "0.0.1"
distro = "debian-12"
[customizations]
hostname = "compose-test"
`

// Requests refused before anything is queued name the field.
func TestSubmitRefusals(t *testing.T) {
	s := openService(t, Config{Publish: PublishConfig{Repositories: []string{"127.0.0.1:5000/allowed", "registry.example"}}})
	ctx := context.Background()
	pub := func(ref string, sign bool) Request {
		return Request{Blueprint: []byte(tarBlueprint), Images: []ImageRequest{{Arch: "x86_64", Type: "tar", Publish: &PublishTarget{Ref: ref, Sign: sign}}}}
	}
	for _, tc := range []struct {
		name  string
		req   Request
		field string
	}{
		{"no images", Request{Blueprint: []byte(tarBlueprint)}, "images"},
		{"bad arch", Request{Blueprint: []byte(tarBlueprint), Images: []ImageRequest{{Arch: "sparc", Type: "tar"}}}, "images[0].arch"},
		{"bad type", Request{Blueprint: []byte(tarBlueprint), Images: []ImageRequest{{Arch: "x86_64", Type: "floppy"}}}, "images[0].type"},
		{"bad distro", Request{Blueprint: []byte(tarBlueprint), Distro: "fedora-99", Images: []ImageRequest{{Arch: "x86_64", Type: "tar"}}}, "distro"},
		{"bad blueprint", Request{Blueprint: []byte("name = 3\n"), Images: []ImageRequest{{Arch: "x86_64", Type: "tar"}}}, "blueprint"},
		{"file repository", Request{Blueprint: []byte(tarBlueprint), Images: []ImageRequest{{Arch: "x86_64", Type: "tar"}},
			Repositories: []blueprint.RepositoryCustomization{{ID: "local", BaseURLs: []string{"file:///etc"}}}}, "repositories[0].baseurls[0]"},
		{"file repository in blueprint", Request{Blueprint: []byte(tarBlueprint + "[[customizations.repositories]]\nid = \"x\"\nbaseurls = [\"file:///etc\"]\nsuites = [\"bookworm\"]\ncomponents = [\"main\"]\n"),
			Images: []ImageRequest{{Arch: "x86_64", Type: "tar"}}}, "blueprint.customizations.repositories[0].baseurls[0]"},
		{"file by local path", Request{Blueprint: []byte(tarBlueprint + "[[customizations.files]]\npath = \"/etc/stolen\"\nuri = \"/etc/shadow\"\n"),
			Images: []ImageRequest{{Arch: "x86_64", Type: "tar"}}}, "blueprint.customizations.files[0].uri"},
		{"file by file URL", Request{Blueprint: []byte(tarBlueprint + "[[customizations.files]]\npath = \"/etc/stolen\"\nuri = \"file:///etc/shadow\"\n"),
			Images: []ImageRequest{{Arch: "x86_64", Type: "tar"}}}, "blueprint.customizations.files[0].uri"},
		{"publish elsewhere", pub("127.0.0.1:5000/other/x", false), "images[0].publish.ref"},
		{"publish beside the prefix", pub("127.0.0.1:5000/allowedx", false), "images[0].publish.ref"},
		{"publish to another port", pub("127.0.0.1:5001/allowed/x", false), "images[0].publish.ref"},
		{"publish by digest", pub("127.0.0.1:5000/allowed/x@sha256:"+strings.Repeat("a", 64), false), "images[0].publish.ref"},
		{"publish nowhere", pub(" ", false), "images[0].publish.ref"},
		{"publish signed without a key", pub("127.0.0.1:5000/allowed/x:v1", true), "images[0].publish.sign"},
		{"two images, one tag", Request{Blueprint: []byte(tarBlueprint), Images: []ImageRequest{
			{Arch: "x86_64", Type: "tar", Publish: &PublishTarget{Ref: "127.0.0.1:5000/allowed/x:v1"}},
			{Arch: "aarch64", Type: "tar", Publish: &PublishTarget{Ref: " 127.0.0.1:5000/allowed/x:v1"}}}}, "images[1].publish.ref"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Submit(ctx, "alice", tc.req)
			var re *RequestError
			if !errors.As(err, &re) || re.Field != tc.field {
				t.Fatalf("got %v, want a *RequestError for field %q", err, tc.field)
			}
		})
	}
	list, total, err := s.List(ctx, "alice", ListOptions{})
	if err != nil || total != 0 || len(list) != 0 {
		t.Fatalf("after refusals: %d composes (%v), want none queued", total, err)
	}
}

// One owner never sees another's compose; cancel ends a queued compose
// as a failure, delete removes it.
func TestOwnersCancelDelete(t *testing.T) {
	// No workers: composes stay queued.
	s := openService(t, Config{Workers: 0})
	ctx := context.Background()
	c, err := s.Submit(ctx, "alice", Request{Blueprint: []byte(tarBlueprint), Images: []ImageRequest{{Arch: "x86_64", Type: "tar"}}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Status != StatusPending || c.BlueprintName != "compose-test" || len(c.Images) != 1 {
		t.Fatalf("submitted: %+v", c)
	}
	if _, err := s.Get(ctx, "bob", c.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("bob got alice's compose: %v", err)
	}
	if err := s.Cancel(ctx, "bob", c.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("bob cancelled alice's compose: %v", err)
	}
	if _, _, err := s.Artifact(ctx, "bob", c.ID, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("bob opened alice's artifact: %v", err)
	}
	if l, n, _ := s.List(ctx, "bob", ListOptions{}); n != 0 || len(l) != 0 {
		t.Fatalf("bob lists %d composes", n)
	}
	if _, err := s.Get(ctx, "alice", "not-a-uuid"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("bad id: %v", err)
	}
	if err := s.Delete(ctx, "alice", c.ID); !errors.Is(err, ErrNotFinished) {
		t.Fatalf("deleting a queued compose: %v", err)
	}
	if err := s.Cancel(ctx, "alice", c.ID); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, "alice", c.ID)
	if err != nil || got.Status != StatusFailure || !got.Cancelled {
		t.Fatalf("after cancel: %+v %v", got, err)
	}
	if err := s.Cancel(ctx, "alice", c.ID); !errors.Is(err, ErrFinished) {
		t.Fatalf("cancel twice: %v", err)
	}
	if l, n, _ := s.List(ctx, "alice", ListOptions{Statuses: []Status{StatusFailure}}); n != 1 || len(l) != 1 {
		t.Fatalf("alice lists %d failed composes, want 1", n)
	}
	if err := s.Delete(ctx, "alice", c.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "alice", c.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
}

// A whole compose in one process: lock, build, artifact, log, lockfile;
// artifacts in an S3 bucket (versitygw), where any API node reads them.
func TestComposeTar(t *testing.T) {
	needBuild(t)
	tools := publishtest.RequireTools(t, "oras", "cosign")
	reg := publishtest.DockerRegistry(t)
	keyDir := t.TempDir()
	kb, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return []byte("pw"), nil })
	if err != nil {
		t.Fatal(err)
	}
	key, pub := filepath.Join(keyDir, "cosign.key"), filepath.Join(keyDir, "cosign.pub")
	if err := os.WriteFile(key, kb.PrivateBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pub, kb.PublicBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	s := openService(t, Config{Workers: 1, Artifacts: sourcestest.S3(t, "artifacts", ""), Publish: PublishConfig{
		Repositories: []string{reg + "/composes"},
		Sign:         ibuild.SignRequest{Mode: ibuild.SignKey, Key: key, Password: func() ([]byte, error) { return []byte("pw"), nil }},
	}})
	ctx := context.Background()
	c, err := s.Submit(ctx, "alice", Request{Blueprint: []byte(tarBlueprint), Images: []ImageRequest{{Arch: "x86_64", Type: "tar",
		Publish: &PublishTarget{Ref: reg + "/composes/tar:v1", Sign: true}}}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c = wait(t, s, "alice", c.ID, 15*time.Minute)
	t.Logf("compose took %s", time.Since(start).Round(time.Second))
	if c.Status != StatusSuccess {
		t.Fatalf("compose ended %s: %s", c.Status, c.Error)
	}
	im := c.Images[0]
	if im.Artifact == nil || im.Artifact.Name != "root.tar.zst" || im.Progress.Done != im.Progress.Total || im.Progress.Total == 0 || im.Progress.Stage != "" {
		t.Fatalf("image: %+v", im)
	}
	r, a, err := s.Artifact(ctx, "alice", c.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(t.TempDir(), a.Name)
	f, _ := os.Create(tmp)
	if _, err := io.Copy(f, r); err != nil {
		t.Fatal(err)
	}
	r.Close()
	f.Close()
	if got := testutil.FileSHA256(t, tmp); got != a.SHA256 {
		t.Fatalf("artifact sha256 %s, record says %s", got, a.SHA256)
	}
	lf, err := s.Lockfile(ctx, "alice", c.ID)
	if err != nil || !strings.Contains(string(lf), `"type": "tar"`) {
		t.Fatalf("lockfile: %v\n%.300s", err, lf)
	}
	lr, err := s.Log(ctx, "alice", c.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	log, _ := io.ReadAll(lr)
	lr.Close()
	if !strings.Contains(string(log), "built root.tar.zst") {
		t.Fatalf("log:\n%s", log)
	}
	if _, ok := s.store.(*S3Store); !ok {
		t.Fatalf("artifact store %T, want S3", s.store)
	}
	// The whole log is in the store: the live chunks are gone.
	if live, err := s.db.liveLog(ctx, c.ID, 0); err != nil || len(live) != 0 {
		t.Fatalf("live log after the build: %v %q", err, live)
	}
	if entries, _ := os.ReadDir(filepath.Join(s.cfg.Dir, "work")); len(entries) != 0 {
		t.Fatalf("work area left behind: %v", entries)
	}

	// Published: the record names the manifest by digest; the registry
	// has it, oras pulls the same file, cosign verifies the signature
	// with the operator's public key.
	p := im.Published
	if p == nil || !strings.HasPrefix(p.Ref, reg+"/composes/tar@sha256:") || !p.Signed || p.Signature == "" ||
		len(p.Tags) != 1 || p.Tags[0] != reg+"/composes/tar:v1" {
		t.Fatalf("published: %+v", p)
	}
	d, err := name.NewDigest(p.Ref)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(d)
	if err != nil || desc.Digest.String() != d.DigestStr() {
		t.Fatalf("registry has %v (%v), record says %s", desc, err, d.DigestStr())
	}
	pulled := t.TempDir()
	if out, err := exec.Command(tools["oras"], "pull", "--plain-http", "-o", pulled, p.Ref).CombinedOutput(); err != nil {
		t.Fatalf("oras pull %s: %v\n%s", p.Ref, err, out)
	}
	if got := testutil.FileSHA256(t, filepath.Join(pulled, a.Name)); got != a.SHA256 {
		t.Fatalf("oras pulled sha256 %s, the build's is %s", got, a.SHA256)
	}
	verify := exec.Command(tools["cosign"], "verify", "--key", pub, "--insecure-ignore-tlog=true", "--allow-http-registry", "--allow-insecure-registry", p.Ref)
	verify.Env = append(os.Environ(), "COSIGN_EXPERIMENTAL=0", "TUF_ROOT="+t.TempDir())
	if out, err := verify.CombinedOutput(); err != nil {
		t.Fatalf("cosign verify %s: %v\n%s", p.Ref, err, out)
	}
	if !strings.Contains(string(log), "published "+p.Ref) {
		t.Fatalf("log does not name the published reference:\n%s", log)
	}
}

// What cannot be locked fails the compose at once, naming the cause,
// and queues no build.
func TestLockFailure(t *testing.T) {
	if testing.Short() {
		t.Skip("locks against the archive: skipped with -short")
	}
	locktest.NeedArchive(t)
	s := openService(t, Config{Workers: 1})
	ctx := context.Background()
	c, err := s.Submit(ctx, "alice", Request{
		Blueprint: []byte(tarBlueprint + "[[packages]]\nname = \"no-such-package-ibuild\"\n"),
		Images:    []ImageRequest{{Arch: "x86_64", Type: "tar"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	c = wait(t, s, "alice", c.ID, 5*time.Minute)
	if c.Status != StatusFailure || !strings.Contains(c.Error, "no-such-package-ibuild") || c.Finished == nil {
		t.Fatalf("compose: %s %q", c.Status, c.Error)
	}
	if _, err := s.Lockfile(ctx, "alice", c.ID); !errors.Is(err, ErrNotFinished) {
		t.Fatalf("lockfile of a failed lock: %v", err)
	}
	if im := c.Images[0]; im.Status != StatusFailure || im.Started != nil || !strings.Contains(im.Error, "no-such-package-ibuild") {
		t.Fatalf("image: %+v, want failed, never started", im)
	}
}

// Allowed repositories: a whole registry, or a repository and those
// under it, never a neighbour that shares the prefix's text.
func TestPublishAllowed(t *testing.T) {
	c := PublishConfig{Repositories: []string{"127.0.0.1:5000/team/", "registry.example", "docker.io/acme"}}
	for ref, want := range map[string]bool{
		"127.0.0.1:5000/team":         true,
		"127.0.0.1:5000/team/img":     true,
		"127.0.0.1:5000/teams/img":    false,
		"127.0.0.1:5000/other":        false,
		"localhost:5000/team/img":     false,
		"registry.example/any/path":   true,
		"registry.example:443/any":    false,
		"acme/img":                    true,
		"index.docker.io/acme/img":    true,
		"ghcr.io/acme/img":            false,
		"registry.example.evil.com/x": false,
	} {
		r, err := name.NewRepository(ref)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.allowed(r); got != want {
			t.Errorf("%s allowed: %v, want %v", ref, got, want)
		}
	}
}
