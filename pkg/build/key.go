package build

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/image-builder-action/image-builder-action/pkg/manifest"
)

// StoreVersion is part of every object key: bump it when the store's
// layout or what a key is made of changes. A change in what one stage
// writes raises that stage's own version (stages.Register), which is part
// of its key, so only the trees of that stage and those after it are
// built again.
const StoreVersion = "ibuild-objects-4"

// keyInput is what an object's key is the digest of.
type keyInput struct {
	Version         string            `json:"version"`
	Arch            string            `json:"arch"`
	SourceDateEpoch int64             `json:"source_date_epoch"`
	Type            string            `json:"type"`
	StageVersion    int               `json:"stage_version"`
	Options         json.RawMessage   `json:"options"`
	Previous        string            `json:"previous"`
	BuildRoot       string            `json:"build_root"`
	Inputs          map[string]string `json:"inputs"`
	Packages        []string          `json:"packages"`
}

// stageKey computes the key of a stage's output tree.
func stageKey(in keyInput) (string, error) {
	in.Version = StoreVersion
	data, err := json.Marshal(&in)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}

// refs are what a stage's options point at.
type refs struct {
	pipelines []string // names in {"pipeline": name} objects, sorted, unique
	packages  []string // refs in "packages" lists, in order
}

// canonicalOptions re-encodes options the way the lockfile does
// (manifest.CanonicalJSON) and finds the pipelines and packages they
// reference.
func canonicalOptions(raw json.RawMessage) (json.RawMessage, refs, error) {
	var r refs
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = json.RawMessage("{}")
	}
	canon, err := manifest.CanonicalJSON(raw)
	if err != nil {
		return nil, r, fmt.Errorf("decoding options: %w", err)
	}
	var v any
	if err := json.Unmarshal(canon, &v); err != nil {
		return nil, r, fmt.Errorf("decoding options: %w", err)
	}
	seen := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if k == "pipeline" {
					if s, ok := e.(string); ok && !seen[s] {
						seen[s] = true
						r.pipelines = append(r.pipelines, s)
					}
				}
				if k == "packages" {
					if list, ok := e.([]any); ok {
						for _, p := range list {
							if s, ok := p.(string); ok {
								r.packages = append(r.packages, s)
							}
						}
					}
				}
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	sort.Strings(r.pipelines)
	return canon, r, nil
}

// packageDigests maps refs to their sha256s, failing on unknown refs.
func packageDigests(index map[string]*manifest.Package, list []string) ([]string, error) {
	out := make([]string, 0, len(list))
	for _, ref := range list {
		p, ok := index[ref]
		if !ok {
			return nil, fmt.Errorf("package %s is not in the lockfile's packages", ref)
		}
		out = append(out, p.SHA256)
	}
	return out, nil
}
