package publish

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/cosign/v2/pkg/cosign"

	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/pkg/publish/publishtest"
)

// fixture returns the test lockfile; with multi, its qcow2 entry is also
// listed for aarch64.
func fixture(t testing.TB, multi bool) *manifest.Lockfile {
	t.Helper()
	lf, err := manifest.Load(filepath.Join("..", "..", "testdata", "lock", "blueprint.lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	if multi {
		e, err := lf.Entry("x86_64", "qcow2")
		if err != nil {
			t.Fatal(err)
		}
		arm := *e
		arm.Arch = "aarch64"
		lf.Entries = append(lf.Entries, arm)
	}
	return lf
}

// writeFile writes size random bytes to dir/rel.
func writeFile(t testing.TB, dir, rel string, size int) string {
	t.Helper()
	p := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, size)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// inProcessRegistry serves go-containerregistry's registry on 127.0.0.1
// and returns its host:port.
func inProcessRegistry(t testing.TB, referrers bool) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.WithReferrersSupport(referrers), registry.Logger(log0())))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// keyPair writes a cosign key pair protected by password into dir.
func keyPair(t testing.TB, dir, password string) (priv, pub string) {
	t.Helper()
	kb, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return []byte(password), nil })
	if err != nil {
		t.Fatal(err)
	}
	priv, pub = filepath.Join(dir, "cosign.key"), filepath.Join(dir, "cosign.pub")
	if err := os.WriteFile(priv, kb.PrivateBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pub, kb.PublicBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

func loadSigner(t testing.TB, key, password string) *Signer {
	t.Helper()
	s, err := LoadKey(key, func() ([]byte, error) { return []byte(password), nil })
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fastRetries keeps failure tests quick: go-containerregistry retries
// transient errors with a backoff of seconds by default.
func fastRetries() Option {
	return WithRemoteOptions(remote.WithRetryBackoff(remote.Backoff{Duration: 10 * time.Millisecond, Factor: 1, Steps: 1}))
}

// requireTool skips unless the named tools are on PATH (or in ~/go/bin).
func requireTool(t testing.TB, tools ...string) map[string]string {
	return publishtest.RequireTools(t, tools...)
}

func dockerRegistry(t testing.TB) string { return publishtest.DockerRegistry(t) }

// indexDigestOf returns the digest a tag points at.
func digestOf(t testing.TB, ref string) string {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	d, err := remote.Head(r)
	if err != nil {
		t.Fatalf("resolving %s: %v", ref, err)
	}
	return d.Digest.String()
}

func fetchJSON(t testing.TB, ref string, v any) []byte {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	d, err := remote.Get(r)
	if err != nil {
		t.Fatalf("fetching %s: %v", ref, err)
	}
	if err := json.Unmarshal(d.Manifest, v); err != nil {
		t.Fatalf("decoding %s: %v", ref, err)
	}
	return d.Manifest
}

func run(t testing.TB, ctx context.Context, env []string, bin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// log0 silences the in-process registry.
func log0() *log.Logger { return log.New(io.Discard, "", 0) }
