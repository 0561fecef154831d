package webui

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/auth"
	"github.com/image-builder-action/image-builder-action/pkg/compose"
	"github.com/image-builder-action/image-builder-action/pkg/lock/locktest"
	"github.com/image-builder-action/image-builder-action/pkg/repo"
)

// tokens is an Authenticator over a fixed map, as tests configure the
// service's tokens.
type tokens map[string]string

func (t tokens) Authenticate(_ context.Context, token string) (string, error) {
	if o, ok := t[token]; ok {
		return o, nil
	}
	return "", fmt.Errorf("unknown token")
}

func (t tokens) AuthenticateSum(_ context.Context, sum string) (string, error) {
	for tok, o := range t {
		if auth.Sum(tok) == sum {
			return o, nil
		}
	}
	return "", auth.ErrBadToken
}

// services opens the real backends on a temporary directory: each
// owner's blueprint store and the compose service (workers builds only
// when asked).
func services(t *testing.T, workers int) (*OwnerBlueprints, *compose.Service) {
	t.Helper()
	dir := t.TempDir()
	cache := os.Getenv("IBUILD_TEST_CACHE")
	if cache == "" {
		cache = filepath.Join(dir, "cache")
	}
	svc, err := compose.Open(context.Background(), compose.Config{Dir: filepath.Join(dir, "service"), CacheDir: cache,
		Workers: workers, PollInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := svc.Close(ctx); err != nil {
			t.Errorf("closing the compose service: %v", err)
		}
	})
	return NewOwnerBlueprints(filepath.Join(dir, "blueprints")), svc
}

// fixturePackages searches lock's test index (27 real Debian stanzas).
func fixturePackages(t *testing.T) *RepoPackages {
	return &RepoPackages{DefaultDistro: "debian-12", Index: func(ctx context.Context, distro, arch string) (*repo.Index, error) {
		if distro != "debian-12" || arch != "x86_64" {
			return nil, fmt.Errorf("no repositories for %s/%s", distro, arch)
		}
		f, err := os.Open("../../testdata/lock/Packages")
		if err != nil {
			return nil, err
		}
		defer f.Close()
		pkgs, err := repo.ParsePackages(f, "http://archive.invalid/debian", 0)
		if err != nil {
			return nil, err
		}
		return &repo.Index{Releases: []repo.Release{{Source: repo.Source{Suite: "bookworm"}}}, Packages: pkgs}, nil
	}}
}

type client struct {
	t    *testing.T
	base string
	c    *http.Client
	csrf string
}

func newTestServer(t *testing.T) *client {
	t.Helper()
	bps, svc := services(t, 0)
	s, err := New(Options{Auth: tokens{"tok-alice": "alice", "tok-bob": "bob"}, Blueprints: bps, Composes: &ServiceComposes{Service: svc},
		Packages: fixturePackages(t)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	return &client{t: t, base: srv.URL, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (c *client) do(method, path string, form url.Values, hdr ...string) (*http.Response, string) {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, c.base+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.c.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (c *client) login(token string) {
	c.t.Helper()
	resp, _ := c.do("POST", "/login", url.Values{"token": {token}, "next": {"/blueprints"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/blueprints" {
		c.t.Fatalf("login: %s %s", resp.Status, resp.Header.Get("Location"))
	}
	_, body := c.do("GET", "/blueprints", nil)
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		c.t.Fatalf("no CSRF token on the page:\n%s", body)
	}
	c.csrf = m[1]
}

func TestLoginAndSession(t *testing.T) {
	c := newTestServer(t)
	resp, _ := c.do("GET", "/blueprints", nil)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
		t.Fatalf("without a session: %s %s", resp.Status, resp.Header.Get("Location"))
	}
	resp, body := c.do("POST", "/login", url.Values{"token": {"wrong"}})
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "not valid") {
		t.Fatalf("wrong token: %s", resp.Status)
	}
	resp, _ = c.do("POST", "/login", url.Values{"token": {"tok-alice"}, "next": {"//evil.example/"}})
	if resp.Header.Get("Location") != "/images" {
		t.Errorf("login redirect to another site: %s", resp.Header.Get("Location"))
	}
	ck := resp.Cookies()
	if len(ck) != 1 || !ck[0].HttpOnly || ck[0].SameSite != http.SameSiteStrictMode || ck[0].Name != sessionCookie {
		t.Fatalf("session cookie %+v", ck)
	}
}

func TestStateChangesNeedCSRF(t *testing.T) {
	c := newTestServer(t)
	c.login("tok-alice")
	save := url.Values{"action": {"save-toml"}, "toml": {"name = \"a\"\n"}}
	resp, _ := c.do("POST", "/blueprints/edit", save)
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("save without a CSRF token: %s", resp.Status)
	}
	save.Set("csrf", "x"+c.csrf)
	if resp, _ = c.do("POST", "/blueprints/edit", save); resp.StatusCode != http.StatusForbidden {
		t.Errorf("save with a wrong CSRF token: %s", resp.Status)
	}
	save.Set("csrf", c.csrf)
	if resp, _ = c.do("POST", "/blueprints/edit", save, "Sec-Fetch-Site", "cross-site"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site save: %s", resp.Status)
	}
	if resp, _ = c.do("POST", "/blueprints/edit", save); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("save: %s", resp.Status)
	}
	// The header htmx sends does as well as the form field.
	save.Del("csrf")
	if resp, _ = c.do("POST", "/blueprints/edit", save, csrfHeader, c.csrf, "HX-Request", "true"); resp.StatusCode != http.StatusNoContent || resp.Header.Get("HX-Redirect") != "/blueprints/a" {
		t.Errorf("htmx save: %s %v", resp.Status, resp.Header)
	}
	// Another owner sees none of it.
	other := &client{t: t, base: c.base, c: &http.Client{CheckRedirect: c.c.CheckRedirect}}
	other.c.Jar, _ = cookiejar.New(nil)
	other.login("tok-bob")
	if resp, _ := other.do("GET", "/blueprints/a", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("bob sees alice's blueprint: %s", resp.Status)
	}
	if resp, _ := c.do("POST", "/logout", url.Values{"csrf": {c.csrf}}); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("logout: %s", resp.Status)
	}
	if resp, _ := c.do("GET", "/blueprints", nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after logout: %s", resp.Status)
	}
}

const xss = `<script>alert(1)</script>"><img src=x onerror=alert(2)>`

// Every page: the policy header, no inline script or style for it to
// block, and user strings as text.
func TestPagesEscapeAndCSP(t *testing.T) {
	c := newTestServer(t)
	c.login("tok-alice")
	toml := fmt.Sprintf("name = \"evil\"\ndescription = '''%s'''\ndistro = \"debian-12\"\n\n[[customizations.files]]\npath = \"/etc/motd\"\ndata = '''%s'''\n", xss, xss)
	resp, body := c.do("POST", "/blueprints/edit", url.Values{"csrf": {c.csrf}, "action": {"save-toml"}, "toml": {toml}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("saving: %s\n%s", resp.Status, body)
	}
	// A second version, for the diff page.
	c.do("POST", "/blueprints/edit", url.Values{"csrf": {c.csrf}, "action": {"save-toml"}, "toml": {strings.Replace(toml, "alert(1)", "alert(3)", 1)}})
	for _, path := range []string{"/blueprints", "/blueprints?q=evil", "/blueprints/evil", "/blueprints/evil/edit",
		"/blueprints/evil/diff?a=1&b=2", "/blueprints/new", "/build", "/images", "/login", "/packages?pkgq=ta"} {
		resp, body := c.do("GET", path, nil)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %s", path, resp.Status)
			continue
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
			t.Errorf("%s: Content-Security-Policy %q", path, csp)
		}
		if m := inlineCode(body); m != "" {
			t.Errorf("%s: inline script or style %q", path, m)
		}
		if strings.Contains(body, "<img") || strings.Contains(body, "<script>alert") {
			t.Errorf("%s: user string not escaped:\n%s", path, body)
		}
		if strings.Contains(path, "evil") && !strings.Contains(body, "&lt;script&gt;alert(") {
			t.Errorf("%s: the description is not shown as text", path)
		}
	}
	resp, body = c.do("GET", "/blueprints/evil/export", nil)
	if resp.Header.Get("Content-Disposition") != `attachment; filename="evil.toml"` || !strings.Contains(body, "alert(3)") {
		t.Errorf("export: %v\n%s", resp.Header, body)
	}
}

var (
	tagRE    = regexp.MustCompile(`<([a-zA-Z]+)([^>]*)>`)
	quotedRE = regexp.MustCompile(`"[^"]*"|'[^']*'`)
	attrRE   = regexp.MustCompile(`(?i)\s(on[a-z]+|style)\s*=`)
)

// inlineCode returns the first tag that holds inline script or style:
// a script without src, a style element, an on… or style attribute.
func inlineCode(body string) string {
	for _, m := range tagRE.FindAllStringSubmatchIndex(body, -1) {
		name := strings.ToLower(body[m[2]:m[3]])
		attrs := quotedRE.ReplaceAllString(body[m[4]:m[5]], "")
		switch {
		case name == "script" && (!strings.Contains(attrs, "src=") || !strings.HasPrefix(body[m[1]:], "</script>")),
			name == "style", attrRE.MatchString(attrs):
			return body[m[0]:m[1]]
		}
	}
	return ""
}

func TestInlineCode(t *testing.T) {
	for in, want := range map[string]string{
		`<script src="/a.js" defer></script>`:           "",
		`<p title="a onclick=x style=y">&lt;script&gt;`: "",
		`<script>alert(1)</script>`:                     "<script>",
		`<script src="/a.js">x</script>`:                `<script src="/a.js">`,
		`<div style="color:red">`:                       `<div style="color:red">`,
		`<img src=x onerror=alert(1)>`:                  `<img src=x onerror=alert(1)>`,
		`<style>p{}</style>`:                            "<style>",
	} {
		if got := inlineCode(in); got != want {
			t.Errorf("inlineCode(%q) = %q, want %q", in, got, want)
		}
	}
}

// The editor's package search: results from the repositories' index, an
// Add button that puts the name in the form and the TOML.
func TestPackageSearch(t *testing.T) {
	c := newTestServer(t)
	c.login("tok-alice")
	resp, body := c.do("GET", "/packages?pkgq=ta&distro=debian-12", nil, "HX-Request", "true")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `value="tar"`) || strings.Contains(body, "<html") {
		t.Fatalf("search: %s\n%s", resp.Status, body)
	}
	// Names that start with the query come first ("tar", then "libacl1"-like names that only contain it).
	if i, j := strings.Index(body, "<code>tar</code>"), strings.Index(body, "<code>base-files</code>"); i < 0 || j >= 0 {
		t.Errorf("results:\n%s", body)
	}
	if _, body = c.do("GET", "/packages?pkgq=nosuchpkg", nil, "HX-Request", "true"); !strings.Contains(body, "No package named like") {
		t.Errorf("no hits:\n%s", body)
	}
	if _, body = c.do("GET", "/packages?pkgq=ta&distro=debian-13", nil, "HX-Request", "true"); !strings.Contains(body, "no repositories for debian-13") {
		t.Errorf("failed search:\n%s", body)
	}
	// Without htmx: a whole page, and no Add buttons outside the editor.
	if _, body = c.do("GET", "/packages?pkgq=ta", nil); !strings.Contains(body, "<html") || strings.Contains(body, "add-package") {
		t.Errorf("plain search page:\n%s", body)
	}
	form := url.Values{"csrf": {c.csrf}, "name": {"pk"}, "version": {"0.0.1"}, "distro": {"debian-12"}, "packages": {"dpkg\n"}, "add-package": {"tar"}}
	resp, body = c.do("POST", "/blueprints/edit", form, "HX-Request", "true")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "dpkg\ntar</textarea>") || !strings.Contains(body, `name = &#39;tar&#39;`) {
		t.Fatalf("add: %s\n%s", resp.Status, body)
	}
	// Added once only.
	form.Set("packages", "dpkg\ntar=1.34")
	if _, body = c.do("POST", "/blueprints/edit", form, "HX-Request", "true"); !strings.Contains(body, "dpkg\ntar=1.34</textarea>") {
		t.Errorf("added twice:\n%s", body)
	}
}

// A blueprint saved as TOML comes back as written, with the version the
// store gave it; one saved from the form comes back as the form wrote it.
func TestTOMLKeptAsWritten(t *testing.T) {
	ctx := context.Background()
	o := NewOwnerBlueprints(t.TempDir())
	text := "# my web server\nname = \"kept\"\nversion = \"1.0.0\" # bump me\n\n[customizations]\nhostname = \"a\" # the host\n"
	for i, want := range []string{text, strings.Replace(text, `"1.0.0"`, `"1.0.1"`, 1)} {
		sb, err := o.Put(ctx, "alice", "kept", []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		if string(sb.Data) != want {
			t.Errorf("save %d: got\n%s\nwant\n%s", i+1, sb.Data, want)
		}
	}
	// An older version reads back as it was written, too.
	if sb, _ := o.Get(ctx, "alice", "kept", 1); string(sb.Data) != text {
		t.Errorf("version 1:\n%s", sb.Data)
	}
	// A "version" key in a table is not the blueprint's.
	other := "name = \"pk\"\n\n[[packages]]\nname = \"tar\"\nversion = \"1.34\" # pinned\n"
	o.Put(ctx, "alice", "pk", []byte(other))
	sb, err := o.Put(ctx, "alice", "pk", []byte(other))
	if err != nil || !strings.Contains(string(sb.Data), `version = "1.34" # pinned`) {
		t.Errorf("package version: %v\n%s", err, sb.Data)
	}
	if err := o.Delete(ctx, "alice", "kept"); err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(o.textDir("alice"), "*.toml")); len(left) != 2 {
		t.Errorf("texts left after delete: %v", left)
	}
}

// Logins survive a restart when the server keeps a sessions file, which
// holds no session id.
func TestSessionsSurviveRestart(t *testing.T) {
	bps, svc := services(t, 0)
	file := filepath.Join(t.TempDir(), "webui", "sessions.json")
	start := func() *httptest.Server {
		s, err := New(Options{Auth: tokens{"tok-alice": "alice"}, Blueprints: bps, Composes: &ServiceComposes{Service: svc}, SessionFile: file})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(s)
		t.Cleanup(srv.Close)
		return srv
	}
	first := start()
	jar, _ := cookiejar.New(nil)
	c := &client{t: t, base: first.URL, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	c.login("tok-alice")
	first.Close()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(first.URL)
	for _, ck := range jar.Cookies(u) {
		if strings.Contains(string(data), ck.Value) {
			t.Errorf("the sessions file holds the session id")
		}
	}
	// The same cookie, at a new server on the same file.
	second := start()
	u2, _ := url.Parse(second.URL)
	jar.SetCookies(u2, jar.Cookies(u))
	c.base = second.URL
	if resp, body := c.do("GET", "/blueprints", nil); resp.StatusCode != http.StatusOK || !strings.Contains(body, c.csrf) {
		t.Fatalf("after a restart: %s", resp.Status)
	}
	// The old cookie, presented again after a logout and a restart.
	old := jar.Cookies(u2)
	if resp, _ := c.do("POST", "/logout", url.Values{"csrf": {c.csrf}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %s", resp.Status)
	}
	third := start()
	u3, _ := url.Parse(third.URL)
	if len(old) != 1 {
		t.Fatalf("cookies %v", old)
	}
	jar.SetCookies(u3, old)
	c.base = third.URL
	if resp, _ := c.do("GET", "/blueprints", nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("logged out, then restarted: %s", resp.Status)
	}
}

// A session ends when its token is revoked or rotated (ibuild serve token
// revoke / create), at once and after a restart: it is as good as the
// token it was made with, not for 12 hours whatever happens to it.
func TestSessionsEndWithTheirToken(t *testing.T) {
	bps, svc := services(t, 0)
	dir := t.TempDir()
	store := auth.Open(dir)
	file := filepath.Join(dir, "webui", "sessions.json")
	start := func() *httptest.Server {
		s, err := New(Options{Auth: store, Blueprints: bps, Composes: &ServiceComposes{Service: svc}, SessionFile: file})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(s)
		t.Cleanup(srv.Close)
		return srv
	}
	login := func(srv *httptest.Server, token string) *client {
		jar, _ := cookiejar.New(nil)
		c := &client{t: t, base: srv.URL, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
		c.login(token)
		return c
	}
	loggedIn := func(c *client) bool {
		t.Helper()
		resp, _ := c.do("GET", "/blueprints", nil)
		switch resp.StatusCode {
		case http.StatusOK:
			return true
		case http.StatusSeeOther:
			if !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
				t.Fatalf("redirected to %s", resp.Header.Get("Location"))
			}
			return false
		}
		t.Fatalf("GET /blueprints: %s", resp.Status)
		return false
	}
	aliceTok, err := store.Create("alice")
	if err != nil {
		t.Fatal(err)
	}
	bobTok, err := store.Create("bob")
	if err != nil {
		t.Fatal(err)
	}
	carolTok, err := store.Create("carol")
	if err != nil {
		t.Fatal(err)
	}
	srv := start()
	alice, bob, carol := login(srv, aliceTok), login(srv, bobTok), login(srv, carolTok)
	if !loggedIn(alice) || !loggedIn(bob) || !loggedIn(carol) {
		t.Fatal("not logged in")
	}

	// Revoked while the session is live: its next request is refused.
	// The token file is changed by another Store, as the CLI does.
	if err := auth.Open(dir).Revoke("alice"); err != nil {
		t.Fatal(err)
	}
	if loggedIn(alice) {
		t.Error("alice's session outlived her token's revocation")
	}
	if !loggedIn(bob) {
		t.Error("bob's session ended with alice's token")
	}
	// Rotated: the session made with the old token ends too.
	if _, err := auth.Open(dir).Create("bob"); err != nil {
		t.Fatal(err)
	}
	if loggedIn(bob) {
		t.Error("bob's session outlived his token's rotation")
	}
	if !loggedIn(carol) {
		t.Error("carol's session ended")
	}

	// Persisted sessions: carol's is kept across a restart, and ends when
	// her token is revoked while the server is down.
	moveTo := func(c *client, srv *httptest.Server) {
		old, _ := url.Parse(c.base)
		u, _ := url.Parse(srv.URL)
		c.c.Jar.SetCookies(u, c.c.Jar.Cookies(old))
		c.base = srv.URL
	}
	srv.Close()
	srv = start()
	moveTo(carol, srv)
	if !loggedIn(carol) {
		t.Fatal("carol's session did not survive a restart")
	}
	srv.Close()
	if err := auth.Open(dir).Revoke("carol"); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), carolTok) || strings.Contains(string(data), aliceTok) {
		t.Error("the sessions file holds a token")
	}
	moveTo(carol, start())
	if loggedIn(carol) {
		t.Error("carol's persisted session outlived her token's revocation")
	}
}

// The search ibuild serve mounts, over the Debian archive through the
// host's apt sources and the shared metadata cache.
func TestServicePackagesArchive(t *testing.T) {
	locktest.NeedArchive(t)
	_, svc := services(t, 0)
	p := ServicePackages(svc)
	start := time.Now()
	hits, err := p.SearchPackages(context.Background(), "debian-12", "x86_64", "openssh-serv", 5)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first search (fetch and parse the indices): %s", time.Since(start).Round(time.Millisecond))
	if len(hits) == 0 || hits[0].Name != "openssh-server" || hits[0].Version == "" || !strings.HasPrefix(hits[0].Suite, "bookworm") {
		t.Fatalf("hits: %+v", hits)
	}
	start = time.Now()
	if hits, err = p.SearchPackages(context.Background(), "", "", "nginx", 3); err != nil || len(hits) == 0 {
		t.Fatalf("second search: %+v %v", hits, err)
	}
	t.Logf("a search of the kept index: %s", time.Since(start).Round(time.Millisecond))
}

// The Build page offers publishing only where the operator allows it;
// the service's rules refuse other repositories, and what is allowed
// reaches the compose request.
func TestBuildPublish(t *testing.T) {
	dir := t.TempDir()
	svc, err := compose.Open(context.Background(), compose.Config{Dir: filepath.Join(dir, "service"), CacheDir: filepath.Join(dir, "cache"),
		Publish: compose.PublishConfig{Repositories: []string{"127.0.0.1:5000/team"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close(context.Background()) })
	s, err := New(Options{Auth: tokens{"tok-alice": "alice"}, Blueprints: NewOwnerBlueprints(filepath.Join(dir, "blueprints")),
		Composes: &ServiceComposes{Service: svc}, PublishTo: svc.Config().Publish.Repositories, Sign: svc.Config().Publish.CanSign()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	c := &client{t: t, base: srv.URL, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	c.login("tok-alice")
	c.do("POST", "/blueprints/edit", url.Values{"csrf": {c.csrf}, "action": {"save-toml"}, "toml": {"name = \"pub\"\ndistro = \"debian-12\"\n"}})
	_, body := c.do("GET", "/build", nil)
	if !strings.Contains(body, `id="publish"`) || !strings.Contains(body, "127.0.0.1:5000/team") || strings.Contains(body, `id="sign"`) {
		t.Fatalf("build page: no publish field, or a sign box without a key:\n%s", body)
	}
	form := func(ref, sign string) url.Values {
		return url.Values{"csrf": {c.csrf}, "blueprint": {"pub"}, "arch": {"x86_64"}, "type": {"tar"}, "publish": {ref}, "sign": {sign}}
	}
	for _, tc := range []struct{ ref, sign, want string }{
		{"127.0.0.1:5000/other/x", "", "is not one this service publishes to"},
		{"127.0.0.1:5000/team/x", "1", "signing key"},
	} {
		resp, body := c.do("POST", "/build", form(tc.ref, tc.sign))
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, tc.want) {
			t.Errorf("publish to %s (sign %q): %s, want a refusal %q", tc.ref, tc.sign, resp.Status, tc.want)
		}
	}
	resp, body := c.do("POST", "/build", form("127.0.0.1:5000/team/x:v1", ""))
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("publish to an allowed repository: %s\n%s", resp.Status, body)
	}
	list, _, err := svc.List(context.Background(), "alice", compose.ListOptions{})
	if err != nil || len(list) != 1 {
		t.Fatalf("composes: %v %v", list, err)
	}
	if p := list[0].Request.Images[0].Publish; p == nil || p.Ref != "127.0.0.1:5000/team/x:v1" || p.Sign {
		t.Fatalf("compose request's publish: %+v", p)
	}
}

// The detail page shows a published image's reference, that it is
// signed, and the commands that fetch and verify it; a reference is
// shown as text, never markup.
func TestImagePublished(t *testing.T) {
	s, err := New(Options{Auth: tokens{}, Blueprints: NewOwnerBlueprints(t.TempDir()), Composes: &ServiceComposes{}})
	if err != nil {
		t.Fatal(err)
	}
	ref := "127.0.0.1:5000/team/x@sha256:" + strings.Repeat("ab", 32)
	d := imageData{Compose: Compose{ID: "c1", Status: StatusSuccess, Images: []ImageStatus{{Arch: "x86_64", Type: "tar", Status: StatusSuccess,
		Published: &Published{Ref: ref, Signed: true, Signature: `127.0.0.1:5000/team/x:sha256-ab.sig"><img src=x>`}}}}}
	w := httptest.NewRecorder()
	s.render(w, httptest.NewRequest("GET", "/images/c1", nil), http.StatusOK, "image", page{Title: "Compose c1", Nav: "images", Data: d})
	body := w.Body.String()
	for _, want := range []string{`<code class="ref">` + ref + `</code>`, ">signed<", "oras pull " + ref, "cosign verify --key cosign.pub " + ref} {
		if !strings.Contains(body, want) {
			t.Errorf("detail page lacks %q", want)
		}
	}
	if strings.Contains(body, "<img") || inlineCode(body) != "" {
		t.Errorf("detail page: markup from a reference, or inline code:\n%s", body)
	}
}
