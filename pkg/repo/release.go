package repo

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// DefaultKeyring is the keyring that verifies a Source without SignedBy.
const DefaultKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

// MaxClockSkew is how far in the future a Release's Date may be before it is
// refused, to allow for clocks that are slightly off.
const MaxClockSkew = 10 * time.Minute

// ReleaseIndex is what a verified InRelease says about its suite: the
// files below dists/<suite>/ with their digests, and the fields that decide
// how to fetch them. It is built from the signed text only.
type ReleaseIndex struct {
	// Source is the source the release was fetched for.
	Source Source
	// Suite and Codename are the Release file's own names.
	Suite, Codename string
	// Architectures and Components the suite has.
	Architectures, Components []string
	// AcquireByHash says files can be fetched by their digest
	// (…/by-hash/SHA256/<hex>), which stays consistent while a mirror syncs.
	AcquireByHash bool
	// NoArchAllPackages is "No-Support-for-Architecture-all: Packages": the
	// per-architecture indices also list the Architecture: all packages, so
	// binary-all is not fetched.
	NoArchAllPackages bool
	// Files maps a path below dists/<suite>/ to its SHA256 entry.
	Files map[string]IndexFile
}

// IndexFile is one entry of a Release file's SHA256 list.
type IndexFile struct {
	SHA256 string
	Size   int64
}

// releaseError is a problem with an InRelease file's content.
func releaseError(url, format string, args ...any) error {
	return fmt.Errorf("InRelease %s: %s", url, fmt.Sprintf(format, args...))
}

// verifyInRelease checks the clearsigned InRelease data against keyring at
// time now and returns the signed text, which is all that may be trusted,
// and the fingerprints of the keys whose signatures verified (sorted).
func verifyInRelease(url string, data []byte, keyring openpgp.EntityList, now time.Time) ([]byte, []string, error) {
	const begin = "-----BEGIN PGP SIGNED MESSAGE-----"
	// Decode skips text before the armor; such text would be unsigned, so
	// refuse it, as apt does.
	i := bytes.Index(data, []byte(begin))
	if i < 0 {
		return nil, nil, releaseError(url, "not a clearsigned message")
	}
	if len(bytes.TrimSpace(data[:i])) != 0 {
		return nil, nil, releaseError(url, "unsigned text before the signed message")
	}
	b, rest := clearsign.Decode(data)
	if b == nil {
		return nil, nil, releaseError(url, "malformed clearsigned message")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, nil, releaseError(url, "unsigned text after the signature")
	}
	sigData, err := io.ReadAll(b.ArmoredSignature.Body)
	if err != nil {
		return nil, nil, releaseError(url, "reading signature: %v", err)
	}
	sigs, err := splitPackets(sigData)
	if err != nil {
		return nil, nil, releaseError(url, "reading signature: %v", err)
	}
	// The archive signs with several keys; like apt, accept the message if
	// any one signature verifies, so an expired key in the keyring whose
	// signature comes first does not hide a good one.
	// Every signature is checked, so the lockfile can record which keys
	// sign the suite and a diff can show a change of key.
	config := &packet.Config{Time: func() time.Time { return now }}
	var firstErr error
	var signers []string
	for _, sig := range sigs {
		_, signer, err := openpgp.VerifyDetachedSignature(keyring, bytes.NewReader(b.Bytes), bytes.NewReader(sig), config)
		if err == nil {
			fp := strings.ToUpper(hex.EncodeToString(signer.PrimaryKey.Fingerprint))
			if !slices.Contains(signers, fp) {
				signers = append(signers, fp)
			}
			continue
		}
		if firstErr == nil || errors.Is(firstErr, pgperrors.ErrUnknownIssuer) {
			firstErr = err
		}
	}
	if len(signers) > 0 {
		slices.Sort(signers)
		return b.Plaintext, signers, nil
	}
	if firstErr == nil {
		firstErr = errors.New("no signature")
	}
	return nil, nil, releaseError(url, "signature not verified: %v", firstErr)
}

// splitPackets cuts a binary OpenPGP stream into its packets, so that each
// signature can be checked on its own.
func splitPackets(data []byte) ([][]byte, error) {
	var out [][]byte
	for len(data) > 0 {
		tag := data[0]
		if tag&0x80 == 0 {
			return nil, errors.New("bad packet tag")
		}
		var hdr, n int
		if tag&0x40 != 0 { // new format
			if len(data) < 2 {
				return nil, errors.New("truncated packet header")
			}
			switch l := int(data[1]); {
			case l < 192:
				hdr, n = 2, l
			case l < 224:
				if len(data) < 3 {
					return nil, errors.New("truncated packet header")
				}
				hdr, n = 3, (l-192)<<8+int(data[2])+192
			case l == 255:
				if len(data) < 6 {
					return nil, errors.New("truncated packet header")
				}
				hdr, n = 6, int(data[2])<<24|int(data[3])<<16|int(data[4])<<8|int(data[5])
			default:
				return nil, errors.New("partial-length packet in a signature")
			}
		} else { // old format
			switch tag & 3 {
			case 0:
				if len(data) < 2 {
					return nil, errors.New("truncated packet header")
				}
				hdr, n = 2, int(data[1])
			case 1:
				if len(data) < 3 {
					return nil, errors.New("truncated packet header")
				}
				hdr, n = 3, int(data[1])<<8|int(data[2])
			case 2:
				if len(data) < 5 {
					return nil, errors.New("truncated packet header")
				}
				hdr, n = 5, int(data[1])<<24|int(data[2])<<16|int(data[3])<<8|int(data[4])
			default:
				hdr, n = 1, len(data)-1
			}
		}
		if n < 0 || hdr+n > len(data) {
			return nil, errors.New("truncated packet")
		}
		out = append(out, data[:hdr+n])
		data = data[hdr+n:]
	}
	return out, nil
}

// parseRelease reads the signed text of an InRelease file and checks that
// it is for src's suite and current at now.
func parseRelease(url string, text []byte, src Source, now time.Time) (*ReleaseIndex, time.Time, time.Time, error) {
	var zero time.Time
	paras, err := parseDeb822(bytes.NewReader(text))
	if err != nil {
		return nil, zero, zero, releaseError(url, "%v", err)
	}
	if len(paras) != 1 {
		return nil, zero, zero, releaseError(url, "want one paragraph, got %d", len(paras))
	}
	p := paras[0]
	str := func(name string) string { f, _ := p.get(name); return f.value }

	ri := &ReleaseIndex{
		Source:            src,
		Suite:             str("Suite"),
		Codename:          str("Codename"),
		Architectures:     strings.Fields(str("Architectures")),
		Components:        strings.Fields(str("Components")),
		AcquireByHash:     strings.EqualFold(str("Acquire-By-Hash"), "yes"),
		NoArchAllPackages: strings.EqualFold(str("No-Support-for-Architecture-all"), "Packages"),
		Files:             map[string]IndexFile{},
	}
	// A release signed by the same key for another suite must not be
	// accepted in its place.
	if ri.Suite != src.Suite && ri.Codename != src.Suite {
		return nil, zero, zero, releaseError(url, "is for suite %q (codename %q), not %q", ri.Suite, ri.Codename, src.Suite)
	}

	df, ok := p.get("Date")
	if !ok {
		return nil, zero, zero, releaseError(url, "no Date field")
	}
	date, err := parseReleaseTime(df.value)
	if err != nil {
		return nil, zero, zero, releaseError(url, "line %d: Date: %v", df.line, err)
	}
	if date.After(now.Add(MaxClockSkew)) {
		return nil, zero, zero, releaseError(url, "Date %s is in the future (now %s)", df.value, now.UTC().Format(time.RFC1123))
	}
	var validUntil time.Time
	if vf, ok := p.get("Valid-Until"); ok {
		if validUntil, err = parseReleaseTime(vf.value); err != nil {
			return nil, zero, zero, releaseError(url, "line %d: Valid-Until: %v", vf.line, err)
		}
		if now.After(validUntil) {
			return nil, zero, zero, releaseError(url, "expired: Valid-Until %s is before now (%s)", vf.value, now.UTC().Format(time.RFC1123))
		}
	}

	sf, ok := p.get("SHA256")
	if !ok {
		return nil, zero, zero, releaseError(url, "no SHA256 field")
	}
	for i, l := range strings.Split(sf.value, "\n") {
		if l == "" {
			continue
		}
		w := strings.Fields(l)
		line := sf.line + i
		if len(w) != 3 || !isHex(w[0], 64) {
			return nil, zero, zero, releaseError(url, "line %d: SHA256 entry %q: want \"<sha256> <size> <path>\"", line, l)
		}
		size, err := strconv.ParseInt(w[1], 10, 64)
		if err != nil || size < 0 {
			return nil, zero, zero, releaseError(url, "line %d: SHA256 entry %q: bad size", line, l)
		}
		ri.Files[w[2]] = IndexFile{SHA256: strings.ToLower(w[0]), Size: size}
	}
	return ri, date, validUntil, nil
}

// releaseTimeLayouts are the date forms Release files use (RFC 2822 with a
// zone name or a numeric offset, day with or without a leading zero).
var releaseTimeLayouts = []string{
	"Mon, 02 Jan 2006 15:04:05 MST",
	"Mon, 2 Jan 2006 15:04:05 MST",
	"Mon, 02 Jan 2006 15:04:05 -0700",
	"Mon, 2 Jan 2006 15:04:05 -0700",
}

func parseReleaseTime(s string) (time.Time, error) {
	for _, l := range releaseTimeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not an RFC 2822 date", s)
}

// readKeyring loads one keyring file, binary or ASCII-armored.
func readKeyring(path string) (openpgp.EntityList, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading keyring: %w", err)
	}
	return parseKeyring(path, data)
}

func parseKeyring(name string, data []byte) (openpgp.EntityList, error) {
	var (
		el  openpgp.EntityList
		err error
	)
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN")) {
		el, err = openpgp.ReadArmoredKeyRing(bytes.NewReader(data))
	} else {
		el, err = openpgp.ReadKeyRing(bytes.NewReader(data))
	}
	if err != nil {
		return nil, fmt.Errorf("reading keyring %s: %w", name, err)
	}
	if len(el) == 0 {
		return nil, fmt.Errorf("reading keyring %s: no keys", name)
	}
	return el, nil
}
