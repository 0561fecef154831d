package publish

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/image-builder-action/image-builder-action/pkg/testutil"
)

// Tests with the real tools: Debian's docker-registry (no referrers API:
// cosign's tag scheme), go-containerregistry's registry with the referrers
// API (OCI 1.1 path), oras to pull, cosign to verify.

// emptyTrustedRoot lets cosign verify Sigstore bundles with a key offline:
// without --trusted-root it fetches the public-good root over the network.
const emptyTrustedRoot = `{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`

type toolEnv struct {
	tools map[string]string
	dir   string
	env   []string
}

func newToolEnv(t *testing.T) *toolEnv {
	tools := requireTool(t, "oras", "cosign")
	dir := t.TempDir()
	return &toolEnv{tools: tools, dir: dir, env: []string{
		"HOME=" + dir, // cosign's TUF cache and oras' config stay in the test
		"TUF_ROOT=" + filepath.Join(dir, "tuf"),
		"DOCKER_CONFIG=" + filepath.Join(dir, "docker"),
		"COSIGN_EXPERIMENTAL=0",
	}}
}

func (e *toolEnv) run(t *testing.T, tool string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return run(t, ctx, e.env, e.tools[tool], args...)
}

func (e *toolEnv) mustRun(t *testing.T, tool string, args ...string) string {
	t.Helper()
	out, err := e.run(t, tool, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", tool, strings.Join(args, " "), err, out)
	}
	if testing.Verbose() {
		t.Logf("passed: %s %s\n%s", tool, strings.Join(args, " "), firstLines(out, 6))
	}
	return out
}

func (e *toolEnv) mustFail(t *testing.T, tool string, args ...string) string {
	t.Helper()
	out, err := e.run(t, tool, args...)
	if err == nil {
		t.Fatalf("%s %s passed, want a failure\n%s", tool, strings.Join(args, " "), out)
	}
	if testing.Verbose() {
		t.Logf("failed as it should: %s %s\n%s", tool, strings.Join(args, " "), firstLines(out, 3))
	}
	return out
}

// verifyArgs are the offline flags FACTS.md names.
func verifyArgs(pub string, extra ...string) []string {
	return append([]string{"--key", pub, "--insecure-ignore-tlog=true", "--allow-http-registry", "--allow-insecure-registry"}, extra...)
}

// orasPull pulls ref (with --platform) and checks the file is file.
func (e *toolEnv) orasPull(t *testing.T, ref, platform, file string) {
	t.Helper()
	out := filepath.Join(e.dir, "pull", strings.NewReplacer("/", "_", ":", "_", "@", "_").Replace(ref+platform))
	args := []string{"pull", "--plain-http", "-o", out}
	if platform != "" {
		args = append(args, "--platform", platform)
	}
	e.mustRun(t, "oras", append(args, ref)...)
	got := fileSHA256(t, filepath.Join(out, filepath.Base(file)))
	if want := fileSHA256(t, file); got != want {
		t.Fatalf("oras pull %s: %s has sha256 %s, %s has %s", ref, filepath.Base(file), got, file, want)
	}
}

func TestToolsTagFallback(t *testing.T) {
	if testing.Short() {
		t.Skip("starts docker-registry and runs oras and cosign")
	}
	e := newToolEnv(t)
	host := dockerRegistry(t)
	ctx := context.Background()
	key, pub := keyPair(t, e.dir, "secret")
	_, otherPub := keyPair(t, t.TempDir(), "other")
	s := loadSigner(t, key, "secret")
	lf := fixture(t, false)
	out := filepath.Join(e.dir, "out")
	file := writeFile(t, out, "disk.qcow2", 3<<20+123)
	if img := os.Getenv("IBUILD_TEST_IMAGE"); img != "" {
		// The end-to-end test hands a real qcow2 over: it is published as
		// the fixture's x86_64/qcow2 entry.
		abs, err := filepath.Abs(img)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(abs)
		if err != nil {
			t.Fatalf("IBUILD_TEST_IMAGE: %v", err)
		}
		if err := os.Remove(file); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(abs, file); err != nil {
			t.Fatal(err)
		}
		t.Logf("publishing IBUILD_TEST_IMAGE %s (%d bytes)", img, fi.Size())
	}
	ref := host + "/ibuild/example:v1"
	res, err := Publish(ctx, lf, out, ref, WithTypes("qcow2"), WithSigner(s), WithGetenv(envOf(nil)))
	if err != nil {
		t.Fatal(err)
	}
	if res.Mode != ModeTags {
		t.Fatalf("docker-registry: mode %q, want tags (distribution 2.8 has no referrers API)", res.Mode)
	}
	e.orasPull(t, ref, "linux/amd64", file)
	e.orasPull(t, res.Images[0].Artifacts[0].Ref, "", file)

	for _, r := range []string{ref, res.Images[0].Artifacts[0].Ref} {
		e.mustRun(t, "cosign", append([]string{"verify"}, verifyArgs(pub, r)...)...)
		for _, typ := range []string{"spdxjson", "slsaprovenance1"} {
			out := e.mustRun(t, "cosign", append([]string{"verify-attestation", "--type", typ}, verifyArgs(pub, r)...)...)
			if !strings.Contains(out, "payloadType") {
				t.Errorf("cosign verify-attestation --type %s printed no attestation:\n%s", typ, out)
			}
		}
		e.mustFail(t, "cosign", append([]string{"verify"}, verifyArgs(otherPub, r)...)...)
		for _, typ := range []string{"spdxjson", "slsaprovenance1"} {
			e.mustFail(t, "cosign", append([]string{"verify-attestation", "--type", typ}, verifyArgs(otherPub, r)...)...)
		}
	}
	tamper(t, e, ref, pub)
}

// tamper points the tag at another manifest (the artifact's own, unsigned
// twin with one annotation changed): every verification must fail.
func tamper(t *testing.T, e *toolEnv, ref, pub string) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	d, err := remote.Get(r)
	if err != nil {
		t.Fatal(err)
	}
	forged := bytes.Replace(d.Manifest, []byte(`"dev.ibuild.type":"qcow2"`), []byte(`"dev.ibuild.type":"qcow3"`), 1)
	if bytes.Equal(forged, d.Manifest) {
		t.Fatal("could not forge the index")
	}
	if err := remote.Put(r, rawManifest{forged, d.MediaType}); err != nil {
		t.Fatal(err)
	}
	e.mustFail(t, "cosign", append([]string{"verify"}, verifyArgs(pub, ref)...)...)
	for _, typ := range []string{"spdxjson", "slsaprovenance1"} {
		e.mustFail(t, "cosign", append([]string{"verify-attestation", "--type", typ}, verifyArgs(pub, ref)...)...)
	}
}

func TestToolsReferrers(t *testing.T) {
	if testing.Short() {
		t.Skip("runs oras and cosign")
	}
	e := newToolEnv(t)
	host := inProcessRegistry(t, true)
	ctx := context.Background()
	key, pub := keyPair(t, e.dir, "secret")
	_, otherPub := keyPair(t, t.TempDir(), "other")
	root := filepath.Join(e.dir, "trusted_root.json")
	if err := os.WriteFile(root, []byte(emptyTrustedRoot), 0o644); err != nil {
		t.Fatal(err)
	}
	s := loadSigner(t, key, "secret")
	lf := fixture(t, true)
	out := filepath.Join(e.dir, "out")
	amd := writeFile(t, out, "x86_64/disk.qcow2", 2<<20+5)
	arm := writeFile(t, out, "aarch64/disk.qcow2", 1<<20+3)
	ref := host + "/ibuild/multi:v1"
	res, err := Publish(ctx, lf, out, ref, WithTypes("qcow2"), WithSigner(s), WithGetenv(envOf(nil)))
	if err != nil {
		t.Fatal(err)
	}
	if res.Mode != ModeReferrers {
		t.Fatalf("mode %q, want referrers", res.Mode)
	}
	e.orasPull(t, ref, "linux/amd64", amd)
	e.orasPull(t, ref, "linux/arm64", arm)
	// oras sees the referrers through the API (this registry reports the
	// config's media type as their artifactType; the annotations tell).
	tree := e.mustRun(t, "oras", "discover", "--plain-http", "--format", "tree", ref)
	if strings.Count(tree, "dev.sigstore.bundle.predicateType") != 5 {
		t.Errorf("oras discover shows no bundle:\n%s", tree)
	}
	refs := []string{ref}
	for _, a := range res.Images[0].Artifacts {
		refs = append(refs, a.Ref)
	}
	for _, r := range refs {
		e.mustRun(t, "cosign", append([]string{"verify"}, verifyArgs(pub, "--trusted-root", root, r)...)...)
		for _, typ := range []string{"spdxjson", "slsaprovenance1"} {
			e.mustRun(t, "cosign", append([]string{"verify-attestation", "--type", typ}, verifyArgs(pub, "--trusted-root", root, r)...)...)
			e.mustFail(t, "cosign", append([]string{"verify-attestation", "--type", typ}, verifyArgs(otherPub, "--trusted-root", root, r)...)...)
		}
		e.mustFail(t, "cosign", append([]string{"verify"}, verifyArgs(otherPub, "--trusted-root", root, r)...)...)
	}
	tamper(t, e, ref, pub)
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = append(lines[:n], "…")
	}
	for i, l := range lines {
		if len(l) > 300 {
			lines[i] = l[:300] + "…"
		}
	}
	return strings.Join(lines, "\n")
}

// fileSHA256 hashes a file as it streams (real images are big).
func fileSHA256(t *testing.T, p string) string { return testutil.FileSHA256(t, p) }
