package publish

import (
	"strings"
	"testing"

	"github.com/opencontainers/image-spec/schema"
)

func TestMediaTypes(t *testing.T) {
	for _, tc := range []struct{ typ, artifact, layer string }{
		{"qcow2", "application/vnd.ibuild.disk.qcow2", "application/vnd.ibuild.disk.qcow2"},
		{"ami", "application/vnd.ibuild.disk.ami", "application/vnd.ibuild.disk.raw"},
		{"gce", "application/vnd.ibuild.disk.gce", "application/vnd.ibuild.disk.raw+tar+gzip"},
		{"tar", "application/vnd.ibuild.rootfs.tar", "application/vnd.ibuild.rootfs.tar+xz"},
		{"Future Type", "application/vnd.ibuild.future-type", "application/vnd.ibuild.future-type"},
	} {
		if got := ArtifactType(tc.typ); got != tc.artifact {
			t.Errorf("ArtifactType(%q) = %s, want %s", tc.typ, got, tc.artifact)
		}
		if got := LayerMediaType(tc.typ); got != tc.layer {
			t.Errorf("LayerMediaType(%q) = %s, want %s", tc.typ, got, tc.layer)
		}
	}
	for arch, want := range map[string]string{"x86_64": "amd64", "aarch64": "arm64", "riscv64": "riscv64"} {
		if got := Platform(arch); got != want {
			t.Errorf("Platform(%s) = %s, want %s", arch, got, want)
		}
	}
}

// The schema check in the publish tests can fail: a manifest whose config
// digest is not a digest is refused.
func TestSchemaValidatorRejects(t *testing.T) {
	bad := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:nothex","size":2},"layers":[]}`
	if err := schema.ValidatorMediaTypeManifest.Validate(strings.NewReader(bad)); err == nil {
		t.Error("the image-spec schema accepted a bad digest")
	}
}
