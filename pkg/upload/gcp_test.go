package upload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"google.golang.org/api/option"

	"github.com/image-builder-action/image-builder-action/pkg/upload/uploadtest"
)

// The tarball goes to fake-gcs-server; images.insert and the operation to
// a protocol test server that checks them against the Compute Engine v1
// REST reference and reads the object back as GCE would. It is not a
// cloud: that GCE boots the image is not tested here.

type fakeGCE struct {
	t        *testing.T
	gcs      *storage.Client
	img      *Image
	mu       sync.Mutex
	calls    []string
	image    bool
	imageSHA string // the sha256 the image was made from
	name     string // the name images.insert must get (default: the image's derived name)
	polls    int
	throttle int
	quota    bool
	// onPoll, when set, is called at each operation poll (under mu); the
	// operation then never ends.
	onPoll func()
}

func (f *fakeGCE) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t := f.t
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, r.Method+" "+r.URL.Path)
	w.Header().Set("Content-Type", "application/json")
	const images = "/projects/proj-1/global/images/"
	switch {
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, images):
		if !f.image {
			w.WriteHeader(404)
			fmt.Fprintf(w, `{"error":{"code":404,"message":"The resource 'projects/proj-1/global/images/%s' was not found","errors":[{"reason":"notFound"}]}}`, strings.TrimPrefix(r.URL.Path, images))
			return
		}
		sha := f.imageSHA
		if sha == "" {
			sha = f.img.SHA256
		}
		json.NewEncoder(w).Encode(map[string]string{"name": strings.TrimPrefix(r.URL.Path, images), "description": "lockfile sha256:" + lockDigest + " image sha256:" + sha})
	case r.Method == http.MethodPost && r.URL.Path == images:
		if f.quota {
			w.WriteHeader(403)
			fmt.Fprint(w, `{"error":{"code":403,"message":"Quota 'IMAGES' exceeded. Limit: 100.0 globally.","errors":[{"reason":"quotaExceeded"}]}}`)
			return
		}
		var body struct {
			Name            string            `json:"name"`
			Architecture    string            `json:"architecture"`
			Family          string            `json:"family"`
			RawDisk         map[string]string `json:"rawDisk"`
			Labels          map[string]string `json:"labels"`
			GuestOsFeatures []map[string]string
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			t.Error(err)
		}
		// The staging object has the derived name, whatever the image's.
		src := "https://storage.googleapis.com/images/" + f.img.Name() + ".tar.gz"
		want := f.name
		if want == "" {
			want = f.img.Name()
		}
		if body.Name != want || body.Architecture != "X86_64" || body.Family != "debian-ibuild" || body.RawDisk["source"] != src || len(body.GuestOsFeatures) != 4 {
			t.Errorf("images.insert body %+v", body)
		}
		for k, v := range body.Labels {
			if len(v) > 63 || len(k) > 63 {
				t.Errorf("label %s=%s longer than GCE allows", k, v)
			}
		}
		// Read the object as GCE would.
		rd, err := f.gcs.Bucket("images").Object(f.img.Name() + ".tar.gz").NewReader(r.Context())
		if err != nil {
			t.Errorf("the object: %v", err)
		} else {
			if sum := sha256Of(t, rd); sum != f.img.SHA256 {
				t.Errorf("object sha256:%s, image sha256:%s", sum, f.img.SHA256)
			}
			rd.Close()
		}
		fmt.Fprint(w, `{"kind":"compute#operation","name":"operation-1","operationType":"insert","status":"PENDING"}`)
	case r.Method == http.MethodGet && r.URL.Path == "/projects/proj-1/global/operations/operation-1":
		if f.throttle > 0 {
			f.throttle--
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(429)
			fmt.Fprint(w, `{"error":{"code":429,"message":"Rate Limit Exceeded","errors":[{"reason":"rateLimitExceeded"}]}}`)
			return
		}
		f.polls++
		if f.onPoll != nil {
			f.onPoll()
			fmt.Fprint(w, `{"kind":"compute#operation","name":"operation-1","status":"RUNNING"}`)
			return
		}
		status := "RUNNING"
		if f.polls >= 2 {
			status = "DONE"
			f.image = true
		}
		fmt.Fprintf(w, `{"kind":"compute#operation","name":"operation-1","status":"%s"}`, status)
	default:
		t.Errorf("unexpected %s %s", r.Method, r.URL)
		w.WriteHeader(400)
	}
}

func gcpSetup(t *testing.T) (*GCP, *fakeGCE, *storage.Client) {
	gcs := uploadtest.FakeGCS(t, "images")
	sc, err := storage.NewClient(context.Background(), option.WithEndpoint(gcs.URL+"/storage/v1/"), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	img := sparseImage(t, "image.tar.gz", 3<<20+17, 0, 2<<20)
	img.Type = "gce"
	f := &fakeGCE{t: t, gcs: sc, img: img}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	target := &GCP{Project: "proj-1", Bucket: "images", Family: "debian-ibuild", StorageEndpoint: gcs.URL + "/storage/v1/",
		ComputeEndpoint: srv.URL, HTTPClient: srv.Client(), Poll: time.Millisecond}
	return target, f, sc
}

func TestGCPObjectAndImage(t *testing.T) {
	target, f, sc := gcpSetup(t)
	f.throttle = 1
	res, err := target.Upload(context.Background(), f.img)
	if err != nil {
		t.Fatal(err)
	}
	if res.ID != f.img.Name() || res.Project != "proj-1" || res.Reused || res.BytesSent != f.img.Size {
		t.Errorf("result %+v", res)
	}
	// The object is gone once the image is made.
	if _, err := sc.Bucket("images").Object(f.img.Name() + ".tar.gz").Attrs(context.Background()); !errors.Is(err, storage.ErrObjectNotExist) {
		t.Errorf("the staging object: %v, want it deleted", err)
	}
	res, err = target.Upload(context.Background(), f.img)
	if err != nil || !res.Reused || res.BytesSent != 0 {
		t.Fatalf("second upload: %+v, %v", res, err)
	}
}

func TestGCPQuota(t *testing.T) {
	target, f, sc := gcpSetup(t)
	f.quota = true
	_, err := target.Upload(context.Background(), f.img)
	var ue *Error
	if !errors.As(err, &ue) || ue.Code != "quotaExceeded" || !strings.HasPrefix(ue.Step, "inserting image") {
		t.Fatalf("got %v, want quotaExceeded at images.insert", err)
	}
	t.Log(err)
	if _, err := sc.Bucket("images").Object(f.img.Name() + ".tar.gz").Attrs(context.Background()); !errors.Is(err, storage.ErrObjectNotExist) {
		t.Errorf("the staging object after a failure: %v, want it deleted", err)
	}
}

// Interrupted while GCE imports (the context cancelled, as by SIGINT):
// the error says where, and the staging object is deleted all the same,
// with a fresh context.
func TestGCPInterruptedRemovesObject(t *testing.T) {
	target, f, sc := gcpSetup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	obj := sc.Bucket("images").Object(f.img.Name() + ".tar.gz")
	seen := false
	f.onPoll = func() {
		// The object is there while the operation runs.
		if _, err := obj.Attrs(context.Background()); err == nil {
			seen = true
		}
		cancel()
	}
	_, err := target.Upload(ctx, f.img)
	var ue *Error
	if !errors.As(err, &ue) || !errors.Is(err, context.Canceled) || !strings.HasPrefix(ue.Step, "waiting for operation") {
		t.Fatalf("got %v, want context.Canceled while waiting", err)
	}
	if !seen {
		t.Error("the object was not there during the import")
	}
	if _, err := obj.Attrs(context.Background()); !errors.Is(err, storage.ErrObjectNotExist) {
		t.Errorf("the staging object after an interrupt: %v, want it deleted", err)
	}
}

// image_name: the image is named as asked (its staging object keeps the
// derived name); the
// same image again is reused; another image under that name fails before
// anything is sent, and the image is left alone.
func TestGCPImageName(t *testing.T) {
	target, f, _ := gcpSetup(t)
	target.ImageName, f.name = "web-1", "web-1"
	res, err := target.Upload(context.Background(), f.img)
	if err != nil {
		t.Fatal(err)
	}
	if res.ID != "web-1" || res.Reused {
		t.Errorf("result %+v", res)
	}
	f.imageSHA = f.img.SHA256
	if res, err := target.Upload(context.Background(), f.img); err != nil || !res.Reused || res.BytesSent != 0 {
		t.Fatalf("the same image again: %+v, %v", res, err)
	}
	other := sparseImage(t, "image.tar.gz", 1<<20+3, 0)
	other.Type = "gce"
	f.calls = nil
	if _, err := target.Upload(context.Background(), other); !errors.Is(err, ErrNameTaken) {
		t.Fatalf("another image under the same name: %v, want ErrNameTaken", err)
	}
	if len(f.calls) != 1 || !strings.HasPrefix(f.calls[0], "GET ") {
		t.Errorf("calls after the name was found taken: %v", f.calls)
	}
}
