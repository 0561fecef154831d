package stages

import (
	"context"
	"fmt"
	"io"
)

// Tar writes a tree as a root file system tarball: "./"-prefixed members
// in name order, numeric owners, clamped times, hard links, device nodes
// and extended attributes, optionally compressed.
type Tar struct {
	// Filename is the archive's name in the output directory.
	Filename string `json:"filename"`
	// Source is the tree to archive.
	Source Source `json:"source"`
	// Compression is "", "gzip", "xz" or "zstd"; xz runs the build root's
	// xz (xz-utils).
	Compression string `json:"compression"`
}

func init() { register[Tar]("tar", 1) }

func (s *Tar) validate() error {
	if err := checkFilename("filename", s.Filename); err != nil {
		return err
	}
	if err := s.Source.validate("source"); err != nil {
		return err
	}
	return checkCompression("compression", s.Compression)
}

// Run writes the archive under a temporary name and renames it into place.
func (s *Tar) Run(ctx context.Context, env *Env) error {
	src, err := s.Source.sourceDir(env)
	if err != nil {
		return err
	}
	return writeCompressedTree(ctx, env, src, s.Filename, s.Compression)
}

// writeCompressedTree writes the rootfs tarball of src, compressed, as
// filename in the output directory.
func writeCompressedTree(ctx context.Context, env *Env, src, filename, compression string) error {
	return writeOutput(env.Tree, filename, func(w io.Writer) error {
		err := compressTo(ctx, env, w, compression, func(w io.Writer) error {
			return writeTreeTar(ctx, w, src, treeTarOptions{dotPrefix: true, epoch: env.SourceDateEpoch})
		})
		if err != nil {
			return fmt.Errorf("writing %s: %w", filename, err)
		}
		return nil
	})
}
