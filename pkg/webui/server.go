package webui

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/distro"
)

//go:embed templates static
var files embed.FS

// Options configure the page.
type Options struct {
	Auth       Authenticator
	Blueprints Blueprints
	Composes   Composes
	// Defs are the image definitions the Build page offers (default:
	// the embedded ones, as `ibuild list` shows them).
	Defs *distro.Defs
	// Uploads name the upload targets the service can send images to.
	Uploads []string
	// PublishTo are the registries or repository prefixes the service
	// may publish images to (none: the Build page offers no publishing);
	// Sign says it signs them when asked.
	PublishTo []string
	Sign      bool
	// Packages, when set, gives the editor a search over the packages the
	// repositories offer.
	Packages PackageSearcher
	// SessionFile, when set, keeps the logins there so that they survive
	// a restart (ibuild serve: DIR/webui/sessions.json).
	SessionFile string
	// SecureCookies marks the session cookie Secure: set it when the page
	// is served over TLS.
	SecureCookies bool
	Logger        *slog.Logger
	// Done ends the live streams when it closes (the server shuts down),
	// so that they do not hold up a graceful shutdown.
	Done <-chan struct{}
}

// Server is the web page, an http.Handler to mount at "/" of ibuild
// serve's HTTP listener.
type Server struct {
	opts     Options
	defs     *distro.Defs
	tmpl     map[string]*template.Template
	sessions sessions
	mux      *http.ServeMux
	handler  http.Handler
	log      *slog.Logger
}

// contentSecurityPolicy lets the page run only its own embedded scripts and
// styles: no inline script or style, no eval, nothing from elsewhere.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// New returns the page.
func New(opts Options) (*Server, error) {
	if opts.Auth == nil || opts.Blueprints == nil || opts.Composes == nil {
		return nil, errors.New("webui: Auth, Blueprints and Composes are required")
	}
	s := &Server{opts: opts, defs: opts.Defs, log: opts.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.defs == nil {
		d, err := distro.Load()
		if err != nil {
			return nil, err
		}
		s.defs = d
	}
	if err := s.parseTemplates(); err != nil {
		return nil, err
	}
	s.sessions.file, s.sessions.auth, s.sessions.log = opts.SessionFile, opts.Auth, s.log
	if err := s.sessions.load(context.Background()); err != nil {
		return nil, err
	}
	static, _ := fs.Sub(files, "static")
	m := http.NewServeMux()
	m.Handle("GET /static/", http.StripPrefix("/static/", cacheStatic(http.FileServerFS(static))))
	m.HandleFunc("GET /login", s.loginPage)
	m.HandleFunc("POST /login", s.login)
	m.HandleFunc("POST /logout", s.auth(s.logout))
	m.HandleFunc("GET /{$}", s.auth(func(w http.ResponseWriter, r *http.Request, _ *session) {
		http.Redirect(w, r, "/images", http.StatusSeeOther)
	}))
	m.HandleFunc("GET /blueprints", s.auth(s.blueprintList))
	m.HandleFunc("GET /blueprints/new", s.auth(s.blueprintNew))
	m.HandleFunc("POST /blueprints/edit", s.auth(s.blueprintEdit))
	m.HandleFunc("POST /blueprints/import", s.auth(s.blueprintImport))
	m.HandleFunc("GET /blueprints/{name}", s.auth(s.blueprintShow))
	m.HandleFunc("GET /blueprints/{name}/edit", s.auth(s.blueprintEditPage))
	m.HandleFunc("GET /blueprints/{name}/export", s.auth(s.blueprintExport))
	m.HandleFunc("GET /blueprints/{name}/diff", s.auth(s.blueprintDiff))
	m.HandleFunc("POST /blueprints/{name}/delete", s.auth(s.blueprintDelete))
	m.HandleFunc("GET /packages", s.auth(s.packageSearch))
	m.HandleFunc("GET /build", s.auth(s.buildPage))
	m.HandleFunc("POST /build", s.auth(s.build))
	m.HandleFunc("GET /images", s.auth(s.imageList))
	m.HandleFunc("GET /images/events", s.auth(s.imageEvents))
	m.HandleFunc("GET /images/{id}", s.auth(s.imageShow))
	m.HandleFunc("GET /images/{id}/log", s.auth(s.imageLog))
	m.HandleFunc("GET /images/{id}/download/{n}", s.auth(s.imageDownload))
	s.mux = m
	// Go's cross-origin check refuses a state change another site's page
	// makes the browser send, before the CSRF token is even looked at.
	s.handler = securityHeaders(http.NewCrossOriginProtection().Handler(m))
	return s, nil
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", contentSecurityPolicy)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.ServeHTTP(w, r)
	})
}

func cacheStatic(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		h.ServeHTTP(w, r)
	})
}

// auth lets a request through with a session; a state change must also
// carry the session's CSRF token.
func (s *Server) auth(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess, err := s.sessions.lookup(r)
		if err != nil {
			s.log.Error("checking a session", "err", err)
			http.Error(w, "the session cannot be checked now; try again", http.StatusInternalServerError)
			return
		}
		if sess == nil {
			if r.Header.Get("HX-Request") != "" {
				w.Header().Set("HX-Redirect", "/login")
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			http.Error(w, "not logged in", http.StatusUnauthorized)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			r.Body = http.MaxBytesReader(w, r.Body, 64<<20)
			if !sess.validCSRF(r) {
				http.Error(w, "the form is out of date (missing or wrong CSRF token): reload the page", http.StatusForbidden)
				return
			}
		}
		h(w, r, sess)
	}
}

// page is what every page template gets.
type page struct {
	Title string
	// Nav is the current section, for aria-current.
	Nav  string
	CSRF string
	// Owner is who is logged in.
	Owner string
	Data  any
	Flash string
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	t := s.tmpl[name]
	block := "layout"
	if r.Header.Get("HX-Request") != "" && r.Header.Get("HX-Boosted") == "" && t.Lookup("fragment") != nil {
		block = "fragment"
	}
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, block, p); err != nil {
		s.log.Error("rendering page", "page", name, "err", err)
		http.Error(w, "rendering page failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

// fail answers an error from a backend in words.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, sess *session, err error) {
	status := http.StatusInternalServerError
	msg := err.Error()
	if errors.Is(err, ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
		status, msg = http.StatusNotFound, "Not found: "+msg
	} else {
		s.log.Error("web request failed", "path", r.URL.Path, "err", err)
	}
	p := page{Title: "Error", Data: msg}
	if sess != nil {
		p.CSRF, p.Owner = sess.csrf, sess.owner
	}
	s.render(w, r, status, "error", p)
}

func (s *Server) parseTemplates() error {
	funcs := template.FuncMap{
		"id":       controlID,
		"join":     strings.Join,
		"elapsed":  elapsed,
		"percent":  percent,
		"bytes":    humanBytes,
		"time":     func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
		"add":      func(a, b int) int { return a + b },
		"contains": func(list []string, s string) bool { return contains(list, s) },
		// arg bundles a control with its label and value for "text"
		// and "area": arg CONTROL LABEL VALUE [HINT [ROWS]].
		"arg": func(c control, label, value string, more ...any) map[string]any {
			m := map[string]any{"C": c, "Label": label, "Value": value}
			if len(more) > 0 {
				m["Hint"] = more[0]
			}
			if len(more) > 1 {
				m["Rows"] = more[1]
			}
			return m
		},
	}
	s.tmpl = map[string]*template.Template{}
	pages, err := fs.Glob(files, "templates/page_*.html")
	if err != nil {
		return err
	}
	for _, p := range pages {
		name := strings.TrimSuffix(strings.TrimPrefix(p, "templates/page_"), ".html")
		t, err := template.New(name).Funcs(funcs).ParseFS(files, "templates/layout.html", "templates/part_*.html", p)
		if err != nil {
			return fmt.Errorf("parsing template %s: %w", p, err)
		}
		s.tmpl[name] = t
	}
	return nil
}

// controlID turns a control's name ("customizations.user[0].name") into
// an id attribute.
func controlID(name string) string {
	var b strings.Builder
	b.WriteString("f-")
	for _, r := range name {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	return b.String()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func elapsed(from, to time.Time) string {
	if from.IsZero() {
		return ""
	}
	if to.IsZero() {
		to = time.Now()
	}
	d := to.Sub(from).Round(time.Second)
	if d < time.Minute {
		return fmt.Sprintf("%ds", int(d.Seconds()))
	}
	return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
}

func percent(done, total int) int {
	if total <= 0 {
		return 0
	}
	return min(100, done*100/total)
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
