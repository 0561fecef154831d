package cloudapi

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGenerated regenerates api.gen.go from openapi.yml with the pinned
// oapi-codegen and checks the committed file is what it gives, byte for
// byte: an edit of the document must come with its code.
func TestGenerated(t *testing.T) {
	if testing.Short() {
		t.Skip("builds oapi-codegen")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "api.gen.go")
	cfg, err := os.ReadFile("oapi-codegen.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The same configuration, writing elsewhere.
	cfg = bytes.Replace(cfg, []byte("output: api.gen.go"), []byte("output: "+out), 1)
	if err := os.WriteFile(filepath.Join(dir, "cfg.yaml"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "tool", "oapi-codegen", "-config", filepath.Join(dir, "cfg.yaml"), "openapi.yml")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("oapi-codegen: %v\n%s", err, b)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("api.gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("api.gen.go is not what openapi.yml generates: run go generate ./pkg/cloudapi")
	}
}

// The document is valid OpenAPI 3 and loads.
func TestDocument(t *testing.T) {
	d, err := Document()
	if err != nil {
		t.Fatal(err)
	}
	if d.Paths.Find("/api/image-builder-composer/v2/compose") == nil || d.Paths.Find("/api/image-builder/v1/compose") == nil {
		t.Fatal("compose paths missing")
	}
}
