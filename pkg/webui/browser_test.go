package webui

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	browserpkg "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"github.com/image-builder-action/image-builder-action/pkg/compose"
	"github.com/image-builder-action/image-builder-action/pkg/lock/locktest"
	"github.com/image-builder-action/image-builder-action/pkg/sources/sourcestest"
	"github.com/image-builder-action/image-builder-action/pkg/testutil"
	"github.com/image-builder-action/image-builder-action/pkg/upload"
)

// The page in a real browser: Debian's chromium, headless, driven over
// the DevTools protocol by chromedp.

// browser starts chromium for a test and returns a tab's context. The
// browser is killed by its PID when the test ends.
func browser(t *testing.T) context.Context {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: no browser")
	}
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (.ci/deps installs it)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		// Root cannot use chromium's sandbox.
		chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 10*time.Minute)
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		cancelTimeout()
		cancel()
		cancelAlloc()
		t.Fatalf("starting chromium: %v", err)
	}
	proc := chromedp.FromContext(ctx).Browser.Process()
	t.Cleanup(func() {
		cancelTimeout()
		cancel()
		cancelAlloc()
		if proc != nil {
			proc.Kill() // by PID; a no-op when chromedp already ended it
			proc.Wait()
		}
	})
	return ctx
}

// screenshots is where the pages' screenshots go: IBUILD_TEST_ARTIFACTS
// (CI keeps it) or a directory under the system's temporary directory.
func screenshots(t *testing.T) string {
	t.Helper()
	base := os.Getenv("IBUILD_TEST_ARTIFACTS")
	if base == "" {
		base = os.TempDir()
	}
	dir := filepath.Join(base, "webui-screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots of the pages go to %s", dir)
	return dir
}

func shoot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // PNG
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), buf, 0o644); err != nil {
		t.Fatal(err)
	}
}

// do runs actions with a bound on each step; a failure leaves a
// screenshot and the page's text.
func do(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	for i, a := range actions {
		sctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		err := chromedp.Do(sctx, a)
		cancel()
		if err != nil {
			shot := filepath.Join(os.TempDir(), "webui-failed.png")
			if buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
				os.WriteFile(shot, buf, 0o644)
			}
			text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href + "\n" + (document.body ? document.body.innerText : '')`))
			t.Fatalf("%s, step %d: %v (screenshot %s); the page says:\n%s", what, i+1, err, shot, text)
		}
	}
}

func run[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// unlabelled lists the page's controls that have no label, for a screen
// reader or a voice user to name them by.
const unlabelled = `Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea, button'))
  .filter(e => (e.labels ? e.labels.length : 0) === 0 && !e.getAttribute('aria-label') && !(e.tagName === 'BUTTON' && e.textContent.trim()))
  .map(e => e.outerHTML.slice(0, 80))`

func checkLabels(t *testing.T, ctx context.Context, page string) {
	t.Helper()
	if bad := run(t, ctx, "labels", chromedp.Evaluate[[]string](unlabelled)); len(bad) > 0 {
		t.Errorf("%s: controls without a label: %q", page, bad)
	}
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// logRequests logs what the browser asked for, for when a step fails.
func logRequests(t *testing.T, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: 200}
		h.ServeHTTP(rec, r)
		if !strings.HasPrefix(r.URL.Path, "/static/") {
			t.Logf("%s %s htmx=%v → %d", r.Method, r.URL, r.Header.Get("HX-Request") != "", rec.status)
		}
	})
}

func login(t *testing.T, ctx context.Context, base, token string) {
	t.Helper()
	do(t, ctx, "log in",
		chromedp.Navigate(base+"/login"),
		chromedp.SendKeys(chromedp.ID("token"), token),
		chromedp.KeyEvent("\r"), // by keyboard, as the rest of the main flow
		chromedp.WaitVisible(chromedp.CSS(`nav a[href="/images"]`)),
	)
}

// TestBrowser drives the whole page over the real service: blueprints
// through the form and the TOML, then (as root, with the archive) a
// compose of a tar image watched to its end without a reload, and its
// download checked against the build's sha256.
func TestBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no browser")
	}
	workers := 0
	if os.Geteuid() == 0 {
		workers = 1
	}
	// An aws.s3 upload target against versitygw on 127.0.0.1 (.ci/deps
	// installs it), for the second compose of the compose subtest.
	var uploads map[string]compose.UploadTarget
	var uploadNames []string
	if workers > 0 && haveTool("versitygw") {
		ref := sourcestest.S3(t, "images", "")
		u, err := url.Parse(ref)
		if err != nil {
			t.Fatal(err)
		}
		uploads = map[string]compose.UploadTarget{"aws.s3": {Target: "aws.s3",
			Options: upload.Options{Bucket: "images", Prefix: "composes/", Endpoint: u.Query().Get("endpoint")}}}
		uploadNames = []string{"aws.s3"}
	}
	bps, svc := services(t, workers)
	s, err := New(Options{Auth: tokens{"tok-alice": "alice"}, Blueprints: bps, Composes: &ServiceComposes{Service: svc, Uploads: uploads},
		Packages: fixturePackages(t), Uploads: uploadNames})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(logRequests(t, s))
	// Closed after the browser is gone (cleanups run last first): its
	// live streams end with it.
	t.Cleanup(srv.Close)
	ctx := browser(t)
	shots := screenshots(t)
	testBlueprintPages(t, ctx, srv.URL, shots)
	t.Run("compose", func(t *testing.T) {
		if workers == 0 {
			t.Skip("building needs root")
		}
		locktest.NeedArchive(t)
		testCompose(t, ctx, srv.URL, shots, svc, uploads != nil)
	})
}

func haveTool(name string) bool {
	if _, err := exec.LookPath(name); err == nil {
		return true
	}
	home, _ := os.UserHomeDir()
	_, err := os.Stat(filepath.Join(home, "go", "bin", name))
	return err == nil
}

func testBlueprintPages(t *testing.T, ctx context.Context, base, shots string) {
	login(t, ctx, base, "tok-alice")
	shoot(t, ctx, shots, "01-images-empty")

	do(t, ctx, "open the editor",
		chromedp.Navigate(base+"/blueprints/new"),
		chromedp.WaitVisible(chromedp.ID("f-name")),
		chromedp.SendKeys(chromedp.ID("f-name"), "web-test"),
		chromedp.SendKeys(chromedp.ID("f-description"), "A small test image"),
		chromedp.SetValue(chromedp.ID("f-distro"), "debian-12"),
		chromedp.SendKeys(chromedp.ID("f-customizations-hostname"), "bad_host!"),
		chromedp.SendKeys(chromedp.ID("f-customizations-user-0--name"), "admin"),
		chromedp.SendKeys(chromedp.ID("f-customizations-user-0--groups"), "adm"),
		chromedp.SendKeys(chromedp.ID("f-customizations-files-0--path"), "/etc/motd"),
		chromedp.SendKeys(chromedp.ID("f-customizations-files-0--data"), "Built by ibuild\n"),
	)
	// The package search, by keyboard: type, Tab to the first result's
	// Add button, Enter.
	do(t, ctx, "search the repositories",
		chromedp.SendKeys(chromedp.ID("pkgq"), "ta"),
	)
	run(t, ctx, "results", chromedp.Poll[bool](`document.querySelector('#pkg-results button[value="tar"]') !== null`, chromedp.WithPollingTimeout(60*time.Second)))
	do(t, ctx, "Tab to the result", chromedp.KeyEvent("\t"))
	if f := run(t, ctx, "focus", chromedp.Evaluate[string](`document.activeElement.value`)); f != "tar" {
		t.Errorf("Tab from the search went to %q, not the first result's Add button", f)
	}
	shoot(t, ctx, shots, "02a-package-search")
	do(t, ctx, "add it", chromedp.KeyEvent("\r"))
	run(t, ctx, "the package is added", chromedp.Poll[bool](`document.getElementById('f-packages').value === 'tar' && document.getElementById('toml').value.includes("name = 'tar'")`, chromedp.WithPollingTimeout(30*time.Second)))
	do(t, ctx, "save with a bad host name",
		chromedp.Click(chromedp.ID("save-form")),
		chromedp.WaitVisible(chromedp.ID("f-customizations-hostname-err")),
	)
	checkLabels(t, ctx, "editor")
	msg := run(t, ctx, "the hostname's error", chromedp.Text(chromedp.ID("f-customizations-hostname-err")))
	if !strings.Contains(msg, "host name") {
		t.Errorf("error at the hostname field: %q", msg)
	}
	lines := run(t, ctx, "the TOML's errors", chromedp.Text(chromedp.ID("toml-errors")))
	if !strings.Contains(lines, "line ") || !strings.Contains(lines, "customizations.hostname") {
		t.Errorf("error at the TOML line: %q", lines)
	}
	if inv := run(t, ctx, "aria-invalid", chromedp.Evaluate[string](`document.getElementById('f-customizations-hostname').getAttribute('aria-invalid')`)); inv != "true" {
		t.Errorf("the hostname field is not marked invalid: %q", inv)
	}
	shoot(t, ctx, shots, "02-editor-bad-hostname")

	do(t, ctx, "fix the hostname and save",
		chromedp.Clear(chromedp.ID("f-customizations-hostname")),
		chromedp.SendKeys(chromedp.ID("f-customizations-hostname"), "web-1"),
		chromedp.Click(chromedp.ID("save-form")),
		chromedp.WaitVisible(chromedp.ID("bp-toml")),
	)
	if loc := run(t, ctx, "location", chromedp.Location()); !strings.HasSuffix(loc, "/blueprints/web-test") {
		t.Errorf("after saving: at %s", loc)
	}
	toml := run(t, ctx, "saved TOML", chromedp.Text(chromedp.ID("bp-toml")))
	for _, want := range []string{"hostname = 'web-1'", "name = 'tar'", "name = 'admin'", "groups = ['adm']", "path = '/etc/motd'", "distro = 'debian-12'"} {
		if !strings.Contains(toml, want) {
			t.Errorf("saved blueprint lacks %q:\n%s", want, toml)
		}
	}
	shoot(t, ctx, shots, "03-blueprint")

	// The TOML side: edit, apply to the form, save a second version.
	do(t, ctx, "edit the TOML",
		chromedp.Navigate(base+"/blueprints/web-test/edit"),
		chromedp.WaitVisible(chromedp.ID("toml")),
		chromedp.SetValue(chromedp.ID("toml"), strings.Replace(toml, "web-1", "web-2", 1)),
		chromedp.Click(chromedp.ID("apply-toml")),
	)
	run(t, ctx, "the form takes the TOML", chromedp.Poll[bool](`document.getElementById('f-customizations-hostname').value === 'web-2'`, chromedp.WithPollingTimeout(30*time.Second)))
	do(t, ctx, "save the second version",
		chromedp.Click(chromedp.ID("save-form")),
		chromedp.WaitVisible(chromedp.ID("bp-toml")),
		chromedp.Navigate(base+"/blueprints/web-test/diff?a=1&b=2"),
		chromedp.WaitVisible(chromedp.CSS("table.diff")),
	)
	diff := run(t, ctx, "diff", chromedp.Text(chromedp.CSS("table.diff")))
	if !strings.Contains(diff, "customizations.hostname") || !strings.Contains(diff, "web-2") {
		t.Errorf("diff of the versions:\n%s", diff)
	}
	shoot(t, ctx, shots, "04-blueprint-diff")

	// A blueprint made of markup renders as text, and runs nothing.
	evil := fmt.Sprintf("name = \"evil\"\ndescription = '''%s'''\n\n[[customizations.files]]\npath = \"/etc/motd\"\ndata = '''%s'''\n", browserXSS, browserXSS)
	do(t, ctx, "save the markup blueprint",
		chromedp.Navigate(base+"/blueprints/new"),
		chromedp.WaitVisible(chromedp.ID("toml")),
		chromedp.SetValue(chromedp.ID("toml"), evil),
		chromedp.Click(chromedp.ID("save-toml")),
		chromedp.WaitVisible(chromedp.ID("bp-toml")),
	)
	for _, page := range []string{"/blueprints/evil", "/blueprints/evil/edit", "/blueprints?q=evil"} {
		do(t, ctx, "open "+page, chromedp.Navigate(base+page), chromedp.WaitReady(chromedp.CSS("main")))
		pwned := run(t, ctx, "script ran?", chromedp.Evaluate[bool](`window.pwned === true || document.querySelectorAll('main img, main script').length > 0`))
		if pwned {
			t.Errorf("%s: the blueprint's markup became elements or ran", page)
		}
		text := run(t, ctx, "text", chromedp.Text(chromedp.CSS("main")))
		if page != "/blueprints/evil/edit" && !strings.Contains(text, browserXSS) {
			t.Errorf("%s: the description is not shown as text:\n%s", page, text)
		}
		if page == "/blueprints/evil/edit" {
			desc := run(t, ctx, "description field", chromedp.Value(chromedp.ID("f-description")))
			data := run(t, ctx, "file data field", chromedp.Value(chromedp.ID("f-customizations-files-0--data")))
			if desc != browserXSS || data != browserXSS {
				t.Errorf("editor fields: %q, %q", desc, data)
			}
		}
	}
	shoot(t, ctx, shots, "05-xss-as-text")

	// Delete: the button on the blueprint's page.
	do(t, ctx, "delete the markup blueprint",
		chromedp.Navigate(base+"/blueprints/evil"),
		chromedp.WaitVisible(chromedp.CSS("form.danger button")),
		chromedp.Click(chromedp.CSS("form.danger button")),
		chromedp.WaitVisible(chromedp.ID("q")),
	)
	if n := run(t, ctx, "list after delete", chromedp.Evaluate[int](`document.querySelectorAll('a[href="/blueprints/evil"]').length`)); n != 0 {
		t.Errorf("the deleted blueprint is still listed")
	}
	// Import a TOML file; its comment stays in the saved TOML.
	imp := filepath.Join(t.TempDir(), "imported.toml")
	if err := os.WriteFile(imp, []byte("# kept as written\nname = \"imported\"\ndistro = \"debian-12\"\n\n[customizations]\nhostname = \"imp-1\" # the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	do(t, ctx, "import a TOML file",
		chromedp.SetUploadFiles(chromedp.ID("import-file"), []string{imp}),
		chromedp.Click(chromedp.CSS("form.import button")),
		chromedp.WaitVisible(chromedp.ID("bp-toml")),
	)
	if got := run(t, ctx, "imported TOML", chromedp.Text(chromedp.ID("bp-toml"))); !strings.Contains(got, "# kept as written") || !strings.Contains(got, `hostname = "imp-1" # the host`) {
		t.Errorf("the imported blueprint is not kept as written:\n%s", got)
	}

	// The disk form: an LVM partition, checked into the TOML; a logical
	// volume written wrong is refused at its field.
	const lvs = "f-customizations-disk-partitions-0--logical-volumes"
	do(t, ctx, "an lvm partition",
		chromedp.Navigate(base+"/blueprints/imported/edit"),
		chromedp.WaitVisible(chromedp.ID("f-customizations-disk-type")),
		chromedp.SetValue(chromedp.ID("f-customizations-disk-type"), "gpt"),
		chromedp.SetValue(chromedp.ID("f-customizations-disk-partitions-0--type"), "lvm"),
		chromedp.SendKeys(chromedp.ID("f-customizations-disk-partitions-0--minsize"), "6 GiB"),
		chromedp.SendKeys(chromedp.ID("f-customizations-disk-partitions-0--name"), "rootvg"),
		chromedp.SendKeys(chromedp.ID(lvs), "rootlv / ext4 4 GiB"),
		chromedp.Click(chromedp.ID("check-form")),
	)
	run(t, ctx, "the disk in the TOML", chromedp.Poll[bool](`document.getElementById('toml').value.includes("[[customizations.disk.partitions.logical_volumes]]")`, chromedp.WithPollingTimeout(30*time.Second)))
	if toml := run(t, ctx, "TOML", chromedp.Value(chromedp.ID("toml"))); !strings.Contains(toml, "name = 'rootlv'") || !strings.Contains(toml, "type = 'lvm'") {
		t.Errorf("the disk form's TOML:\n%s", toml)
	}
	do(t, ctx, "a bad logical volume",
		chromedp.SetValue(chromedp.ID(lvs), "rootlv root ext4 4 GiB"),
		chromedp.Click(chromedp.ID("check-form")),
		chromedp.WaitVisible(chromedp.ID(lvs+"-err")),
	)
	if msg := run(t, ctx, "its error", chromedp.Text(chromedp.ID(lvs+"-err"))); !strings.Contains(msg, "mountpoint") && !strings.Contains(msg, "mount point") {
		t.Errorf("error at the logical volumes: %q", msg)
	}
	shoot(t, ctx, shots, "06a-disk-form")

	do(t, ctx, "list", chromedp.Navigate(base+"/blueprints"), chromedp.WaitVisible(chromedp.ID("q")))
	checkLabels(t, ctx, "blueprints")
	shoot(t, ctx, shots, "06-blueprints")

	// A phone-sized screen: nothing wider than the screen.
	do(t, ctx, "phone", chromedp.EmulateViewport(390, 844), chromedp.Navigate(base+"/blueprints/web-test/edit"), chromedp.WaitVisible(chromedp.ID("f-name")))
	if w := run(t, ctx, "width", chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); w > 390 {
		t.Errorf("the editor is %d px wide on a 390 px screen", w)
	}
	shoot(t, ctx, shots, "07-editor-phone")
	do(t, ctx, "desktop", chromedp.EmulateViewport(1280, 900))
}

const browserXSS = `<script>window.pwned=true</script>"><img src=x onerror="window.pwned=true">`

func testCompose(t *testing.T, ctx context.Context, base, shots string, svc *compose.Service, withUpload bool) {
	do(t, ctx, "start a compose",
		chromedp.Navigate(base+"/build?blueprint=web-test"),
		chromedp.WaitVisible(chromedp.ID("start-build")),
		chromedp.Click(chromedp.ID("type-tar")),
	)
	checkLabels(t, ctx, "build")
	shoot(t, ctx, shots, "08-build")
	do(t, ctx, "submit", chromedp.Click(chromedp.ID("start-build")), chromedp.WaitVisible(chromedp.ID("compose-state")))
	loc := run(t, ctx, "location", chromedp.Location())
	id := loc[strings.LastIndexByte(loc, '/')+1:]
	// A mark on the window: a reload would lose it.
	do(t, ctx, "mark the page", chromedp.Evaluate[chromedp.Void](`window.noReload = true`))
	start := time.Now()
	sawBuilding := false
	// The running stages' names the page showed (a cached build may show
	// none: only stages that run are named).
	stagesSeen := map[string]bool{}
	for {
		st := run(t, ctx, "status", chromedp.Evaluate[string](`document.getElementById('compose-state').dataset.status`))
		if st == "building" {
			sawBuilding = true
		}
		if name := run(t, ctx, "stage", chromedp.Evaluate[string](`(document.querySelector('table.images td:nth-child(3) .hint') || {}).textContent || ''`)); name != "" {
			stagesSeen[name] = true
		}
		if st == "success" || st == "failure" {
			break
		}
		if time.Since(start) > 15*time.Minute {
			t.Fatalf("compose %s still %s after 15 minutes", id, st)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("compose %s ended after %s (building seen: %v; stages named: %v)", id, time.Since(start).Round(time.Second), sawBuilding, stagesSeen)
	if !run(t, ctx, "no reload", chromedp.Evaluate[bool](`window.noReload === true`)) {
		t.Errorf("the page was reloaded to show the status")
	}
	c, err := svc.Get(context.Background(), "alice", id)
	if err != nil {
		t.Fatal(err)
	}
	if c.Status != compose.StatusSuccess {
		shoot(t, ctx, shots, "09-image-failed")
		t.Fatalf("compose ended %s: %s", c.Status, c.Error)
	}
	shown := run(t, ctx, "sha256 shown", chromedp.Text(chromedp.ID("sha256-0")))
	if shown != c.Images[0].Artifact.SHA256 {
		t.Errorf("page shows sha256 %q, the build recorded %q", shown, c.Images[0].Artifact.SHA256)
	}
	// The log, packages and first-compose note come with a load.
	do(t, ctx, "reload for the log", chromedp.Navigate(base+"/images/"+id), chromedp.WaitVisible(chromedp.ID("log")))
	if n := run(t, ctx, "packages", chromedp.Evaluate[int](`document.querySelectorAll('table.packages tbody tr').length`)); n < 50 {
		t.Errorf("the lockfile's package table has %d rows", n)
	}
	if log := run(t, ctx, "log", chromedp.Text(chromedp.ID("log"))); !strings.Contains(log, "built root.tar.zst") {
		t.Errorf("log:\n%s", log)
	}
	shoot(t, ctx, shots, "09-image")

	// Download it as a user would: the link, into a directory.
	dl := t.TempDir()
	done := chromedp.BrowserEvents(ctx, browserpkg.DownloadProgress)
	if _, err := chromedp.CallBrowser(ctx, browserpkg.SetDownloadBehavior, browserpkg.SetDownloadBehaviorParams{
		Behavior: browserpkg.SetDownloadBehaviorBehaviorAllow, DownloadPath: dl, EventsEnabled: new(true)}); err != nil {
		t.Fatal(err)
	}
	do(t, ctx, "download", chromedp.Click(chromedp.ID("download-0")))
	dctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for ev, err := range done {
		if err != nil {
			t.Fatalf("download: %v", err)
		}
		if ev.State == browserpkg.DownloadProgressStateCompleted {
			break
		}
		if ev.State == browserpkg.DownloadProgressStateCanceled || dctx.Err() != nil {
			t.Fatalf("download: %v %v", ev.State, dctx.Err())
		}
	}
	got := testutil.FileSHA256(t, filepath.Join(dl, c.Images[0].Artifact.Name))
	if got != c.Images[0].Artifact.SHA256 {
		t.Errorf("downloaded file's sha256 %s, the build's %s", got, c.Images[0].Artifact.SHA256)
	}
	do(t, ctx, "images", chromedp.Navigate(base+"/images"), chromedp.WaitVisible(chromedp.ID("compose-"+id)))
	shoot(t, ctx, shots, "10-images")

	// A second compose of the changed blueprint, started by keyboard; its
	// page shows what changed since the first (the cached stages before the
	// host name's are reused).
	do(t, ctx, "change the host name",
		chromedp.Navigate(base+"/blueprints/web-test/edit"),
		chromedp.WaitVisible(chromedp.ID("f-customizations-hostname")),
		chromedp.SetValue(chromedp.ID("f-customizations-hostname"), "web-3"),
		chromedp.Click(chromedp.ID("save-form")),
		chromedp.WaitVisible(chromedp.ID("bp-toml")),
		chromedp.Navigate(base+"/build?blueprint=web-test"),
		chromedp.WaitVisible(chromedp.ID("start-build")),
		chromedp.Focus(chromedp.ID("type-tar")),
		chromedp.KeyEvent(" "),
	)
	if withUpload {
		do(t, ctx, "choose the upload", chromedp.SetValue(chromedp.ID("upload"), "aws.s3"))
	}
	do(t, ctx, "start the second compose",
		chromedp.Focus(chromedp.ID("start-build")),
		chromedp.KeyEvent("\r"),
		chromedp.WaitVisible(chromedp.ID("compose-state")),
	)
	loc = run(t, ctx, "location", chromedp.Location())
	id2 := loc[strings.LastIndexByte(loc, '/')+1:]
	if id2 == id {
		t.Fatalf("no second compose: at %s", loc)
	}
	start = time.Now()
	run(t, ctx, "second compose ends", chromedp.Poll[bool](`['success','failure'].includes(document.getElementById('compose-state').dataset.status)`,
		chromedp.WithPollingTimeout(15*time.Minute), chromedp.WithPollingInterval(500*time.Millisecond)))
	t.Logf("second compose %s ended after %s", id2, time.Since(start).Round(time.Second))
	do(t, ctx, "reload for the diff", chromedp.Navigate(base+"/images/"+id2), chromedp.WaitVisible(chromedp.ID("diff-h")))
	if st := run(t, ctx, "status", chromedp.Evaluate[string](`document.getElementById('compose-state').dataset.status`)); st != "success" {
		c2, _ := svc.Get(context.Background(), "alice", id2)
		t.Fatalf("second compose ended %s: %+v", st, c2)
	}
	diff := run(t, ctx, "diff against the first", chromedp.Text(chromedp.CSS("#diff-h + p, #lock-diff")))
	if !strings.Contains(diff, id) {
		t.Errorf("the diff is not against the first compose %s:\n%s", id, diff)
	}
	if d := run(t, ctx, "lock diff", chromedp.Text(chromedp.ID("lock-diff"))); !strings.Contains(d, "web-3") {
		t.Errorf("the diff does not show the new host name:\n%s", d)
	}
	shoot(t, ctx, shots, "11-image-diff")

	if withUpload {
		// The upload's result: its target and a URL that serves the image.
		if up := run(t, ctx, "upload", chromedp.Text(chromedp.ID("upload-0"))); !strings.HasPrefix(up, "aws.s3") {
			t.Errorf("upload cell: %q", up)
		}
		href := run(t, ctx, "upload URL", chromedp.Evaluate[string](`document.querySelector('#upload-0 a').href`))
		c2, err := svc.Get(context.Background(), "alice", id2)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get(href)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		_, err = io.Copy(h, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || hex.EncodeToString(h.Sum(nil)) != c2.Images[0].Artifact.SHA256 {
			t.Errorf("the upload URL %s: %s %v, sha256 %x, the build's %s", href, resp.Status, err, h.Sum(nil), c2.Images[0].Artifact.SHA256)
		}
	}

	// The images pages on a phone: nothing wider than the screen.
	do(t, ctx, "phone", chromedp.EmulateViewport(390, 844))
	for _, page := range []string{"/images", "/images/" + id2} {
		do(t, ctx, "open "+page, chromedp.Navigate(base+page), chromedp.WaitVisible(chromedp.CSS("main h1")))
		if w := run(t, ctx, "width", chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); w > 390 {
			t.Errorf("%s is %d px wide on a 390 px screen", page, w)
		}
	}
	shoot(t, ctx, shots, "12-image-phone")
	do(t, ctx, "images", chromedp.Navigate(base+"/images"), chromedp.WaitVisible(chromedp.ID("compose-"+id2)))
	shoot(t, ctx, shots, "13-images-phone")
	do(t, ctx, "desktop", chromedp.EmulateViewport(1280, 900))
}
