package publish

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/rekor/pkg/generated/models"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// jwt makes an unsigned-looking token with the given claims: Fulcio would
// verify it; the signer only reads the subject.
func jwt(claims map[string]any) string {
	b, _ := json.Marshal(claims)
	return "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString(b) + ".c2ln"
}

func TestGitHubActionsToken(t *testing.T) {
	ctx := context.Background()
	var gotAuth, gotAud string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth, gotAud = r.Header.Get("Authorization"), r.URL.Query().Get("audience")
		if r.URL.Query().Get("deny") != "" {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		fmt.Fprintf(w, `{"value":%q}`, "tok.en.value")
	}))
	defer srv.Close()

	_, err := GitHubActionsToken{Getenv: envOf(nil)}.IDToken(ctx)
	if !errors.Is(err, ErrNoIDToken) || !strings.Contains(err.Error(), "id-token: write") {
		t.Errorf("no environment: %v", err)
	}
	// The whole keyless signer fails the same clear way without a token.
	_, err = Keyless(ctx, KeylessOptions{Token: GitHubActionsToken{Getenv: envOf(nil)}})
	if !errors.Is(err, ErrNoIDToken) || !strings.HasPrefix(err.Error(), "keyless signing: no OIDC identity token") {
		t.Errorf("keyless without a token: %v", err)
	}
	tok, err := GitHubActionsToken{Getenv: envOf(map[string]string{
		"ACTIONS_ID_TOKEN_REQUEST_URL":   srv.URL + "/token?api-version=2.0",
		"ACTIONS_ID_TOKEN_REQUEST_TOKEN": "runtime-secret",
	})}.IDToken(ctx)
	if err != nil || tok != "tok.en.value" || gotAuth != "Bearer runtime-secret" || gotAud != "sigstore" {
		t.Errorf("token %q, %v (auth %q, audience %q)", tok, err, gotAuth, gotAud)
	}
	_, err = GitHubActionsToken{Getenv: envOf(map[string]string{
		"ACTIONS_ID_TOKEN_REQUEST_URL":   srv.URL + "/token?deny=1",
		"ACTIONS_ID_TOKEN_REQUEST_TOKEN": "runtime-secret",
	})}.IDToken(ctx)
	if err == nil || !strings.Contains(err.Error(), "403 Forbidden") || strings.Contains(err.Error(), "runtime-secret") {
		t.Errorf("denied: %v", err)
	}
}

// testCA is a certificate authority that behaves like Fulcio's v1 API: it
// checks the proof of possession over the token's subject and issues a
// 10-minute certificate for the key.
type testCA struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ibuild test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	p, _ := cryptoutils.MarshalCertificateToPEM(cert)
	return &testCA{key: key, cert: cert, pem: p}
}

func (ca *testCA) SigningCert(_ context.Context, pubPEM, proof []byte, token string) ([]byte, []byte, error) {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pubPEM)
	if err != nil {
		return nil, nil, err
	}
	sub, err := tokenSubject(token)
	if err != nil {
		return nil, nil, err
	}
	h := sha256.Sum256([]byte(sub))
	if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), h[:], proof) {
		return nil, nil, errors.New("proof of possession does not verify")
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(10 * time.Minute),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		EmailAddresses: []string{sub},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, nil, err
	}
	c, _ := x509.ParseCertificate(der)
	p, _ := cryptoutils.MarshalCertificateToPEM(c)
	return p, ca.pem, nil
}

// recordingLog stands in for Rekor, which is not reachable here: it counts
// what would be logged.
type recordingLog struct {
	mu         sync.Mutex
	sigs, dsse int
	fail       error
}

func (r *recordingLog) LogSignature(_ context.Context, payload, sig, certPEM []byte) (*models.LogEntryAnon, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sigs++
	return nil, r.fail
}

func (r *recordingLog) LogDSSE(_ context.Context, envelope, certPEM []byte) (*models.LogEntryAnon, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dsse++
	return nil, r.fail
}

func TestKeylessSigner(t *testing.T) {
	ctx := context.Background()
	ca := newTestCA(t)
	log := &recordingLog{}
	token := staticToken(jwt(map[string]any{"sub": "repo:octo/images:ref:refs/heads/main", "iss": "https://token.actions.githubusercontent.com"}))
	s, err := Keyless(ctx, KeylessOptions{Token: token, CA: ca, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Keyless() || s.cert != nil {
		t.Fatal("the certificate is fetched before the first signature")
	}
	host := inProcessRegistry(t, false)
	dir := t.TempDir()
	writeFile(t, dir, "disk.qcow2", 50_000)
	res, err := Publish(ctx, fixture(t, false), dir, host+"/kl:v1", WithTypes("qcow2"), WithSigner(s), WithGetenv(envOf(nil)))
	if err != nil {
		t.Fatal(err)
	}
	// Two signatures (manifest, index), two statements signed once each.
	if log.sigs != 2 || log.dsse != 2 {
		t.Errorf("logged %d signatures and %d envelopes, want 2 and 2", log.sigs, log.dsse)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	r, _ := name.ParseReference(res.Images[0].Tags[0])
	sigs, _, err := cosign.VerifyImageSignatures(ctx, r, &cosign.CheckOpts{
		RootCerts: roots, IgnoreSCT: true, IgnoreTlog: true, ClaimVerifier: cosign.SimpleClaimVerifier,
		Identities: []cosign.Identity{{Subject: "repo:octo/images:ref:refs/heads/main", IssuerRegExp: ".*"}},
	})
	if err != nil || len(sigs) != 1 {
		t.Fatalf("verifying the keyless signature with the CA: %d, %v", len(sigs), err)
	}
	if c, _ := sigs[0].Cert(); c == nil || c.EmailAddresses[0] != "repo:octo/images:ref:refs/heads/main" {
		t.Errorf("signature certificate %v", c)
	}
	// A log failure stops the publish before any tag.
	log.fail = errors.New("rekor is down")
	writeFile(t, dir, "disk.qcow2", 50_000)
	_, err = Publish(ctx, fixture(t, false), dir, host+"/kl:v1", WithTypes("qcow2"), WithSigner(s), WithGetenv(envOf(nil)))
	if err == nil || !strings.Contains(err.Error(), "rekor is down") {
		t.Errorf("log failure: %v", err)
	}
	if digestOf(t, host+"/kl:v1") != res.Images[0].Digest {
		t.Error("tag moved after a log failure")
	}
}

func TestKeylessErrors(t *testing.T) {
	ctx := context.Background()
	ca := newTestCA(t)
	for _, tc := range []struct {
		name string
		o    KeylessOptions
		want string
	}{
		{"not a JWT", KeylessOptions{Token: staticToken("opaque"), CA: ca}, "the identity token: not a JWT"},
		{"no subject", KeylessOptions{Token: staticToken(jwt(map[string]any{"iss": "x"})), CA: ca}, "no subject found"},
		{"fulcio down", KeylessOptions{Token: staticToken(jwt(map[string]any{"sub": "x"})), CA: FulcioCA{URL: "http://127.0.0.1:1"}}, "getting a signing certificate from http://127.0.0.1:1"},
		{"wrong key certified", KeylessOptions{Token: staticToken(jwt(map[string]any{"sub": "x"})), CA: otherKeyCA{ca}}, "the certificate is not for our key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Keyless(ctx, tc.o)
			if err != nil {
				t.Fatal(err)
			}
			err = s.ready(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

type staticToken string

func (s staticToken) IDToken(context.Context) (string, error) { return string(s), nil }

// otherKeyCA certifies a different key than the one asked for.
type otherKeyCA struct{ ca *testCA }

func (o otherKeyCA) SigningCert(ctx context.Context, _, _ []byte, token string) ([]byte, []byte, error) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p, _ := cryptoutils.MarshalPublicKeyToPEM(k.Public())
	sub, _ := tokenSubject(token)
	h := sha256.Sum256([]byte(sub))
	proof, _ := ecdsa.SignASN1(rand.Reader, k, h[:])
	return o.ca.SigningCert(ctx, p, proof, token)
}
