package stages

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
)

// GrubBIOS makes a GPT disk image boot GRUB from a PC BIOS, as
// grub-bios-setup does when it embeds core.img in a BIOS boot partition
// (with --no-rs-codes): boot.img goes into the MBR, keeping the partition
// table, and core.img into the BIOS boot partition with its block list
// pointing at itself. Done in Go: grub-bios-setup wants a block device
// and the directory's device, which a build without loop devices has not.
type GrubBIOS struct {
	// Filename is the image in the output directory.
	Filename string `json:"filename"`
	// CorePartition is the 1-based number of the BIOS boot partition
	// (GPT); 0 with CoreGap.
	CorePartition int `json:"core_partition,omitempty"`
	// CoreGap embeds core.img in the sectors between a dos table's MBR
	// and its first partition, as grub-install does on dos disks.
	CoreGap bool `json:"core_gap,omitempty"`
	// Source is the directory holding boot.img and core.img (the tree's
	// /boot/grub/i386-pc).
	Source Source `json:"source"`
}

// Offsets in boot.img and core.img (GRUB 2.06 include/grub/i386/pc/boot.h,
// include/grub/offsets.h, util/setup.c).
const (
	grubBPBStart       = 0x03  // the BIOS parameter block a file system may keep
	grubBPBEnd         = 0x5a  //
	grubKernelSector   = 0x5c  // 64-bit LBA of core.img's first sector
	grubBootDrive      = 0x64  // 0xff: the drive the BIOS booted from
	grubDriveCheck     = 0x66  // a jmp that hard disks replace with two nops
	grubWindowsNTMagic = 0x1b8 // disk signature, then the partition table
	grubPartEnd        = 0x1fe
	// The block lists grow down from the end of core.img's first sector
	// (diskboot.img); each is start (u64), length (u16), segment (u16).
	grubBlocklistSize = 12
	grubFirstBlock    = sectorSize - grubBlocklistSize
	// core.img is loaded at 0x8000, its second sector at segment 0x820.
	grubKernelSeg = 0x800
	// In the second sector: the length not covered by Reed-Solomon codes,
	// 0xffff in images that do not match this layout.
	grubNoRSLength = sectorSize + 0x14
	// biosBootType is the GPT type GRUB embeds core.img in.
	biosBootType = "21686148-6449-6E6F-744E-656564454649"
)

func init() { register[GrubBIOS]("grub-bios", 1) }

func (s *GrubBIOS) validate() error {
	if err := checkFilename("filename", s.Filename); err != nil {
		return err
	}
	if s.CoreGap {
		if s.CorePartition != 0 {
			return fmt.Errorf("core_partition: %d with core_gap: core.img goes in one place", s.CorePartition)
		}
	} else if err := checkPartitionNumber("core_partition", s.CorePartition); err != nil {
		return err
	}
	return s.Source.validate("source")
}

// Run patches a copy of the image and renames it over the image.
func (s *GrubBIOS) Run(ctx context.Context, env *Env) error {
	dir, err := s.Source.sourceDir(env)
	if err != nil {
		return err
	}
	boot, err := os.ReadFile(filepath.Join(dir, "boot.img"))
	if err != nil {
		return fmt.Errorf("reading boot.img: %w", err)
	}
	core, err := os.ReadFile(filepath.Join(dir, "core.img"))
	if err != nil {
		return fmt.Errorf("reading core.img: %w", err)
	}
	img := filepath.Join(env.Tree, s.Filename)
	var part diskPart
	if s.CoreGap {
		if part, err = dosGap(img); err != nil {
			return err
		}
	} else {
		if part, err = readPartition(img, s.CorePartition); err != nil {
			return err
		}
		if part.Type != biosBootType {
			return fmt.Errorf("core_partition %d: type %s is not a BIOS boot partition (%s)", s.CorePartition, part.Type, biosBootType)
		}
	}
	return updateImage(img, func(tmp string) error {
		f, err := os.OpenFile(filepath.Join(env.Tree, tmp), os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		mbr := make([]byte, sectorSize)
		if _, err := f.ReadAt(mbr, 0); err != nil {
			return fmt.Errorf("reading MBR of %s: %w", s.Filename, err)
		}
		newMBR, newCore, err := grubEmbed(boot, core, mbr, part.Start/sectorSize, part.Size/sectorSize)
		if err != nil {
			return err
		}
		if _, err := f.WriteAt(newCore, part.Start); err != nil {
			return fmt.Errorf("writing core.img: %w", err)
		}
		if _, err := f.WriteAt(newMBR, 0); err != nil {
			return fmt.Errorf("writing MBR: %w", err)
		}
		return f.Close()
	})
}

// grubEmbed returns the MBR and the core image to write for core.img
// embedded at sector start of a partition of n sectors, given the disk's
// current MBR.
func grubEmbed(boot, core, mbr []byte, start, n int64) (newMBR, newCore []byte, err error) {
	if len(boot) != sectorSize || !bytes.Equal(boot[510:], []byte{0x55, 0xaa}) {
		return nil, nil, fmt.Errorf("boot.img: %d bytes, want one boot sector ending 55 aa", len(boot))
	}
	if len(core) < 2*sectorSize {
		return nil, nil, fmt.Errorf("core.img: %d bytes is too small", len(core))
	}
	if binary.LittleEndian.Uint16(core[grubNoRSLength:]) == 0xffff {
		return nil, nil, fmt.Errorf("core.img: not an i386-pc core image of this layout (version mismatch)")
	}
	sectors := (int64(len(core)) + sectorSize - 1) / sectorSize
	if sectors > 0xffff {
		return nil, nil, fmt.Errorf("core.img: %d sectors, the block list holds at most 65535", sectors)
	}
	if sectors > n {
		return nil, nil, fmt.Errorf("core.img: %d sectors do not fit in the BIOS boot partition of %d sectors", sectors, n)
	}

	// core.img, padded to whole sectors, with one block list: the sectors
	// after its first, loaded from segment 0x820 on; a zero entry ends it.
	newCore = make([]byte, sectors*sectorSize)
	copy(newCore, core)
	for off := grubFirstBlock; binary.LittleEndian.Uint16(newCore[off+8:]) != 0; off -= grubBlocklistSize {
		if off <= grubBlocklistSize {
			return nil, nil, fmt.Errorf("core.img: no terminator in the block lists")
		}
		clear(newCore[off : off+grubBlocklistSize])
	}
	bl := newCore[grubFirstBlock:]
	binary.LittleEndian.PutUint64(bl[0:], uint64(start+1))
	binary.LittleEndian.PutUint16(bl[8:], uint16(sectors-1))
	binary.LittleEndian.PutUint16(bl[10:], grubKernelSeg+sectorSize>>4)
	clear(newCore[grubFirstBlock-grubBlocklistSize : grubFirstBlock])

	// boot.img keeping what the disk's first sector holds beyond code.
	newMBR = bytes.Clone(boot)
	copy(newMBR[grubBPBStart:grubBPBEnd], mbr[grubBPBStart:grubBPBEnd])
	newMBR[grubDriveCheck], newMBR[grubDriveCheck+1] = 0x90, 0x90
	copy(newMBR[grubWindowsNTMagic:grubPartEnd], mbr[grubWindowsNTMagic:grubPartEnd])
	newMBR[grubBootDrive] = 0xff
	binary.LittleEndian.PutUint64(newMBR[grubKernelSector:], uint64(start))
	return newMBR, newCore, nil
}

// dosGap is the room between a dos table's MBR and its first partition,
// as a partition of 512-byte sectors.
func dosGap(img string) (diskPart, error) {
	f, err := os.Open(img)
	if err != nil {
		return diskPart{}, fmt.Errorf("reading partition table: %w", err)
	}
	defer f.Close()
	mbr := make([]byte, sectorSize)
	if _, err := f.ReadAt(mbr, 0); err != nil {
		return diskPart{}, fmt.Errorf("reading MBR of %s: %w", filepath.Base(img), err)
	}
	if mbr[510] != 0x55 || mbr[511] != 0xaa {
		return diskPart{}, fmt.Errorf("%s has no dos partition table", filepath.Base(img))
	}
	if dosSectorSize(mbr) != sectorSize {
		return diskPart{}, fmt.Errorf("%s has 4096-byte sectors: GRUB's boot.img reads 512-byte ones", filepath.Base(img))
	}
	first := int64(-1)
	for i := 0; i < 4; i++ {
		e := mbr[446+16*i : 446+16*(i+1)]
		if e[4] == 0 {
			continue
		}
		if e[4] == 0xee {
			return diskPart{}, fmt.Errorf("%s has a GPT: core.img goes in its BIOS boot partition", filepath.Base(img))
		}
		if st := int64(binary.LittleEndian.Uint32(e[8:])); first < 0 || st < first {
			first = st
		}
	}
	if first < 2 {
		return diskPart{}, fmt.Errorf("%s has no room between its MBR and first partition for core.img", filepath.Base(img))
	}
	return diskPart{Start: sectorSize, Size: (first - 1) * sectorSize, SectorSize: sectorSize}, nil
}
