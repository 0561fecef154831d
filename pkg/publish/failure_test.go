package publish

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// proxy puts a handler in front of the registry at host; deny decides
// which requests get status instead of being forwarded.
func proxy(t *testing.T, host string, status int, deny func(*http.Request) bool) string {
	t.Helper()
	u, _ := url.Parse("http://" + host)
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if deny(r) {
			if status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Basic realm="ibuild-test"`)
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			code, msg := "UNAUTHORIZED", "authentication required"
			if status != http.StatusUnauthorized {
				code, msg = "UNKNOWN", "refused by the test proxy"
			}
			fmt.Fprintf(w, `{"errors":[{"code":%q,"message":%q}]}`, code, msg)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func isWrite(r *http.Request) bool {
	return r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch
}

// TestFailuresMoveNoTag publishes v1, changes the disk, then makes each
// failure happen: every one must fail with a clear error and leave v1 on
// the first index.
func TestFailuresMoveNoTag(t *testing.T) {
	ctx := context.Background()
	host := inProcessRegistry(t, false)
	dir := t.TempDir()
	key, _ := keyPair(t, dir, "right")
	lf := fixture(t, false)
	out := filepath.Join(dir, "out")
	writeFile(t, out, "disk.qcow2", 200_000)
	noenv := WithGetenv(func(string) string { return "" })
	res, err := Publish(ctx, lf, out, host+"/img:v1", WithSigner(loadSigner(t, key, "right")), noenv)
	if err != nil {
		t.Fatal(err)
	}
	old := res.Images[0].Digest
	writeFile(t, out, "disk.qcow2", 200_000) // a new build: another digest

	signer := loadSigner(t, key, "right")
	for _, tc := range []struct {
		name string
		ref  func() string
		dir  string
		opts func() ([]Option, error)
		want string
	}{
		{
			name: "missing file",
			ref:  func() string { return host + "/img:v1" },
			dir:  filepath.Join(dir, "empty"),
			want: "x86_64/qcow2 (looked for " + filepath.Join(dir, "empty", "x86_64", "qcow2", "disk.qcow2"),
		},
		{
			name: "missing named entry",
			ref:  func() string { return host + "/img:v1" },
			dir:  out,
			opts: func() ([]Option, error) { return []Option{WithTypes("qcow2", "container")}, nil },
			want: "no built file for x86_64/container",
		},
		{
			name: "wrong key password",
			ref:  func() string { return host + "/img:v1" },
			dir:  out,
			opts: func() ([]Option, error) {
				_, err := LoadKey(key, func() ([]byte, error) { return []byte("wrong"), nil })
				return nil, err
			},
			want: "loading cosign key " + key + ": wrong password (COSIGN_PASSWORD)",
		},
		{
			name: "registry refuses auth",
			ref:  func() string { return proxy(t, host, http.StatusUnauthorized, isWrite) + "/img:v1" },
			dir:  out,
			want: "UNAUTHORIZED: authentication required",
		},
		{
			name: "unreachable registry",
			ref:  func() string { return "127.0.0.1:1/img:v1" },
			dir:  out,
			want: "connection refused",
		},
		{
			name: "signature push fails",
			ref: func() string {
				return proxy(t, host, http.StatusInternalServerError, func(r *http.Request) bool {
					return r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/sha256-")
				}) + "/img:v1"
			},
			dir:  out,
			want: "writing the signature of",
		},
		{
			name: "digest reference",
			ref:  func() string { return host + "/img@" + old },
			dir:  out,
			want: "names a digest",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := []Option{WithSigner(signer), noenv, fastRetries()}
			if tc.opts != nil {
				more, err := tc.opts()
				if err != nil {
					t.Logf("error: %v", err)
					if !strings.Contains(err.Error(), tc.want) {
						t.Fatalf("error %q, want it to contain %q", err, tc.want)
					}
					return
				}
				opts = append(opts, more...)
			}
			_, err := Publish(ctx, lf, tc.dir, tc.ref(), opts...)
			t.Logf("error: %v", err)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
			if got := digestOf(t, host+"/img:v1"); got != old {
				t.Errorf("the tag moved to %s after a failed publish (was %s)", got, old)
			}
		})
	}
}

func TestFileChangedDuringUpload(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "disk.raw", 100_000)
	l, err := newFileLayer(context.Background(), p, "application/octet-stream")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "disk.raw", 100_000)
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	buf := make([]byte, 4096)
	for {
		_, err = rc.Read(buf)
		if err != nil {
			break
		}
	}
	if err == nil || !strings.Contains(err.Error(), "the file changed") {
		t.Errorf("reading a changed file: %v, want a digest mismatch", err)
	}
	if err := os.Truncate(p, 10); err != nil {
		t.Fatal(err)
	}
	rc2, _ := l.Compressed()
	defer rc2.Close()
	for err = nil; err == nil; _, err = rc2.Read(buf) {
	}
	if !strings.Contains(err.Error(), "the file changed") {
		t.Errorf("reading a truncated file: %v", err)
	}
}

func TestSelectEntries(t *testing.T) {
	lf := fixture(t, true)
	dir := t.TempDir()
	writeFile(t, dir, "disk.qcow2", 10)
	// Two qcow2 entries share disk.qcow2: the top-level file belongs to
	// neither until --arch names one.
	if _, err := selectEntries(lf, dir, &options{}); err == nil || !strings.Contains(err.Error(), "no built file") {
		t.Errorf("ambiguous file: %v", err)
	}
	plan, err := selectEntries(lf, dir, &options{arches: []string{"x86_64"}, types: []string{"qcow2"}})
	if err != nil || len(plan) != 1 || plan[0].path != filepath.Join(dir, "disk.qcow2") {
		t.Errorf("named entry: %v %v", plan, err)
	}
	writeFile(t, dir, "aarch64/disk.qcow2", 10)
	writeFile(t, dir, "x86_64/qcow2/disk.qcow2", 10)
	plan, err = selectEntries(lf, dir, &options{})
	if err != nil || len(plan) != 2 {
		t.Fatalf("per-arch files: %v %v", plan, err)
	}
	if _, err := selectEntries(lf, dir, &options{arches: []string{"riscv64"}}); err == nil || !strings.Contains(err.Error(), "no entry of the lockfile matches --arch riscv64") {
		t.Errorf("unknown arch: %v", err)
	}
}
