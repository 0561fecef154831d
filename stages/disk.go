package stages

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf16"

	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/google/uuid"
)

// Disk creates a sparse disk image with a GPT (and its protective MBR)
// or a dos partition table.
type Disk struct {
	// Filename is the image's name in the output directory.
	Filename string `json:"filename"`
	// Size is the image's size in bytes, a multiple of the sector size.
	Size int64 `json:"size"`
	// Type is "gpt" (when empty) or "dos".
	Type string `json:"type,omitempty"`
	// SectorSize is the logical sector size, 512 (when 0) or 4096: the
	// unit of the partitions' Start and Size, and the size of the
	// sectors the disk must be attached with.
	SectorSize int `json:"sector_size,omitempty"`
	// UUID is the disk GUID; on dos, its first 4 bytes are the disk
	// signature.
	UUID string `json:"uuid"`
	// Partitions are the entries, numbered from 1 in this order.
	Partitions []DiskPartition `json:"partitions"`
}

// DiskPartition is one entry; Start and Size count sectors.
type DiskPartition struct {
	// Name is the GPT partition name (none on dos).
	Name string `json:"name"`
	// Type is the partition type GUID, or two hex digits on dos.
	Type string `json:"type"`
	// UUID is the unique partition GUID (none on dos).
	UUID  string `json:"uuid,omitempty"`
	Start uint64 `json:"start"`
	// Size 0 extends the partition to the last usable sector, before the
	// backup GPT (the end of the disk on dos).
	Size uint64 `json:"size"`
	// Bootable sets the dos active flag.
	Bootable bool `json:"bootable,omitempty"`
}

const (
	// gptEntryBytes: the usual 128 entries of 128 bytes after the header
	// at LBA 1, mirrored at the end.
	gptEntryBytes = 128 * 128
	// maxSectors keeps the 32-bit sector counts (protective MBR, dos)
	// exact.
	maxSectors = 1 << 32
)

func init() { register[Disk]("disk", 1) }

func (s *Disk) sectorSize() uint64 {
	if s.SectorSize == 0 {
		return sectorSize
	}
	return uint64(s.SectorSize)
}

func (s *Disk) dos() bool { return s.Type == "dos" }

func (s *Disk) sectors() uint64 { return uint64(s.Size) / s.sectorSize() }

// entrySectors is how many sectors the GPT's entries take.
func (s *Disk) entrySectors() uint64 { return gptEntryBytes / s.sectorSize() }

// firstUsable is the first sector a partition may use.
func (s *Disk) firstUsable() uint64 {
	if s.dos() {
		return 1
	}
	return 2 + s.entrySectors()
}

// lastUsable is the last sector a partition may use.
func (s *Disk) lastUsable() uint64 {
	if s.dos() {
		return s.sectors() - 1
	}
	return s.sectors() - 1 - s.entrySectors() - 1
}

var dosType = regexp.MustCompile(`^[0-9a-f]{2}$`)

func (s *Disk) validate() error {
	if err := checkFilename("filename", s.Filename); err != nil {
		return err
	}
	switch s.Type {
	case "", "gpt", "dos":
	default:
		return fmt.Errorf("type: %q is not gpt or dos", s.Type)
	}
	switch s.SectorSize {
	case 0, 512, 4096:
	default:
		return fmt.Errorf("sector_size: %d is not 512 or 4096", s.SectorSize)
	}
	ss := s.sectorSize()
	switch {
	case s.Size <= 0:
		return fmt.Errorf("size: %d is not positive", s.Size)
	case uint64(s.Size)%ss != 0:
		return fmt.Errorf("size: %d is not a multiple of %d", s.Size, ss)
	case s.sectors() < 2*s.firstUsable()+1:
		return fmt.Errorf("size: %d bytes leaves no room for partitions", s.Size)
	case s.sectors() > maxSectors:
		return fmt.Errorf("size: %d bytes is more than the %d TiB this stage supports", s.Size, maxSectors*ss>>40)
	}
	if err := checkGUID("uuid", s.UUID); err != nil {
		return err
	}
	if len(s.Partitions) == 0 {
		return fmt.Errorf("partitions: none")
	}
	if s.dos() && len(s.Partitions) > 4 {
		return fmt.Errorf("partitions: %d entries, a dos table holds 4", len(s.Partitions))
	}
	if len(s.Partitions) > 128 {
		return fmt.Errorf("partitions: %d entries, a GPT holds 128", len(s.Partitions))
	}
	seen := map[string]string{strings.ToLower(s.UUID): "uuid"}
	for i, p := range s.Partitions {
		field := fmt.Sprintf("partitions[%d]", i)
		if s.dos() {
			switch {
			case p.Name != "":
				return fmt.Errorf("%s.name: a dos partition has no name", field)
			case p.UUID != "":
				return fmt.Errorf("%s.uuid: a dos partition has no GUID", field)
			case !dosType.MatchString(p.Type) || p.Type == "00" || p.Type == "05" || p.Type == "0f" || p.Type == "85" || p.Type == "ee":
				return fmt.Errorf("%s.type: %q is not a primary dos partition type (two lower-case hex digits)", field, p.Type)
			}
			if err := s.checkPlace(field, i, p); err != nil {
				return err
			}
			continue
		}
		if p.Bootable {
			return fmt.Errorf("%s.bootable: only dos partitions have an active flag", field)
		}
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
		if err := s.checkPlace(field, i, p); err != nil {
			return err
		}
	}
	return nil
}

// checkPlace checks that partition i fits the disk and overlaps none
// before it.
func (s *Disk) checkPlace(field string, i int, p DiskPartition) error {
	if p.Start < s.firstUsable() {
		where := "the primary GPT"
		if s.dos() {
			where = "the MBR"
		}
		return fmt.Errorf("%s.start: sector %d is inside %s (first usable sector is %d)", field, p.Start, where, s.firstUsable())
	}
	end := s.end(p)
	if p.Start > s.lastUsable() || end > s.lastUsable() || end < p.Start {
		return fmt.Errorf("%s: sectors %d+%d do not fit the disk (last usable sector %d)", field, p.Start, p.Size, s.lastUsable())
	}
	for j, q := range s.Partitions[:i] {
		if p.Start <= s.end(q) && q.Start <= end {
			return fmt.Errorf("%s: sectors %d-%d overlap partitions[%d] (%d-%d)", field, p.Start, end, j, q.Start, s.end(q))
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

// dosMBR is the dos partition table's sector: no boot code (the
// grub-bios stage writes GRUB's), the disk signature, the entries with
// their CHS addresses as fdisk computes them (255 heads, 63 sectors;
// 1023/254/63 past the CHS limit), and on 4096-byte sector disks the
// mark readPartition reads (dosSectorSize).
func (s *Disk) dosMBR() []byte {
	mbr := make([]byte, 512)
	sig, _ := uuid.Parse(s.UUID) // validated
	copy(mbr[440:444], sig[:4])
	if s.sectorSize() == 4096 {
		mbr[444], mbr[445] = '4', 'K'
	}
	chs := func(lba uint64) [3]byte {
		c, h, sec := lba/(255*63), (lba/63)%255, lba%63+1
		if c > 1023 {
			c, h, sec = 1023, 254, 63
		}
		return [3]byte{byte(h), byte(sec) | byte(c>>8)<<6, byte(c)}
	}
	for i, p := range s.Partitions {
		e := mbr[446+16*i : 446+16*(i+1)]
		if p.Bootable {
			e[0] = 0x80
		}
		first, last := chs(p.Start), chs(s.end(p))
		copy(e[1:4], first[:])
		t, _ := strconv.ParseUint(p.Type, 16, 8)
		e[4] = byte(t)
		copy(e[5:8], last[:])
		binary.LittleEndian.PutUint32(e[8:], uint32(p.Start))
		binary.LittleEndian.PutUint32(e[12:], uint32(s.end(p)-p.Start+1))
	}
	mbr[510], mbr[511] = 0x55, 0xaa
	return mbr
}

// Run writes the image to a temporary name and renames it into place.
func (s *Disk) Run(ctx context.Context, env *Env) error {
	ss := int(s.sectorSize())
	tbl := &gpt.Table{
		LogicalSectorSize:  ss,
		PhysicalSectorSize: ss,
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
	write := func(f *os.File) error { return tbl.Write(f, s.Size) }
	if s.dos() {
		write = func(f *os.File) error {
			_, err := f.WriteAt(s.dosMBR(), 0)
			return err
		}
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
	if err := write(f); err != nil {
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
