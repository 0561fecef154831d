package auth

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
)

func TestStore(t *testing.T) {
	dir := t.TempDir()
	s := Open(dir)
	alice, err := s.Create("alice")
	if err != nil {
		t.Fatal(err)
	}
	bob, err := s.Create("bob")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(alice, TokenPrefix) || alice == bob {
		t.Fatalf("tokens %q, %q", alice, bob)
	}
	for tok, want := range map[string]string{alice: "alice", bob: "bob"} {
		if got, err := s.Lookup(tok); err != nil || got != want {
			t.Errorf("Lookup = %q, %v; want %q", got, err, want)
		}
	}
	if _, err := s.Lookup(alice + "x"); !errors.Is(err, ErrBadToken) {
		t.Errorf("a wrong token: %v", err)
	}
	if _, err := s.Lookup(""); !errors.Is(err, ErrNoToken) {
		t.Errorf("no token: %v", err)
	}

	// At rest: hashes only, mode 0600.
	data, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), alice) || strings.Contains(string(data), alice[len(TokenPrefix):]) {
		t.Fatal("the token file holds a secret")
	}
	var stored []Token
	if err := json.Unmarshal(data, &stored); err != nil || len(stored) != 2 {
		t.Fatalf("stored %s: %v", data, err)
	}
	if fi, _ := os.Stat(s.Path()); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}

	// Another process (the CLI) rotates alice's token: the running store
	// sees it.
	other := Open(dir)
	alice2, err := other.Create("alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lookup(alice); !errors.Is(err, ErrBadToken) {
		t.Errorf("the rotated token still works: %v", err)
	}
	if got, err := s.Lookup(alice2); err != nil || got != "alice" {
		t.Errorf("new token: %q, %v", got, err)
	}
	// A session knows its token by the sum only.
	if _, err := s.LookupSum(Sum(alice)); !errors.Is(err, ErrBadToken) {
		t.Errorf("the rotated token's sum still works: %v", err)
	}
	if got, err := s.LookupSum(Sum(alice2)); err != nil || got != "alice" {
		t.Errorf("new token's sum: %q, %v", got, err)
	}
	if got, err := s.LookupSum(Sum(bob)); err != nil || got != "bob" {
		t.Errorf("bob's sum: %q, %v", got, err)
	}
	for _, bad := range []string{"", "zz", Sum(alice)[:10]} {
		if _, err := s.LookupSum(bad); !errors.Is(err, ErrBadToken) {
			t.Errorf("LookupSum(%q): %v", bad, err)
		}
	}
	if err := other.Revoke("bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LookupSum(Sum(bob)); !errors.Is(err, ErrBadToken) {
		t.Errorf("a revoked token's sum works: %v", err)
	}
	if _, err := s.Lookup(bob); !errors.Is(err, ErrBadToken) {
		t.Errorf("a revoked token works: %v", err)
	}
	if err := other.Revoke("bob"); err == nil {
		t.Error("revoking twice")
	}
	for _, bad := range []string{"", "-x", "a b", "../x", strings.Repeat("a", 65)} {
		if _, err := s.Create(bad); err == nil {
			t.Errorf("name %q accepted", bad)
		}
	}
}

func TestBearerToken(t *testing.T) {
	for h, want := range map[string]string{
		"Bearer abc":  "abc",
		"bearer  abc": "abc",
		"Basic abc":   "",
		"Bearerabc":   "",
		"":            "",
	} {
		r, _ := http.NewRequest("GET", "/", nil)
		if h != "" {
			r.Header.Set("Authorization", h)
		}
		if got := BearerToken(r); got != want {
			t.Errorf("%q: %q, want %q", h, got, want)
		}
	}
}
