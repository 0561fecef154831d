package ibuild

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"path/filepath"
	"strings"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
	"github.com/image-builder-action/image-builder-action/pkg/manifest"
)

// DefaultLockPath is where a blueprint's lockfile goes: beside it, the
// extension replaced by ".lock.json".
func DefaultLockPath(bp string) string {
	return strings.TrimSuffix(bp, filepath.Ext(bp)) + ".lock.json"
}

// Lockfile is a lockfile as read from disk: parsed, and the sha256 of its
// bytes (what provenance and annotations name, which is the digest of the
// file a user commits, not of a re-serialisation).
type Lockfile struct {
	Path   string
	File   *manifest.Lockfile
	SHA256 string
}

// ReadLockfile reads and parses the lockfile at path. A missing file is an
// error that errors.Is(err, fs.ErrNotExist) recognises.
func ReadLockfile(path string) (*Lockfile, error) {
	if path == "" {
		return nil, errors.New("reading lockfile: no path given")
	}
	data, err := manifest.ReadFile(path)
	if err != nil {
		return nil, err
	}
	lf, err := manifest.Parse(path, data)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	return &Lockfile{Path: path, File: lf, SHA256: hex.EncodeToString(sum[:])}, nil
}

// BlueprintPath is where the lockfile says its blueprint is (recorded
// relative to the lockfile); "" when it names none.
func (l *Lockfile) BlueprintPath() string {
	if l.File.Blueprint.Path == "" {
		return ""
	}
	return filepath.Join(filepath.Dir(l.Path), filepath.FromSlash(l.File.Blueprint.Path))
}

// ImageInfo is what the blueprint beside a lockfile says about the image
// it makes: its name ("/" replaced, so it can name a file) and version.
// Both are empty when the blueprint is not there or cannot be read: a
// lockfile is published without its blueprint too.
func (l *Lockfile) ImageInfo() (name, version string) {
	p := l.BlueprintPath()
	if p == "" {
		return "", ""
	}
	bp, err := blueprint.Load(p)
	if err != nil {
		return "", ""
	}
	return strings.ReplaceAll(bp.Name, "/", "-"), bp.Version
}
