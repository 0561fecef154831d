package ibuild

import (
	"bytes"
	"context"
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

// Mirror refuses a lockfile edited by hand (or missing) before it copies
// anything, and copies a sound one's packages into a directory store.
func TestMirror(t *testing.T) {
	deb := []byte(strings.Repeat("a package ", 100))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/debian/pool/main/p/p_1_amd64.deb" {
			http.NotFound(w, r)
			return
		}
		w.Write(deb)
	}))
	defer srv.Close()
	sum := sha256.Sum256(deb)
	lf, err := manifest.Parse("golden", golden(t))
	if err != nil {
		t.Fatal(err)
	}
	// The fixture's packages, all served by srv as one file.
	for i := range lf.Packages {
		lf.Packages[i].URL = srv.URL + "/debian/pool/main/p/p_1_amd64.deb"
		lf.Packages[i].SHA256 = hex.EncodeToString(sum[:])
		lf.Packages[i].Size = int64(len(deb))
	}
	if lf.ContentSHA256, err = lf.ComputeDigest(); err != nil {
		t.Fatal(err)
	}
	sound, err := lf.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	edited := bytes.Replace(sound, []byte(`"tool": "ibuild test"`), []byte(`"tool": "ibuild edited"`), 1)
	none := ""
	for _, tc := range []struct {
		name string
		lock []byte
		want string // error text; "" for success
	}{
		{"sound", sound, ""},
		{"edited by hand", edited, "content_sha256"},
		{"missing", nil, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, lfPath := workspace(t, nil, tc.lock)
			store := filepath.Join(filepath.Dir(lfPath), "store")
			res, err := Mirror(context.Background(), MirrorRequest{Lockfile: lfPath, To: store, CacheDir: t.TempDir(), SnapshotURL: &none})
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("got %v, want an error containing %q", err, tc.want)
				}
				if _, err := os.Stat(store); err == nil {
					t.Error("a refused mirror made the store")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Packages != 1 || res.Uploaded != 1 || res.Lockfile.Path != lfPath {
				t.Errorf("result %+v", res.Result)
			}
		})
	}
}
