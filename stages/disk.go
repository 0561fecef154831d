package stages

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf16"

	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/google/uuid"
)

// Disk creates a sparse disk image with a GPT (and its protective MBR).
type Disk struct {
	// Filename is the image's name in the output directory.
	Filename string `json:"filename"`
	// Size is the image's size in bytes, a multiple of 512.
	Size int64 `json:"size"`
	// UUID is the disk GUID.
	UUID string `json:"uuid"`
	// Partitions are the GPT entries, numbered from 1 in this order.
	Partitions []DiskPartition `json:"partitions"`
}

// DiskPartition is one GPT entry; Start and Size count 512-byte sectors.
type DiskPartition struct {
	Name string `json:"name"`
	// Type is the partition type GUID.
	Type string `json:"type"`
	// UUID is the unique partition GUID.
	UUID  string `json:"uuid"`
	Start uint64 `json:"start"`
	// Size 0 extends the partition to the last usable sector, before the
	// backup GPT.
	Size uint64 `json:"size"`
}

// GPT geometry with the usual 128 entries of 128 bytes: 32 sectors of
// entries after the header at LBA 1, mirrored at the end.
const (
	gptEntrySectors = 32
	gptFirstUsable  = 2 + gptEntrySectors
	// gptMaxSectors keeps the protective MBR's 32-bit size field exact.
	gptMaxSectors = 1 << 32
)

func init() { register[Disk]("disk", 1) }

func (s *Disk) sectors() uint64 { return uint64(s.Size) / sectorSize }

// lastUsable is the last sector a partition may use.
func (s *Disk) lastUsable() uint64 { return s.sectors() - 1 - gptEntrySectors - 1 }

func (s *Disk) validate() error {
	if err := checkFilename("filename", s.Filename); err != nil {
		return err
	}
	switch {
	case s.Size <= 0:
		return fmt.Errorf("size: %d is not positive", s.Size)
	case s.Size%sectorSize != 0:
		return fmt.Errorf("size: %d is not a multiple of %d", s.Size, sectorSize)
	case s.sectors() < 2*gptFirstUsable+1:
		return fmt.Errorf("size: %d bytes leaves no room for partitions", s.Size)
	case s.sectors() > gptMaxSectors:
		return fmt.Errorf("size: %d bytes is more than the 2 TiB this stage supports", s.Size)
	}
	if err := checkGUID("uuid", s.UUID); err != nil {
		return err
	}
	if len(s.Partitions) == 0 {
		return fmt.Errorf("partitions: none")
	}
	if len(s.Partitions) > 128 {
		return fmt.Errorf("partitions: %d entries, a GPT holds 128", len(s.Partitions))
	}
	seen := map[string]string{strings.ToLower(s.UUID): "uuid"}
	for i, p := range s.Partitions {
		field := fmt.Sprintf("partitions[%d]", i)
		if n := len(utf16.Encode([]rune(p.Name))); n > 36 {
			return fmt.Errorf("%s.name: %d UTF-16 code units, at most 36 fit", field, n)
		}
		if err := checkGUID(field+".type", p.Type); err != nil {
			return err
		}
		if strings.EqualFold(p.Type, string(gpt.Unused)) {
			return fmt.Errorf("%s.type: the zero GUID marks an unused entry", field)
		}
		if err := checkGUID(field+".uuid", p.UUID); err != nil {
			return err
		}
		if prev, dup := seen[strings.ToLower(p.UUID)]; dup {
			return fmt.Errorf("%s.uuid: %s is already used by %s", field, p.UUID, prev)
		}
		seen[strings.ToLower(p.UUID)] = field + ".uuid"
		if p.Start < gptFirstUsable {
			return fmt.Errorf("%s.start: sector %d is inside the primary GPT (first usable sector is %d)", field, p.Start, gptFirstUsable)
		}
		end := s.end(p)
		if p.Start > s.lastUsable() || end > s.lastUsable() || end < p.Start {
			return fmt.Errorf("%s: sectors %d+%d do not fit before the backup GPT (last usable sector %d)", field, p.Start, p.Size, s.lastUsable())
		}
		for j, q := range s.Partitions[:i] {
			if p.Start <= s.end(q) && q.Start <= end {
				return fmt.Errorf("%s: sectors %d-%d overlap partitions[%d] (%d-%d)", field, p.Start, end, j, q.Start, s.end(q))
			}
		}
	}
	return nil
}

// end is the last sector of p.
func (s *Disk) end(p DiskPartition) uint64 {
	if p.Size == 0 {
		return s.lastUsable()
	}
	return p.Start + p.Size - 1
}

// checkGUID checks a GUID in its canonical text form.
func checkGUID(field, g string) error {
	if len(g) != 36 {
		return fmt.Errorf("%s: %q is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)", field, g)
	}
	if _, err := uuid.Parse(g); err != nil {
		return fmt.Errorf("%s: %q is not a GUID: %w", field, g, err)
	}
	return nil
}

// Run writes the image to a temporary name and renames it into place.
func (s *Disk) Run(ctx context.Context, env *Env) error {
	tbl := &gpt.Table{
		LogicalSectorSize:  sectorSize,
		PhysicalSectorSize: sectorSize,
		GUID:               s.UUID,
		ProtectiveMBR:      true,
	}
	for i, p := range s.Partitions {
		tbl.Partitions = append(tbl.Partitions, &gpt.Partition{
			Index: i + 1,
			Start: p.Start,
			End:   s.end(p),
			Type:  gpt.Type(strings.ToUpper(p.Type)),
			Name:  p.Name,
			GUID:  p.UUID,
		})
	}
	f, err := os.CreateTemp(env.Tree, "."+s.Filename+".tmp-*")
	if err != nil {
		return fmt.Errorf("creating %s: %w", s.Filename, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Truncate(s.Size); err != nil {
		f.Close()
		return fmt.Errorf("creating %s: %w", s.Filename, err)
	}
	if err := tbl.Write(f, s.Size); err != nil {
		f.Close()
		return fmt.Errorf("writing partition table of %s: %w", s.Filename, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", s.Filename, err)
	}
	if err := os.Rename(tmp, filepath.Join(env.Tree, s.Filename)); err != nil {
		return fmt.Errorf("writing %s: %w", s.Filename, err)
	}
	return nil
}
