package lock

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
)

var idSeedRE = regexp.MustCompile(`^[0-9a-f]{32,128}$`)

func isIDSeed(s string) bool { return idSeedRE.MatchString(s) }

// seed is the id seed of the lockfile being written: a new random one
// when asked, else the one given, else the previous lockfile's, else one
// derived from the blueprint's name, so a first lock is as reproducible
// as the ones after it.
func (o *options) seed(bp *blueprint.Blueprint) (string, error) {
	switch {
	case o.newIDs:
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return "", fmt.Errorf("drawing a new id seed: %w", err)
		}
		return hex.EncodeToString(b), nil
	case o.idSeed != "":
		return o.idSeed, nil
	}
	if o.previous != "" {
		s, err := previousSeed(o.previous)
		if err != nil {
			return "", err
		}
		if s != "" {
			return s, nil
		}
	}
	sum := sha256.Sum256([]byte("ibuild id seed\x00" + bp.Name))
	return hex.EncodeToString(sum[:16]), nil
}

// seedInText finds id_seed values in a lockfile that does not parse (a
// merge left conflict markers in it, which locking again is meant to
// fix).
var seedInText = regexp.MustCompile(`"id_seed":\s*"([0-9a-f]{32,128})"`)

// previousSeed reads the id_seed of the lockfile at path: "" when there
// is no such file or it has none. It reads only that field, so a stale or
// conflicted lockfile still gives its seed; only when the text holds two
// different seeds is there nothing to keep, and that is an error.
func previousSeed(path string) (string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading the previous lockfile's id seed: %w", err)
	}
	var v struct {
		IDSeed string `json:"id_seed"`
	}
	if json.Unmarshal(data, &v) == nil {
		if v.IDSeed != "" && !isIDSeed(v.IDSeed) {
			return "", fmt.Errorf("lockfile %s: id_seed %q: want at least 32 lower-case hex digits", path, v.IDSeed)
		}
		return v.IDSeed, nil
	}
	seed := ""
	for _, m := range seedInText.FindAllSubmatch(data, -1) {
		if seed != "" && seed != string(m[1]) {
			return "", fmt.Errorf("lockfile %s holds two id seeds (%s and %s), as a merge may leave it: lock with --new-ids, or keep one of them in the file, and lock again", path, seed, m[1])
		}
		seed = string(m[1])
	}
	return seed, nil
}
