package upload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"

	"github.com/image-builder-action/image-builder-action/pkg/upload/uploadtest"
)

// The page blob goes to Azurite; the image request to a protocol test
// server that checks it against the ARM REST API's documentation
// (Microsoft.Compute/images create or update, api-version, bearer token,
// Azure-AsyncOperation polling). It is not a cloud: that Azure accepts
// the VHD and boots it is not tested here.

type staticToken struct{}

func (staticToken) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: "test-token", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// fixedVHD converts a sparse raw disk of size bytes with data at offsets
// into a fixed VHD with qemu-img, as the vhd image type is made.
func fixedVHD(t *testing.T, size int64, offsets ...int64) *Image {
	t.Helper()
	qemuImg := uploadtest.Tool(t, "qemu-img", "apt-get install qemu-utils")
	raw := sparseImage(t, "disk.raw", size, offsets...)
	p := filepath.Join(t.TempDir(), "disk.vhd")
	if out, err := exec.Command(qemuImg, "convert", "-f", "raw", "-O", "vpc", "-o", "subformat=fixed,force_size", raw.Path, p).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s", err, out)
	}
	img := &Image{Path: p, Distro: "debian-12", Arch: "x86_64", Type: "vhd", LockDigest: lockDigest}
	if err := Verify(context.Background(), img); err != nil {
		t.Fatal(err)
	}
	return img
}

type fakeARM struct {
	t        *testing.T
	mu       sync.Mutex
	calls    []string
	image    map[string]any
	polls    int
	throttle int
	failOp   string // the async operation fails with this code
	blobURL  string
}

func (f *fakeARM) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t := f.t
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, r.Method+" "+r.URL.Path)
	if got := r.Header.Get("Authorization"); got != "Bearer test-token" {
		t.Errorf("%s %s: Authorization %q", r.Method, r.URL, got)
	}
	if v := r.URL.Query().Get("api-version"); v != azureAPIVersion {
		t.Errorf("%s %s: api-version %q", r.Method, r.URL, v)
	}
	w.Header().Set("Content-Type", "application/json")
	const imgPath = "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.Compute/images/"
	switch {
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, imgPath):
		if f.image == nil {
			w.WriteHeader(404)
			fmt.Fprintf(w, `{"error":{"code":"NotFound","message":"The Resource 'Microsoft.Compute/images/%s' was not found."}}`, strings.TrimPrefix(r.URL.Path, imgPath))
			return
		}
		json.NewEncoder(w).Encode(f.image)
	case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, imgPath):
		if f.throttle > 0 {
			f.throttle--
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(429)
			fmt.Fprint(w, `{"error":{"code":"TooManyRequests","message":"throttled"}}`)
			return
		}
		var body struct {
			Location   string            `json:"location"`
			Tags       map[string]string `json:"tags"`
			Properties struct {
				HyperVGeneration string `json:"hyperVGeneration"`
				StorageProfile   struct {
					OSDisk map[string]string `json:"osDisk"`
				} `json:"storageProfile"`
			} `json:"properties"`
		}
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("PUT image: Content-Type %q", ct)
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			t.Errorf("PUT image: %v", err)
		}
		od := body.Properties.StorageProfile.OSDisk
		if body.Location != "westeurope" || body.Properties.HyperVGeneration != "V2" || od["osType"] != "Linux" || od["osState"] != "Generalized" || od["blobUri"] != f.blobURL {
			t.Errorf("PUT image body: %+v", body)
		}
		if len(body.Tags[TagImage]) != 64 || body.Tags[TagLockfile] != lockDigest {
			t.Errorf("PUT image tags: %v", body.Tags)
		}
		name := strings.TrimPrefix(r.URL.Path, imgPath)
		f.image = map[string]any{"id": r.URL.Path, "name": name, "location": body.Location, "tags": body.Tags,
			"properties": map[string]any{"provisioningState": "Creating"}}
		w.Header().Set("Azure-AsyncOperation", "https://"+r.Host+"/subscriptions/sub-1/providers/Microsoft.Compute/locations/westeurope/operations/op-1?api-version="+azureAPIVersion)
		w.WriteHeader(201)
		json.NewEncoder(w).Encode(f.image)
	case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/operations/op-1"):
		f.polls++
		switch {
		case f.polls < 2:
			fmt.Fprint(w, `{"name":"op-1","status":"InProgress","startTime":"2026-12-06T00:00:00Z"}`)
		case f.failOp != "":
			f.image = nil
			fmt.Fprintf(w, `{"name":"op-1","status":"Failed","error":{"code":"%s","message":"Operation could not be completed as it results in exceeding approved quota."}}`, f.failOp)
		default:
			f.image["properties"] = map[string]any{"provisioningState": "Succeeded"}
			fmt.Fprint(w, `{"name":"op-1","status":"Succeeded"}`)
		}
	default:
		t.Errorf("unexpected %s %s", r.Method, r.URL)
		w.WriteHeader(400)
	}
}

func azureSetup(t *testing.T) (*Azure, *fakeARM, *uploadtest.Server, *Image) {
	az := uploadtest.Azurite(t)
	img := fixedVHD(t, 256<<20, 0, 100<<20, -1<<20)
	f := &fakeARM{t: t, blobURL: az.URL + "/images/" + img.Name() + ".vhd"}
	arm := httptest.NewTLSServer(f)
	t.Cleanup(arm.Close)
	target := &Azure{SubscriptionID: "sub-1", ResourceGroup: "rg-1", Location: "westeurope",
		StorageAccount: uploadtest.AzureAccount, AccountKey: uploadtest.AzureKey, Container: "images",
		BlobEndpoint: az.URL, ARMEndpoint: arm.URL, Credential: staticToken{}, Poll: 10 * time.Millisecond,
		ClientOptions: policy.ClientOptions{Transport: arm.Client(), Retry: policy.RetryOptions{RetryDelay: time.Millisecond, MaxRetryDelay: 10 * time.Millisecond}}}
	return target, f, az, img
}

func TestAzurePageBlobAndImage(t *testing.T) {
	target, f, _, img := azureSetup(t)
	f.throttle = 1
	res, err := target.Upload(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sent %d bytes of a %d-byte VHD", res.BytesSent, img.Size)
	if res.BytesSent > 4<<20 || res.BytesSent < 3<<20 {
		t.Errorf("sent %d bytes for 3 MiB of data in a %d-byte VHD", res.BytesSent, img.Size)
	}
	if !strings.HasSuffix(res.ID, "/images/"+img.Name()) || res.Reused {
		t.Errorf("result %+v", res)
	}
	want := "GET PUT PUT GET GET GET" // throttled PUT retried, two polls, the final GET
	var got []string
	for _, c := range f.calls {
		got = append(got, strings.Fields(c)[0])
	}
	if strings.Join(got, " ") != want {
		t.Errorf("ARM calls %v, want %s", f.calls, want)
	}

	// The page blob reads back as the file.
	sk, err := blob.NewSharedKeyCredential(uploadtest.AzureAccount, uploadtest.AzureKey)
	if err != nil {
		t.Fatal(err)
	}
	bc, err := blob.NewClientWithSharedKeyCredential(f.blobURL, sk, nil)
	if err != nil {
		t.Fatal(err)
	}
	dl, err := bc.DownloadStream(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256Of(t, dl.Body); sum != img.SHA256 {
		t.Fatalf("page blob sha256:%s, VHD sha256:%s", sum, img.SHA256)
	}
	dl.Body.Close()

	// Again: the image is found, nothing sent.
	res, err = target.Upload(context.Background(), img)
	if err != nil || !res.Reused || res.BytesSent != 0 {
		t.Fatalf("second upload: %+v, %v", res, err)
	}
}

func TestAzureOperationFails(t *testing.T) {
	target, f, _, img := azureSetup(t)
	f.failOp = "QuotaExceeded"
	_, err := target.Upload(context.Background(), img)
	var ue *Error
	if !errors.As(err, &ue) || ue.Target != "azure" || ue.Code != "QuotaExceeded" || !strings.HasPrefix(ue.Step, "creating image") {
		t.Fatalf("got %v, want the operation's QuotaExceeded", err)
	}
	t.Log(err)
}

func TestAzureRefusesDynamicVHD(t *testing.T) {
	raw := sparseImage(t, "disk.vhd", 64<<20, 0)
	target := &Azure{Credential: staticToken{}}
	_, err := target.Upload(context.Background(), raw)
	if err == nil || !strings.Contains(err.Error(), "checking the VHD") {
		t.Fatalf("got %v, want the VHD refused", err)
	}
}

// image_name: the image is named as asked (its page blob keeps the
// derived name); the same
// image again is reused; another image under that name fails before
// anything is sent, and the image is left alone.
func TestAzureImageName(t *testing.T) {
	target, f, az, img := azureSetup(t)
	target.ImageName = "web-1"
	f.blobURL = az.URL + "/images/" + img.Name() + ".vhd" // the blob keeps the derived name
	res, err := target.Upload(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(res.ID, "/images/web-1") || res.Reused {
		t.Errorf("result %+v", res)
	}
	if res, err := target.Upload(context.Background(), img); err != nil || !res.Reused || res.BytesSent != 0 {
		t.Fatalf("the same image again: %+v, %v", res, err)
	}
	other := fixedVHD(t, 128<<20, 0)
	f.calls = nil
	if _, err := target.Upload(context.Background(), other); !errors.Is(err, ErrNameTaken) {
		t.Fatalf("another image under the same name: %v, want ErrNameTaken", err)
	}
	if len(f.calls) != 1 || !strings.HasPrefix(f.calls[0], "GET ") {
		t.Errorf("calls after the name was found taken: %v", f.calls)
	}
}
