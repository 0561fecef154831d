package upload

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/pkg/upload/uploadtest"
)

// Against versitygw, a real S3 implementation (posix backend) on 127.0.0.1.

func TestS3MultipartPresigned(t *testing.T) {
	srv := uploadtest.Versitygw(t, "", 0)
	makeBucket(t, srv.URL, "images")
	// 2 GiB and a bit, sparse: 129 parts of 16 MiB, data in the first, a
	// middle and the last.
	img := sparseImage(t, "disk.raw", 2<<30+4096, 0, 1<<30, -1)
	target := &S3{Bucket: "images", Prefix: "ci/", Endpoint: srv.URL, Config: testAWSConfig(uploadtest.S3Access, uploadtest.S3Secret, 0)}
	res, err := target.Upload(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	if res.Reused || res.BytesSent < img.Size {
		t.Errorf("first upload: reused %v, sent %d of %d bytes", res.Reused, res.BytesSent, img.Size)
	}
	if !strings.Contains(res.URL, "X-Amz-Expires=604800") || !strings.Contains(res.URL, "/images/ci/"+img.Name()+".raw") {
		t.Errorf("presigned URL %s: want the object's path and a 7-day expiry", res.URL)
	}
	// A plain HTTP client, no credentials: the URL is all it needs.
	resp, err := http.Get(res.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET presigned URL: %s", resp.Status)
	}
	if got := sha256Of(t, resp.Body); got != img.SHA256 {
		t.Fatalf("downloaded sha256:%s, uploaded sha256:%s", got, img.SHA256)
	}

	// Again: found by name and sha256, nothing sent.
	res2, err := target.Upload(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	if !res2.Reused || res2.BytesSent != 0 || res2.ID != res.ID {
		t.Errorf("second upload: reused %v, sent %d bytes, id %s (first %s)", res2.Reused, res2.BytesSent, res2.ID, res.ID)
	}
	if keys, ups := objects(t, srv.URL, "images"); len(keys) != 1 || len(ups) != 0 {
		t.Errorf("bucket holds %v and incomplete uploads %v; want one object", keys, ups)
	}
}

func TestS3WrongCredentials(t *testing.T) {
	srv := uploadtest.Versitygw(t, "", 0)
	makeBucket(t, srv.URL, "images")
	img := sparseImage(t, "disk.raw", 1<<20, 0)
	target := &S3{Bucket: "images", Endpoint: srv.URL, Config: testAWSConfig(uploadtest.S3Access, "not-the-secret", 1)}
	_, err := target.Upload(context.Background(), img)
	var ue *Error
	if !errors.As(err, &ue) {
		t.Fatalf("got %v, want an *upload.Error", err)
	}
	if ue.Target != "aws.s3" || ue.Code != "SignatureDoesNotMatch" {
		t.Errorf("got target %q code %q (%v), want aws.s3 and SignatureDoesNotMatch", ue.Target, ue.Code, err)
	}
	t.Log(err)
	if keys, ups := objects(t, srv.URL, "images"); len(keys)+len(ups) != 0 {
		t.Errorf("bucket holds %v and uploads %v after a refused upload", keys, ups)
	}
}

// The server dies in the middle of a multipart upload; the rerun against
// the restarted server aborts the stale upload and leaves one object.
func TestS3ServerKilledMidUpload(t *testing.T) {
	dir, port := t.TempDir(), uploadtest.FreePort(t)
	srv := uploadtest.Versitygw(t, dir, port)
	makeBucket(t, srv.URL, "images")
	img := sparseImage(t, "disk.raw", 256<<20, 0, -1)
	target := &S3{Bucket: "images", Endpoint: srv.URL, PartSize: 5 << 20, Concurrency: 2, Config: testAWSConfig(uploadtest.S3Access, uploadtest.S3Secret, 1)}

	// A first upload starts the multipart upload on the server; kill it
	// once a few parts are in.
	errc := make(chan error, 1)
	go func() { _, err := target.Upload(context.Background(), img); errc <- err }()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		_, ups := objects(t, srv.URL, "images")
		if len(ups) > 0 {
			time.Sleep(500 * time.Millisecond)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no multipart upload started in 2 minutes")
		}
		time.Sleep(50 * time.Millisecond)
	}
	srv.Kill()
	if err := <-errc; err == nil {
		t.Fatal("the upload succeeded although the server was killed")
	} else {
		t.Logf("interrupted: %v", err)
	}

	srv = uploadtest.Versitygw(t, dir, port)
	if _, ups := objects(t, srv.URL, "images"); len(ups) == 0 {
		t.Log("note: the killed server kept no incomplete upload")
	}
	res, err := target.Upload(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	keys, ups := objects(t, srv.URL, "images")
	if len(keys) != 1 || len(ups) != 0 {
		t.Fatalf("after the rerun the bucket holds %v and incomplete uploads %v; want one object", keys, ups)
	}
	resp, err := http.Get(res.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if got := sha256Of(t, resp.Body); got != img.SHA256 {
		t.Fatalf("downloaded sha256:%s, uploaded sha256:%s", got, img.SHA256)
	}
}

// A file changed after its build is refused before any request is made.
func TestUploadRefusesTamperedImage(t *testing.T) {
	srv := uploadtest.Versitygw(t, "", 0)
	makeBucket(t, srv.URL, "images")
	dir := t.TempDir()
	good := sparseImage(t, "disk.raw", 4<<20, 0)
	raw, err := os.ReadFile(good.Path)
	if err != nil {
		t.Fatal(err)
	}
	// The build recorded the good digest; one byte then changed.
	p := filepath.Join(dir, "x86_64", "raw", "disk.raw")
	os.MkdirAll(filepath.Dir(p), 0o755)
	raw[100] ^= 1
	if err := os.WriteFile(p, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p+".sha256", []byte(good.SHA256+"  disk.raw\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	lf := &manifest.Lockfile{Entries: []manifest.Entry{{Distro: "debian-12", Arch: "x86_64", Type: "raw", Filename: "disk.raw"}}}
	var calls int
	cfg := testAWSConfig(uploadtest.S3Access, uploadtest.S3Secret, 1)
	cfg.HTTPClient = countingClient{&calls}
	_, err = Upload(context.Background(), Request{Lockfile: lf, LockDigest: lockDigest, Dir: dir,
		Target: &S3{Bucket: "images", Endpoint: srv.URL, Config: cfg}})
	if !errors.Is(err, ErrTampered) {
		t.Fatalf("got %v, want ErrTampered", err)
	}
	t.Log(err)
	if calls != 0 {
		t.Errorf("%d requests made for a tampered image", calls)
	}
	if keys, ups := objects(t, srv.URL, "images"); len(keys)+len(ups) != 0 {
		t.Errorf("bucket holds %v and uploads %v", keys, ups)
	}
	// With the record matching, the same request uploads.
	if err := os.WriteFile(p+".sha256", []byte(sha256Of(t, bytes.NewReader(raw))+"  disk.raw\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := Upload(context.Background(), Request{Lockfile: lf, LockDigest: lockDigest, Dir: dir,
		Target: &S3{Bucket: "images", Endpoint: srv.URL, Config: cfg}})
	if err != nil || len(res) != 1 || calls == 0 {
		t.Fatalf("upload after fixing the record: %v, %+v, %d requests", err, res, calls)
	}
}

type countingClient struct{ n *int }

func (c countingClient) Do(r *http.Request) (*http.Response, error) {
	*c.n++
	return http.DefaultClient.Do(r)
}

// image_name: the object is named as asked; the same image again is
// reused; another image under that name fails and leaves the object as
// it was.
func TestS3ImageName(t *testing.T) {
	srv := uploadtest.Versitygw(t, "", 0)
	makeBucket(t, srv.URL, "images")
	img := sparseImage(t, "disk.raw", 8<<20, 0)
	target := &S3{Bucket: "images", Prefix: "ci/", Endpoint: srv.URL, ImageName: "web-1", Config: testAWSConfig(uploadtest.S3Access, uploadtest.S3Secret, 0)}
	res, err := target.Upload(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	if res.ID != "s3://images/ci/web-1.raw" || res.Reused {
		t.Errorf("first upload: %+v", res)
	}
	res, err = target.Upload(context.Background(), img)
	if err != nil || !res.Reused || res.BytesSent != 0 {
		t.Fatalf("the same image again: %+v, %v", res, err)
	}
	other := sparseImage(t, "disk.raw", 9<<20, 0)
	if _, err := target.Upload(context.Background(), other); !errors.Is(err, ErrNameTaken) {
		t.Fatalf("another image under the same name: %v, want ErrNameTaken", err)
	}
	head, err := testS3Client(t, srv.URL).HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String("images"), Key: aws.String("ci/web-1.raw")})
	if err != nil || head.Metadata[TagImage] != img.SHA256 {
		t.Fatalf("the object after the refused upload: %v %v", err, head)
	}
	if keys, ups := objects(t, srv.URL, "images"); len(keys) != 1 || len(ups) != 0 {
		t.Errorf("bucket holds %v and incomplete uploads %v; want one object", keys, ups)
	}
	// Names are checked before any request.
	for _, bad := range []string{"../x", "a/b", "", ".hidden"} {
		if _, err := New("aws.s3", Options{Bucket: "images", ImageName: bad}); bad != "" && err == nil {
			t.Errorf("image name %q accepted", bad)
		}
	}
	if _, err := New("aws.s3", Options{Bucket: "b", SnapshotName: "x"}); err == nil || !strings.Contains(err.Error(), "no snapshot") {
		t.Errorf("aws.s3 with a snapshot name: %v", err)
	}
}
