package upload

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/image-builder-action/image-builder-action/pkg/upload/uploadtest"
)

const lockDigest = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// sparseImage makes a sparse file of size bytes with 1 MiB of random data
// at each of offsets (negative: from the end) and returns it as an Image,
// verified.
func sparseImage(t testing.TB, name string, size int64, offsets ...int64) *Image {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewSource(size))
	buf := make([]byte, 1<<20)
	for _, off := range offsets {
		if off < 0 {
			off += size
		}
		r.Read(buf)
		if _, err := f.WriteAt(buf[:min(int64(len(buf)), size-off)], off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	img := &Image{Path: p, Distro: "debian-12", Arch: "x86_64", Type: "raw", LockDigest: lockDigest}
	if err := Verify(context.Background(), img); err != nil {
		t.Fatal(err)
	}
	return img
}

func sha256Of(t testing.TB, r io.Reader) string {
	t.Helper()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// testAWSConfig has the test server's static credentials; attempts bounds
// the SDK's retries.
func testAWSConfig(access, secret string, attempts int) *aws.Config {
	return &aws.Config{
		Region:           uploadtest.S3Region,
		Credentials:      credentials.NewStaticCredentialsProvider(access, secret, ""),
		RetryMaxAttempts: attempts,
	}
}

func testS3Client(t testing.TB, endpoint string) *s3.Client {
	t.Helper()
	c, err := newS3Client(context.Background(), testAWSConfig(uploadtest.S3Access, uploadtest.S3Secret, 1), "", endpoint)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func makeBucket(t testing.TB, endpoint, bucket string) {
	t.Helper()
	if _, err := testS3Client(t, endpoint).CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatalf("creating bucket %s: %v", bucket, err)
	}
}

// objects lists the keys in bucket and the incomplete multipart uploads.
func objects(t testing.TB, endpoint, bucket string) (keys, uploads []string) {
	t.Helper()
	c := testS3Client(t, endpoint)
	out, err := c.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: &bucket})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	mu, err := c.ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: &bucket})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range mu.Uploads {
		uploads = append(uploads, aws.ToString(u.Key))
	}
	return keys, uploads
}
