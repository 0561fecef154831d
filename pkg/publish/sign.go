package publish

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/fulcio/pkg/api"
	rekorclient "github.com/sigstore/rekor/pkg/client"
	"github.com/sigstore/rekor/pkg/generated/client"
	"github.com/sigstore/rekor/pkg/generated/models"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/oauthflow"
	"github.com/sigstore/sigstore/pkg/signature"
)

// Public-good Sigstore endpoints, the keyless defaults.
const (
	DefaultFulcioURL = "https://fulcio.sigstore.dev"
	DefaultRekorURL  = "https://rekor.sigstore.dev"
)

// Signer signs payloads the way cosign does: with a key (LoadKey), or
// keyless with a short-lived Fulcio certificate whose signatures are logged
// in Rekor (Keyless).
type Signer struct {
	sv          signature.SignerVerifier
	cert, chain []byte          // PEM; nil for a key
	tlog        TransparencyLog // nil: not logged
	// certify gets the keyless certificate at the first signature, after
	// the uploads: a Fulcio certificate lives ten minutes.
	certify func(ctx context.Context) error
	once    sync.Once
	err     error
}

// Verifier is the signer's public half, for tests and dupe detection.
func (s *Signer) Verifier() signature.Verifier { return s.sv }

// Keyless reports whether the signer signs with a Fulcio certificate.
func (s *Signer) Keyless() bool { return s.certify != nil }

// ready obtains the keyless certificate once.
func (s *Signer) ready(ctx context.Context) error {
	if s.certify == nil {
		return nil
	}
	s.once.Do(func() { s.err = s.certify(ctx) })
	return s.err
}

// TransparencyLog records signatures (Rekor). Entries are embedded in the
// published signatures so they verify offline.
type TransparencyLog interface {
	// LogSignature records sig, a signature over payload, made by the key
	// of certPEM.
	LogSignature(ctx context.Context, payload, sig, certPEM []byte) (*models.LogEntryAnon, error)
	// LogDSSE records a signed DSSE envelope.
	LogDSSE(ctx context.Context, envelope, certPEM []byte) (*models.LogEntryAnon, error)
}

// PassFunc returns a key's password.
type PassFunc func() ([]byte, error)

// LoadKey reads a cosign private key (cosign generate-key-pair), decrypting
// it with the password pass returns.
func LoadKey(path string, pass PassFunc) (*Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading cosign key: %w", err)
	}
	var pw []byte
	if pass != nil {
		if pw, err = pass(); err != nil {
			return nil, fmt.Errorf("reading the password of cosign key %s: %w", path, err)
		}
	}
	sv, err := cosign.LoadPrivateKey(b, pw, nil)
	if err != nil {
		if strings.Contains(err.Error(), "decrypt") {
			return nil, fmt.Errorf("loading cosign key %s: wrong password (COSIGN_PASSWORD): %w", path, err)
		}
		return nil, fmt.Errorf("loading cosign key %s: %w", path, err)
	}
	return &Signer{sv: sv}, nil
}

// TokenSource provides an OIDC identity token for Fulcio.
type TokenSource interface {
	IDToken(ctx context.Context) (string, error)
}

// TokenChecker is a TokenSource that can tell without a request whether
// it will have a token, so a publish fails before its uploads.
type TokenChecker interface {
	Available() error
}

// ErrNoIDToken is returned when keyless signing has no identity token.
var ErrNoIDToken = errors.New("no OIDC identity token: run in GitHub Actions with `permissions: id-token: write` (ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN set), or sign with a key")

// GitHubActionsToken fetches the workflow's OIDC token from the Actions
// runtime (ACTIONS_ID_TOKEN_REQUEST_URL, bearer ACTIONS_ID_TOKEN_REQUEST_TOKEN).
type GitHubActionsToken struct {
	// Getenv reads the environment (default os.Getenv).
	Getenv func(string) string
	// Client makes the request (default http.DefaultClient).
	Client *http.Client
	// Audience is the token's audience (default "sigstore").
	Audience string
}

func (g GitHubActionsToken) env() (string, string) {
	getenv := g.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	return getenv("ACTIONS_ID_TOKEN_REQUEST_URL"), getenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
}

// Available implements TokenChecker: the Actions runtime variables are set.
func (g GitHubActionsToken) Available() error {
	if u, t := g.env(); u == "" || t == "" {
		return ErrNoIDToken
	}
	return nil
}

// IDToken implements TokenSource.
func (g GitHubActionsToken) IDToken(ctx context.Context) (string, error) {
	reqURL, reqTok := g.env()
	if reqURL == "" || reqTok == "" {
		return "", ErrNoIDToken
	}
	aud := g.Audience
	if aud == "" {
		aud = "sigstore"
	}
	u, err := url.Parse(reqURL)
	if err != nil {
		return "", fmt.Errorf("requesting the GitHub Actions ID token: ACTIONS_ID_TOKEN_REQUEST_URL: %w", err)
	}
	q := u.Query()
	q.Set("audience", aud)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", fmt.Errorf("requesting the GitHub Actions ID token: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+reqTok)
	req.Header.Set("Accept", "application/json")
	c := g.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", fmt.Errorf("requesting the GitHub Actions ID token: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("requesting the GitHub Actions ID token: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("requesting the GitHub Actions ID token: %s (does the job have `permissions: id-token: write`?)", resp.Status)
	}
	var v struct {
		Value string `json:"value"`
	}
	if err := json.Unmarshal(body, &v); err != nil || v.Value == "" {
		return "", fmt.Errorf("requesting the GitHub Actions ID token: no token in the response")
	}
	return v.Value, nil
}

// CertificateAuthority issues a signing certificate for a public key to the
// holder of an identity token (Fulcio).
type CertificateAuthority interface {
	// SigningCert returns the certificate and chain (PEM) for pubPEM;
	// proof is the key's signature over the token's subject.
	SigningCert(ctx context.Context, pubPEM, proof []byte, token string) (cert, chain []byte, err error)
}

// FulcioCA is the CertificateAuthority of a Fulcio instance.
type FulcioCA struct{ URL string }

// SigningCert implements CertificateAuthority with Fulcio's v1 API.
func (f FulcioCA) SigningCert(_ context.Context, pubPEM, proof []byte, token string) ([]byte, []byte, error) {
	u, err := url.Parse(f.URL)
	if err != nil {
		return nil, nil, fmt.Errorf("fulcio URL %q: %w", f.URL, err)
	}
	resp, err := api.NewClient(u).SigningCert(api.CertificateRequest{
		PublicKey:          api.Key{Content: pubPEM},
		SignedEmailAddress: proof,
	}, token)
	if err != nil {
		return nil, nil, fmt.Errorf("getting a signing certificate from %s: %w", f.URL, err)
	}
	return resp.CertPEM, resp.ChainPEM, nil
}

// Rekor is the TransparencyLog of a Rekor instance.
type Rekor struct {
	URL    string
	client *client.Rekor
}

func (r *Rekor) rekor() (*client.Rekor, error) {
	if r.client != nil {
		return r.client, nil
	}
	c, err := rekorclient.GetRekorClient(r.URL)
	if err != nil {
		return nil, fmt.Errorf("rekor %s: %w", r.URL, err)
	}
	r.client = c
	return c, nil
}

// LogSignature implements TransparencyLog (a hashedrekord entry).
func (r *Rekor) LogSignature(ctx context.Context, payload, sig, certPEM []byte) (*models.LogEntryAnon, error) {
	c, err := r.rekor()
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	h.Write(payload)
	e, err := cosign.TLogUpload(ctx, c, sig, h, certPEM)
	if err != nil {
		return nil, fmt.Errorf("recording a signature in rekor %s: %w", r.URL, err)
	}
	return e, nil
}

// LogDSSE implements TransparencyLog (a dsse entry).
func (r *Rekor) LogDSSE(ctx context.Context, envelope, certPEM []byte) (*models.LogEntryAnon, error) {
	c, err := r.rekor()
	if err != nil {
		return nil, err
	}
	e, err := cosign.TLogUploadDSSEEnvelope(ctx, c, envelope, certPEM)
	if err != nil {
		return nil, fmt.Errorf("recording an attestation in rekor %s: %w", r.URL, err)
	}
	return e, nil
}

// KeylessOptions configures Keyless. Zero values take GitHub Actions' token
// and the public-good Fulcio and Rekor.
type KeylessOptions struct {
	Token TokenSource
	CA    CertificateAuthority
	Log   TransparencyLog
}

// Keyless makes a signer with an ephemeral key that Fulcio certifies for
// the identity in the OIDC token; its signatures are logged in Rekor. The
// token and the certificate are fetched at the first signature (after the
// uploads, with the signing call's context); a token source that cannot
// have a token (no GitHub Actions environment) fails here, with
// ErrNoIDToken.
func Keyless(_ context.Context, o KeylessOptions) (*Signer, error) {
	if o.Token == nil {
		o.Token = GitHubActionsToken{}
	}
	if o.CA == nil {
		o.CA = FulcioCA{URL: DefaultFulcioURL}
	}
	if o.Log == nil {
		o.Log = &Rekor{URL: DefaultRekorURL}
	}
	if c, ok := o.Token.(TokenChecker); ok {
		if err := c.Available(); err != nil {
			return nil, fmt.Errorf("keyless signing: %w", err)
		}
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("keyless signing: generating a key: %w", err)
	}
	sv, err := signature.LoadECDSASignerVerifier(priv, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("keyless signing: %w", err)
	}
	s := &Signer{sv: sv, tlog: o.Log}
	s.certify = func(ctx context.Context) error {
		cert, chain, err := certify(ctx, o, sv, priv)
		if err != nil {
			return fmt.Errorf("keyless signing: %w", err)
		}
		s.cert, s.chain = cert, chain
		return nil
	}
	return s, nil
}

// certify gets a certificate for priv from the CA with an identity token.
func certify(ctx context.Context, o KeylessOptions, sv signature.Signer, priv *ecdsa.PrivateKey) (cert, chain []byte, err error) {
	tok, err := o.Token.IDToken(ctx)
	if err != nil {
		return nil, nil, err
	}
	sub, err := tokenSubject(tok)
	if err != nil {
		return nil, nil, fmt.Errorf("the identity token: %w", err)
	}
	pubPEM, err := cryptoutils.MarshalPublicKeyToPEM(priv.Public())
	if err != nil {
		return nil, nil, err
	}
	// Fulcio's proof of possession: the key's signature over the subject.
	proof, err := sv.SignMessage(strings.NewReader(sub))
	if err != nil {
		return nil, nil, err
	}
	cert, chain, err = o.CA.SigningCert(ctx, pubPEM, proof, tok)
	if err != nil {
		return nil, nil, err
	}
	certs, err := cryptoutils.UnmarshalCertificatesFromPEM(cert)
	if err != nil || len(certs) == 0 {
		return nil, nil, errors.New("the certificate authority returned no certificate")
	}
	if err := cryptoutils.EqualKeys(certs[0].PublicKey, priv.Public()); err != nil {
		return nil, nil, fmt.Errorf("the certificate is not for our key: %w", err)
	}
	if time.Now().After(certs[0].NotAfter) {
		return nil, nil, fmt.Errorf("the certificate expired at %s", certs[0].NotAfter)
	}
	return cert, chain, nil
}

// tokenSubject reads the subject (or verified email) of a JWT without
// verifying it: Fulcio verifies the token, we only need the challenge.
func tokenSubject(tok string) (string, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "", errors.New("not a JWT")
	}
	claims, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return "", fmt.Errorf("decoding claims: %w", err)
	}
	return oauthflow.SubjectFromUnverifiedToken(claims)
}

// signMessage signs payload and, for a logging signer, records it.
func (s *Signer) signMessage(ctx context.Context, payload []byte) (sig []byte, entry *models.LogEntryAnon, err error) {
	if err := s.ready(ctx); err != nil {
		return nil, nil, err
	}
	sig, err = s.sv.SignMessage(bytes.NewReader(payload))
	if err != nil {
		return nil, nil, fmt.Errorf("signing: %w", err)
	}
	if s.tlog != nil {
		if entry, err = s.tlog.LogSignature(ctx, payload, sig, s.cert); err != nil {
			return nil, nil, err
		}
	}
	return sig, entry, nil
}

// publicKeyOrCert is what a bundle names as the signer: the certificate,
// or the public key PEM.
func (s *Signer) publicKeyOrCert() ([]byte, error) {
	if s.cert != nil {
		return s.cert, nil
	}
	pub, err := s.sv.PublicKey()
	if err != nil {
		return nil, err
	}
	return cryptoutils.MarshalPublicKeyToPEM(pub)
}
