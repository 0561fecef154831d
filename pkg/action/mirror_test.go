package action

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/image-builder-action/image-builder-action/pkg/manifest"
)

// command: mirror fills the store the to input names (a directory in the
// workspace here); a second run uploads nothing.
func TestMirror(t *testing.T) {
	files := map[string][]byte{"/debian/pool/a.deb": []byte("package a"), "/debian/pool/b.deb": []byte("package b, bigger")}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b, ok := files[r.URL.Path]; ok {
			w.Write(b)
			return
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	lf := &manifest.Lockfile{Version: manifest.FormatVersion}
	for path, b := range files {
		s := sha256.Sum256(b)
		lf.Packages = append(lf.Packages, manifest.Package{Name: filepath.Base(path), Version: "1", Arch: "all",
			URL: srv.URL + path, SHA256: hex.EncodeToString(s[:]), Size: int64(len(b))})
	}
	e := newGHEnv(t)
	if err := lf.Write(filepath.Join(e.workspace, "bp.lock.json")); err != nil {
		t.Fatal(err)
	}
	in := map[string]string{"command": "mirror", "lockfile": "bp.lock.json", "to": "packages"}
	if err := e.run(in); err != nil {
		t.Fatal(err)
	}
	for _, p := range lf.Packages {
		if _, err := os.Stat(filepath.Join(e.workspace, "packages", "sha256", p.SHA256)); err != nil {
			t.Errorf("%s is not in the store: %v", p.Ref(), err)
		}
	}
	if s := e.summary(); !strings.Contains(s, "2 packages") || !strings.Contains(s, "2 uploaded") {
		t.Errorf("summary:\n%s", s)
	}
	if err := e.run(in); err != nil {
		t.Fatal(err)
	}
	if s := e.summary(); !strings.Contains(s, "0 uploaded") {
		t.Errorf("second run's summary:\n%s", s)
	}
	delete(in, "to")
	if err := e.run(in); err == nil || !strings.Contains(err.Error(), "input to: required") {
		t.Errorf("mirror without to: %v", err)
	}
}
