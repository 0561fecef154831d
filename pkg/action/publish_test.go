package action

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/cosign/v2/pkg/cosign"
)

// publishEnv is a workspace holding the fixture lockfile and a built qcow2
// (random bytes: what is checked is the wiring, the registry has the real
// artifacts), and an in-process registry on 127.0.0.1.
func publishEnv(t *testing.T) (e *ghEnv, host, sha string, size int64) {
	t.Helper()
	e = newGHEnv(t)
	golden, err := os.ReadFile("../../testdata/lock/blueprint.lock.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.workspace, "bp.lock.json"), golden, 0o644); err != nil {
		t.Fatal(err)
	}
	disk := make([]byte, 3<<20)
	rand.Read(disk)
	if err := os.MkdirAll(filepath.Join(e.workspace, "out"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.workspace, "out", "disk.qcow2"), disk, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(disk)
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return e, strings.TrimPrefix(srv.URL, "http://"), hex.EncodeToString(sum[:]), int64(len(disk))
}

func TestPublish(t *testing.T) {
	e, host, sha, size := publishEnv(t)
	kb, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return []byte("pw-for-test"), nil })
	if err != nil {
		t.Fatal(err)
	}
	repo := host + "/ibuild/fixture"
	err = e.run(map[string]string{
		"command": "publish", "lockfile": "bp.lock.json", "output-dir": "out",
		"ref": repo, "tags": "latest, v1", "sign": "true",
		"cosign-key": string(kb.PrivateBytes), "cosign-password": "pw-for-test", "github-token": "ghs_token_for_test",
	})
	if err != nil {
		t.Fatalf("publish: %v\n%s", err, e.stdout.String())
	}
	out := e.outputs()
	if !sha256RE.MatchString(strings.TrimPrefix(out["digest"], "sha256:")) || out["ref"] != repo+"@"+out["digest"] {
		t.Errorf("digest %q, ref %q", out["digest"], out["ref"])
	}
	var images []Image
	if err := json.Unmarshal([]byte(out["images"]), &images); err != nil {
		t.Fatalf("images output %q: %v", out["images"], err)
	}
	if len(images) != 1 || !strings.HasPrefix(images[0].Digest, "sha256:") {
		t.Fatalf("images: %+v", images)
	}
	want := Image{Arch: "x86_64", Type: "qcow2", Path: "out/disk.qcow2", Size: size, SHA256: sha, Digest: images[0].Digest}
	if d := cmp.Diff(want, images[0]); d != "" {
		t.Errorf("images (-want +got):\n%s", d)
	}

	// What the outputs name is in the registry, tagged.
	for _, ref := range []string{out["ref"], repo + ":latest", repo + ":v1", repo + "@" + images[0].Digest} {
		r, err := name.ParseReference(ref)
		if err != nil {
			t.Fatal(err)
		}
		d, err := remote.Head(r)
		if err != nil {
			t.Errorf("%s: %v", ref, err)
			continue
		}
		if !strings.HasSuffix(ref, images[0].Digest) && d.Digest.String() != out["digest"] {
			t.Errorf("%s is %s, want %s", ref, d.Digest, out["digest"])
		}
	}

	if !strings.Contains(e.stdout.String(), "hashed x86_64/qcow2: out/disk.qcow2 (3.0 MiB") {
		t.Errorf("log:\n%s", e.stdout.String())
	}
	s := e.summary()
	for _, w := range []string{
		"## ibuild publish",
		"- **qcow2**: `" + out["ref"] + "` (tags: " + repo + ":latest, " + repo + ":v1); signature, sbom, provenance",
		"Signatures, SBOM and provenance attached as",
		"| Arch | Type | File | Size | SHA-256 | Digest |",
		"| x86_64 | qcow2 | `out/disk.qcow2` | 3.0 MiB | `" + sha + "` | `" + images[0].Digest + "` |",
	} {
		if !strings.Contains(s, w) {
			t.Errorf("summary lacks %q:\n%s", w, s)
		}
	}
	// The key, its password and the token were masked first.
	cmds := e.commands()
	for i, w := range []string{"::add-mask::pw-for-test", "::add-mask::ghs_token_for_test"} {
		if i >= len(cmds) || cmds[i] != w {
			t.Errorf("command %d: %q, want %q", i, cmds, w)
		}
	}
	if strings.Count(e.stdout.String(), "pw-for-test") != 1 {
		t.Errorf("the password appears in the log outside its mask:\n%s", e.stdout.String())
	}
}

func TestPublishRefusals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		inputs map[string]string
		want   string
	}{
		{"no ref", map[string]string{}, "input ref: required"},
		{"key without sign", map[string]string{"ref": "127.0.0.1:1/x", "cosign-key": "cosign.key"}, "input cosign-key is set but sign is false"},
		{"bad key", map[string]string{"ref": "127.0.0.1:1/x", "sign": "true", "cosign-key": "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nbm90IGEga2V5\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----"}, "input cosign-key"},
		{"missing file", map[string]string{"ref": "127.0.0.1:1/x", "output-dir": "nowhere"}, "nowhere"},
		{"keyless outside Actions", map[string]string{"ref": "127.0.0.1:1/x", "sign": "true"}, "no OIDC identity token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, _, _, _ := publishEnv(t)
			in := map[string]string{"command": "publish", "lockfile": "bp.lock.json", "output-dir": "out"}
			for k, v := range tc.inputs {
				in[k] = v
			}
			err := e.run(in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			var errs []string
			for _, c := range e.commands() {
				if strings.HasPrefix(c, "::error") {
					errs = append(errs, c)
				}
			}
			if len(errs) != 1 || !strings.HasPrefix(errs[0], "::error title=ibuild publish::") {
				t.Errorf("annotations: %q", errs)
			}
			if strings.Contains(e.stdout.String(), "/tmp/ibuild-key-") {
				t.Error("the key's temp path leaks into the log")
			}
		})
	}
}

func TestTokenKeychain(t *testing.T) {
	kc := tokenKeychain{registry: "ghcr.io", user: "octocat", token: "ghs_x", fallback: authn.NewMultiKeychain()}
	for _, tc := range []struct {
		registry string
		want     authn.AuthConfig
	}{
		{"ghcr.io", authn.AuthConfig{Username: "octocat", Password: "ghs_x"}},
		{"registry.example", authn.AuthConfig{}},
	} {
		reg, err := name.NewRegistry(tc.registry)
		if err != nil {
			t.Fatal(err)
		}
		a, err := kc.Resolve(reg)
		if err != nil {
			t.Fatal(err)
		}
		got, err := a.Authorization()
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(tc.want, *got); d != "" {
			t.Errorf("%s (-want +got):\n%s", tc.registry, d)
		}
	}
}
