package stages

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"path"
)

func init() { register[CACerts]("cacerts", 1) }

// CACerts adds certificate authorities to the tree's trust store: each
// certificate goes to /usr/local/share/ca-certificates (the directory
// Debian keeps for local CAs), then the tree's update-ca-certificates
// rebuilds /etc/ssl/certs and its bundle.
type CACerts struct {
	// Certs are PEM bundles of one or more certificates.
	Certs []string `json:"certs"`
}

// caCertDir is where Debian's ca-certificates takes local CAs from.
const caCertDir = "/usr/local/share/ca-certificates"

func (s *CACerts) validate() error {
	if len(s.Certs) == 0 {
		return errors.New("certs: no certificate given")
	}
	for i, c := range s.Certs {
		if _, err := splitPEMCerts(c); err != nil {
			return fmt.Errorf("certs[%d]: %w", i, err)
		}
	}
	return nil
}

// splitPEMCerts returns each certificate of a PEM bundle on its own:
// update-ca-certificates links one certificate a file.
func splitPEMCerts(s string) ([][]byte, error) {
	var out [][]byte
	rest := []byte(s)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is a %q, not a CERTIFICATE", len(out)+1, b.Type)
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", len(out)+1, err)
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b.Bytes}))
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return out, nil
}

// Run writes the certificates, named by their digest so that two stages
// never overwrite each other's, and updates the trust store.
func (s *CACerts) Run(ctx context.Context, env *Env) error {
	if !treeExists(env.Tree, "/usr/sbin/update-ca-certificates") {
		return errors.New("cacerts: the tree has no update-ca-certificates: install the ca-certificates package")
	}
	for i, c := range s.Certs {
		certs, err := splitPEMCerts(c)
		if err != nil {
			return fmt.Errorf("certs[%d]: %w", i, err)
		}
		for _, der := range certs {
			sum := sha256.Sum256(der)
			p := path.Join(caCertDir, "ibuild-"+hex.EncodeToString(sum[:8])+".crt")
			if err := treeWriteConfig(env.Tree, p, der, 0o644); err != nil {
				return fmt.Errorf("certs[%d]: %w", i, err)
			}
		}
	}
	if err := runInTree(ctx, env, "update-ca-certificates"); err != nil {
		return fmt.Errorf("cacerts: %w", err)
	}
	return nil
}
