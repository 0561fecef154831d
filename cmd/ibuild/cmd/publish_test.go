package cmd

import (
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
	"github.com/sigstore/cosign/v2/pkg/cosign"

	"github.com/image-builder-action/image-builder-action/pkg/publish"
)

func TestPublishCommand(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	dir := t.TempDir()
	kb, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return []byte("pw"), nil })
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "cosign.key")
	if err := os.WriteFile(key, kb.PrivateBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "disk.qcow2"), []byte("not really a qcow2"), 0o644); err != nil {
		t.Fatal(err)
	}
	lock := filepath.Join("..", "..", "..", "testdata", "lock", "blueprint.lock.json")
	t.Setenv("COSIGN_PASSWORD", "pw")
	t.Setenv("GITHUB_ACTIONS", "")

	stdout, stderr, code := run(t, "publish", lock, "--from", out, host+"/cli/example:v1", "--key", key, "--type", "qcow2", "--tag", "latest", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var res publish.Result
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("--json output: %v\n%s", err, stdout)
	}
	if res.Mode != publish.ModeTags || len(res.Images) != 1 || len(res.Images[0].Tags) != 2 || len(res.Images[0].Attachments) != 3 {
		t.Fatalf("result %+v", res)
	}
	r, _ := name.ParseReference(host + "/cli/example:latest")
	d, err := remote.Head(r)
	if err != nil || d.Digest.String() != res.Images[0].Digest {
		t.Errorf("latest: %v %v, want %s", d, err, res.Images[0].Digest)
	}

	// Text output names the index, its tags and the artifact.
	stdout, _, code = run(t, "publish", lock, "--from", out, host+"/cli/example:v2", "--type", "qcow2")
	if code != 0 || !strings.HasPrefix(stdout, "qcow2\t"+host+"/cli/example@sha256:") || !strings.Contains(stdout, "tag\t"+host+"/cli/example:v2") {
		t.Errorf("text output (exit %d):\n%s", code, stdout)
	}

	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--sign", "keyless"}, map[string]string{"ACTIONS_ID_TOKEN_REQUEST_URL": "", "ACTIONS_ID_TOKEN_REQUEST_TOKEN": ""}, "keyless signing: no OIDC identity token"},
		{[]string{"--sign", "key"}, nil, "--sign key needs --key"},
		{[]string{"--sign", "gpg"}, nil, `--sign "gpg": want key, keyless or none`},
		{[]string{"--key", key}, map[string]string{"COSIGN_PASSWORD": "wrong"}, "wrong password (COSIGN_PASSWORD)"},
		{[]string{"--attach", "sideways"}, nil, `attach mode "sideways"`},
		{[]string{"--arch", "aarch64"}, nil, `no entry of the lockfile matches --arch aarch64`},
	} {
		for k, v := range tc.env {
			t.Setenv(k, v)
		}
		_, stderr, code := run(t, append([]string{"publish", lock, "--from", out, host + "/cli/example:v3"}, tc.args...)...)
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", tc.args, code, stderr, tc.want)
		}
		t.Setenv("COSIGN_PASSWORD", "pw")
	}
	v3, _ := name.ParseReference(host + "/cli/example:v3")
	if _, err := remote.Head(v3); err == nil {
		t.Error("a failed publish tagged v3")
	}
}
