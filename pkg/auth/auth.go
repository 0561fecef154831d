// Package auth holds the service's bearer tokens: each names an owner, and
// every compose belongs to the owner of the token that made it. Tokens are
// random; only their sha256 is kept (in one JSON file), so the file gives
// nobody a way in. A lookup hashes the presented token and compares it
// against every stored hash in constant time.
package auth

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
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/atomicfile"
)

// TokenPrefix starts every token, so that one pasted where it should not
// be is recognisable (and secret scanners can find it).
const TokenPrefix = "ibt_"

// FileName is the token file's name in the service's state directory.
const FileName = "tokens.json"

// Token is a stored token: its name (the owner), the sha256 of its secret
// and when it was made.
type Token struct {
	Name    string    `json:"name"`
	SHA256  string    `json:"sha256"`
	Created time.Time `json:"created"`
}

// Store is the token file. It is re-read when it changes on disk, so a
// token made by `ibuild serve token create` while the server runs works at
// once.
type Store struct {
	path string

	mu     sync.Mutex
	tokens []Token
	// sums are the tokens' decoded hashes (nil for a malformed one).
	sums [][]byte
	mod  time.Time
	size int64
}

// Errors a lookup returns.
var (
	// ErrNoToken: the request carries no bearer token.
	ErrNoToken = errors.New("no bearer token: send Authorization: Bearer TOKEN (ibuild serve token create NAME makes one)")
	// ErrBadToken: the token is not one of the store's.
	ErrBadToken = errors.New("the bearer token is not valid")
)

// Open returns the store of the token file in dir (which need not exist
// yet).
func Open(dir string) *Store {
	return &Store{path: filepath.Join(dir, FileName)}
}

// Path is the token file's path.
func (s *Store) Path() string { return s.path }

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// Create makes a token for owner name and returns its secret, which is not
// kept: it is shown once. A name has one token; creating it again
// replaces the old one (that is how a token is rotated).
func (s *Store) Create(name string) (string, error) {
	if !nameRE.MatchString(name) {
		return "", fmt.Errorf("token name %q: want 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit", name)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("making token: %w", err)
	}
	secret := TokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.reload(); err != nil {
		return "", err
	}
	tokens := slices.DeleteFunc(slices.Clone(s.tokens), func(t Token) bool { return t.Name == name })
	tokens = append(tokens, Token{Name: name, SHA256: hash(secret), Created: time.Now().UTC().Truncate(time.Second)})
	if err := s.write(tokens); err != nil {
		return "", err
	}
	return secret, nil
}

// Revoke removes name's token; it is an error when there is none.
func (s *Store) Revoke(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.reload(); err != nil {
		return err
	}
	n := len(s.tokens)
	tokens := slices.DeleteFunc(slices.Clone(s.tokens), func(t Token) bool { return t.Name == name })
	if len(tokens) == n {
		return fmt.Errorf("revoking token: no token named %q", name)
	}
	return s.write(tokens)
}

// List returns the stored tokens (names and dates; the secrets are not
// kept).
func (s *Store) List() ([]Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.reload(); err != nil {
		return nil, err
	}
	return slices.Clone(s.tokens), nil
}

// Lookup returns the owner of secret. Every stored hash is compared, in
// constant time, so the time taken says nothing about which one matched.
// It runs on every API request: the file is stat'ed before the lock is
// taken, so many requests at once do not queue behind one another's
// system call, and the lock is held only to compare the file's size and
// time with the last read's (the file is read again when they differ).
func (s *Store) Lookup(secret string) (string, error) {
	if secret == "" {
		return "", ErrNoToken
	}
	fi, statErr := os.Stat(s.path)
	s.mu.Lock()
	err := s.reloadStat(fi, statErr)
	tokens, sums := s.tokens, s.sums
	s.mu.Unlock()
	if err != nil {
		return "", err
	}
	h := sha256.Sum256([]byte(secret))
	owner := ""
	for i, sum := range sums {
		if sum != nil && subtle.ConstantTimeCompare(sum, h[:]) == 1 {
			owner = tokens[i].Name
		}
	}
	if owner == "" {
		return "", ErrBadToken
	}
	return owner, nil
}

// LookupSum returns the owner of the token whose sha256 (hex) is sum: a
// web session keeps that, not the token, and asks at each request whether
// its token is still there (a revoked or rotated token ends its sessions).
func (s *Store) LookupSum(sum string) (string, error) {
	want, err := hex.DecodeString(sum)
	if err != nil || len(want) != sha256.Size {
		return "", ErrBadToken
	}
	fi, statErr := os.Stat(s.path)
	s.mu.Lock()
	err = s.reloadStat(fi, statErr)
	tokens, sums := s.tokens, s.sums
	s.mu.Unlock()
	if err != nil {
		return "", err
	}
	owner := ""
	for i, got := range sums {
		if got != nil && subtle.ConstantTimeCompare(got, want) == 1 {
			owner = tokens[i].Name
		}
	}
	if owner == "" {
		return "", ErrBadToken
	}
	return owner, nil
}

// Sum is the sha256 (hex) of a token, as the store keeps it.
func Sum(token string) string { return hash(token) }

// AuthenticateSum is LookupSum in the shape the web page takes.
func (s *Store) AuthenticateSum(_ context.Context, sum string) (string, error) {
	return s.LookupSum(sum)
}

// Authenticate returns the owner of token; it is Lookup in the shape the
// HTTP front ends (cloud API, web page) take.
func (s *Store) Authenticate(_ context.Context, token string) (string, error) {
	return s.Lookup(token)
}

// BearerToken is the token of an "Authorization: Bearer TOKEN" header; ""
// when there is none.
func BearerToken(r *http.Request) string {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

func hash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// reload reads the file when it changed since it was last read. Callers
// hold s.mu.
func (s *Store) reload() error {
	fi, err := os.Stat(s.path)
	return s.reloadStat(fi, err)
}

// reloadStat is reload with the file's stat done by the caller. Callers
// hold s.mu.
func (s *Store) reloadStat(fi fs.FileInfo, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		s.tokens, s.sums, s.mod, s.size = nil, nil, time.Time{}, 0
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading tokens: %w", err)
	}
	if fi.ModTime().Equal(s.mod) && fi.Size() == s.size && s.tokens != nil {
		return nil
	}
	data, err := os.ReadFile(s.path)
	if err != nil {
		return fmt.Errorf("reading tokens: %w", err)
	}
	var tokens []Token
	if err := json.Unmarshal(data, &tokens); err != nil {
		return fmt.Errorf("reading tokens %s: %w", s.path, err)
	}
	if tokens == nil {
		tokens = []Token{}
	}
	sums := make([][]byte, len(tokens))
	for i, t := range tokens {
		if b, err := hex.DecodeString(t.SHA256); err == nil && len(b) == sha256.Size {
			sums[i] = b
		}
	}
	s.tokens, s.sums, s.mod, s.size = tokens, sums, fi.ModTime(), fi.Size()
	return nil
}

// write replaces the file (mode 0600: the hashes are not secrets, but the
// names are nobody else's business). Callers hold s.mu.
func (s *Store) write(tokens []Token) error {
	data, err := json.MarshalIndent(tokens, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("writing tokens: %w", err)
	}
	if err := atomicfile.Write(s.path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("writing tokens: %w", err)
	}
	s.tokens = nil // re-read on next use, with the new mtime
	return s.reload()
}

type ownerKey struct{}

// WithOwner returns ctx carrying the authenticated owner.
func WithOwner(ctx context.Context, owner string) context.Context {
	return context.WithValue(ctx, ownerKey{}, owner)
}

// Owner is the owner WithOwner put in ctx; "" when none.
func Owner(ctx context.Context) string {
	o, _ := ctx.Value(ownerKey{}).(string)
	return o
}
