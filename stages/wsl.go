package stages

import (
	"context"
)

// WSL writes a tree as what `wsl --import` takes: a gzip-compressed root
// file system tarball (the tar stage's format).
type WSL struct {
	// Filename is the archive's name in the output directory.
	Filename string `json:"filename"`
	// Source is the tree to archive.
	Source Source `json:"source"`
}

func init() { register[WSL]("wsl", 1) }

func (s *WSL) validate() error {
	if err := checkFilename("filename", s.Filename); err != nil {
		return err
	}
	return s.Source.validate("source")
}

// Run writes the archive under a temporary name and renames it into place.
func (s *WSL) Run(ctx context.Context, env *Env) error {
	src, err := s.Source.sourceDir(env)
	if err != nil {
		return err
	}
	return writeCompressedTree(ctx, env, src, s.Filename, "gzip")
}
