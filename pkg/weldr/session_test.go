package weldr

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/lock/locktest"
	"github.com/image-builder-action/image-builder-action/pkg/sources/sourcestest"
	"github.com/image-builder-action/image-builder-action/pkg/testutil"
	"github.com/image-builder-action/image-builder-action/pkg/testutil/boottest"
)

// The blueprint of composer's first-boot guide, for Debian: a systemd
// unit delivered as a file customization and enabled as a service. On
// the first boot it prints a marker with what it finds on the serial
// console. ($$ is systemd's escape for $.)
const secondDisk = `name = "second-disk"
description = "A unit that runs on the first boot"
version = "0.0.1"
distro = "debian-12"

[customizations]
hostname = "weldr-session"

[[customizations.files]]
path = "/etc/weldr-session"
data = "from-the-blueprint\n"

[[customizations.files]]
path = "/etc/systemd/system/weldr-firstboot.service"
data = """
[Unit]
Description=Report what the blueprint put here, once
ConditionPathExists=!/var/lib/weldr-firstboot.done

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo "IBUILD-MARKER-WELDR file=$$(cat /etc/weldr-session) enabled=$$(systemctl is-enabled weldr-firstboot.service)" > /dev/ttyS0'
ExecStart=/bin/touch /var/lib/weldr-firstboot.done

[Install]
WantedBy=multi-user.target
"""

[customizations.services]
enabled = ["weldr-firstboot.service"]
`

// Composer's documented session through our client over the real
// socket: blueprints push, compose start qcow2, compose list shows
// RUNNING then FINISHED, compose image; the image boots and its
// first-boot unit reports the file and that it is enabled.
func TestFirstBootSession(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and boots: skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("building needs root")
	}
	boottest.Need(t, "x86_64")
	locktest.NeedArchive(t)
	// Artifacts in an S3 bucket (versitygw), the bucket uploads go to as
	// well.
	ref := sourcestest.S3(t, "weldr", "artifacts")
	c, _, _ := serveWith(t, 1, serveOptions{artifacts: ref})
	ctx := context.Background()

	if err := c.PushTOML(ctx, []byte(secondDisk)); err != nil {
		t.Fatal(err)
	}
	id, err := c.StartCompose(ctx, "second-disk", "qcow2", 0)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var seen []string
	deadline := time.Now().Add(20 * time.Minute)
	for {
		list, err := c.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 || list[0].ID != id {
			t.Fatalf("compose list: %+v", list)
		}
		if st := list[0].Status; len(seen) == 0 || seen[len(seen)-1] != st {
			seen = append(seen, st)
		}
		if st := list[0].Status; st == "FINISHED" || st == "FAILED" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("compose not finished after 20 minutes: %v", seen)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("compose: %v in %s", seen, time.Since(start).Round(time.Second))
	if seen[len(seen)-1] != "FINISHED" {
		resp, err := c.Do(ctx, "GET", "/compose/log/"+id, "", nil)
		if err == nil {
			t.Logf("log:\n%s", readAll(t, resp))
		}
		t.Fatalf("compose ended %v", seen)
	}
	if i := indexOf(seen, "RUNNING"); i < 0 || i > indexOf(seen, "FINISHED") {
		t.Fatalf("compose list showed %v, want RUNNING then FINISHED", seen)
	}

	dir := t.TempDir()
	img := filepath.Join(dir, "image.qcow2")
	name, err := c.GetFile(ctx, "/compose/image/"+id, img)
	if err != nil {
		t.Fatal(err)
	}
	if name != id+"-disk.qcow2" {
		t.Fatalf("image file name %q, want %s-disk.qcow2", name, id)
	}
	var info struct {
		ID          string `json:"id"`
		QueueStatus string `json:"queue_status"`
		ComposeType string `json:"compose_type"`
		ImageSize   int64  `json:"image_size"`
		Blueprint   struct{ Name, Version string }
		Deps        struct{ Packages []nevra }
	}
	if err := c.JSON(ctx, "GET", "/compose/info/"+id, "", nil, &info); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(img)
	if info.QueueStatus != "FINISHED" || info.ComposeType != "qcow2" || info.Blueprint.Name != "second-disk" ||
		info.ImageSize != st.Size() || !hasPackage(info.Deps.Packages, "systemd") {
		t.Fatalf("info: %+v (image %d bytes)", info, st.Size())
	}
	for route, want := range map[string]string{"metadata": id + ".json", "logs": "logs/osbuild.log"} {
		f := filepath.Join(dir, route+".tar")
		name, err := c.GetFile(ctx, "/compose/"+route+"/"+id, f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(name, id) || !tarHas(t, f, want) {
			t.Fatalf("%s: file %q, want a tar holding %s", route, name, want)
		}
	}

	// The upload compose locks and builds while the image boots.
	upload := startUpload(t, c, ref)

	res, err := boottest.Boot(ctx, boottest.Options{
		Disks: []boottest.Disk{{Path: img, Snapshot: true}}, Dir: dir, Label: "weldr",
		Host: "weldr-session", Marker: "IBUILD-MARKER-WELDR", Timeout: 10 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("booted in %.0f s: %s", res.Seconds, res.Marker)
	if !strings.HasPrefix(res.Marker, "IBUILD-MARKER-WELDR file=from-the-blueprint enabled=enabled") {
		t.Fatalf("marker %q", res.Marker)
	}
	checkUpload(t, c, ref, upload, dir)
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

func hasPackage(ps []nevra, name string) bool {
	for _, p := range ps {
		if p.Name == name {
			return true
		}
	}
	return false
}

func tarHas(t *testing.T, path, name string) bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == name {
			return true
		}
	}
}

// startUpload starts the blueprint again with an upload profile, as
// `composer-cli compose start second-disk qcow2 IMAGE aws-s3.toml` does,
// to the bucket of the artifact store ref, and returns the compose's id.
func startUpload(t *testing.T, c *Client, ref string) string {
	t.Helper()
	u, err := url.Parse(ref)
	if err != nil {
		t.Fatal(err)
	}
	profile := fmt.Sprintf("provider = \"aws.s3\"\n\n[settings]\nbucket = %q\nregion = \"us-east-1\"\nendpoint = %q\n", u.Host, u.Query().Get("endpoint"))
	id, err := c.StartComposeUpload(context.Background(), "second-disk", "qcow2", "second-disk-image", []byte(profile))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// checkUpload waits for the upload compose: the status shows the upload
// finished with its URL, and that URL alone (no credentials) gives the
// image the compose built.
func checkUpload(t *testing.T, c *Client, ref, id, dir string) {
	t.Helper()
	ctx := context.Background()
	u, _ := url.Parse(ref)
	type upload struct {
		Status       string `json:"status"`
		ProviderName string `json:"provider_name"`
		ImageName    string `json:"image_name"`
		URL          string `json:"url"`
	}
	var st struct {
		UUIDs []struct {
			QueueStatus string   `json:"queue_status"`
			Uploads     []upload `json:"uploads"`
		} `json:"uuids"`
	}
	start := time.Now()
	for {
		if err := c.JSON(ctx, "GET", "/compose/status/"+id, "", nil, &st); err != nil {
			t.Fatal(err)
		}
		if q := st.UUIDs[0].QueueStatus; q == "FINISHED" || q == "FAILED" {
			break
		}
		if time.Since(start) > 10*time.Minute {
			t.Fatal("upload compose not finished after 10 minutes")
		}
		time.Sleep(500 * time.Millisecond)
	}
	got := st.UUIDs[0]
	t.Logf("upload compose %s in %s: %+v", got.QueueStatus, time.Since(start).Round(time.Second), got.Uploads)
	if got.QueueStatus != "FINISHED" || len(got.Uploads) != 1 {
		t.Fatalf("upload compose: %+v", got)
	}
	up := got.Uploads[0]
	// IMAGE-NAME names the object.
	if up.Status != "FINISHED" || up.ProviderName != "aws.s3" || up.ImageName != "s3://"+u.Host+"/second-disk-image.qcow2" || up.URL == "" {
		t.Fatalf("upload status: %+v", up)
	}
	img := filepath.Join(dir, "upload.qcow2")
	if _, err := c.GetFile(ctx, "/compose/image/"+id, img); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(up.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", up.URL, resp.Status)
	}
	fetched := filepath.Join(dir, "fetched.qcow2")
	f, err := os.Create(fetched)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if a, b := testutil.FileSHA256(t, img), testutil.FileSHA256(t, fetched); a != b {
		t.Fatalf("the uploaded image (sha256 %s) is not the compose's (%s)", b, a)
	}
	os.Remove(img)
	os.Remove(fetched)
}
