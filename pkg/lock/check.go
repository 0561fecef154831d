package lock

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
	"github.com/image-builder-action/image-builder-action/pkg/distro"
	"github.com/image-builder-action/image-builder-action/pkg/manifest"
)

// StaleError says a lockfile no longer matches its inputs.
type StaleError struct {
	Lockfile string
	// Reasons name the inputs that changed.
	Reasons []string
	// Diff is what locking again would change; nil when locking again
	// failed (RelockErr says why).
	Diff      *manifest.Diff
	RelockErr error
}

func (e *StaleError) Error() string {
	msg := fmt.Sprintf("%s is stale: %s; run `ibuild lock` and commit the result", e.Lockfile, strings.Join(e.Reasons, "; "))
	if e.RelockErr != nil {
		msg += fmt.Sprintf(" (locking again to show the changes failed: %v)", e.RelockErr)
	}
	return msg
}

// Check reports whether lf still matches bp and the image definitions: a
// *StaleError when not, with the diff locking again would make (the same
// distro, arches and types as the lockfile has).
func Check(ctx context.Context, lf *manifest.Lockfile, lockPath string, bp *blueprint.Blueprint, bpPath string, opts ...Option) error {
	o := options{}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return err
		}
	}
	defs := o.defs
	if defs == nil {
		var err error
		if defs, err = distro.Load(); err != nil {
			return err
		}
	}
	digest, err := BlueprintDigest(bp)
	if err != nil {
		return err
	}
	var reasons []string
	if digest != lf.Blueprint.SHA256 {
		reasons = append(reasons, fmt.Sprintf("the blueprint %s changed (sha256 %s, locked %s)", bpPath, short(digest), short(lf.Blueprint.SHA256)))
	}
	if defs.Digest != lf.ImageDefs.SHA256 {
		reasons = append(reasons, fmt.Sprintf("the image definitions changed (sha256 %s, locked %s)", short(defs.Digest), short(lf.ImageDefs.SHA256)))
	}
	if len(reasons) == 0 {
		return nil
	}
	var arches, types []string
	dist := ""
	for _, e := range lf.Entries {
		arches = append(arches, e.Arch)
		types = append(types, e.Type)
		dist = e.Distro
	}
	relock := append([]Option{WithDefs(defs)}, opts...)
	if lf.IDSeed != "" {
		// What locking again would change keeps the identifiers.
		relock = append(relock, WithIDSeed(lf.IDSeed))
	}
	if len(arches) > 0 {
		relock = append(relock, WithArches(uniqSorted(arches)...), WithTypes(uniqSorted(types)...), WithDistro(dist))
	}
	se := &StaleError{Lockfile: lockPath, Reasons: reasons}
	fresh, err := Lock(ctx, bp, bpPath, relock...)
	if err != nil {
		se.RelockErr = err
	} else {
		se.Diff = manifest.Compare(lf, fresh)
	}
	return se
}

func short(d string) string {
	if len(d) > 12 {
		return d[:12]
	}
	return d
}

// Verify checks a lockfile before it is built, without the network: its
// content digest (a hand edit is refused), then, when its blueprint is
// where the lockfile says, that the blueprint and the image definitions
// still match it (a stale lockfile is refused).
func Verify(lf *manifest.Lockfile, lockPath string) error {
	if err := lf.VerifyDigest(); err != nil {
		return fmt.Errorf("lockfile %s: %w", lockPath, err)
	}
	defs, err := distro.Load()
	if err != nil {
		return err
	}
	var reasons []string
	if defs.Digest != lf.ImageDefs.SHA256 {
		reasons = append(reasons, fmt.Sprintf("the image definitions of this ibuild differ from the ones it was locked with (sha256 %s, locked %s)", short(defs.Digest), short(lf.ImageDefs.SHA256)))
	}
	if lf.Blueprint.Path != "" {
		bpPath := filepath.Join(filepath.Dir(lockPath), filepath.FromSlash(lf.Blueprint.Path))
		if _, err := os.Stat(bpPath); err == nil {
			bp, err := blueprint.Load(bpPath)
			if err != nil {
				return err
			}
			d, err := BlueprintDigest(bp)
			if err != nil {
				return err
			}
			if d != lf.Blueprint.SHA256 {
				reasons = append(reasons, fmt.Sprintf("the blueprint %s changed (sha256 %s, locked %s)", bpPath, short(d), short(lf.Blueprint.SHA256)))
			}
		}
	}
	if len(reasons) > 0 {
		return &StaleError{Lockfile: lockPath, Reasons: reasons}
	}
	return nil
}
