package upload

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/storage"
	"google.golang.org/api/option"
	htransport "google.golang.org/api/transport/http"
)

// GCP makes a Compute Engine image of the gce type's tarball (composer's
// gcp target): the tar.gz → a Cloud Storage object → images.insert →
// wait for the operation → the object is deleted.
type GCP struct {
	Project string
	Bucket  string
	// Region is the image's storage location (default: the multi-region
	// nearest the bucket, GCE's choice).
	Region string
	Family string
	// ImageName, when set, names the image (composer's image_name)
	// instead of the name derived from the digests; the staging object
	// keeps the derived name, so two uploads given one name never write
	// into one object (one would import the other's bytes). An image of that name made from the same image (its description
	// names the sha256) is reused; one made from another is left alone
	// and the upload fails with ErrNameTaken.
	ImageName string
	// StorageEndpoint and ComputeEndpoint replace the services' URLs
	// (tests); with either, requests are made without credentials.
	StorageEndpoint, ComputeEndpoint string
	// Poll is how often the operation is asked about (default 5 s).
	Poll time.Duration
	// HTTPClient, when set, makes the compute calls (tests).
	HTTPClient *http.Client
}

var _ Target = (*GCP)(nil)

// gceFeatures are the guest OS features Debian's own GCE images declare.
var gceFeatures = []string{"UEFI_COMPATIBLE", "VIRTIO_SCSI_MULTIQUEUE", "GVNIC", "SEV_CAPABLE"}

const computeScope = "https://www.googleapis.com/auth/compute"

func (t *GCP) Name() string                      { return "gcp" }
func (t *GCP) Accepts(typ string) bool           { return typ == "gce" }
func (t *GCP) fail(step string, err error) error { return cloudError(t.Name(), step, err) }

func gceArch(arch string) (string, error) {
	switch arch {
	case "x86_64", "amd64":
		return "X86_64", nil
	case "aarch64", "arm64":
		return "ARM64", nil
	}
	return "", fmt.Errorf("architecture %q has no GCE equivalent", arch)
}

func (t *GCP) Upload(ctx context.Context, img *Image) (*Result, error) {
	start := time.Now()
	if t.Project == "" || t.Bucket == "" {
		return nil, &Error{Target: t.Name(), Step: "configuring", Err: errors.New("project and bucket are required")}
	}
	arch, err := gceArch(img.Arch)
	if err != nil {
		return nil, &Error{Target: t.Name(), Step: "configuring", Err: err}
	}
	c, err := t.computeClient(ctx)
	if err != nil {
		return nil, t.fail("loading credentials", err)
	}
	name := img.Name()
	if t.ImageName != "" {
		name = t.ImageName
	}
	res := &Result{Target: t.Name(), Arch: img.Arch, Type: img.Type, Project: t.Project, Region: t.Region}
	imgURL := c.base + "/projects/" + url.PathEscape(t.Project) + "/global/images/"

	// 1. The image, when a previous upload made it.
	var found struct {
		Name        string `json:"name"`
		Description string `json:"description"`
	}
	if err := c.do(ctx, http.MethodGet, imgURL+name, nil, &found); err == nil && strings.Contains(found.Description, img.SHA256) {
		res.ID, res.Reused = name, true
		res.Duration = time.Since(start)
		return res, nil
	} else if err == nil {
		return nil, t.fail("looking for image "+name, fmt.Errorf("%w: image %s was made from another image (%q)", ErrNameTaken, name, found.Description))
	} else if !isGCPStatus(err, 404) {
		return nil, t.fail("looking for image "+name, err)
	}

	// 2. The object, deleted whatever happens next.
	sopts := []option.ClientOption{}
	if t.StorageEndpoint != "" {
		sopts = append(sopts, option.WithEndpoint(t.StorageEndpoint), option.WithoutAuthentication())
	}
	sc, err := storage.NewClient(ctx, sopts...)
	if err != nil {
		return nil, t.fail("loading credentials", err)
	}
	defer sc.Close()
	obj := sc.Bucket(t.Bucket).Object(img.Name() + ".tar.gz")
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		obj.Delete(dctx)
	}()
	f, err := os.Open(img.Path)
	if err != nil {
		return nil, t.fail("reading image", err)
	}
	defer f.Close()
	w := obj.NewWriter(ctx)
	w.ContentType = "application/gzip"
	w.Metadata = map[string]string{TagImage: img.SHA256, TagLockfile: img.LockDigest}
	w.ChunkSize = 32 << 20
	n, err := io.Copy(w, f)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	res.BytesSent = n
	if err != nil {
		return nil, t.fail("uploading "+obj.ObjectName(), err)
	}

	// 3. The image. Labels hold at most 63 characters: the full digests
	// are in the description.
	body := map[string]any{
		"name":            name,
		"description":     fmt.Sprintf("%s %s built by ibuild; lockfile sha256:%s image sha256:%s", img.Distro, img.Arch, img.LockDigest, img.SHA256),
		"architecture":    arch,
		"rawDisk":         map[string]string{"source": "https://storage.googleapis.com/" + t.Bucket + "/" + obj.ObjectName()},
		"labels":          map[string]string{TagImage: img.SHA256[:63], TagLockfile: img.LockDigest[:min(63, len(img.LockDigest))]},
		"guestOsFeatures": features(),
	}
	if t.Family != "" {
		body["family"] = t.Family
	}
	if t.Region != "" {
		body["storageLocations"] = []string{t.Region}
	}
	var op gceOperation
	if err := c.do(ctx, http.MethodPost, imgURL, body, &op); err != nil {
		return nil, t.fail("inserting image "+name, err)
	}
	if err := t.wait(ctx, c, &op); err != nil {
		return nil, err
	}
	res.ID = name
	res.Duration = time.Since(start)
	return res, nil
}

func features() []map[string]string {
	var out []map[string]string
	for _, f := range gceFeatures {
		out = append(out, map[string]string{"type": f})
	}
	return out
}

// gceOperation is the part of a Compute Engine operation the wait reads.
type gceOperation struct {
	Name     string `json:"name"`
	Status   string `json:"status"`
	SelfLink string `json:"selfLink"`
	Error    *struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	} `json:"error"`
}

func (t *GCP) wait(ctx context.Context, c *computeClient, op *gceOperation) error {
	poll := t.Poll
	if poll == 0 {
		poll = 5 * time.Second
	}
	u := c.base + "/projects/" + url.PathEscape(t.Project) + "/global/operations/" + url.PathEscape(op.Name)
	for op.Status != "DONE" {
		select {
		case <-ctx.Done():
			return t.fail("waiting for operation "+op.Name, ctx.Err())
		case <-time.After(poll):
		}
		if err := c.do(ctx, http.MethodGet, u, nil, op); err != nil {
			return t.fail("waiting for operation "+op.Name, err)
		}
	}
	if op.Error != nil && len(op.Error.Errors) > 0 {
		e := op.Error.Errors[0]
		return &Error{Target: t.Name(), Step: "inserting image (operation " + op.Name + ")", Code: e.Code, Err: errors.New(e.Message)}
	}
	return nil
}

// computeClient makes Compute Engine REST calls (v1, as documented) with
// the default credentials. google.golang.org/api/compute/v1 would do the
// same with ~10 MB of generated source (80 s of CPU to compile here) for
// three calls.
type computeClient struct {
	base string
	hc   *http.Client
}

func (t *GCP) computeClient(ctx context.Context) (*computeClient, error) {
	base := "https://compute.googleapis.com/compute/v1"
	if t.ComputeEndpoint != "" {
		base = strings.TrimSuffix(t.ComputeEndpoint, "/")
	}
	if t.HTTPClient != nil {
		return &computeClient{base: base, hc: t.HTTPClient}, nil
	}
	hc, _, err := htransport.NewClient(ctx, option.WithScopes(computeScope))
	if err != nil {
		return nil, err
	}
	return &computeClient{base: base, hc: hc}, nil
}

// gcpError is Google's JSON error reply.
type gcpError struct {
	Status  int
	Code    string
	Message string
}

func (e *gcpError) Error() string { return fmt.Sprintf("HTTP %d: %s: %s", e.Status, e.Code, e.Message) }

func isGCPStatus(err error, status int) bool {
	var ge *gcpError
	return errors.As(err, &ge) && ge.Status == status
}

// do sends one call, retrying 429 and 5xx replies with backoff (Google's
// advice for rate limits), and decodes the reply into out.
func (c *computeClient) do(ctx context.Context, method, u string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	delay := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
		if err != nil {
			return err
		}
		if in != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := c.hc.Do(req)
		if err != nil {
			return err
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode/100 == 2 {
			return json.Unmarshal(data, out)
		}
		var ge struct {
			Error struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
				Status  string `json:"status"`
				Errors  []struct {
					Reason string `json:"reason"`
				} `json:"errors"`
			} `json:"error"`
		}
		json.Unmarshal(data, &ge)
		e := &gcpError{Status: resp.StatusCode, Code: ge.Error.Status, Message: ge.Error.Message}
		if len(ge.Error.Errors) > 0 && ge.Error.Errors[0].Reason != "" {
			e.Code = ge.Error.Errors[0].Reason
		}
		if e.Code == "" {
			e.Code = strconv.Itoa(resp.StatusCode)
		}
		if (resp.StatusCode == 429 || resp.StatusCode >= 500) && attempt < 6 {
			if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
				delay = time.Duration(ra) * time.Second
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(delay):
			}
			delay *= 2
			continue
		}
		return e
	}
}
