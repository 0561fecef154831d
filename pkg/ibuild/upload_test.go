package ibuild

import (
	"bytes"
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
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/pkg/upload"
	"github.com/image-builder-action/image-builder-action/pkg/upload/uploadtest"
	"github.com/image-builder-action/image-builder-action/stages"
)

// testImageStage writes a file of Size bytes of Data repeated into the
// tree: the whole of a tiny entry's last pipeline, so Build writes a real
// output and its record without building a Debian tree.
type testImageStage struct {
	Filename string `json:"filename"`
	Data     string `json:"data"`
	Repeat   int    `json:"repeat"`
}

func (s *testImageStage) Run(ctx context.Context, env *stages.Env) error {
	return os.WriteFile(filepath.Join(env.Tree, s.Filename), bytes.Repeat([]byte(s.Data), s.Repeat), 0o644)
}

func init() {
	stages.Register("test-ibuild-image", 1, func(o json.RawMessage) (stages.Stage, error) {
		var s testImageStage
		return &s, stages.Decode(o, &s)
	})
}

// s3Bucket starts versitygw with a bucket and returns the target maker
// Upload uses (static credentials, the server's endpoint) and a client.
func s3Bucket(t *testing.T, bucket string) (func(string, upload.Options) (upload.Target, error), *s3.Client) {
	srv := uploadtest.Versitygw(t, "", 0)
	cfg := aws.Config{Region: uploadtest.S3Region,
		Credentials: credentials.NewStaticCredentialsProvider(uploadtest.S3Access, uploadtest.S3Secret, "")}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) { o.BaseEndpoint = aws.String(srv.URL); o.UsePathStyle = true })
	if _, err := client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatal(err)
	}
	mk := func(name string, o upload.Options) (upload.Target, error) {
		o.Endpoint = srv.URL
		tg, err := upload.New(name, o)
		if s, ok := tg.(*upload.S3); ok {
			s.Config = &cfg
		}
		return tg, err
	}
	return mk, client
}

// fetch GETs a (presigned) URL with a plain HTTP client.
func fetch(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s %v", url, resp.Status, err)
	}
	return b
}

// Build with Upload: the entry is built, then at once verified against
// the record the build wrote and uploaded; the object reads back equal.
func TestBuildUploadsEachImage(t *testing.T) {
	mk, client := s3Bucket(t, "built")
	_, lf := workspace(t, nil, golden(t))
	l, err := ReadLockfile(lf)
	if err != nil {
		t.Fatal(err)
	}
	e, err := l.File.Entry("x86_64", "qcow2")
	if err != nil {
		t.Fatal(err)
	}
	opts, _ := json.Marshal(testImageStage{Filename: e.Filename, Data: "image bytes\n", Repeat: 300000})
	e.Pipelines = []manifest.Pipeline{{Name: "image", Stages: []manifest.Stage{{Type: "test-ibuild-image", Options: opts}}}}
	b, err := l.File.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lf, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	var events []string
	res, err := Build(context.Background(), BuildRequest{
		Lockfile: lf, Arches: []string{"x86_64"}, Types: []string{"qcow2"}, One: true,
		OutputDir: out, CacheDir: t.TempDir(), AllowStale: true,
		Upload: &UploadTarget{Target: "aws.s3", Options: upload.Options{Bucket: "built"}, NewTarget: mk,
			Events: func(ev upload.Event) { events = append(events, ev.Kind) }},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Images) != 1 || len(res.Images[0].Uploads) != 1 {
		t.Fatalf("result %+v", res)
	}
	up := res.Images[0].Uploads[0]
	if up.Target != "aws.s3" || up.Arch != "x86_64" || up.Type != "qcow2" || up.Reused || up.BytesSent != 300000*12 {
		t.Errorf("upload %+v", up)
	}
	if got := strings.Join(events, " "); got != "verified uploaded" {
		t.Errorf("events %q", got)
	}
	if got := fetch(t, up.URL); !bytes.Equal(got, bytes.Repeat([]byte("image bytes\n"), 300000)) {
		t.Errorf("object: %d bytes, not the image", len(got))
	}
	list, err := client.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String("built")})
	if err != nil || len(list.Contents) != 1 {
		t.Fatalf("objects: %v %v", list, err)
	}
}

// Publish with upload targets and no registry: the images go to the
// cloud target only; a second publish finds them.
func TestPublishToUploadTargets(t *testing.T) {
	mk, _ := s3Bucket(t, "published")
	_, lf := workspace(t, nil, golden(t))
	out := filepath.Join(filepath.Dir(lf), "out")
	disk := filepath.Join(out, "x86_64", "qcow2", "disk.qcow2")
	data := bytes.Repeat([]byte("not really a qcow2\n"), 1000)
	os.MkdirAll(filepath.Dir(disk), 0o755)
	os.WriteFile(disk, data, 0o644)
	// The build's record, as pkg/build writes it.
	os.WriteFile(disk+".sha256", []byte(sha256Hex(data)+"  disk.qcow2\n"), 0o644)

	if _, err := Publish(context.Background(), PublishRequest{Lockfile: lf, From: out}); err == nil || !strings.Contains(err.Error(), "no registry reference and no upload target") {
		t.Errorf("publish with neither: %v", err)
	}
	req := PublishRequest{Lockfile: lf, From: out, Types: []string{"qcow2"},
		Uploads: []UploadTarget{{Target: "aws.s3", Options: upload.Options{Bucket: "published", Prefix: "img/"}, NewTarget: mk}}}
	res, err := Publish(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Result != nil || len(res.Uploads) != 1 || res.Uploads[0].Reused || !strings.HasPrefix(res.Uploads[0].ID, "s3://published/img/") {
		t.Fatalf("result %+v", res)
	}
	if got := fetch(t, res.Uploads[0].URL); !bytes.Equal(got, data) {
		t.Errorf("object: %d bytes, not the image", len(got))
	}
	res, err = Publish(context.Background(), req)
	if err != nil || len(res.Uploads) != 1 || !res.Uploads[0].Reused {
		t.Fatalf("second publish: %+v %v", res, err)
	}
	// A bad option is the target's error, before anything is sent.
	req.Uploads[0].Options.Bucket = ""
	if _, err := Publish(context.Background(), req); err == nil || !strings.Contains(err.Error(), "--bucket is required") {
		t.Errorf("no bucket: %v", err)
	}
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
