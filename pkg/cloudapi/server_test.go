package cloudapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/auth"
	"github.com/image-builder-action/image-builder-action/pkg/compose"
	"github.com/image-builder-action/image-builder-action/pkg/testutil"
	"github.com/image-builder-action/image-builder-action/pkg/upload"
)

func testCache(t testing.TB) string { return testutil.Cache(t) }

// apiServer is the cloud API on a real compose service, on 127.0.0.1,
// with tokens for alice and bob.
type apiServer struct {
	URL        string
	Service    *compose.Service
	Alice, Bob string
}

func startAPI(t testing.TB, workers int, up upload.Options) *apiServer {
	t.Helper()
	return startAPIWith(t, workers, up, nil)
}

// startAPIWith is startAPI with the API's handler wrapped by wrap (when
// not nil).
func startAPIWith(t testing.TB, workers int, up upload.Options, wrap func(http.Handler) http.Handler) *apiServer {
	t.Helper()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(testutil.LogWriter(t), nil))
	svc, err := compose.Open(context.Background(), compose.Config{
		Dir: dir, CacheDir: testCache(t), Workers: workers, Logger: log, PollInterval: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := svc.Close(ctx); err != nil {
			t.Errorf("closing the compose service: %v", err)
		}
	})
	tokens := auth.Open(dir)
	alice, err := tokens.Create("alice")
	if err != nil {
		t.Fatal(err)
	}
	bob, err := tokens.Create("bob")
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Config{Composes: svc, Auth: tokens, Upload: up, Logger: log, MaxBody: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &apiServer{URL: srv.URL, Service: svc, Alice: alice, Bob: bob}
}

func (a *apiServer) do(t testing.TB, token, method, path string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, a.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

const okRequest = `{"distribution": "debian-12", "image_request": {"architecture": "x86_64", "image_type": "tar"},
  "customizations": {"packages": ["less"]}}`

// Bad requests get composer's error shape naming the field, with the
// right status, and queue nothing.
func TestBadRequests(t *testing.T) {
	a := startAPI(t, 0, upload.Options{Bucket: "images"})
	v2, v1 := PrefixV2, PrefixV1
	big := `{"distribution": "debian-12", "image_request": {"architecture": "x86_64", "image_type": "tar"},
	  "customizations": {"files": [{"path": "/big", "data": "` + strings.Repeat("x", 2<<20) + `"}]}}`
	for _, tc := range []struct {
		name, token, method, path, body string
		status                          int
		code, field                     string
	}{
		{"no token", "", "GET", v2 + "composes/", "", 401, "IMAGE-BUILDER-COMPOSER-16", ""},
		{"bad token", "ibt_nope", "GET", v2 + "composes/", "", 401, "IMAGE-BUILDER-COMPOSER-16", ""},
		{"unknown image type", a.Alice, "POST", v2 + "compose",
			`{"distribution": "debian-12", "image_request": {"architecture": "x86_64", "image_type": "floppy"}}`,
			400, "IMAGE-BUILDER-COMPOSER-30", "image_request.image_type"},
		{"unknown field", a.Alice, "POST", v2 + "compose",
			`{"distribution": "debian-12", "image_request": {"architecture": "x86_64", "image_type": "tar", "colour": "blue"}}`,
			400, "IMAGE-BUILDER-COMPOSER-30", "image_request.colour"},
		{"wrong type", a.Alice, "POST", v2 + "compose",
			`{"distribution": "debian-12", "image_request": {"architecture": "x86_64", "image_type": "tar"}, "customizations": {"packages": "less"}}`,
			400, "IMAGE-BUILDER-COMPOSER-30", "customizations.packages"},
		{"customizations and blueprint", a.Alice, "POST", v2 + "compose",
			`{"distribution": "debian-12", "image_request": {"architecture": "x86_64", "image_type": "tar"}, "customizations": {}, "blueprint": {"name": "x"}}`,
			400, "IMAGE-BUILDER-COMPOSER-30", "body"},
		{"unknown distribution", a.Alice, "POST", v2 + "compose",
			`{"distribution": "debian-99", "image_request": {"architecture": "x86_64", "image_type": "tar"}}`,
			400, "IMAGE-BUILDER-COMPOSER-4", "distribution"},
		{"file repository", a.Alice, "POST", v2 + "compose",
			`{"distribution": "debian-12", "image_request": {"architecture": "x86_64", "image_type": "tar"},
			  "customizations": {"custom_repositories": [{"id": "local", "baseurl": ["file:///etc/apt"]}]}}`,
			400, "IMAGE-BUILDER-COMPOSER-7", "customizations.custom_repositories[0].baseurl[0]"},
		{"file key in a blueprint", a.Alice, "POST", v2 + "compose",
			`{"distribution": "debian-12", "image_request": {"architecture": "x86_64", "image_type": "tar"},
			  "blueprint": {"name": "x", "customizations": {"repositories": [{"id": "r", "baseurls": ["http://a.example/"], "gpgkeys": ["file:///etc/shadow"]}]}}}`,
			400, "IMAGE-BUILDER-COMPOSER-7", "blueprint.customizations.repositories[0].gpgkeys[0]"},
		{"hosted: file repository", a.Alice, "POST", v1 + "compose",
			`{"distribution": "debian-12", "image_requests": [{"architecture": "x86_64", "image_type": "guest-image", "upload_request": {"type": "aws.s3", "options": {}}}],
			  "customizations": {"custom_repositories": [{"id": "local", "baseurl": ["file:///"]}]}}`,
			400, "IMAGE-BUILDER-COMPOSER-7", "customizations.custom_repositories[0].baseurl[0]"},
		{"hosted: no upload", a.Alice, "POST", v1 + "compose",
			`{"distribution": "debian-12", "image_requests": [{"architecture": "x86_64", "image_type": "guest-image"}]}`,
			400, "IMAGE-BUILDER-COMPOSER-30", "image_requests[0].upload_request"},
		{"bad blueprint value", a.Alice, "POST", v2 + "compose",
			`{"distribution": "debian-12", "image_request": {"architecture": "x86_64", "image_type": "tar"},
			  "customizations": {"services": {"enabled": ["a b"]}}}`,
			400, "IMAGE-BUILDER-COMPOSER-8", "customizations.services.enabled[0]"},
		{"body too large", a.Alice, "POST", v2 + "compose", big, 413, "IMAGE-BUILDER-COMPOSER-17", ""},
		{"not JSON", a.Alice, "POST", v2 + "compose", `{"distribution":`, 400, "IMAGE-BUILDER-COMPOSER-30", "body"},
		{"bad id", a.Alice, "GET", v2 + "composes/not-a-uuid", "", 400, "IMAGE-BUILDER-COMPOSER-30", "id"},
		{"unknown id", a.Alice, "GET", v2 + "composes/123e4567-e89b-12d3-a456-426655440000", "", 404, "IMAGE-BUILDER-COMPOSER-14", ""},
		{"no such path", a.Alice, "GET", v2 + "nothing", "", 404, "IMAGE-BUILDER-COMPOSER-14", ""},
		{"wrong method", a.Alice, "PUT", v2 + "compose", okRequest, 405, "IMAGE-BUILDER-COMPOSER-31", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			status, b := a.do(t, tc.token, tc.method, tc.path, body)
			var e Error
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatalf("%d %s: not composer's error: %v", status, b, err)
			}
			if status != tc.status || e.Code != tc.code || e.Kind != "Error" || e.Reason == "" {
				t.Fatalf("got %d %s, want %d %s", status, b, tc.status, tc.code)
			}
			field := ""
			if d, ok := e.Details.(map[string]any); ok {
				field, _ = d["field"].(string)
			}
			if field != tc.field {
				t.Errorf("field %q, want %q (%s)", field, tc.field, e.Reason)
			}
			if tc.field != "" && !strings.HasPrefix(e.Reason, tc.field) {
				t.Errorf("reason %q does not name the field", e.Reason)
			}
		})
	}
	for _, owner := range []string{"alice", "bob"} {
		if list, total, err := a.Service.List(context.Background(), owner, compose.ListOptions{}); err != nil || total != 0 || len(list) != 0 {
			t.Fatalf("%s has %d composes (%v) after bad requests; want none queued", owner, total, err)
		}
	}
}

// One owner's compose is invisible to another: status, metadata, logs,
// manifests, download and delete answer 404, and the lists differ.
func TestOwners(t *testing.T) {
	a := startAPI(t, 0, upload.Options{})
	status, b := a.do(t, a.Alice, "POST", PrefixV2+"compose", []byte(okRequest))
	if status != 201 {
		t.Fatalf("POST compose: %d %s", status, b)
	}
	var id ComposeId
	if err := json.Unmarshal(b, &id); err != nil || id.Id == "" {
		t.Fatalf("%s: %v", b, err)
	}
	status, b = a.do(t, a.Alice, "GET", PrefixV2+"composes/"+id.Id, nil)
	if status != 200 {
		t.Fatalf("alice's GET: %d %s", status, b)
	}
	var st ComposeStatus
	if err := json.Unmarshal(b, &st); err != nil || st.Status != "pending" || st.ImageStatus.Status != "pending" || *st.ImageStatus.ImageType != "tar" {
		t.Fatalf("status %s: %v", b, err)
	}
	for _, p := range []string{"composes/" + id.Id, "composes/" + id.Id + "/metadata", "composes/" + id.Id + "/logs",
		"composes/" + id.Id + "/manifests", "composes/" + id.Id + "/sboms", "composes/" + id.Id + "/download"} {
		if status, b := a.do(t, a.Bob, "GET", PrefixV2+p, nil); status != 404 || !bytes.Contains(b, []byte("IMAGE-BUILDER-COMPOSER-14")) {
			t.Errorf("bob GET %s: %d %s", p, status, b)
		}
	}
	for _, p := range []string{PrefixV1 + "composes/" + id.Id, PrefixV1 + "composes/" + id.Id + "/metadata"} {
		if status, b := a.do(t, a.Bob, "GET", p, nil); status != 404 {
			t.Errorf("bob GET %s: %d %s", p, status, b)
		}
	}
	if status, b := a.do(t, a.Bob, "DELETE", PrefixV2+"composes/"+id.Id, nil); status != 404 {
		t.Errorf("bob DELETE: %d %s", status, b)
	}
	_, b = a.do(t, a.Bob, "GET", PrefixV2+"composes/", nil)
	var list ComposeList
	if err := json.Unmarshal(b, &list); err != nil || list.Total != 0 || len(list.Items) != 0 {
		t.Errorf("bob's list %s", b)
	}
	_, b = a.do(t, a.Alice, "GET", PrefixV2+"composes/", nil)
	if err := json.Unmarshal(b, &list); err != nil || list.Total != 1 || list.Items[0].Id != id.Id {
		t.Errorf("alice's list %s", b)
	}
	_, b = a.do(t, a.Alice, "GET", PrefixV1+"composes?limit=10", nil)
	var l1 ComposesResponseV1
	if err := json.Unmarshal(b, &l1); err != nil || l1.Meta.Count != 1 || l1.Data[0].Id != id.Id {
		t.Errorf("alice's hosted list %s", b)
	}
	// Not finished: no download yet.
	if status, b := a.do(t, a.Alice, "GET", PrefixV2+"composes/"+id.Id+"/download", nil); status != 409 {
		t.Errorf("download of a pending compose: %d %s", status, b)
	}
	// Alice deletes it (cancelling it first): gone.
	if status, b := a.do(t, a.Alice, "DELETE", PrefixV2+"composes/"+id.Id, nil); status != 200 {
		t.Fatalf("alice DELETE: %d %s", status, b)
	}
	if status, _ := a.do(t, a.Alice, "GET", PrefixV2+"composes/"+id.Id, nil); status != 404 {
		t.Errorf("after delete: %d", status)
	}
}

func TestDistributionsAndDocument(t *testing.T) {
	a := startAPI(t, 0, upload.Options{})
	status, b := a.do(t, a.Alice, "GET", PrefixV2+"distributions", nil)
	var dl DistributionList
	if err := json.Unmarshal(b, &dl); status != 200 || err != nil || len(dl["debian-12"]["x86_64"]) == 0 {
		t.Fatalf("%d %s: %v", status, b, err)
	}
	status, b = a.do(t, a.Alice, "GET", PrefixV2+"openapi", nil)
	var d map[string]any
	if err := json.Unmarshal(b, &d); status != 200 || err != nil || d["openapi"] != "3.0.3" {
		t.Fatalf("%d %.200s: %v", status, b, err)
	}
}
