package repo

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
)

// Repository metadata comes from mirrors: whatever bytes arrive, the
// parsers must neither panic nor return what they did not check.

func FuzzParsePackages(f *testing.F) {
	files, err := filepath.Glob("../../testdata/repo/packages/*")
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(fixtureAmd64))
	f.Add([]byte(fixtureAll))
	f.Fuzz(func(t *testing.T, data []byte) {
		pkgs, err := ParsePackages(bytes.NewReader(data), "http://mirror.invalid/debian", 1)
		if err != nil {
			if _, ok := err.(*ParseError); !ok {
				t.Fatalf("error is not a *ParseError: %v", err)
			}
			return
		}
		for _, p := range pkgs {
			if p.Name == "" || p.Version == "" || p.Architecture == "" || !strings.HasPrefix(p.URL, "http://mirror.invalid/debian/") {
				t.Fatalf("incomplete package %+v", p)
			}
		}
	})
}

const fuzzRelease = `Origin: Debian
Suite: stable
Codename: bookworm
Date: Tue, 20 May 2025 08:00:00 UTC
Valid-Until: Tue, 27 May 2025 08:00:00 UTC
Architectures: amd64 arm64
Components: main contrib
Acquire-By-Hash: yes
SHA256:
 1111111111111111111111111111111111111111111111111111111111111111 1234 main/binary-amd64/Packages.xz
 2222222222222222222222222222222222222222222222222222222222222222 99 main/binary-all/Packages.gz
`

// FuzzParseRelease reads any text as the signed part of an InRelease.
func FuzzParseRelease(f *testing.F) {
	f.Add([]byte(fuzzRelease))
	f.Add([]byte(strings.ReplaceAll(fuzzRelease, "\n", "\r\n")))
	src := Source{URI: "http://mirror.invalid/debian", Suite: "bookworm", Components: []string{"main"}}
	f.Fuzz(func(t *testing.T, text []byte) {
		ri, date, _, err := parseRelease("InRelease", text, src, testNow)
		if err != nil {
			return
		}
		if ri.Suite != src.Suite && ri.Codename != src.Suite {
			t.Fatalf("accepted a release for suite %q (codename %q)", ri.Suite, ri.Codename)
		}
		if date.After(testNow.Add(MaxClockSkew)) {
			t.Fatalf("accepted a release dated %v", date)
		}
		for p, fi := range ri.Files {
			if len(fi.SHA256) != 64 || fi.Size < 0 || p == "" {
				t.Fatalf("bad index entry %q %+v", p, fi)
			}
		}
	})
}

// FuzzInRelease reads any bytes as a clearsigned InRelease: only the
// seed's signed text may come back, never text the signature does not
// cover.
func FuzzInRelease(f *testing.F) {
	key := testKey(f, "fuzz")
	keyring := openpgp.EntityList{key}
	signed := clearsignText(f, fuzzRelease, key)
	f.Add(signed)
	f.Add(append([]byte("unsigned\n"), signed...))
	f.Add(bytes.Replace(signed, []byte("Codename: bookworm"), []byte("Codename: trixie"), 1))
	now := testNow
	f.Fuzz(func(t *testing.T, data []byte) {
		text, keys, err := verifyInRelease("InRelease", data, keyring, now)
		if err != nil {
			return
		}
		if len(keys) == 0 {
			t.Fatal("verified without naming the signing key")
		}
		if string(text) != fuzzRelease && string(text) != strings.TrimSuffix(fuzzRelease, "\n") {
			t.Fatalf("verified text that was not signed:\n%q", text)
		}
		if _, _, _, err := parseRelease("InRelease", text, Source{Suite: "bookworm"}, now.Add(time.Hour)); err != nil {
			t.Fatalf("signed release does not parse: %v", err)
		}
	})
}
