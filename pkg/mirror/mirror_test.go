package mirror_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/pkg/mirror"
	"github.com/image-builder-action/image-builder-action/pkg/publish/publishtest"
	"github.com/image-builder-action/image-builder-action/pkg/sources"
	"github.com/image-builder-action/image-builder-action/pkg/sources/sourcestest"
)

// A mirror run copies every distinct file once; a second run uploads
// nothing and downloads nothing; the store then serves every package.
func TestMirrorTwice(t *testing.T) {
	files := map[string][]byte{}
	var pkgs []manifest.Package
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	defer srv.Close()
	for i := range 5 {
		path := fmt.Sprintf("/debian/pool/main/p/p%d/p%d_1_amd64.deb", i, i)
		b := []byte(strings.Repeat(fmt.Sprintf("package %d ", i), 100*(i+1)))
		files[path] = b
		s := sha256.Sum256(b)
		pkgs = append(pkgs, manifest.Package{Name: fmt.Sprintf("p%d", i), Version: "1", Arch: "amd64",
			URL: srv.URL + path, SHA256: hex.EncodeToString(s[:]), Size: int64(len(b))})
	}
	// The same file under two names is one file in a store.
	dup := pkgs[0]
	dup.Name = "p0-again"
	pkgs = append(pkgs, dup)
	lf := &manifest.Lockfile{Version: manifest.FormatVersion, Packages: pkgs,
		Repositories: []manifest.Repository{{URI: srv.URL + "/debian", Suite: "bookworm", Date: "2026-11-20T08:00:00Z"}}}
	var total int64
	for _, p := range pkgs[:5] {
		total += p.Size
	}
	none := ""
	for _, tc := range []struct {
		name string
		ref  func(t *testing.T) string
	}{
		{"dir", func(t *testing.T) string { return filepath.Join(t.TempDir(), "store") }},
		{"oci", func(t *testing.T) string { return "oci://" + publishtest.DockerRegistry(t) + "/ibuild/packages" }},
		{"s3", func(t *testing.T) string { return sourcestest.S3(t, "packages", "") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			ref := tc.ref(t)
			cache := t.TempDir()
			hits.Store(0)
			req := mirror.Request{Lockfile: lf, To: ref, CacheDir: cache, SnapshotURL: &none, Client: srv.Client()}
			first, err := mirror.Mirror(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if first.Packages != 5 || first.Bytes != total || first.Uploaded != 5 || first.UploadedBytes != total {
				t.Errorf("first run: %+v, want 5 packages, %d bytes, all uploaded", first, total)
			}
			if n := hits.Load(); n != 5 {
				t.Errorf("first run: %d downloads, want 5", n)
			}
			second, err := mirror.Mirror(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if second.Uploaded != 0 || second.UploadedBytes != 0 || second.IndexPushed || len(second.Downloaded) != 0 {
				t.Errorf("second run: %+v, want nothing uploaded or downloaded", second)
			}
			if n := hits.Load(); n != 5 {
				t.Errorf("second run downloaded: %d requests in all, want 5", n)
			}
			if tc.name == "oci" && (first.Index != mirror.IndexTag(lf) || !first.IndexPushed) {
				t.Errorf("oci: index %q pushed %v, want %q pushed", first.Index, first.IndexPushed, mirror.IndexTag(lf))
			}
			st, err := sources.OpenStore(ctx, ref)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range pkgs {
				rc, err := st.Open(ctx, &p)
				if err != nil {
					t.Fatalf("%s: %v", p.Ref(), err)
				}
				b, _ := io.ReadAll(rc)
				rc.Close()
				if s := sha256.Sum256(b); hex.EncodeToString(s[:]) != p.SHA256 {
					t.Errorf("%s: the store serves other bytes", p.Ref())
				}
			}
		})
	}
}

// A package the mirror lost and no other source has fails the run,
// naming the package and what each source answered.
func TestMirrorMissing(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	snap := httptest.NewServer(http.NotFoundHandler())
	defer snap.Close()
	p := manifest.Package{Name: "gone", Version: "1", Arch: "amd64", URL: srv.URL + "/debian/pool/main/g/gone.deb",
		SHA256: strings.Repeat("ab", 32), Size: 3}
	lf := &manifest.Lockfile{Version: manifest.FormatVersion, Packages: []manifest.Package{p},
		Repositories: []manifest.Repository{{URI: srv.URL + "/debian", Suite: "bookworm", Date: "2026-11-20T08:00:00Z"}}}
	_, err := mirror.Mirror(context.Background(), mirror.Request{Lockfile: lf, To: t.TempDir(), CacheDir: t.TempDir(), SnapshotURL: &snap.URL})
	if err == nil {
		t.Fatal("mirror succeeded")
	}
	for _, want := range []string{"gone:amd64=1", "mirror: " + p.URL + ": 404 Not Found", "snapshot " + snap.URL + "/: " + snap.URL + "/archive/debian/20261120T140000Z/pool/main/g/gone.deb: 404 Not Found"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q\nlacks %q", err, want)
		}
	}
}
