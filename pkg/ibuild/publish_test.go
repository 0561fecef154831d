package ibuild

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/cosign/v2/pkg/cosign"

	"github.com/image-builder-action/image-builder-action/pkg/publish"
)

func testKey(t *testing.T) (pemText, path string) {
	t.Helper()
	kb, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return []byte("pw"), nil })
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), "cosign.key")
	if err := os.WriteFile(path, kb.PrivateBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return string(kb.PrivateBytes), path
}

func TestSigner(t *testing.T) {
	pemText, path := testKey(t)
	pw := func(s string) publish.PassFunc { return func() ([]byte, error) { return []byte(s), nil } }
	for _, tc := range []struct {
		name   string
		req    SignRequest
		signer bool
		want   string // error text
	}{
		{name: "none", req: SignRequest{}},
		{name: "none named", req: SignRequest{Mode: SignNone, Key: path}},
		{name: "key file", req: SignRequest{Mode: SignKey, Key: path, Password: pw("pw")}, signer: true},
		{name: "key text", req: SignRequest{Mode: SignKey, Key: "\n" + pemText + "\n", Password: pw("pw")}, signer: true},
		{name: "key text, wrong password", req: SignRequest{Mode: SignKey, Key: pemText, KeyName: "input cosign-key", Password: pw("nope")}, want: "input cosign-key"},
		{name: "no key", req: SignRequest{Mode: SignKey}, want: "no key given"},
		{name: "unknown mode", req: SignRequest{Mode: "gpg"}, want: `signing mode "gpg"`},
		{name: "keyless without a token", req: SignRequest{Mode: SignKeyless, Keyless: publish.KeylessOptions{Token: publish.GitHubActionsToken{Getenv: func(string) string { return "" }}}}, want: "no OIDC identity token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, release, err := Signer(context.Background(), tc.req)
			defer release()
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("got %v, want an error containing %q", err, tc.want)
				}
				if strings.Contains(err.Error(), "ibuild-key-") {
					t.Errorf("the key's temporary path leaks: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (s != nil) != tc.signer {
				t.Errorf("signer %v, want one: %v", s, tc.signer)
			}
		})
	}
}

// Publish reads the lockfile's digest from its bytes, names the image and
// its version from the blueprint beside it, and finds the file where a
// build of several entries put it.
func TestPublish(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	_, lf := workspace(t, func(s string) string {
		return strings.Replace(s, "name = \"fixture\"\n", "name = \"fixture\"\nversion = \"4.5.6\"\n", 1)
	}, golden(t))
	l, err := ReadLockfile(lf)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(filepath.Dir(lf), "out")
	disk := filepath.Join(out, "x86_64", "qcow2", "disk.qcow2")
	if err := os.MkdirAll(filepath.Dir(disk), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(disk, []byte("not really a qcow2"), 0o644); err != nil {
		t.Fatal(err)
	}
	pemText, _ := testKey(t)
	var events []string
	res, err := Publish(context.Background(), PublishRequest{
		Lockfile: lf, LockfileName: "images/bp.lock.json", From: out, Ref: host + "/uc/fixture:v1", Types: []string{"qcow2"},
		Sign:   SignRequest{Mode: SignKey, Key: pemText, Password: func() ([]byte, error) { return []byte("pw"), nil }},
		Events: func(e publish.Event) { events = append(events, e.Kind) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Lockfile.SHA256 != l.SHA256 || len(res.Images) != 1 || res.Images[0].Artifacts[0].File != disk || res.Mode == "" {
		t.Fatalf("result %+v", res)
	}
	if !strings.Contains(strings.Join(events, " "), "sign") {
		t.Errorf("events %q: nothing signed", events)
	}
	ref, err := name.ParseReference(res.Images[0].Artifacts[0].Ref)
	if err != nil {
		t.Fatal(err)
	}
	d, err := remote.Get(ref)
	if err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(d.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	if m.Annotations[ocispec.AnnotationVersion] != "4.5.6" || m.Annotations[publish.AnnotationLockfileDigest] != "sha256:"+l.SHA256 {
		t.Errorf("annotations %v", m.Annotations)
	}
}
