package stages_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestGCEValidate(t *testing.T) {
	tests := []struct{ options, err string }{
		{`{"filename":"image.tar.gz","source":{"pipeline":"image","path":"/disk.raw"}}`, ""},
		{`{"filename":"image.tar.gz"}`, "source.pipeline: empty"},
		{`{"filename":"image.tar.gz","source":{"pipeline":"image","path":"disk.raw"}}`, `source.path: "disk.raw" is not absolute`},
		{`{"filename":"","source":{"pipeline":"image","path":"/disk.raw"}}`, "filename: empty"},
		{`{"filename":"image.tar.gz","source":{"pipeline":"image","path":"/disk.raw","extra":1}}`, `unknown field "extra"`},
	}
	imgValidate(t, "gce", tests)
}

func TestGCERun(t *testing.T) {
	imgNeedRoot(t)
	imgNeedTools(t, "tar", "gzip")
	// A disk named otherwise: the member is still disk.raw.
	imageEnv := imgEnv(t, nil)
	img := imgNewDisk(t, imageEnv)
	if err := os.WriteFile(filepath.Join(imageEnv.Tree, "data"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte(strings.Repeat("data in the middle", 1000)), 30<<20)
	f.Close()
	if err := os.Rename(img, filepath.Join(imageEnv.Tree, "other.raw")); err != nil {
		t.Fatal(err)
	}
	env := imgEnv(t, map[string]string{"image": imageEnv.Tree})
	const opts = `{"filename":"image.tar.gz","source":{"pipeline":"image","path":"/other.raw"}}`
	start := time.Now()
	imgRun(t, env, "gce", opts)
	t.Logf("64 MiB sparse disk: %v", time.Since(start).Round(time.Millisecond))
	imgLeftovers(t, env.Tree, "image.tar.gz")
	out := filepath.Join(env.Tree, "image.tar.gz")

	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if raw[3]&0x08 != 0 || string(raw[4:8]) != "\x00\x00\x00\x00" {
		t.Errorf("gzip header has a name or a time: % x", raw[:10])
	}
	tarData := imgDecompress(t, out, "gzip")
	// oldgnu: the "ustar  \0" magic, and a sparse member.
	if string(tarData[257:265]) != "ustar  \x00" {
		t.Errorf("magic %q, want oldgnu's", tarData[257:265])
	}
	if tarData[156] != 'S' {
		t.Errorf("type flag %q, want S (GNU sparse)", tarData[156])
	}
	if len(tarData) > 1<<20 {
		t.Errorf("tar of a 64 MiB sparse disk is %d bytes: holes stored", len(tarData))
	}
	listing := imgCmd(t, "tar", "-tvzf", out)
	if lines := strings.Split(strings.TrimSpace(listing), "\n"); len(lines) != 1 || !strings.HasSuffix(lines[0], " disk.raw") || !strings.HasPrefix(lines[0], "-rw-r--r-- 0/0 ") {
		t.Errorf("members:\n%s", listing)
	}
	dir := t.TempDir()
	imgCmd(t, "tar", "-xzf", out, "-C", dir)
	if a, b := imgSHA256(t, filepath.Join(dir, "disk.raw")), imgSHA256(t, filepath.Join(imageEnv.Tree, "other.raw")); a != b {
		t.Errorf("extracted disk.raw differs from the source")
	}

	// Same input, same bytes (the source's times do not matter).
	os.Chtimes(filepath.Join(imageEnv.Tree, "other.raw"), time.Now(), time.Now())
	env2 := imgEnv(t, map[string]string{"image": imageEnv.Tree})
	imgRun(t, env2, "gce", opts)
	if a, b := imgSHA256(t, out), imgSHA256(t, filepath.Join(env2.Tree, "image.tar.gz")); a != b {
		t.Errorf("two runs differ")
	}

	// A source that is not a file.
	if err := imgRunErr(t, env2, "gce", `{"filename":"image.tar.gz","source":{"pipeline":"image","path":"/"}}`); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory source: %v", err)
	}
	if err := imgRunErr(t, env2, "gce", `{"filename":"image.tar.gz","source":{"pipeline":"os","path":"/disk.raw"}}`); err == nil || !strings.Contains(err.Error(), `pipeline "os" is not an input`) {
		t.Errorf("missing pipeline: %v", err)
	}
}
