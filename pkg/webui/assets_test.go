package webui

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type assetRecord struct {
	sum, name, pkg, version, src, integrity string
}

func readAssets(t *testing.T) []assetRecord {
	t.Helper()
	data, err := os.ReadFile("static/ASSETS")
	if err != nil {
		t.Fatal(err)
	}
	var out []assetRecord
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(line)
		if len(f) != 4 {
			t.Fatalf("static/ASSETS: bad line %q", line)
		}
		pkgVer, src, ok := strings.Cut(f[2], "/")
		at := strings.LastIndexByte(pkgVer, '@')
		if !ok || at <= 0 {
			t.Fatalf("static/ASSETS: bad source %q", f[2])
		}
		out = append(out, assetRecord{sum: f[0], name: f[1], pkg: pkgVer[:at], version: pkgVer[at+1:], src: src, integrity: f[3]})
	}
	return out
}

// The embedded scripts are the ones package-lock.json pins: each file's
// sha256 is the one recorded when `make webui-assets` copied it, and the
// record names the lockfile's version and integrity of its package.
func TestAssetsMatchLockfile(t *testing.T) {
	var lock struct {
		Packages map[string]struct {
			Version   string `json:"version"`
			Integrity string `json:"integrity"`
		} `json:"packages"`
	}
	data, err := os.ReadFile("web/package-lock.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &lock); err != nil {
		t.Fatal(err)
	}
	recs := readAssets(t)
	if len(recs) < 2 {
		t.Fatalf("static/ASSETS lists %d files, want htmx and its sse extension", len(recs))
	}
	for _, r := range recs {
		b, err := files.ReadFile("static/" + r.name)
		if err != nil {
			t.Fatalf("%s is not embedded: %v", r.name, err)
		}
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); got != r.sum {
			t.Errorf("static/%s: sha256 %s, ASSETS records %s: run make webui-assets", r.name, got, r.sum)
		}
		p, ok := lock.Packages["node_modules/"+r.pkg]
		if !ok {
			t.Errorf("static/%s comes from %s, which package-lock.json does not have", r.name, r.pkg)
			continue
		}
		if p.Version != r.version || p.Integrity != r.integrity {
			t.Errorf("static/%s: recorded %s@%s %s, package-lock.json has %s %s: run make webui-assets", r.name, r.pkg, r.version, r.integrity, p.Version, p.Integrity)
		}
	}
}

// npm ci from the lockfile gives byte for byte the files that are
// embedded: the committed copies are what the lockfile builds.
func TestAssetsRebuild(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no npm ci")
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Skip("npm is not installed")
	}
	dir := t.TempDir()
	for _, f := range []string{"package.json", "package-lock.json"} {
		b, err := os.ReadFile(filepath.Join("web", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci: %v\n%s", err, out)
	}
	for _, r := range readAssets(t) {
		built, err := os.ReadFile(filepath.Join(dir, "node_modules", r.pkg, r.src))
		if err != nil {
			t.Fatal(err)
		}
		embedded, _ := files.ReadFile("static/" + r.name)
		if !bytes.Equal(built, embedded) {
			t.Errorf("static/%s differs from %s/%s as npm ci installs it: run make webui-assets", r.name, r.pkg, r.src)
		}
	}
}
