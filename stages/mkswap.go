package stages

import (
	"context"
	"fmt"
	"strings"
)

// Mkswap makes a swap area in a partition of a disk image with the build
// root's mkswap. mkswap (util-linux 2.38) writes no offset of a file, so
// it formats a sparse file of the partition's size, which is copied in.
type Mkswap struct {
	// Filename is the image in the output directory.
	Filename string `json:"filename"`
	// Partition is the 1-based partition number.
	Partition int `json:"partition"`
	// UUID is the swap area's UUID (fstab names it).
	UUID string `json:"uuid"`
	// Label is the swap area's label (up to 16 bytes).
	Label string `json:"label,omitempty"`
	// Volume, when set, places the file system in that region of the
	// partition: a logical volume of an LVM2 physical volume (LVM2.Layout).
	Volume *LVM2Region `json:"volume,omitempty"`
}

func init() { register[Mkswap]("mkswap", 1) }

func (s *Mkswap) validate() error {
	if err := s.Volume.validate("volume"); err != nil {
		return err
	}
	if err := checkFilename("filename", s.Filename); err != nil {
		return err
	}
	if err := checkPartitionNumber("partition", s.Partition); err != nil {
		return err
	}
	if !fsUUID.MatchString(s.UUID) {
		return fmt.Errorf("uuid: %q is not a lower-case 8-4-4-4-12 UUID", s.UUID)
	}
	if len(s.Label) > 16 || strings.ContainsAny(s.Label, "\x00\n") {
		return fmt.Errorf("label: %q is not a label of up to 16 bytes", s.Label)
	}
	return nil
}

// Run formats the partition.
func (s *Mkswap) Run(ctx context.Context, env *Env) error {
	if err := needTools(env, "mkswap"); err != nil {
		return err
	}
	part, err := findImagePartition(env, s.Filename, s.Partition)
	if err != nil {
		return err
	}
	if part, err = part.region(s.Partition, s.Volume); err != nil {
		return err
	}
	// Ten pages at least, as mkswap wants.
	if part.Size < 10*4096 {
		return fmt.Errorf("partition %d: %d bytes are too few for swap", s.Partition, part.Size)
	}
	return part.formatInFile(env, func(file string) error {
		// 4096-byte pages: the size of x86_64's and, by default,
		// arm64's; a swap area's header records it.
		args := []string{"mkswap", "-p", "4096", "-U", s.UUID}
		if s.Label != "" {
			args = append(args, "-L", s.Label)
		}
		return runTool(ctx, env, []Bind{outputBind(env)}, nil, toolIO{}, append(args, file)...)
	})
}
