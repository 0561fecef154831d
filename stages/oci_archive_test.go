package stages_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestOCIArchiveValidate(t *testing.T) {
	const src = `"source":{"pipeline":"os","path":"/"}`
	tests := []struct{ options, err string }{
		{`{"filename":"container.tar",` + src + `,"config":{"cmd":["/bin/bash"],"env":["PATH=/usr/bin:/bin"]},"architecture":"amd64"}`, ""},
		{`{"filename":"container.tar",` + src + `,"config":{"entrypoint":["/init"],"working_dir":"/srv","user":"1000:1000","labels":{"a":"b"},"exposed_ports":["80","53/udp"],"stop_signal":"SIGINT"},"architecture":"arm64"}`, ""},
		{`{"filename":"container.tar",` + src + `,"architecture":"amd64"}`, ""},
		{`{"filename":"container.tar",` + src + `,"architecture":"x86_64"}`, `architecture: "x86_64" is not one of`},
		{`{"filename":"container.tar",` + src + `}`, ""},
		{`{"filename":"container.tar",` + src + `,"architecture":""}`, ""},
		{`{"filename":"container.tar",` + src + `,"config":{"env":["PATH"]},"architecture":"amd64"}`, `config.env[0]: "PATH" is not NAME=value`},
		{`{"filename":"container.tar",` + src + `,"config":{"env":["1X=y"]},"architecture":"amd64"}`, `config.env[0]: "1X=y"`},
		{`{"filename":"container.tar",` + src + `,"config":{"working_dir":"srv"},"architecture":"amd64"}`, `config.working_dir: "srv" is not absolute`},
		{`{"filename":"container.tar",` + src + `,"config":{"exposed_ports":["http"]},"architecture":"amd64"}`, `config.exposed_ports[0]: "http"`},
		{`{"filename":"container.tar",` + src + `,"config":{"stop_signal":"term"},"architecture":"amd64"}`, `config.stop_signal: "term"`},
		{`{"filename":"container.tar",` + src + `,"config":{"cmd":["a\u0000b"]},"architecture":"amd64"}`, `config.cmd[0]: contains a NUL`},
		{`{"filename":"container.tar",` + src + `,"config":{"volumes":["/data"]},"architecture":"amd64"}`, `unknown field "volumes"`},
		{`{"filename":"container.tar","architecture":"amd64"}`, "source.pipeline: empty"},
	}
	imgValidate(t, "oci-archive", tests)
}

const imgOCIOptions = `{"filename":"container.tar","source":{"pipeline":"os","path":"/"},
	"config":{"cmd":["/bin/bash"],"env":["PATH=/usr/sbin:/usr/bin:/sbin:/bin","LANG=C.UTF-8"],"working_dir":"/root","exposed_ports":["22"],"labels":{"org.opencontainers.image.title":"test"}},
	"architecture":"amd64"}`

func TestOCIArchiveRun(t *testing.T) {
	imgNeedRoot(t)
	osTree := imgRootTree(t)
	env := imgEnv(t, map[string]string{"os": osTree})
	imgRun(t, env, "oci-archive", imgOCIOptions)
	imgLeftovers(t, env.Tree, "container.tar")
	archive := filepath.Join(env.Tree, "container.tar")

	// The layout: every blob named by its digest, the chain index ->
	// manifest -> config and layer consistent.
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	hdrs, files := imgTarHeaders(t, f)
	f.Close()
	var names []string
	for _, h := range hdrs {
		names = append(names, h.Name)
		if strings.HasPrefix(h.Name, "blobs/sha256/") && h.Typeflag == tar.TypeReg {
			sum := sha256.Sum256(files[h.Name])
			if hex.EncodeToString(sum[:]) != strings.TrimPrefix(h.Name, "blobs/sha256/") {
				t.Errorf("%s: contents do not match the name", h.Name)
			}
		}
	}
	if len(names) != 7 || names[0] != "oci-layout" || names[1] != "index.json" {
		t.Errorf("members %q", names)
	}
	var index struct {
		Manifests []struct {
			MediaType, Digest string
			Size              int
			Platform          struct{ Architecture, OS string }
		}
	}
	if err := json.Unmarshal(files["index.json"], &index); err != nil {
		t.Fatal(err)
	}
	if len(index.Manifests) != 1 || index.Manifests[0].Platform.Architecture != "amd64" || index.Manifests[0].Platform.OS != "linux" {
		t.Fatalf("index: %s", files["index.json"])
	}
	blob := func(digest string) []byte {
		b, ok := files["blobs/sha256/"+strings.TrimPrefix(digest, "sha256:")]
		if !ok {
			t.Fatalf("no blob %s", digest)
		}
		return b
	}
	var manifest struct {
		Config struct{ Digest string }
		Layers []struct {
			MediaType, Digest string
			Size              int
		}
	}
	if err := json.Unmarshal(blob(index.Manifests[0].Digest), &manifest); err != nil {
		t.Fatal(err)
	}
	var config struct {
		Created, Architecture, OS string
		Config                    struct {
			Cmd, Env     []string
			WorkingDir   string
			ExposedPorts map[string]struct{}
			Labels       map[string]string
		}
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		}
	}
	if err := json.Unmarshal(blob(manifest.Config.Digest), &config); err != nil {
		t.Fatal(err)
	}
	if config.Created != "2023-11-14T22:13:20Z" || config.Architecture != "amd64" || config.OS != "linux" ||
		strings.Join(config.Config.Cmd, " ") != "/bin/bash" || len(config.Config.Env) != 2 || config.Config.WorkingDir != "/root" {
		t.Errorf("config: %s", blob(manifest.Config.Digest))
	}
	if _, ok := config.Config.ExposedPorts["22/tcp"]; !ok {
		t.Errorf("exposed ports: %v", config.Config.ExposedPorts)
	}
	layerGz := blob(manifest.Layers[0].Digest)
	if len(manifest.Layers) != 1 || manifest.Layers[0].MediaType != "application/vnd.oci.image.layer.v1.tar+gzip" || manifest.Layers[0].Size != len(layerGz) {
		t.Errorf("layers: %+v", manifest.Layers)
	}
	zr, err := gzip.NewReader(bytes.NewReader(layerGz))
	if err != nil {
		t.Fatal(err)
	}
	layer, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(layer)
	if config.RootFS.DiffIDs[0] != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Errorf("diff_id %s does not match the layer", config.RootFS.DiffIDs[0])
	}
	lhdrs, _ := imgTarHeaders(t, bytes.NewReader(layer))
	if lhdrs[0].Name != "boot/" {
		t.Errorf("layer starts with %q, want boot/ (no ./ prefix, no root entry)", lhdrs[0].Name)
	}
	for _, h := range lhdrs {
		if h.Name == "usr/bin/ping" && h.PAXRecords["SCHILY.xattr.security.capability"] == "" {
			t.Errorf("layer lost security.capability")
		}
		if h.Name == "usr/lib/two" && (h.Typeflag != tar.TypeLink || h.Linkname != "usr/lib/one") {
			t.Errorf("hard link: %+v", h)
		}
	}

	// Same tree, same bytes.
	env2 := imgEnv(t, map[string]string{"os": osTree})
	imgRun(t, env2, "oci-archive", imgOCIOptions)
	if a, b := imgSHA256(t, archive), imgSHA256(t, filepath.Join(env2.Tree, "container.tar")); a != b {
		t.Errorf("two runs differ")
	}
	// Without an architecture the entry's (dpkg amd64 -> OCI amd64) is
	// used: the same bytes.
	env3 := imgEnv(t, map[string]string{"os": osTree})
	imgRun(t, env3, "oci-archive", strings.Replace(imgOCIOptions, `"architecture":"amd64"`, `"architecture":""`, 1))
	if a, b := imgSHA256(t, archive), imgSHA256(t, filepath.Join(env3.Tree, "container.tar")); a != b {
		t.Errorf("the entry's architecture gives another archive than the option")
	}
	env3.Arch = "sparc"
	if err := imgRunErr(t, env3, "oci-archive", `{"filename":"c.tar","source":{"pipeline":"os","path":"/"}}`); err == nil || !strings.Contains(err.Error(), `"sparc" has no OCI name`) {
		t.Errorf("unknown entry architecture: %v", err)
	}

	// skopeo reads it and copies it out.
	if _, err := exec.LookPath("skopeo"); err != nil {
		t.Logf("no skopeo on the host: not checked with it")
	} else {
		var info struct {
			Architecture, Os string
			Layers           []string
			Env              []string
		}
		if err := json.Unmarshal([]byte(imgCmd(t, "skopeo", "inspect", "oci-archive:"+archive)), &info); err != nil {
			t.Fatal(err)
		}
		if info.Architecture != "amd64" || info.Os != "linux" || len(info.Layers) != 1 || info.Layers[0] != manifest.Layers[0].Digest {
			t.Errorf("skopeo inspect: %+v", info)
		}
		dir := filepath.Join(t.TempDir(), "copy")
		imgCmd(t, "skopeo", "copy", "oci-archive:"+archive, "dir:"+dir)
		if _, err := os.Stat(filepath.Join(dir, strings.TrimPrefix(manifest.Layers[0].Digest, "sha256:"))); err != nil {
			t.Errorf("skopeo copy did not write the layer: %v", err)
		}
	}

	// podman loads it into a throw-away store.
	if _, err := exec.LookPath("podman"); err != nil {
		t.Logf("no podman on the host: not checked with it")
		return
	}
	store, runRoot := t.TempDir(), podmanRunRoot(t)
	podman := func(args ...string) string {
		return imgCmd(t, "podman", append([]string{"--root", filepath.Join(store, "root"), "--runroot", runRoot, "--storage-driver", "vfs"}, args...)...)
	}
	out := podman("load", "-i", archive)
	t.Logf("podman load: %s", out)
	id := strings.TrimSpace(podman("images", "-q", "--no-trunc"))
	var inspect []struct {
		Config struct{ Cmd []string }
		RootFS struct{ Layers []string }
	}
	if err := json.Unmarshal([]byte(podman("image", "inspect", id)), &inspect); err != nil {
		t.Fatal(err)
	}
	if len(inspect) != 1 || strings.Join(inspect[0].Config.Cmd, " ") != "/bin/bash" || inspect[0].RootFS.Layers[0] != config.RootFS.DiffIDs[0] {
		t.Errorf("podman image inspect: %+v", inspect)
	}
}
