package weldr

import (
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/atomicfile"
	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
)

// Store keeps blueprints with every version pushed (composer's
// "changes"), one JSON file per blueprint in a directory, each write a
// temp file renamed over the old.
type Store struct {
	dir string
	mu  sync.Mutex
}

// Change is one pushed version of a blueprint.
type Change struct {
	Commit    string `json:"commit"`
	Timestamp string `json:"timestamp"`
	Message   string `json:"message"`
	// Blueprint is the blueprint as JSON, its version as stored.
	Blueprint json.RawMessage `json:"blueprint"`
}

type record struct {
	Changes []Change `json:"changes"`
}

var errUnknownBlueprint = errors.New("unknown blueprint")

// NewStore opens (creating) a blueprint store in dir.
func NewStore(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("opening blueprint store: %w", err)
	}
	return &Store{dir: dir}, nil
}

func (s *Store) path(name string) string { return filepath.Join(s.dir, name+".json") }

func (s *Store) read(name string) (*record, error) {
	if !validName(name) {
		return nil, errUnknownBlueprint
	}
	data, err := os.ReadFile(s.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errUnknownBlueprint
	}
	if err != nil {
		return nil, fmt.Errorf("reading blueprint %s: %w", name, err)
	}
	var r record
	if err := json.Unmarshal(data, &r); err != nil || len(r.Changes) == 0 {
		return nil, fmt.Errorf("reading blueprint %s: damaged record", name)
	}
	return &r, nil
}

// validName is composer's rule for blueprint names (letters, digits,
// "-", "_", "." and "+"), which also keeps them safe as file names.
func validName(name string) bool {
	if name == "" || name == "." || name == ".." || len(name) > 255 {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.+", r)) {
			return false
		}
	}
	return true
}

// Names lists the stored blueprints, sorted.
func (s *Store) Names() ([]string, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("listing blueprints: %w", err)
	}
	var out []string
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ".json"); ok && validName(n) && !strings.HasPrefix(n, ".") {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Get returns the newest version of a blueprint as JSON.
func (s *Store) Get(name string) (json.RawMessage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.read(name)
	if err != nil {
		return nil, err
	}
	return r.Changes[len(r.Changes)-1].Blueprint, nil
}

// Changes returns a blueprint's versions, newest first.
func (s *Store) Changes(name string) ([]Change, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.read(name)
	if err != nil {
		return nil, err
	}
	out := slicesReverse(r.Changes)
	return out, nil
}

func slicesReverse(c []Change) []Change {
	out := make([]Change, len(c))
	for i := range c {
		out[len(c)-1-i] = c[i]
	}
	return out
}

// Push stores a new version of bp. As composer does, a push whose version
// is empty or equal to the stored one bumps the stored version's patch
// number; a first push without a version gets 0.0.1.
func (s *Store) Push(bp *blueprint.Blueprint) error {
	if !validName(bp.Name) {
		return fmt.Errorf("invalid blueprint name %q: use letters, digits, '-', '_', '.' and '+'", bp.Name)
	}
	if bp.Version != "" {
		if _, err := parseSemver(bp.Version); err != nil {
			return fmt.Errorf("blueprint %s: version %q: %w", bp.Name, bp.Version, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.read(bp.Name)
	if errors.Is(err, errUnknownBlueprint) {
		r, err = &record{}, nil
		if bp.Version == "" {
			bp.Version = "0.0.1"
		}
	}
	if err != nil {
		return err
	}
	if n := len(r.Changes); n > 0 {
		var old blueprint.Blueprint
		if err := json.Unmarshal(r.Changes[n-1].Blueprint, &old); err != nil {
			return fmt.Errorf("reading blueprint %s: %w", bp.Name, err)
		}
		if bp.Version == "" || bp.Version == old.Version {
			v, err := parseSemver(old.Version)
			if err != nil {
				v = [3]int{0, 0, 0}
			}
			bp.Version = fmt.Sprintf("%d.%d.%d", v[0], v[1], v[2]+1)
		}
	}
	data, err := json.Marshal(bp)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	h := sha1.Sum(fmt.Appendf(nil, "%s\x00%d\x00%s", bp.Name, now.UnixNano(), data))
	r.Changes = append(r.Changes, Change{
		Commit: hex.EncodeToString(h[:]), Timestamp: now.Format(time.RFC3339),
		Message: fmt.Sprintf("Recipe %s, version %s saved.", bp.Name, bp.Version), Blueprint: data,
	})
	out, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return atomicfile.Write(s.path(bp.Name), out, 0o640)
}

// Delete removes a blueprint and its changes.
func (s *Store) Delete(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.read(name); err != nil {
		return err
	}
	if err := os.Remove(s.path(name)); err != nil {
		return fmt.Errorf("deleting blueprint %s: %w", name, err)
	}
	return nil
}

func parseSemver(v string) ([3]int, error) {
	var out [3]int
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return out, errors.New("not a semantic version (MAJOR.MINOR.PATCH)")
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || (len(p) > 1 && p[0] == '0') {
			return out, errors.New("not a semantic version (MAJOR.MINOR.PATCH)")
		}
		out[i] = n
	}
	return out, nil
}
