package cmd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/image-builder-action/image-builder-action/pkg/upload"
	"github.com/image-builder-action/image-builder-action/pkg/upload/uploadtest"
)

// ibuild upload --to aws.s3 against versitygw, with credentials from the
// environment (the SDK's default chain), as a workflow would give them.
func TestUploadS3(t *testing.T) {
	srv := uploadtest.Versitygw(t, "", 0)
	dir := t.TempDir()
	t.Setenv("AWS_ACCESS_KEY_ID", uploadtest.S3Access)
	t.Setenv("AWS_SECRET_ACCESS_KEY", uploadtest.S3Secret)
	t.Setenv("AWS_REGION", uploadtest.S3Region)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "none"))
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) { o.BaseEndpoint = aws.String(srv.URL); o.UsePathStyle = true })
	if _, err := client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String("images")}); err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(dir, "out")
	os.MkdirAll(out, 0o755)
	data := []byte(strings.Repeat("not really a qcow2\n", 1000))
	sum := sha256.Sum256(data)
	hexSum := hex.EncodeToString(sum[:])
	os.WriteFile(filepath.Join(out, "disk.qcow2"), data, 0o644)
	os.WriteFile(filepath.Join(out, "disk.qcow2.sha256"), []byte(hexSum+"  disk.qcow2\n"), 0o644)
	lock := filepath.Join("..", "..", "..", "testdata", "lock", "blueprint.lock.json")

	args := []string{"upload", lock, "--from", out, "--to", "aws.s3", "--bucket", "images", "--endpoint", srv.URL, "--json"}
	stdout, stderr, code := run(t, args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var res []upload.Result
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("--json output: %v\n%s", err, stdout)
	}
	if len(res) != 1 || res[0].Target != "aws.s3" || res[0].Type != "qcow2" || res[0].Reused {
		t.Fatalf("result %+v", res)
	}
	resp, err := http.Get(res[0].URL)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != string(data) {
		t.Fatalf("GET %s: %s, %d bytes", res[0].URL, resp.Status, len(got))
	}
	// The secret is nowhere in what ibuild printed.
	if strings.Contains(stdout+stderr, uploadtest.S3Secret) {
		t.Error("the secret key was printed")
	}

	// Again: found, not sent twice.
	stdout, stderr, code = run(t, args[:len(args)-1]...)
	if code != 0 || !strings.Contains(stderr, "nothing sent") || !strings.Contains(stdout, "aws.s3") {
		t.Fatalf("second upload: exit %d\n%s\n%s", code, stdout, stderr)
	}

	// A missing option is named.
	_, stderr, code = run(t, "upload", lock, "--from", out, "--to", "aws")
	if code == 0 || !strings.Contains(stderr, "--bucket is required") {
		t.Errorf("upload --to aws without --bucket: exit %d: %s", code, stderr)
	}
}
