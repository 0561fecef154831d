package action

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/image-builder-action/image-builder-action/pkg/upload"
	"github.com/image-builder-action/image-builder-action/pkg/upload/uploadtest"
)

// command: upload with target aws.s3, against versitygw.
func TestUpload(t *testing.T) {
	e, _, _, _ := publishEnv(t)
	srv := uploadtest.Versitygw(t, "", 0)
	cfg := aws.Config{Region: uploadtest.S3Region, Credentials: credentials.NewStaticCredentialsProvider(uploadtest.S3Access, uploadtest.S3Secret, "")}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) { o.BaseEndpoint = aws.String(srv.URL); o.UsePathStyle = true })
	if _, err := client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String("images")}); err != nil {
		t.Fatal(err)
	}
	// What aws-actions/configure-aws-credentials would export; the SDK
	// reads the process environment, so the test hands the target its
	// config, and checks the secret is masked.
	e.vars["AWS_SECRET_ACCESS_KEY"] = uploadtest.S3Secret
	withCreds := WithUploadTarget(func(name string, o upload.Options) (upload.Target, error) {
		tg, err := upload.New(name, o)
		if s, ok := tg.(*upload.S3); ok {
			s.Config = &cfg
		}
		return tg, err
	})
	err := e.run(map[string]string{
		"command": "upload", "lockfile": "bp.lock.json", "output-dir": "out", "types": "qcow2",
		"target": "aws.s3", "bucket": "images", "endpoint": srv.URL, "prefix": "ci/",
	}, withCreds)
	if err != nil {
		t.Fatalf("upload: %v\n%s", err, e.stdout.String())
	}
	var res []upload.Result
	if err := json.Unmarshal([]byte(e.outputs()["uploads"]), &res); err != nil {
		t.Fatalf("uploads output %q: %v", e.outputs()["uploads"], err)
	}
	if len(res) != 1 || res[0].Target != "aws.s3" || res[0].Arch != "x86_64" || res[0].Type != "qcow2" || !strings.Contains(res[0].ID, "/ci/") {
		t.Fatalf("uploads: %+v", res)
	}
	resp, err := http.Get(res[0].URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", res[0].URL, resp.Status)
	}
	sum := e.summary()
	if !strings.Contains(sum, "| aws.s3 | x86_64 | qcow2 | `s3://images/ci/") {
		t.Errorf("summary:\n%s", sum)
	}
	masked := false
	for _, c := range e.commands() {
		masked = masked || c == "::add-mask::"+uploadtest.S3Secret
	}
	if !masked {
		t.Errorf("AWS_SECRET_ACCESS_KEY not masked; commands %q", e.commands())
	}

	// No target: the input is named.
	err = e.run(map[string]string{"command": "upload", "lockfile": "bp.lock.json"})
	if err == nil || !strings.Contains(err.Error(), "input target: required") {
		t.Errorf("upload without target: %v", err)
	}
}

// command: publish with targets and no ref uploads to the clouds only;
// expires sets the presigned URL's lifetime.
func TestPublishTargets(t *testing.T) {
	e, _, _, _ := publishEnv(t)
	srv := uploadtest.Versitygw(t, "", 0)
	cfg := aws.Config{Region: uploadtest.S3Region, Credentials: credentials.NewStaticCredentialsProvider(uploadtest.S3Access, uploadtest.S3Secret, "")}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) { o.BaseEndpoint = aws.String(srv.URL); o.UsePathStyle = true })
	if _, err := client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String("images")}); err != nil {
		t.Fatal(err)
	}
	withCreds := WithUploadTarget(func(name string, o upload.Options) (upload.Target, error) {
		tg, err := upload.New(name, o)
		if s, ok := tg.(*upload.S3); ok {
			s.Config = &cfg
		}
		return tg, err
	})
	in := map[string]string{
		"command": "publish", "lockfile": "bp.lock.json", "output-dir": "out", "types": "qcow2",
		"targets": "aws.s3", "bucket": "images", "endpoint": srv.URL, "expires": "2d",
	}
	if err := e.run(in, withCreds); err != nil {
		t.Fatalf("publish: %v\n%s", err, e.stdout.String())
	}
	var res []upload.Result
	if err := json.Unmarshal([]byte(e.outputs()["uploads"]), &res); err != nil {
		t.Fatalf("uploads output %q: %v", e.outputs()["uploads"], err)
	}
	if len(res) != 1 || res[0].Target != "aws.s3" || !strings.Contains(res[0].URL, "X-Amz-Expires=172800") {
		t.Fatalf("uploads: %+v", res)
	}
	resp, err := http.Get(res[0].URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", res[0].URL, resp.Status)
	}
	if sum := e.summary(); !strings.Contains(sum, "| aws.s3 | x86_64 | qcow2 | `s3://images/") {
		t.Errorf("summary:\n%s", sum)
	}
	for _, bad := range []struct{ in, want string }{
		{"soon", `input expires: "soon" is not a duration`},
		{"9d", "at most 7 days"},
	} {
		in["expires"] = bad.in
		if err := e.run(in, withCreds); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("expires %q: %v, want %q", bad.in, err, bad.want)
		}
	}
	delete(in, "expires")
	delete(in, "targets")
	if err := e.run(in, withCreds); err == nil || !strings.Contains(err.Error(), "input ref: required") {
		t.Errorf("publish with neither ref nor targets: %v", err)
	}
}
