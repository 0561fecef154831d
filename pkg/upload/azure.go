package upload

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	armruntime "github.com/Azure/azure-sdk-for-go/sdk/azcore/arm/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"
	"golang.org/x/sys/unix"

	"github.com/image-builder-action/image-builder-action/pkg/version"
)

// Azure makes a managed image of a fixed VHD (composer's azure target):
// the VHD → a page blob, only its non-zero pages, in parallel, each with
// its MD5 → PUT Microsoft.Compute/images (ARM REST API) → poll the
// asynchronous operation until it ends.
type Azure struct {
	SubscriptionID, ResourceGroup, Location string
	StorageAccount                          string
	// Container holds the page blob (default "ibuild"; made if missing).
	Container string
	// HyperVGeneration is V2 (UEFI, default) or V1.
	HyperVGeneration string
	// ImageName, when set, names the image (composer's image_name) instead
	// of the name derived from the digests; the page blob keeps the
	// derived name, so two uploads given one name never write pages into
	// one blob (a second Create resets it under the first). An image
	// of that name tagged with the image's sha256 is reused; one made from
	// another image is left alone and the upload fails with ErrNameTaken
	// (a PUT would replace it).
	ImageName string
	// BlobEndpoint is the account's blob service URL (default
	// https://ACCOUNT.blob.core.windows.net); ARMEndpoint is Resource
	// Manager's (default Azure's public cloud).
	BlobEndpoint, ARMEndpoint string
	// AccountKey signs blob requests with the account's shared key
	// (default AZURE_STORAGE_KEY); without one, the credential is used.
	AccountKey string
	// Credential defaults to azidentity's DefaultAzureCredential
	// (environment, workload identity, managed identity, Azure CLI).
	Credential azcore.TokenCredential
	// ClientOptions tune both clients (transport, retries).
	ClientOptions policy.ClientOptions
	// Workers upload pages in parallel (default 8); Poll is the operation
	// polling interval when Azure gives no Retry-After (default 10 s).
	Workers int
	Poll    time.Duration
}

var _ Target = (*Azure)(nil)

// azureAPIVersion is the Microsoft.Compute API version the image request
// is written against.
const azureAPIVersion = "2024-07-01"

// azurePage is the unit of upload: the largest a Put Page call takes.
const azurePage = 4 << 20

func (t *Azure) Name() string                      { return "azure" }
func (t *Azure) Accepts(typ string) bool           { return typ == "vhd" || typ == "azure" }
func (t *Azure) fail(step string, err error) error { return cloudError(t.Name(), step, err) }

func (t *Azure) Upload(ctx context.Context, img *Image) (*Result, error) {
	start := time.Now()
	if err := checkVHD(img.Path, img.Size); err != nil {
		return nil, &Error{Target: t.Name(), Step: "checking the VHD", Err: err}
	}
	gen := t.HyperVGeneration
	if gen == "" {
		gen = "V2"
	}
	if gen != "V1" && gen != "V2" {
		return nil, &Error{Target: t.Name(), Step: "configuring", Err: fmt.Errorf("hyper-v generation %q: want V1 or V2", gen)}
	}
	cred := t.Credential
	if cred == nil {
		c, err := azidentity.NewDefaultAzureCredential(nil)
		if err != nil {
			return nil, t.fail("loading credentials", err)
		}
		cred = c
	}
	name := img.Name()
	if t.ImageName != "" {
		name = t.ImageName
	}
	res := &Result{Target: t.Name(), Arch: img.Arch, Type: img.Type, Region: t.Location}

	arm, err := t.armClient(cred)
	if err != nil {
		return nil, t.fail("configuring Resource Manager", err)
	}
	imageURL := arm.endpoint + "/subscriptions/" + url.PathEscape(t.SubscriptionID) + "/resourceGroups/" + url.PathEscape(t.ResourceGroup) +
		"/providers/Microsoft.Compute/images/" + url.PathEscape(name)

	// 1. The image, when a previous upload made it.
	if im, err := arm.get(ctx, imageURL); err != nil {
		return nil, t.fail("looking for image "+name, err)
	} else if im != nil && im.Tags[TagImage] == img.SHA256 {
		res.ID, res.Reused = im.ID, true
		res.Duration = time.Since(start)
		return res, nil
	} else if im != nil && t.ImageName != "" {
		return nil, t.fail("looking for image "+name, fmt.Errorf("%w: image %s was made from another image (sha256 %q)", ErrNameTaken, name, im.Tags[TagImage]))
	}

	// 2. The page blob, under the derived name: a blob holding this image
	// is this image's whatever the image is called.
	blobURL, sent, err := t.uploadBlob(ctx, cred, img.Name(), img)
	res.BytesSent = sent
	if err != nil {
		return nil, err
	}

	// 3. The image.
	body := azureImage{
		Location: t.Location,
		Tags:     map[string]string{TagImage: img.SHA256, TagLockfile: img.LockDigest},
	}
	body.Properties.HyperVGeneration = gen
	body.Properties.StorageProfile.OSDisk = azureOSDisk{OSType: "Linux", OSState: "Generalized", BlobURI: blobURL, StorageAccountType: "Standard_LRS"}
	im, err := arm.put(ctx, imageURL, body, t.Poll)
	if err != nil {
		return nil, t.fail("creating image "+name, err)
	}
	res.ID = im.ID
	res.Duration = time.Since(start)
	return res, nil
}

// checkVHD checks that path is a fixed VHD whose virtual size is a whole
// number of MiB, as Azure requires.
func checkVHD(path string, size int64) error {
	if size < 512 || (size-512)%(1<<20) != 0 {
		return fmt.Errorf("%s: %d bytes is not a 1 MiB-aligned fixed VHD (virtual size + 512-byte footer)", path, size)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	foot := make([]byte, 512)
	if _, err := f.ReadAt(foot, size-512); err != nil {
		return err
	}
	if string(foot[:8]) != "conectix" {
		return fmt.Errorf("%s: no VHD footer (cookie conectix) in the last 512 bytes", path)
	}
	if typ := binary.BigEndian.Uint32(foot[60:64]); typ != 2 {
		return fmt.Errorf("%s: VHD disk type %d, Azure takes fixed (2) only", path, typ)
	}
	return nil
}

// uploadBlob writes img to a page blob named NAME.vhd and returns its URL
// and the bytes sent. Pages that are holes or all zeros are not sent: a
// new page blob reads as zeros. The image's sha256 goes into the blob's
// metadata last, so a blob that has it is complete; one without it (an
// interrupted run) is written again. A failed upload deletes the blob.
func (t *Azure) uploadBlob(ctx context.Context, cred azcore.TokenCredential, name string, img *Image) (string, int64, error) {
	endpoint := t.BlobEndpoint
	if endpoint == "" {
		if t.StorageAccount == "" {
			return "", 0, &Error{Target: t.Name(), Step: "configuring", Err: errors.New("no storage account given")}
		}
		endpoint = "https://" + t.StorageAccount + ".blob.core.windows.net"
	}
	cont := t.Container
	if cont == "" {
		cont = "ibuild"
	}
	contURL := strings.TrimSuffix(endpoint, "/") + "/" + cont
	blobURL := contURL + "/" + name + ".vhd"
	opts := &pageblob.ClientOptions{ClientOptions: t.ClientOptions}
	copts := &container.ClientOptions{ClientOptions: t.ClientOptions}
	var pb *pageblob.Client
	var cc *container.Client
	var err error
	key := t.AccountKey
	if key == "" {
		key = os.Getenv("AZURE_STORAGE_KEY")
	}
	if key != "" {
		account := t.StorageAccount
		if account == "" {
			return "", 0, &Error{Target: t.Name(), Step: "configuring", Err: errors.New("a storage key needs --storage-account")}
		}
		sk, err := blob.NewSharedKeyCredential(account, key)
		if err != nil {
			return "", 0, t.fail("reading the storage key", err)
		}
		if pb, err = pageblob.NewClientWithSharedKeyCredential(blobURL, sk, opts); err == nil {
			cc, err = container.NewClientWithSharedKeyCredential(contURL, sk, copts)
		}
	} else if pb, err = pageblob.NewClient(blobURL, cred, opts); err == nil {
		cc, err = container.NewClient(contURL, cred, copts)
	}
	if err != nil {
		return "", 0, t.fail("configuring Blob storage", err)
	}
	metaKey := strings.ReplaceAll(TagImage, "-", "_") // metadata names are C# identifiers
	props, err := pb.GetProperties(ctx, nil)
	switch {
	case err == nil && props.Metadata != nil && metaValue(props.Metadata, metaKey) == img.SHA256:
		return blobURL, 0, nil
	case err != nil && !bloberror.HasCode(err, bloberror.BlobNotFound, bloberror.ContainerNotFound) && !isStatus(err, 404):
		return "", 0, t.fail("looking for blob "+blobURL, err)
	}
	if _, err := cc.Create(ctx, nil); err != nil && !bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
		return "", 0, t.fail("creating container "+cont, err)
	}
	if _, err := pb.Create(ctx, img.Size, nil); err != nil {
		return "", 0, t.fail("creating page blob", err)
	}
	sent, err := t.uploadPages(ctx, pb, img)
	if err == nil {
		_, err = pb.SetMetadata(ctx, map[string]*string{
			metaKey: &img.SHA256,
			strings.ReplaceAll(TagLockfile, "-", "_"): &img.LockDigest,
		}, nil)
	}
	if err != nil {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		pb.Delete(dctx, nil)
		return "", sent, t.fail("uploading pages", err)
	}
	return blobURL, sent, nil
}

func metaValue(m map[string]*string, key string) string {
	for k, v := range m {
		if strings.EqualFold(k, key) && v != nil {
			return *v
		}
	}
	return ""
}

func isStatus(err error, code int) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.StatusCode == code
}

// uploadPages sends the file's non-zero 4 MiB pages with t.Workers
// workers. The file's holes are skipped without reading them
// (SEEK_DATA/SEEK_HOLE); data that is all zeros is read and skipped.
func (t *Azure) uploadPages(ctx context.Context, pb *pageblob.Client, img *Image) (int64, error) {
	f, err := os.Open(img.Path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	workers := t.Workers
	if workers == 0 {
		workers = 8
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	offs := make(chan int64)
	var sent atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, azurePage)
			for off := range offs {
				n := min(int64(azurePage), img.Size-off)
				if _, err := f.ReadAt(buf[:n], off); err != nil {
					cancel(fmt.Errorf("reading %s at %d: %w", img.Path, off, err))
					continue
				}
				// Trim zero pages at both ends: 512-byte pages are the unit.
				lo, hi := int64(0), n
				for lo < hi && allZero(buf[lo:lo+512]) {
					lo += 512
				}
				for hi > lo && allZero(buf[hi-512:hi]) {
					hi -= 512
				}
				if lo == hi {
					continue
				}
				sum := md5.Sum(buf[lo:hi])
				_, err := pb.UploadPages(ctx, nopCloser{bytes.NewReader(buf[lo:hi])}, blob.HTTPRange{Offset: off + lo, Count: hi - lo},
					&pageblob.UploadPagesOptions{TransactionalValidation: blob.TransferValidationTypeMD5(sum[:])})
				if err != nil {
					cancel(err)
					continue
				}
				sent.Add(hi - lo)
			}
		}()
	}
	feedErr := dataPages(ctx, f, img.Size, offs)
	close(offs)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return sent.Load(), err
	}
	return sent.Load(), feedErr
}

// dataPages sends the offsets of the pages that hold data.
func dataPages(ctx context.Context, f *os.File, size int64, out chan<- int64) error {
	fd := int(f.Fd())
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if err == unix.ENXIO {
			return nil // only a hole is left
		}
		if err != nil {
			data = off // no SEEK_DATA here: read everything
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			hole = size
		}
		for p := data / azurePage * azurePage; p < hole; p += azurePage {
			select {
			case out <- p:
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
		off = (hole + azurePage - 1) / azurePage * azurePage
	}
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

type nopCloser struct{ io.ReadSeeker }

func (nopCloser) Close() error { return nil }

// The image resource as the ARM REST API reads and returns it
// (Microsoft.Compute/images).
type azureImage struct {
	ID         string            `json:"id,omitempty"`
	Name       string            `json:"name,omitempty"`
	Location   string            `json:"location"`
	Tags       map[string]string `json:"tags,omitempty"`
	Properties struct {
		HyperVGeneration string `json:"hyperVGeneration"`
		StorageProfile   struct {
			OSDisk azureOSDisk `json:"osDisk"`
		} `json:"storageProfile"`
		ProvisioningState string `json:"provisioningState,omitempty"`
	} `json:"properties"`
}

type azureOSDisk struct {
	OSType             string `json:"osType"`
	OSState            string `json:"osState"`
	BlobURI            string `json:"blobUri"`
	StorageAccountType string `json:"storageAccountType,omitempty"`
}

// armClient speaks Resource Manager's REST API through azcore's ARM
// pipeline (bearer token, retries, throttling, long-running operations):
// one PUT and one GET do not need armcompute's hundreds of types.
type armClient struct {
	endpoint string
	pl       runtime.Pipeline
}

func (t *Azure) armClient(cred azcore.TokenCredential) (*armClient, error) {
	endpoint := t.ARMEndpoint
	cfg := cloud.AzurePublic
	if endpoint != "" {
		cfg = cloud.Configuration{Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			cloud.ResourceManager: {Endpoint: endpoint, Audience: cloud.AzurePublic.Services[cloud.ResourceManager].Audience},
		}}
	} else {
		endpoint = cfg.Services[cloud.ResourceManager].Endpoint
	}
	co := t.ClientOptions
	co.Cloud = cfg
	pl, err := armruntime.NewPipeline("ibuild", version.String(), cred, runtime.PipelineOptions{}, &arm.ClientOptions{ClientOptions: co})
	if err != nil {
		return nil, err
	}
	return &armClient{endpoint: strings.TrimSuffix(endpoint, "/"), pl: pl}, nil
}

// get returns the resource, or nil when it does not exist.
func (c *armClient) get(ctx context.Context, u string) (*azureImage, error) {
	req, err := runtime.NewRequest(ctx, http.MethodGet, u+"?api-version="+azureAPIVersion)
	if err != nil {
		return nil, err
	}
	resp, err := c.pl.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusNotFound {
		resp.Body.Close()
		return nil, nil
	}
	if !runtime.HasStatusCode(resp, http.StatusOK) {
		return nil, runtime.NewResponseError(resp)
	}
	var im azureImage
	if err := runtime.UnmarshalAsJSON(resp, &im); err != nil {
		return nil, err
	}
	return &im, nil
}

// put creates the resource and polls its asynchronous operation to the end.
func (c *armClient) put(ctx context.Context, u string, body azureImage, poll time.Duration) (*azureImage, error) {
	req, err := runtime.NewRequest(ctx, http.MethodPut, u+"?api-version="+azureAPIVersion)
	if err != nil {
		return nil, err
	}
	if err := runtime.MarshalAsJSON(req, body); err != nil {
		return nil, err
	}
	resp, err := c.pl.Do(req)
	if err != nil {
		return nil, err
	}
	if !runtime.HasStatusCode(resp, http.StatusOK, http.StatusCreated, http.StatusAccepted) {
		return nil, runtime.NewResponseError(resp)
	}
	poller, err := runtime.NewPoller[azureImage](resp, c.pl, nil)
	if err != nil {
		return nil, err
	}
	if poll == 0 {
		poll = 10 * time.Second
	}
	im, err := poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: poll})
	if err != nil {
		return nil, err
	}
	return &im, nil
}
