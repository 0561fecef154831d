// Package upload puts built images into clouds: S3 objects (aws.s3), AMIs
// (aws), GCE images (gcp) and Azure managed images (azure). Each target is
// one small type driven by its cloud's official SDK and that SDK's default
// credential chain; endpoints are injectable so tests run against servers
// on 127.0.0.1.
//
// Names and tags come from the lockfile's digest and the image's sha256, so
// uploading the same image twice finds what the first upload made instead
// of making a second one.
package upload

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/ctxio"
)

// Image is one built image file to upload.
type Image struct {
	// Path is the image file.
	Path string
	// Distro, Arch and Type are the lockfile entry's.
	Distro, Arch, Type string
	// SHA256 is the file's digest (hex), checked before any byte is sent.
	SHA256 string
	// Size is the file's size in bytes.
	Size int64
	// LockDigest is the sha256 (hex) of the lockfile the image was built
	// from.
	LockDigest string
}

// Name is the name every target gives the image's cloud objects:
// ibuild-DISTRO-ARCH-TYPE-LOCK12-SHA12, lower case, at most 63 characters
// (GCE's limit, the strictest of the clouds).
func (img *Image) Name() string {
	n := fmt.Sprintf("ibuild-%s-%s-%s-%s-%s", img.Distro, img.Arch, img.Type, short(img.LockDigest), short(img.SHA256))
	n = strings.ToLower(n)
	n = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, n)
	if len(n) > 63 {
		n = "ibuild-" + short(img.LockDigest) + "-" + short(img.SHA256)
	}
	return n
}

func short(hexDigest string) string {
	if len(hexDigest) > 12 {
		return hexDigest[:12]
	}
	return hexDigest
}

// Tag keys set on every cloud object (labels on GCE, where keys and values
// are restricted to lower-case letters, digits, '-' and '_').
const (
	TagLockfile = "ibuild-lockfile-sha256"
	TagImage    = "ibuild-image-sha256"
)

// Result is what one upload made (or found).
type Result struct {
	Target string `json:"target"`
	Arch   string `json:"arch"`
	Type   string `json:"type"`
	// ID is the AMI id, the GCE image name or the Azure image's resource id.
	ID string `json:"id,omitempty"`
	// URL is the S3 object's presigned or public URL.
	URL     string `json:"url,omitempty"`
	Region  string `json:"region,omitempty"`
	Project string `json:"project,omitempty"`
	// Reused is true when the image was there already.
	Reused bool `json:"reused"`
	// BytesSent counts the image bytes sent (Azure skips zero pages).
	BytesSent int64 `json:"bytes_sent"`
	// Duration is how long the upload took.
	Duration time.Duration `json:"-"`
}

// Target uploads one image.
type Target interface {
	// Name is composer's name for the target: aws, aws.s3, gcp, azure.
	Name() string
	// Accepts reports whether the target takes images of this type (an AMI
	// is made from a raw disk, a GCE image from the gce tarball, an Azure
	// image from a fixed VHD).
	Accepts(imageType string) bool
	Upload(ctx context.Context, img *Image) (*Result, error)
}

// Error is a failed upload: the target, the step and, when the cloud gave
// one, its error code.
type Error struct {
	Target string
	Step   string
	Code   string
	Err    error
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s: %s: %v", e.Target, e.Step, e.Err)
	if e.Code != "" && !strings.Contains(e.Err.Error(), e.Code) {
		msg = fmt.Sprintf("%s: %s: %s: %v", e.Target, e.Step, e.Code, e.Err)
	}
	if authCodes[e.Code] {
		msg += " (the cloud refused the credentials: check what the SDK's default chain found)"
	}
	return msg
}

// authCodes are the clouds' codes for credentials they refuse.
var authCodes = map[string]bool{
	"SignatureDoesNotMatch": true, "InvalidAccessKeyId": true, "AccessDenied": true, "AuthFailure": true,
	"UnauthorizedOperation": true, "ExpiredToken": true, "InvalidClientTokenId": true,
	"AuthenticationFailed": true, "AuthorizationFailed": true, "InvalidAuthenticationInfo": true,
	"401": true, "403": true,
}

func (e *Error) Unwrap() error { return e.Err }

// ErrNameTaken is returned when the name asked for (image_name) is taken
// by a cloud object made from another image; it is not overwritten.
var ErrNameTaken = errors.New("the image name is taken")

// ErrTampered is returned when an image's sha256 is not the one its build
// recorded.
var ErrTampered = errors.New("image does not match its build record")

// Verify hashes img.Path and checks it against img.SHA256 (when set) and
// the build's record FILE.sha256 beside it (when there is one), then sets
// img.SHA256 and img.Size. It reads the whole file: call it before any
// byte is sent.
func Verify(ctx context.Context, img *Image) error {
	f, err := os.Open(img.Path)
	if err != nil {
		return fmt.Errorf("reading image: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, ctxio.Reader(ctx, f))
	if err != nil {
		return fmt.Errorf("hashing %s: %w", img.Path, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	want := img.SHA256
	if rec, err := readRecord(img.Path); err != nil {
		return err
	} else if rec != "" {
		if want != "" && want != rec {
			return fmt.Errorf("%s: %w: record %s says sha256:%s, asked for sha256:%s", img.Path, ErrTampered, img.Path+".sha256", rec, want)
		}
		want = rec
	}
	if want != "" && want != sum {
		return fmt.Errorf("%s: %w: built as sha256:%s, now sha256:%s; refusing to upload", img.Path, ErrTampered, want, sum)
	}
	img.SHA256, img.Size = sum, n
	return nil
}

// readRecord reads the build's record of an image's digest, FILE.sha256 in
// sha256sum's format; "" when there is none.
func readRecord(path string) (string, error) {
	b, err := os.ReadFile(path + ".sha256")
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading build record: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) == 0 || len(f[0]) != 64 {
		return "", fmt.Errorf("%s.sha256: not a sha256sum line", path)
	}
	if len(f) > 1 && strings.TrimPrefix(f[1], "*") != filepath.Base(path) {
		return "", fmt.Errorf("%s.sha256: names %s, not %s", path, f[1], filepath.Base(path))
	}
	return strings.ToLower(f[0]), nil
}
