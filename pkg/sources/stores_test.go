package sources_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/pkg/publish/publishtest"
	"github.com/image-builder-action/image-builder-action/pkg/sources"
	"github.com/image-builder-action/image-builder-action/pkg/sources/sourcestest"
)

func pkgOf(name string, b []byte) manifest.Package {
	s := sha256.Sum256(b)
	return manifest.Package{Name: name, Version: "1", Arch: "all", URL: "http://archive.invalid/debian/pool/main/" + name + ".deb",
		SHA256: hex.EncodeToString(s[:]), Size: int64(len(b))}
}

// Every store kind against its real server: empty, filled, read back.
func TestStores(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		ref  func(t *testing.T) string
		want string // the store's name, prefix
	}{
		{"dir", func(t *testing.T) string { return filepath.Join(t.TempDir(), "store") }, "dir "},
		{"oci", func(t *testing.T) string { return "oci://" + publishtest.DockerRegistry(t) + "/ibuild/packages" }, "oci://127.0.0.1:"},
		{"registry-ref", func(t *testing.T) string { return publishtest.DockerRegistry(t) + "/ibuild/packages" }, "oci://127.0.0.1:"},
		{"s3", func(t *testing.T) string { return sourcestest.S3(t, "ibuild-packages", "lockfiles") }, "s3://ibuild-packages/lockfiles"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := sources.OpenStore(ctx, tc.ref(t))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(st.String(), tc.want) {
				t.Errorf("store %q, want %q…", st, tc.want)
			}
			data := bytes.Repeat([]byte("a .deb, or so "), 1000)
			p := pkgOf("hello", data)
			if ok, err := st.Has(ctx, p.SHA256); err != nil || ok {
				t.Fatalf("Has on an empty store: %v, %v", ok, err)
			}
			if _, err := st.Open(ctx, &p); !errors.Is(err, sources.ErrNotFound) {
				t.Fatalf("Open on an empty store: %v, want ErrNotFound", err)
			}
			if err := st.Put(ctx, &p, bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			if ok, err := st.Has(ctx, p.SHA256); err != nil || !ok {
				t.Fatalf("Has after Put: %v, %v", ok, err)
			}
			rc, err := st.Open(ctx, &p)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read back %d bytes (%v), want %d", len(got), err, len(data))
			}
			if k, ok := st.(interface {
				KeepAlive(context.Context, string, []manifest.Package) (bool, error)
			}); ok {
				for i, want := range []bool{true, false} {
					pushed, err := k.KeepAlive(ctx, "packages-test", []manifest.Package{p})
					if err != nil || pushed != want {
						t.Fatalf("KeepAlive #%d: pushed %v (%v), want %v", i+1, pushed, err, want)
					}
				}
			}
		})
	}
}

func TestOpenStoreRefs(t *testing.T) {
	ctx := context.Background()
	for ref, want := range map[string]string{
		"/srv/packages":                "dir /srv/packages",
		"./packages":                   "dir ./packages",
		"packages":                     "dir packages",
		"file:///srv/p":                "dir /srv/p",
		"oci://ghcr.io/o/packages":     "oci://ghcr.io/o/packages",
		"ghcr.io/o/packages":           "oci://ghcr.io/o/packages",
		"127.0.0.1:5000/packages":      "oci://127.0.0.1:5000/packages",
		"localhost/packages":           "oci://localhost/packages",
		"s3://bucket/some/prefix":      "s3://bucket/some/prefix",
		"s3://bucket?region=eu-west-1": "s3://bucket",
	} {
		st, err := sources.OpenStore(ctx, ref)
		if err != nil {
			t.Errorf("%s: %v", ref, err)
			continue
		}
		if st.String() != want {
			t.Errorf("%s: store %q, want %q", ref, st, want)
		}
	}
	for ref, want := range map[string]string{
		"":                        "empty reference",
		"s3://":                   "want s3://BUCKET",
		"s3://b?endpoint=x&bad=1": `unknown parameter "bad"`,
		"oci://UPPER/case":        "opening registry store",
	} {
		if _, err := sources.OpenStore(ctx, ref); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", ref, err, want)
		}
	}
}

// The snapshot source maps a package under a repository to the same path
// in the archive at the newest Date of that URI's suites plus the lag.
func TestSnapshotLocate(t *testing.T) {
	repos := []manifest.Repository{
		{URI: "http://mirror.invalid/debian", Suite: "bookworm", Date: "2026-06-01T10:00:00Z"},
		{URI: "http://mirror.invalid/debian/", Suite: "bookworm-updates", Date: "2026-11-20T20:30:00Z"},
		{URI: "http://mirror.invalid/debian-security", Suite: "bookworm-security", Date: "2026-11-21T23:00:00Z"},
		{URI: "http://other.invalid/", Suite: "x", Date: "2026-11-21T23:00:00Z"},
	}
	s := sources.Snapshot("http://127.0.0.1:1/snap", repos, nil)
	for url, want := range map[string]string{
		"http://mirror.invalid/debian/pool/main/b/bash/bash_5.2_amd64.deb":              "http://127.0.0.1:1/snap/archive/debian/20261121T023000Z/pool/main/b/bash/bash_5.2_amd64.deb",
		"http://mirror.invalid/debian-security/pool/updates/main/o/openssl/libssl3.deb": "http://127.0.0.1:1/snap/archive/debian-security/20261122T050000Z/pool/updates/main/o/openssl/libssl3.deb",
		"http://other.invalid/pool/x.deb":                                               "",
		"http://elsewhere.invalid/debian/pool/x.deb":                                    "",
	} {
		p := manifest.Package{URL: url}
		if got := s.Locate(&p); got != want {
			t.Errorf("%s:\n got %s\nwant %s", url, got, want)
		}
	}
	if got := sources.SnapshotTime(time.Date(2026, 12, 5, 23, 59, 1, 0, time.UTC)); got != "20261206T055901Z" {
		t.Errorf("SnapshotTime %s", got)
	}
	// An answer of the snapshot server is the source's.
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	p := manifest.Package{URL: "http://mirror.invalid/debian/pool/main/b/bash/bash_5.2_amd64.deb"}
	_, err := sources.Snapshot(srv.URL, repos, nil).Open(context.Background(), &p)
	if !errors.Is(err, sources.ErrNotFound) || sources.Transient(err) {
		t.Errorf("404 from the snapshot: %v, want ErrNotFound, not transient", err)
	}
}
