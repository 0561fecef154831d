package cloudapi

import (
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/lock/locktest"
	"github.com/image-builder-action/image-builder-action/pkg/sources/sourcestest"
	"github.com/image-builder-action/image-builder-action/pkg/testutil"
	"github.com/image-builder-action/image-builder-action/pkg/upload"
)

// hostedRequest is the hosted image builder's kind of request, with only
// the distribution and the package names made Debian's: an image to put
// in S3, packages, a start script and its unit, services, firewall ports
// and services, and a custom repository.
const hostedRequest = `{
  "distribution": "debian-12",
  "image_name": "cockpit-node",
  "image_description": "cockpit and a node app behind firewalld",
  "client_id": "api",
  "image_requests": [
    {
      "architecture": "x86_64",
      "image_type": "tar",
      "upload_request": {"type": "aws.s3", "options": {}}
    }
  ],
  "customizations": {
    "packages": ["cockpit", "firewalld", "npm"],
    "files": [
      {"path": "/usr/local/bin/start-app.sh", "mode": "0755", "user": "root", "group": "root",
       "data": "#!/bin/sh\nexec /usr/bin/node -e \"require('http').createServer((q, r) => r.end('hello')).listen(3000)\"\n"},
      {"path": "/etc/systemd/system/app.service", "mode": "0644",
       "data": "[Unit]\nDescription=The app\nAfter=network-online.target\n\n[Service]\nExecStart=/usr/local/bin/start-app.sh\nRestart=on-failure\n\n[Install]\nWantedBy=multi-user.target\n"}
    ],
    "services": {"enabled": ["app.service", "cockpit.socket", "firewalld"]},
    "firewall": {"ports": ["3000:tcp", "9090:tcp"], "services": {"enabled": ["http", "https"]}},
    "custom_repositories": [
      {"id": "debian-contrib", "name": "Debian contrib", "baseurl": ["MIRROR"], "suites": ["bookworm"], "components": ["contrib"]}
    ]
  }
}`

// curl runs the real curl with the token, failing the test on an HTTP
// error status; it returns the body.
func curl(t *testing.T, token string, args ...string) []byte {
	t.Helper()
	full := append([]string{"-sS", "--fail-with-body", "--max-time", "600", "-H", "Authorization: Bearer " + token}, args...)
	out, err := exec.Command("curl", full...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("curl %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
	}
	return out
}

// TestCurlHostedCompose drives the API with curl as a user of the hosted
// service would: a compose with an aws.s3 upload against versitygw on
// 127.0.0.1, polled to success; the presigned URL in the status downloads
// the image the build made, and the other owner sees none of it.
func TestCurlHostedCompose(t *testing.T) {
	if testing.Short() {
		t.Skip("builds an image: skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("building needs root")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed: run .ci/deps")
	}
	srcs := locktest.NeedArchive(t)
	ref := sourcestest.S3(t, "images", "")
	u, err := url.Parse(ref)
	if err != nil {
		t.Fatal(err)
	}
	endpoint := u.Query().Get("endpoint")
	a := startAPI(t, 1, upload.Options{Bucket: "images", Prefix: "composes/", Endpoint: endpoint})

	body := strings.Replace(hostedRequest, "MIRROR", srcs[0].URI, 1)
	dir := t.TempDir()
	reqFile := filepath.Join(dir, "request.json")
	if err := os.WriteFile(reqFile, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	out := curl(t, a.Alice, "-H", "Content-Type: application/json", "--data-binary", "@"+reqFile, a.URL+PrefixV1+"compose")
	var created ComposeResponseV1
	if err := json.Unmarshal(out, &created); err != nil || created.Id == "" {
		t.Fatalf("POST compose: %s: %v", out, err)
	}
	t.Logf("compose %s", created.Id)

	// Poll as a client would, until the image is final.
	var st ComposeStatusV1
	seen := map[ImageStatusValue]bool{}
	deadline := time.Now().Add(15 * time.Minute)
	for {
		out = curl(t, a.Alice, a.URL+PrefixV1+"composes/"+created.Id)
		if err := json.Unmarshal(out, &st); err != nil {
			t.Fatalf("status %s: %v", out, err)
		}
		seen[st.ImageStatus.Status] = true
		if st.ImageStatus.Status == "success" || st.ImageStatus.Status == "failure" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("compose not finished after 15 minutes: %s", out)
		}
		time.Sleep(time.Second)
	}
	if st.ImageStatus.Status != "success" {
		logs := curl(t, a.Alice, a.URL+PrefixV2+"composes/"+created.Id+"/logs")
		t.Fatalf("compose failed: %s\nlogs: %.4000s", out, logs)
	}
	t.Logf("statuses seen: %v; final: %s", seen, out)
	us := st.ImageStatus.UploadStatus
	if us == nil || us.Type != "aws.s3" || us.Status != "success" || us.Options.Url == nil {
		t.Fatalf("upload status %s", out)
	}
	if p := st.ImageStatus.Progress; p == nil || p.Total == 0 || p.Done != p.Total {
		t.Errorf("progress %+v at success", p)
	}
	presigned := *us.Options.Url
	if !strings.HasPrefix(presigned, endpoint+"/images/composes/") || !strings.Contains(presigned, "X-Amz-Signature=") {
		t.Errorf("URL %s: want a presigned URL of the bucket on %s", presigned, endpoint)
	}

	// The URL alone (no token, no AWS credentials) downloads the image,
	// and it is the build's.
	img := filepath.Join(dir, "image.tar.zst")
	if b, err := exec.Command("curl", "-sS", "--fail", "-o", img, presigned).CombinedOutput(); err != nil {
		t.Fatalf("curl presigned URL: %v\n%s", err, b)
	}
	c, err := a.Service.Get(t.Context(), "alice", created.Id)
	if err != nil {
		t.Fatal(err)
	}
	art := c.Images[0].Artifact
	if art == nil {
		t.Fatalf("no artifact recorded: %+v", c.Images[0])
	}
	if got := testutil.FileSHA256(t, img); got != art.SHA256 {
		t.Fatalf("the presigned URL gave sha256:%s, the build made sha256:%s", got, art.SHA256)
	}
	// And the API's own download is the same file.
	dl := filepath.Join(dir, "download")
	curl(t, a.Alice, "-o", dl, a.URL+PrefixV2+"composes/"+created.Id+"/download")
	if got := testutil.FileSHA256(t, dl); got != art.SHA256 {
		t.Fatalf("download gave sha256:%s, the build made sha256:%s", got, art.SHA256)
	}

	// The image holds what was asked for.
	listing, err := exec.Command("tar", "--zstd", "-tvf", img).CombinedOutput()
	if err != nil {
		t.Fatalf("tar: %v\n%.2000s", err, listing)
	}
	for _, line := range strings.Split(string(listing), "\n") {
		if strings.HasSuffix(line, "./usr/local/bin/start-app.sh") && !strings.HasPrefix(line, "-rwxr-xr-x") {
			t.Errorf("start script: %s, want mode 0755", line)
		}
	}
	for _, want := range []string{
		"./usr/local/bin/start-app.sh",
		"./etc/systemd/system/app.service",
		"./etc/systemd/system/multi-user.target.wants/app.service",
		"./etc/systemd/system/sockets.target.wants/cockpit.socket",
		"./usr/bin/npm", "./usr/sbin/firewalld",
		"./etc/apt/sources.list.d/debian-contrib.sources",
	} {
		if !strings.Contains(string(listing), want) {
			t.Errorf("the image has no %s", want)
		}
	}

	// The hosted metadata and composer's name the packages; the manifest
	// is the lockfile.
	var md ComposeMetadataV1
	if err := json.Unmarshal(curl(t, a.Alice, a.URL+PrefixV1+"composes/"+created.Id+"/metadata"), &md); err != nil || md.Packages == nil {
		t.Fatalf("metadata: %v", err)
	}
	names := map[string]bool{}
	for _, p := range *md.Packages {
		names[p.Name] = true
	}
	for _, p := range []string{"cockpit", "firewalld", "npm", "nodejs"} {
		if !names[p] {
			t.Errorf("metadata lists no %s", p)
		}
	}
	var mf ComposeManifests
	if err := json.Unmarshal(curl(t, a.Alice, a.URL+PrefixV2+"composes/"+created.Id+"/manifests"), &mf); err != nil || len(mf.Manifests) != 1 ||
		!strings.Contains(string(mf.Manifests[0]), `"content_sha256"`) {
		t.Fatalf("manifests: %v", err)
	}
	// The SBOM of the image, from the lockfile: SPDX naming the packages.
	var sb ComposeSBOMs
	if err := json.Unmarshal(curl(t, a.Alice, a.URL+PrefixV2+"composes/"+created.Id+"/sboms"), &sb); err != nil || len(sb.Items) != 1 || len(sb.Items[0]) != 1 {
		t.Fatalf("sboms: %+v %v", sb, err)
	}
	var spdx struct {
		SPDXVersion string `json:"spdxVersion"`
		Packages    []struct {
			Name string `json:"name"`
		} `json:"packages"`
	}
	if it := sb.Items[0][0]; it.SbomType != Spdx || it.PipelinePurpose != Image || json.Unmarshal(it.Sbom, &spdx) != nil || !strings.HasPrefix(spdx.SPDXVersion, "SPDX-") {
		t.Fatalf("sbom: %s %s %.300s", it.SbomType, it.PipelinePurpose, it.Sbom)
	}
	inSBOM := map[string]bool{}
	for _, p := range spdx.Packages {
		inSBOM[p.Name] = true
	}
	if !inSBOM["cockpit"] || !inSBOM["npm"] {
		t.Fatalf("the SBOM's %d packages lack cockpit or npm", len(spdx.Packages))
	}
	var v2 ComposeStatus
	if err := json.Unmarshal(curl(t, a.Alice, a.URL+PrefixV2+"composes/"+created.Id), &v2); err != nil || v2.Status != "success" {
		t.Fatalf("v2 status: %+v %v", v2, err)
	}

	// Bob's token sees none of it.
	for _, p := range []string{PrefixV1 + "composes/" + created.Id, PrefixV2 + "composes/" + created.Id + "/download"} {
		b, err := exec.Command("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Authorization: Bearer "+a.Bob, a.URL+p).Output()
		if err != nil || string(b) != "404" {
			t.Errorf("bob GET %s: %s %v", p, b, err)
		}
	}
}
