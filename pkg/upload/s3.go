package upload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// DefaultPresignExpiry is how long an aws.s3 upload's URL is valid.
const DefaultPresignExpiry = 7 * 24 * time.Hour

// S3 uploads the image file to a bucket (composer's aws.s3 target) and
// returns a presigned GET URL, or the object's URL when Public.
type S3 struct {
	Bucket string
	// Prefix is put before the object's key (e.g. "images/").
	Prefix string
	// Region; default from the SDK's chain (AWS_REGION, shared config).
	Region string
	// Endpoint is an S3-compatible server's URL; path-style addressing is
	// used with it.
	Endpoint string
	// Public makes the object public-read and returns its plain URL.
	Public bool
	// ImageName, when set, names the object (composer's image_name):
	// Prefix + ImageName + the file's extension, instead of the name
	// derived from the digests. An object of that name made from the same
	// image (by its sha256 tag) is reused; one holding another image is
	// not overwritten: the upload fails with ErrNameTaken.
	ImageName string
	// Expires is the presigned URL's lifetime (default 7 days, S3's limit).
	Expires time.Duration
	// PartSize and Concurrency tune the multipart upload (default 16 MiB,
	// 8: measured by make bench against 64 MiB and 4, see .ci/bench-upload).
	PartSize    int64
	Concurrency int
	// Config replaces the SDK's default configuration (tests give static
	// credentials and fast retries); nil loads the default chain.
	Config *aws.Config
}

var _ Target = (*S3)(nil)

func (t *S3) Name() string                      { return "aws.s3" }
func (t *S3) Accepts(typ string) bool           { return true }
func (t *S3) fail(step string, err error) error { return cloudError(t.Name(), step, err) }

func (t *S3) key(img *Image) string {
	name := img.Name()
	if t.ImageName != "" {
		name = t.ImageName
	}
	return t.Prefix + name + fileExt(img.Path)
}

// Upload puts img into the bucket unless an object of the same name and
// sha256 is there already.
func (t *S3) Upload(ctx context.Context, img *Image) (*Result, error) {
	start := time.Now()
	if t.Bucket == "" {
		return nil, &Error{Target: t.Name(), Step: "configuring", Err: errors.New("no bucket given")}
	}
	client, err := newS3Client(ctx, t.Config, t.Region, t.Endpoint)
	if err != nil {
		return nil, t.fail("loading credentials", err)
	}
	key := t.key(img)
	res := &Result{Target: t.Name(), Arch: img.Arch, Type: img.Type, Region: client.Options().Region}
	sent, reused, serr := putObject(ctx, client, t.Bucket, key, img, t.Public, t.PartSize, t.Concurrency, t.ImageName != "")
	if serr != nil {
		return nil, t.fail(serr.step, serr.err)
	}
	res.BytesSent, res.Reused = sent, reused
	if t.Public {
		res.URL = objectURL(client, t.Bucket, key, t.Endpoint)
	} else {
		exp := t.Expires
		if exp == 0 {
			exp = DefaultPresignExpiry
		}
		req, err := s3.NewPresignClient(client).PresignGetObject(ctx, &s3.GetObjectInput{Bucket: &t.Bucket, Key: &key},
			s3.WithPresignExpires(exp))
		if err != nil {
			return nil, t.fail("presigning", err)
		}
		res.URL = req.URL
	}
	res.ID = "s3://" + t.Bucket + "/" + key
	res.Duration = time.Since(start)
	return res, nil
}

type stepErr struct {
	step string
	err  error
}

// putObject uploads img to bucket/key in parts streamed from the file
// (each part CRC32C-checksummed by the SDK), tagged with the image's and
// lockfile's digests. An object already there with the image's sha256 is
// reused. Incomplete multipart uploads of the key (an interrupted earlier
// run) are aborted first, and a failed upload aborts its own.
//
// keepOther refuses to overwrite an object holding another image: a name
// the user chose may be taken by something else, while a name derived from
// the digests can only be the same image (or a broken copy of it).
func putObject(ctx context.Context, client *s3.Client, bucket, key string, img *Image, public bool, partSize int64, concurrency int, keepOther bool) (int64, bool, *stepErr) {
	// A listing, not a HEAD, comes first: a HEAD's reply has no body, so a
	// refusal would have no error code to tell bad credentials apart.
	list, err := client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: &key, MaxKeys: aws.Int32(1)})
	if err != nil {
		return 0, false, &stepErr{"looking for the object", err}
	}
	if len(list.Contents) == 1 && aws.ToString(list.Contents[0].Key) == key {
		head, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
		if err == nil && head.Metadata[TagImage] == img.SHA256 {
			return 0, true, nil
		}
		if err == nil && keepOther {
			return 0, false, &stepErr{"looking for the object", fmt.Errorf("%w: %s holds another image (sha256 %q), not overwritten",
				ErrNameTaken, key, head.Metadata[TagImage])}
		}
		if err != nil && !isNotFound(err) {
			return 0, false, &stepErr{"looking for the object", err}
		}
	}
	if err := abortStale(ctx, client, bucket, key); err != nil {
		return 0, false, &stepErr{"aborting an interrupted upload", err}
	}
	f, err := os.Open(img.Path)
	if err != nil {
		return 0, false, &stepErr{"reading image", err}
	}
	defer f.Close()
	if partSize == 0 {
		partSize = 16 << 20
	}
	// S3 allows 10,000 parts: grow them for images beyond 160 GiB.
	for img.Size/partSize >= 10000 {
		partSize *= 2
	}
	if concurrency == 0 {
		concurrency = 8
	}
	up := manager.NewUploader(client, func(u *manager.Uploader) {
		u.PartSize = partSize
		u.Concurrency = concurrency
		// Parts are read from the file by offset: no part is buffered.
		u.BufferProvider = nil
	})
	var sent atomic.Int64
	in := &s3.PutObjectInput{
		Bucket:            &bucket,
		Key:               &key,
		Body:              &countingReaderAt{f: f, size: img.Size, n: &sent},
		ContentType:       aws.String("application/octet-stream"),
		ChecksumAlgorithm: s3types.ChecksumAlgorithmCrc32c,
		Metadata: map[string]string{
			TagImage:    img.SHA256,
			TagLockfile: img.LockDigest,
		},
	}
	if public {
		in.ACL = s3types.ObjectCannedACLPublicRead
	}
	if _, err := up.Upload(ctx, in); err != nil {
		// The uploader aborts its multipart upload with ctx, which an
		// interrupt has cancelled: abort again with a fresh one, so no
		// parts stay billed until the next run.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		abortStale(dctx, client, bucket, key)
		return min(sent.Load(), img.Size), false, &stepErr{"uploading " + key, err}
	}
	// Every part went once. (Over plain HTTP the SDK reads each part
	// twice, hashing it before sending, so the reads overcount.)
	return img.Size, false, nil
}

// abortStale aborts the incomplete multipart uploads of key, which an
// interrupted run leaves on the server (and bills for).
func abortStale(ctx context.Context, client *s3.Client, bucket, key string) error {
	out, err := client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &bucket, Prefix: &key})
	if err != nil {
		return err
	}
	for _, u := range out.Uploads {
		if aws.ToString(u.Key) != key {
			continue
		}
		if _, err := client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &bucket, Key: &key, UploadId: u.UploadId}); err != nil && !isNotFound(err) {
			return err
		}
	}
	return nil
}

// countingReaderAt is the image file as the uploader sees it: a
// ReaderAt and Seeker (so parts are sections of the file, read in
// parallel, never copied into buffers), counting the bytes read.
type countingReaderAt struct {
	f    *os.File
	size int64
	off  int64
	n    *atomic.Int64
}

func (r *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := r.f.ReadAt(p, off)
	r.n.Add(int64(n))
	return n, err
}

func (r *countingReaderAt) Read(p []byte) (int, error) {
	n, err := r.ReadAt(p, r.off)
	r.off += int64(n)
	return n, err
}

func (r *countingReaderAt) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += r.off
	case io.SeekEnd:
		off += r.size
	}
	if off < 0 {
		return 0, errors.New("seek before the start")
	}
	r.off = off
	return off, nil
}

func newS3Client(ctx context.Context, cfg *aws.Config, region, endpoint string) (*s3.Client, error) {
	c, err := loadAWSConfig(ctx, cfg, region)
	if err != nil {
		return nil, err
	}
	return s3.NewFromConfig(c, func(o *s3.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
			o.UsePathStyle = true
		}
	}), nil
}

func loadAWSConfig(ctx context.Context, cfg *aws.Config, region string) (aws.Config, error) {
	var c aws.Config
	if cfg != nil {
		c = cfg.Copy()
	} else {
		var err error
		if c, err = config.LoadDefaultConfig(ctx); err != nil {
			return c, err
		}
	}
	if region != "" {
		c.Region = region
	}
	if c.Region == "" {
		return c, errors.New("no region: set --region or AWS_REGION")
	}
	return c, nil
}

// objectURL is the plain URL of a public object.
func objectURL(client *s3.Client, bucket, key, endpoint string) string {
	k := (&url.URL{Path: key}).EscapedPath()
	if endpoint != "" {
		return strings.TrimSuffix(endpoint, "/") + "/" + bucket + "/" + k
	}
	return fmt.Sprintf("https://%s.s3.%s.amazonaws.com/%s", bucket, client.Options().Region, k)
}

// FileExt is the extension an aws.s3 object's key takes from the image
// file's name (an image type's filename): two images given one name share
// a key only when their files share it.
func FileExt(name string) string { return fileExt(name) }

func fileExt(p string) string {
	for _, ext := range []string{".tar.gz", ".raw", ".qcow2", ".vhd", ".vmdk", ".img", ".tar", ".iso", ".ova"} {
		if strings.HasSuffix(p, ext) {
			return ext
		}
	}
	return ""
}

func isNotFound(err error) bool {
	var nf *s3types.NotFound
	var nsk *s3types.NoSuchKey
	var nsu *s3types.NoSuchUpload
	if errors.As(err, &nf) || errors.As(err, &nsk) || errors.As(err, &nsu) {
		return true
	}
	var ae smithy.APIError
	return errors.As(err, &ae) && (ae.ErrorCode() == "NotFound" || ae.ErrorCode() == "NoSuchKey")
}

// cloudError wraps err with the target, the step and the cloud's error
// code, when err carries one.
func cloudError(target, step string, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return &Error{Target: target, Step: step, Code: errorCode(err), Err: err}
}
