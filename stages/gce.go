package stages

import (
	"context"
	"fmt"
	"io"
	"path"
)

// GCE packs a raw disk image the way Google Compute Engine imports it: a
// gzip-compressed tar holding exactly "disk.raw", in GNU tar's oldgnu
// format with holes kept sparse (tar --format=oldgnu -S, the build root's
// tar), reproducibly (fixed owner, mode and time; gzip without name or
// time).
type GCE struct {
	// Filename is the archive's name in the output directory.
	Filename string `json:"filename"`
	// Source is the raw disk image.
	Source Source `json:"source"`
}

func init() { register[GCE]("gce", 1) }

func (s *GCE) validate() error {
	if err := checkFilename("filename", s.Filename); err != nil {
		return err
	}
	return s.Source.validate("source")
}

// Run writes the archive under a temporary name and renames it into place.
func (s *GCE) Run(ctx context.Context, env *Env) error {
	src, _, err := s.Source.sourceFile(env)
	if err != nil {
		return err
	}
	if err := needTools(env, "tar"); err != nil {
		return err
	}
	// GCE wants the member named disk.raw whatever the image's name.
	binds := []Bind{{Src: src, Dst: path.Join(inMount, "disk.raw"), ReadOnly: true}}
	args := []string{"tar", "--format=oldgnu", "--sparse",
		// Holes found by reading zeros, not by the file's layout on disk,
		// so equal images give equal archives.
		"--hole-detection=raw",
		"--numeric-owner", "--owner=0", "--group=0", "--mode=0644",
		fmt.Sprintf("--mtime=@%d", env.SourceDateEpoch),
		"-C", inMount, "-cf", "-", "disk.raw"}
	return writeOutput(env.Tree, s.Filename, func(w io.Writer) error {
		gz, err := compressor(w, "gzip")
		if err != nil {
			return err
		}
		if err := runTool(ctx, env, binds, nil, toolIO{stdout: gz}, args...); err != nil {
			return fmt.Errorf("writing %s: %w", s.Filename, err)
		}
		if err := gz.Close(); err != nil {
			return fmt.Errorf("writing %s: %w", s.Filename, err)
		}
		return nil
	})
}
