package webui

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/atomicfile"
	"github.com/image-builder-action/image-builder-action/pkg/auth"
)

// A session is what a login with an API token gives the browser: a random
// id in an HttpOnly, SameSite=Strict cookie, and a CSRF token that every
// form and htmx request sends back. The token itself is not kept, only its
// sha256, which the Authenticator is asked about at every request: a
// session ends when its token is revoked or rotated, as the token's API
// access does. Sessions live in memory and, when the server has a state
// directory, in a file there (the sha256 of each id, never the id itself),
// so that a restart does not log everyone out.

const (
	sessionCookie = "ibuild_session"
	sessionTTL    = 12 * time.Hour
	csrfField     = "csrf"
	csrfHeader    = "X-CSRF-Token"
)

type session struct {
	owner   string
	token   string // the sha256 (hex) of the token it was made with
	csrf    string
	expires time.Time
}

// sessions are keyed by the sha256 of their id: the file that keeps them
// holds nothing a browser could present.
type sessions struct {
	mu   sync.Mutex
	m    map[string]*session
	file string
	auth Authenticator
	log  *slog.Logger
}

func sessionKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

type savedSession struct {
	Owner   string    `json:"owner"`
	Token   string    `json:"token"`
	CSRF    string    `json:"csrf"`
	Expires time.Time `json:"expires"`
}

// load reads the sessions file; a missing file is no sessions. Expired
// ones are dropped, and so are those whose token is no longer valid (or
// unknown: a file written before sessions kept it).
func (s *sessions) load(ctx context.Context) error {
	s.m = map[string]*session{}
	if s.file == "" {
		return nil
	}
	data, err := os.ReadFile(s.file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading sessions: %w", err)
	}
	var saved map[string]savedSession
	if err := json.Unmarshal(data, &saved); err != nil {
		return fmt.Errorf("reading sessions %s: %w", s.file, err)
	}
	now := time.Now()
	for k, v := range saved {
		if !now.Before(v.Expires) {
			continue
		}
		// A token store that cannot be read now (a hand edit under way,
		// a permission slip) keeps the session: the next request asks
		// again, as the API does.
		ok, err := s.valid(ctx, v.Owner, v.Token)
		if err != nil {
			s.log.Warn("checking a saved session's token: kept until its token can be checked", "owner", v.Owner, "err", err)
		}
		if ok || err != nil {
			s.m[k] = &session{owner: v.Owner, token: v.Token, csrf: v.CSRF, expires: v.Expires}
		}
	}
	return nil
}

// valid says whether the token a session was made with still names its
// owner. Only a verdict on the token ends a session: an unknown token
// (auth.ErrBadToken: revoked, rotated) or one of another owner. Any other
// error is the token store's (unreadable, half-edited), returned so that
// the session is kept and the request fails instead: a transient problem
// must not log everyone out for good.
func (s *sessions) valid(ctx context.Context, owner, token string) (bool, error) {
	if token == "" {
		return false, nil
	}
	got, err := s.auth.AuthenticateSum(ctx, token)
	if errors.Is(err, auth.ErrBadToken) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("checking the session's token: %w", err)
	}
	return got == owner, nil
}

// save writes the sessions file (with s.mu held). A failure costs the
// users a login after a restart, nothing more: it is not the request's,
// so it is logged, not returned.
func (s *sessions) save() {
	if s.file == "" {
		return
	}
	out := make(map[string]savedSession, len(s.m))
	for k, v := range s.m {
		out[k] = savedSession{Owner: v.owner, Token: v.token, CSRF: v.csrf, Expires: v.expires}
	}
	err := func() error {
		data, err := json.Marshal(out)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(s.file), 0o700); err != nil {
			return err
		}
		return atomicfile.Write(s.file, data, 0o600)
	}()
	if err != nil {
		s.log.Error("saving sessions: logins will not survive a restart", "file", s.file, "err", err)
	}
}

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// create makes a session for owner, who logged in with token.
func (s *sessions) create(owner, token string) (id string, sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]*session{}
	}
	now := time.Now()
	for k, v := range s.m {
		if now.After(v.expires) {
			delete(s.m, k)
		}
	}
	id = randomToken()
	sess = &session{owner: owner, token: auth.Sum(token), csrf: randomToken(), expires: now.Add(sessionTTL)}
	s.m[sessionKey(id)] = sess
	s.save()
	return id, sess
}

// lookup returns the request's session, nil when it has none (or it has
// ended), or an error when its token cannot be checked now: the session
// is kept and the request fails.
func (s *sessions) lookup(r *http.Request) (*session, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil, nil
	}
	key := sessionKey(c.Value)
	s.mu.Lock()
	sess := s.m[key]
	s.mu.Unlock()
	if sess == nil {
		return nil, nil
	}
	// The token check stats the token file: not under s.mu, which every
	// request takes.
	ok := !time.Now().After(sess.expires)
	if ok {
		if ok, err = s.valid(r.Context(), sess.owner, sess.token); err != nil {
			return nil, err
		}
	}
	if !ok {
		s.mu.Lock()
		if s.m[key] == sess {
			delete(s.m, key)
			s.save()
		}
		s.mu.Unlock()
		return nil, nil
	}
	return sess, nil
}

func (s *sessions) remove(r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		s.mu.Lock()
		delete(s.m, sessionKey(c.Value))
		s.save()
		s.mu.Unlock()
	}
}

// validCSRF says the request carries the session's CSRF token, in the
// form or (htmx) in a header.
func (sess *session) validCSRF(r *http.Request) bool {
	got := r.Header.Get(csrfHeader)
	if got == "" {
		got = r.PostFormValue(csrfField)
	}
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(sess.csrf)) == 1
}
