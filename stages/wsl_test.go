package stages_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWSLValidate(t *testing.T) {
	tests := []struct{ options, err string }{
		{`{"filename":"image.wsl","source":{"pipeline":"os","path":"/"}}`, ""},
		{`{"filename":"image.wsl"}`, "source.pipeline: empty"},
		{`{"filename":"a/image.wsl","source":{"pipeline":"os","path":"/"}}`, "filename:"},
		{`{"filename":"image.wsl","source":{"pipeline":"os","path":"/"},"compression":"xz"}`, `unknown field "compression"`},
	}
	imgValidate(t, "wsl", tests)
}

func TestWSLRun(t *testing.T) {
	imgNeedRoot(t)
	imgNeedTools(t, "gzip")
	osTree := imgRootTree(t)
	env := imgEnv(t, map[string]string{"os": osTree})
	imgRun(t, env, "wsl", `{"filename":"image.wsl","source":{"pipeline":"os","path":"/"}}`)
	imgLeftovers(t, env.Tree, "image.wsl")
	p := filepath.Join(env.Tree, "image.wsl")
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	// gzip -n: no name, no time.
	if len(raw) < 10 || raw[0] != 0x1f || raw[1] != 0x8b || raw[3]&0x08 != 0 || !bytes.Equal(raw[4:8], []byte{0, 0, 0, 0}) {
		t.Errorf("not a gzip stream without name and time: % x", raw[:10])
	}
	// The same tarball as the tar stage's.
	tarEnv := imgEnv(t, map[string]string{"os": osTree})
	imgRun(t, tarEnv, "tar", `{"filename":"root.tar","source":{"pipeline":"os","path":"/"}}`)
	plain, err := os.ReadFile(filepath.Join(tarEnv.Tree, "root.tar"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(imgDecompress(t, p, "gzip"), plain) {
		t.Errorf("image.wsl does not hold the rootfs tarball")
	}
	hdrs, _ := imgTarHeaders(t, bytes.NewReader(plain))
	if hdrs[0].Name != "./" || hdrs[1].Name != "./boot/" {
		t.Errorf("members start %q %q", hdrs[0].Name, hdrs[1].Name)
	}

	time.Sleep(1100 * time.Millisecond)
	env2 := imgEnv(t, map[string]string{"os": imgRootTree(t)})
	imgRun(t, env2, "wsl", `{"filename":"image.wsl","source":{"pipeline":"os","path":"/"}}`)
	if a, b := imgSHA256(t, p), imgSHA256(t, filepath.Join(env2.Tree, "image.wsl")); a != b {
		t.Errorf("two runs differ: %s %s", a, b)
	}
}
