package webui

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"sync"
	"testing"

	"github.com/image-builder-action/image-builder-action/pkg/auth"
)

// switchAuth answers a session's token check as the test says, and
// logins from its fixed tokens.
type switchAuth struct {
	tokens
	mu    sync.Mutex
	owner string
	err   error
}

func (a *switchAuth) set(owner string, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.owner, a.err = owner, err
}

func (a *switchAuth) AuthenticateSum(context.Context, string) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.owner, a.err
}

// Only a verdict on the token (unknown, or another owner's) ends a
// session, live or saved; a token store that cannot be read answers 500
// and keeps it, so that a transient problem does not log everyone out.
func TestSessionTokenErrors(t *testing.T) {
	bps, svc := services(t, 0)
	for _, tc := range []struct {
		name  string
		owner string
		err   error
		kept  bool
	}{
		{"valid", "alice", nil, true},
		{"revoked", "", auth.ErrBadToken, false},
		{"revoked, wrapped", "", fmt.Errorf("looking up: %w", auth.ErrBadToken), false},
		{"another owner", "bob", nil, false},
		{"unreadable store", "", fmt.Errorf("reading tokens: %w", fs.ErrPermission), true},
		{"half-edited store", "", errors.New("reading tokens /x/tokens.json: unexpected end of JSON input"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &switchAuth{tokens: tokens{"tok-alice": "alice"}, owner: "alice"}
			file := filepath.Join(t.TempDir(), "sessions.json")
			start := func() *httptest.Server {
				s, err := New(Options{Auth: a, Blueprints: bps, Composes: &ServiceComposes{Service: svc}, SessionFile: file})
				if err != nil {
					t.Fatal(err)
				}
				srv := httptest.NewServer(s)
				t.Cleanup(srv.Close)
				return srv
			}
			get := func(c *client) int {
				t.Helper()
				resp, _ := c.do("GET", "/blueprints", nil)
				return resp.StatusCode
			}
			srv := start()
			jar, _ := cookiejar.New(nil)
			c := &client{t: t, base: srv.URL, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
			c.login("tok-alice")

			// A live session.
			a.set(tc.owner, tc.err)
			want := http.StatusSeeOther
			switch {
			case tc.err != nil && tc.kept:
				want = http.StatusInternalServerError
			case tc.kept:
				want = http.StatusOK
			}
			if got := get(c); got != want {
				t.Fatalf("with the token check answering %q, %v: status %d, want %d", tc.owner, tc.err, got, want)
			}
			a.set("alice", nil)
			if got, wantKept := get(c) == http.StatusOK, tc.kept; got != wantKept {
				t.Fatalf("once the token checks out again: logged in %v, want %v", got, wantKept)
			}
			if !tc.kept {
				return
			}

			// A saved session, loaded while the check answers so.
			srv.Close()
			a.set(tc.owner, tc.err)
			srv = start()
			a.set("alice", nil)
			old, _ := url.Parse(c.base)
			u, _ := url.Parse(srv.URL)
			jar.SetCookies(u, jar.Cookies(old))
			c.base = srv.URL
			if get(c) != http.StatusOK {
				t.Errorf("the saved session was dropped at startup")
			}
		})
	}
}

// The saved session is dropped at startup when its token is unknown.
func TestSessionLoadDropsBadTokens(t *testing.T) {
	for _, tc := range []struct {
		owner string
		err   error
		kept  bool
	}{
		{"alice", nil, true},
		{"", auth.ErrBadToken, false},
		{"bob", nil, false},
		{"", errors.New("reading tokens: input/output error"), true},
	} {
		a := &switchAuth{owner: "alice"}
		s := &sessions{file: filepath.Join(t.TempDir(), "sessions.json"), auth: a, log: slog.New(slog.DiscardHandler)}
		if err := s.load(context.Background()); err != nil {
			t.Fatal(err)
		}
		s.create("alice", "tok-alice")
		a.set(tc.owner, tc.err)
		l := &sessions{file: s.file, auth: a, log: slog.New(slog.DiscardHandler)}
		if err := l.load(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := len(l.m) == 1; got != tc.kept {
			t.Errorf("token check %q, %v: kept %v, want %v", tc.owner, tc.err, got, tc.kept)
		}
	}
}
