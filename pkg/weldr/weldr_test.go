package weldr

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/compose"
	"github.com/image-builder-action/image-builder-action/pkg/testutil"
)

func testCache(t testing.TB) string { return testutil.Cache(t) }

// serve starts the weldr API over a compose service on a socket in a
// temporary directory and returns a client of it.
func serve(t testing.TB, workers int) (*Client, string, *compose.Service) {
	t.Helper()
	return serveWith(t, workers, serveOptions{})
}

type serveOptions struct {
	// wrap, when set, wraps the API's handler.
	wrap func(http.Handler) http.Handler
	// artifacts names the artifact store (default: in the state dir).
	artifacts string
}

func serveWith(t testing.TB, workers int, o serveOptions) (*Client, string, *compose.Service) {
	t.Helper()
	wrap := o.wrap
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(testutil.LogWriter(t), nil))
	svc, err := compose.Open(context.Background(), compose.Config{
		Dir: filepath.Join(dir, "state"), Workers: workers, CacheDir: testCache(t), Logger: log, PollInterval: 100 * time.Millisecond,
		Artifacts: o.artifacts,
	})
	if err != nil {
		t.Fatal(err)
	}
	store, err := NewStore(filepath.Join(dir, "state", "blueprints"))
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "run", "api.socket")
	l, err := Listen(sock, "")
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = New(svc, store, WithLogger(log))
	if wrap != nil {
		h = wrap(h)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := svc.Close(ctx); err != nil {
			t.Errorf("closing service: %v", err)
		}
	})
	return NewClient(sock), sock, svc
}

func apiErr(t *testing.T, err error, code int, id, msg string) {
	t.Helper()
	var e *APIError
	if !errors.As(err, &e) || e.Code != code || !e.HasID(id) || (msg != "" && e.Errors[0].Msg != msg) {
		t.Fatalf("got %v, want %d %s %q", err, code, id, msg)
	}
}

const bp1 = `name = "cli-test-bp-1"
description = "composer-cli blueprint test 1"
version = "0.0.1"

[[packages]]
name = "bash"
version = "*"

[[customizations.user]]
name = "root"
password = "qweqweqwe"
`

// The cases of weldr-client's integration tests that make sense for
// Debian, without builds: blueprints, types, distros, status and the
// errors composer-cli shows.
func TestBlueprintsAndErrors(t *testing.T) {
	c, sock, _ := serve(t, 0)
	ctx := context.Background()

	st, err := os.Stat(sock)
	if err != nil || st.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode: %v %v, want 0660", st.Mode(), err)
	}
	var status struct {
		API         string   `json:"api"`
		DBSupported bool     `json:"db_supported"`
		Backend     string   `json:"backend"`
		Build       string   `json:"build"`
		Messages    []string `json:"messages"`
	}
	if err := c.JSON(ctx, "GET", "/api/status", "", nil, &status); err != nil {
		t.Fatal(err)
	}
	if status.API != "1" || !status.DBSupported || status.Backend != "osbuild-composer" || status.Build == "" || len(status.Messages) != 0 {
		t.Fatalf("status: %+v", status)
	}

	// Push a blueprint, a second version, and another in JSON.
	if err := c.PushTOML(ctx, []byte(bp1)); err != nil {
		t.Fatal(err)
	}
	if err := c.PushTOML(ctx, []byte(strings.Replace(bp1, `"0.0.1"`, `"0.1.0"`, 1)+"\n[[packages]]\nname = \"tmux\"\n")); err != nil {
		t.Fatal(err)
	}
	if err := c.JSON(ctx, "POST", "/blueprints/new", "application/json",
		[]byte(`{"name": "cli-test-bp-2", "description": "composer-cli blueprint test 2", "version": "0.1.2", "packages": [{"name": "tmux", "version": "*"}]}`), nil); err != nil {
		t.Fatal(err)
	}
	// An unchanged version pushed again: composer bumps the patch.
	if err := c.PushTOML(ctx, []byte(strings.Replace(bp1, `"0.0.1"`, `"0.1.0"`, 1))); err != nil {
		t.Fatal(err)
	}
	var list struct {
		Blueprints           []string
		Total, Offset, Limit int
	}
	if err := c.JSON(ctx, "GET", "/blueprints/list?limit=0", "", nil, &list); err != nil || list.Total != 2 || len(list.Blueprints) != 0 {
		t.Fatalf("list limit=0: %+v %v", list, err)
	}
	if err := c.JSON(ctx, "GET", "/blueprints/list?offset=1&limit=5", "", nil, &list); err != nil || list.Total != 2 || len(list.Blueprints) != 1 || list.Blueprints[0] != "cli-test-bp-2" {
		t.Fatalf("list offset=1: %+v %v", list, err)
	}
	apiErr(t, c.JSON(ctx, "GET", "/blueprints/list?limit=x", "", nil, nil), 400, "BadLimitOrOffset", "")

	var info struct {
		Blueprints []struct {
			Name, Version string
			Packages      []struct{ Name, Version string }
		}
		Errors []struct{ ID, Msg string }
	}
	if err := c.JSON(ctx, "GET", "/blueprints/info/cli-test-bp-1,unknown-cli-bp,cli-test-bp-2", "", nil, &info); err != nil {
		t.Fatal(err)
	}
	if len(info.Blueprints) != 2 || info.Blueprints[0].Version != "0.1.1" || info.Blueprints[1].Version != "0.1.2" ||
		len(info.Errors) != 1 || info.Errors[0].ID != "UnknownBlueprint" || info.Errors[0].Msg != "unknown-cli-bp: " {
		t.Fatalf("info: %+v", info)
	}
	resp, err := c.Do(ctx, "GET", "/blueprints/info/cli-test-bp-1?format=toml", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	tomlText := readAll(t, resp)
	if !strings.Contains(tomlText, "name = 'cli-test-bp-1'") && !strings.Contains(tomlText, `name = "cli-test-bp-1"`) || !strings.Contains(tomlText, "0.1.1") {
		t.Fatalf("info toml:\n%s", tomlText)
	}
	// What info returns as TOML pushes back as it was.
	if err := c.PushTOML(ctx, []byte(tomlText)); err != nil {
		t.Fatalf("pushing info's toml back: %v", err)
	}

	var changes struct {
		Blueprints []struct {
			Name    string
			Total   int
			Changes []struct{ Commit, Message, Timestamp string }
		}
		Errors []struct{ ID, Msg string }
	}
	if err := c.JSON(ctx, "GET", "/blueprints/changes/cli-test-bp-1,unknown-cli-bp", "", nil, &changes); err != nil {
		t.Fatal(err)
	}
	if len(changes.Blueprints) != 1 || changes.Blueprints[0].Total != 4 || len(changes.Blueprints[0].Changes) != 4 ||
		changes.Blueprints[0].Changes[0].Message != "Recipe cli-test-bp-1, version 0.1.2 saved." ||
		len(changes.Errors) != 1 || changes.Errors[0].ID != "UnknownBlueprint" {
		t.Fatalf("changes: %+v", changes)
	}

	// Bad pushes name what is wrong.
	apiErr(t, c.PushTOML(ctx, []byte("name = \"x\"\npackages = 3\n")), 400, "BlueprintsError", "")
	apiErr(t, c.PushTOML(ctx, []byte("name = \"x\"\nversion = \"one\"\n")), 400, "BlueprintsError", "")
	apiErr(t, c.PushTOML(ctx, nil), 400, "BlueprintsError", "Missing blueprint")
	apiErr(t, c.JSON(ctx, "POST", "/blueprints/new", "text/plain", []byte("name = \"x\""), nil), 400, "BlueprintsError", "")
	apiErr(t, c.PushTOML(ctx, []byte("name = \"x\"\ndescription = \""+strings.Repeat("a", MaxBody)+"\"\n")), 400, "BlueprintsError", "")

	apiErr(t, c.JSON(ctx, "DELETE", "/blueprints/delete/unknown-blueprint-test", "", nil, nil), 400, "BlueprintsError", "Unknown blueprint: unknown-blueprint-test")
	if err := c.JSON(ctx, "DELETE", "/blueprints/delete/cli-test-bp-2", "", nil, nil); err != nil {
		t.Fatal(err)
	}

	var types struct {
		Types []struct {
			Name    string
			Enabled bool
		}
	}
	if err := c.JSON(ctx, "GET", "/compose/types", "", nil, &types); err != nil || len(types.Types) < 6 {
		t.Fatalf("types: %+v %v", types, err)
	}
	if err := c.JSON(ctx, "GET", "/compose/types?distro=debian-12", "", nil, &types); err != nil || len(types.Types) < 6 {
		t.Fatalf("types of debian-12: %+v %v", types, err)
	}
	apiErr(t, c.JSON(ctx, "GET", "/compose/types?distro=fedora-1", "", nil, nil), 400, "DistroError", "")
	var distros struct{ Distros []string }
	if err := c.JSON(ctx, "GET", "/distros/list", "", nil, &distros); err != nil || len(distros.Distros) < 1 {
		t.Fatalf("distros: %+v %v", distros, err)
	}

	_, err = c.StartCompose(ctx, "thingy", "qcow2", 0)
	apiErr(t, err, 400, "UnknownBlueprint", "Unknown blueprint name: thingy")
	_, err = c.StartCompose(ctx, "cli-test-bp-1", "punchcard", 0)
	apiErr(t, err, 400, "ComposeError", `Failed to get compose type "punchcard": invalid image type: punchcard`)
	apiErr(t, c.JSON(ctx, "POST", "/compose", "application/json", []byte(`{"blueprint_name": "cli-test-bp-1", "compose_type": "qcow2", "colour": "red"}`), nil), 400, "BadRequest", "")
	apiErr(t, c.JSON(ctx, "POST", "/compose", "application/json",
		[]byte(`{"blueprint_name": "cli-test-bp-1", "compose_type": "ami", "upload": {"provider": "aws", "image_name": "x", "settings": {"region": "eu-west-1", "bucket": "b", "accessKeyID": "AKIA", "secretAccessKey": "s"}}}`), nil),
		400, "UploadError", "")

	const unknown = "ac188b76-138a-452c-82fb-5cc651986991"
	apiErr(t, c.JSON(ctx, "DELETE", "/compose/cancel/"+unknown, "", nil, nil), 400, "UnknownUUID", "Compose "+unknown+" doesn't exist")
	apiErr(t, c.JSON(ctx, "GET", "/compose/info/"+unknown, "", nil, nil), 400, "UnknownUUID", unknown+" is not a valid build uuid")
	apiErr(t, c.JSON(ctx, "GET", "/compose/log/"+unknown, "", nil, nil), 400, "UnknownUUID", "Compose "+unknown+" doesn't exist")
	for _, r := range []string{"logs", "metadata", "results", "image"} {
		_, err := c.GetFile(ctx, "/compose/"+r+"/"+unknown, filepath.Join(t.TempDir(), "f"))
		apiErr(t, err, 400, "UnknownUUID", "Compose "+unknown+" doesn't exist")
	}
	apiErr(t, c.JSON(ctx, "GET", "/no/such/route", "", nil, nil), 404, "HTTPError", "")

	// A compose queued (no workers here), then cancelled and deleted.
	id, err := c.StartCompose(ctx, "cli-test-bp-1", "qcow2", 0)
	if err != nil {
		t.Fatal(err)
	}
	var queue struct{ New, Run []ComposeStatus }
	if err := c.JSON(ctx, "GET", "/compose/queue", "", nil, &queue); err != nil || len(queue.New) != 1 || queue.New[0].ID != id ||
		queue.New[0].Status != "WAITING" || queue.New[0].Blueprint != "cli-test-bp-1" || queue.New[0].Version != "0.1.2" || queue.New[0].Type != "qcow2" {
		t.Fatalf("queue: %+v %v", queue, err)
	}
	apiErr(t, c.JSON(ctx, "GET", "/compose/log/"+id, "", nil, nil), 400, "BuildInWrongState", "")
	_, err = c.GetFile(ctx, "/compose/image/"+id, filepath.Join(t.TempDir(), "f"))
	apiErr(t, err, 400, "BuildInWrongState", "")
	var del struct {
		UUIDs []struct {
			UUID   string
			Status bool
		}
		Errors []struct{ ID, Msg string }
	}
	if err := c.JSON(ctx, "DELETE", "/compose/delete/"+id, "", nil, &del); err != nil || len(del.Errors) != 1 || del.Errors[0].ID != "BuildInWrongState" {
		t.Fatalf("deleting a queued compose: %+v %v", del, err)
	}
	if err := c.JSON(ctx, "DELETE", "/compose/cancel/"+id, "", nil, nil); err != nil {
		t.Fatal(err)
	}
	apiErr(t, c.JSON(ctx, "DELETE", "/compose/cancel/"+id, "", nil, nil), 400, "BuildInWrongState", "Build "+id+" is not in WAITING or RUNNING.")
	var failed struct{ Failed []ComposeStatus }
	if err := c.JSON(ctx, "GET", "/compose/failed", "", nil, &failed); err != nil || len(failed.Failed) != 1 || failed.Failed[0].Status != "FAILED" {
		t.Fatalf("failed: %+v %v", failed, err)
	}
	var stat struct{ UUIDs []ComposeStatus }
	if err := c.JSON(ctx, "GET", "/compose/status/*?status=FAILED&blueprint=cli-test-bp-1", "", nil, &stat); err != nil || len(stat.UUIDs) != 1 {
		t.Fatalf("status *: %+v %v", stat, err)
	}
	if err := c.JSON(ctx, "DELETE", "/compose/delete/"+id+",4b668b1a-e6b8-4dce-8828-4a8e3bef2345", "", nil, &del); err != nil ||
		len(del.UUIDs) != 1 || !del.UUIDs[0].Status || len(del.Errors) != 1 ||
		del.Errors[0].Msg != "compose 4b668b1a-e6b8-4dce-8828-4a8e3bef2345 doesn't exist" {
		t.Fatalf("delete: %+v %v", del, err)
	}
	all, err := c.List(ctx)
	if err != nil || len(all) != 0 {
		t.Fatalf("after delete: %+v %v", all, err)
	}
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	var b strings.Builder
	if _, err := ioCopy(&b, resp); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func ioCopy(b *strings.Builder, resp *http.Response) (int64, error) { return io.Copy(b, resp.Body) }

// composer-cli's IMAGE-NAME names the cloud image, checked against the
// target's rule when the compose starts.
func TestUploadImageName(t *testing.T) {
	for _, tc := range []struct {
		provider, name, settings string
		want, err                string
	}{
		{"aws.s3", "second-disk-image", `{"bucket": "b"}`, "second-disk-image", ""},
		{"aws", "second-disk (1)", `{"bucket": "b", "region": "eu-west-1"}`, "second-disk (1)", ""},
		{"gcp", "second-disk", `{"bucket": "b", "project": "p"}`, "second-disk", ""},
		{"gcp", "Second_Disk", `{"bucket": "b", "project": "p"}`, "", `image name "Second_Disk"`},
		{"aws.s3", "../etc", `{"bucket": "b"}`, "", `image name "../etc"`},
		{"aws.s3", "", `{"bucket": "b"}`, "", ""},
	} {
		u, err := uploadTarget(&uploadRequest{Provider: tc.provider, ImageName: tc.name, Settings: []byte(tc.settings)})
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s %q: %v, want an error with %s", tc.provider, tc.name, err, tc.err)
			}
		case err != nil:
			t.Errorf("%s %q: %v", tc.provider, tc.name, err)
		case u.Options.ImageName != tc.want:
			t.Errorf("%s %q: image name %q", tc.provider, tc.name, u.Options.ImageName)
		}
	}
}
