package stages

import (
	"context"
	"fmt"
	"path/filepath"
)

// WritePartition places a file system made by another pipeline (a file
// of the partition's size in that pipeline's tree) into a partition of
// the image, holes kept. It is how a tool of another build root writes
// into the image: osbuild gives each pipeline one build root, so a file
// system whose tool only a newer release has (debian-12's btrfs volumes,
// made with debian-13's mkfs.btrfs) is made in a pipeline of its own and
// placed here, and the image's other stages keep the image's release's
// tools (its GRUB reads what its own mkfs.ext4 writes).
type WritePartition struct {
	// Filename is the image in the output directory.
	Filename string `json:"filename"`
	// Partition is the 1-based partition number.
	Partition int `json:"partition"`
	// Source is the file system's file: exactly the partition's size.
	Source Source `json:"source"`
}

func init() { register[WritePartition]("write-partition", 1) }

func (s *WritePartition) validate() error {
	if err := checkFilename("filename", s.Filename); err != nil {
		return err
	}
	if err := checkPartitionNumber("partition", s.Partition); err != nil {
		return err
	}
	return s.Source.validate("source")
}

// Run copies the source's data extents into the partition of a copy of
// the image, renamed over the image.
func (s *WritePartition) Run(ctx context.Context, env *Env) error {
	src, fi, err := s.Source.sourceFile(env)
	if err != nil {
		return err
	}
	part, err := findImagePartition(env, s.Filename, s.Partition)
	if err != nil {
		return err
	}
	if fi.Size() != part.Size {
		return fmt.Errorf("source %s:%s: %d bytes, partition %d has %d", s.Source.Pipeline, s.Source.Path, fi.Size(), s.Partition, part.Size)
	}
	return updateImage(part.img, func(tmpBase string) error {
		return copyInto(filepath.Join(filepath.Dir(part.img), tmpBase), part.Start, src, part.Size)
	})
}
