package weldr

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/lock/locktest"
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
	c, _, _ := serve(t, 1)
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
