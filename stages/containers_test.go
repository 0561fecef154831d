package stages_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/image-builder-action/image-builder-action/pkg/publish/publishtest"
	"github.com/image-builder-action/image-builder-action/stages"
)

// ContainersImage pushes a small random image (two layers) to Debian's
// docker-registry on 127.0.0.1 and returns the stage's pin of it.
func containersImage(t *testing.T) stages.ContainerImage {
	t.Helper()
	host := publishtest.DockerRegistry(t)
	img, err := random.Image(4096, 2)
	if err != nil {
		t.Fatal(err)
	}
	src := host + "/test/hello:v1"
	ref, err := name.ParseReference(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	cfg, _ := img.ConfigName()
	m, _ := img.Manifest()
	im := stages.ContainerImage{Source: src, Name: "localhost/hello:v1", Digest: d.String(), Config: cfg.String()}
	for _, l := range m.Layers {
		im.Layers = append(im.Layers, stages.ContainerLayer{Digest: l.Digest.String(), Size: l.Size, MediaType: string(l.MediaType)})
	}
	return im
}

func TestContainers(t *testing.T) {
	im := containersImage(t)
	opts, _ := json.Marshal(stages.Containers{Images: []stages.ContainerImage{im}})
	root := t.TempDir()
	if err := tcStage(t, "containers", string(opts)).Run(context.Background(), tcEnv(t, root)); err != nil {
		t.Fatal(err)
	}
	// The image as skopeo's dir: transport keeps it: the manifest as
	// served (its digest the locked one), each blob under its digest.
	dir := filepath.Join(root, stages.ContainersDir, "0")
	raw, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if d := "sha256:" + ctSHA256(raw); d != im.Digest {
		t.Errorf("manifest.json is %s, locked %s", d, im.Digest)
	}
	for _, d := range append([]string{im.Config}, im.Layers[0].Digest, im.Layers[1].Digest) {
		b, err := os.ReadFile(filepath.Join(dir, strings.TrimPrefix(d, "sha256:")))
		if err != nil || "sha256:"+ctSHA256(b) != d {
			t.Errorf("blob %s: %v", d, err)
		}
	}
	unit, err := os.ReadFile(filepath.Join(root, "etc/systemd/system", stages.ContainersUnit))
	if err != nil {
		t.Fatal(err)
	}
	want := "ExecStart=/usr/bin/skopeo copy --quiet --preserve-digests dir:" + stages.ContainersDir + "/0 containers-storage:localhost/hello:v1\n"
	if !strings.Contains(string(unit), want) || !strings.Contains(string(unit), "ConditionPathExists=!/var/lib/ibuild/containers-loaded") {
		t.Errorf("unit:\n%s\nwant the line %q", unit, want)
	}

	// What the unit does at first boot, done here by the host's skopeo
	// into a containers-storage in a temp dir (vfs: no mounts): podman
	// then lists the image under its name and digest.
	skopeo, err1 := exec.LookPath("skopeo")
	podman, err2 := exec.LookPath("podman")
	if err1 != nil || err2 != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("skopeo and podman are needed (.ci/deps)")
		}
		t.Skip("skopeo or podman not installed")
	}
	st := t.TempDir()
	store := "containers-storage:[vfs@" + filepath.Join(st, "root") + "+" + filepath.Join(st, "run") + "]"
	cmd := exec.Command(skopeo, "copy", "--quiet", "--preserve-digests", "dir:"+dir, store+"localhost/hello:v1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	cmd = exec.Command(podman, "--root", filepath.Join(st, "root"), "--runroot", podmanRunRoot(t), "--storage-driver", "vfs",
		"images", "--digests", "--format", "{{.Repository}}:{{.Tag}} {{.Digest}}")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "localhost/hello:v1 "+im.Digest {
		t.Errorf("podman images: %q, want localhost/hello:v1 %s", got, im.Digest)
	}
	t.Cleanup(func() {
		// vfs layers may hold read-only directories.
		exec.Command("chmod", "-R", "u+w", st).Run()
	})

	// A layer other than the one locked is refused.
	bad := im
	bad.Layers = append([]stages.ContainerLayer(nil), im.Layers...)
	bad.Layers[1].Digest = "sha256:" + strings.Repeat("0", 64)
	opts, _ = json.Marshal(stages.Containers{Images: []stages.ContainerImage{bad}})
	err = tcStage(t, "containers", string(opts)).Run(context.Background(), tcEnv(t, t.TempDir()))
	if err == nil || !strings.Contains(err.Error(), "layer 1 is "+im.Layers[1].Digest+", locked sha256:000") {
		t.Errorf("a layer not the locked one: %v", err)
	}
}

func ctSHA256(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
