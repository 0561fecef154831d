package stages

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// MkfsFAT makes a FAT file system in a partition of a disk image with the
// build root's dosfstools and copies a tree into it with its mtools: no
// loop device, no mount.
type MkfsFAT struct {
	// Filename is the image in the output directory.
	Filename string `json:"filename"`
	// Partition is the 1-based GPT partition number.
	Partition int `json:"partition"`
	// FAT is 12, 16 or 32, or 0 to let mkfs.fat choose by size.
	FAT int `json:"fat"`
	// VolumeID is the volume serial number, 8 hex digits ("ABCD1234").
	VolumeID string `json:"volume_id"`
	// Label is the volume label (up to 11 characters; none when empty).
	Label string `json:"label"`
	// Source is the tree copied into the file system.
	Source Source `json:"source"`
}

func init() { register[MkfsFAT]("mkfs-fat", 1) }

func (s *MkfsFAT) validate() error {
	if err := checkFilename("filename", s.Filename); err != nil {
		return err
	}
	if err := checkPartitionNumber("partition", s.Partition); err != nil {
		return err
	}
	switch s.FAT {
	case 0, 12, 16, 32:
	default:
		return fmt.Errorf("fat: %d is not 12, 16, 32 or 0 (automatic)", s.FAT)
	}
	if len(s.VolumeID) != 8 {
		return fmt.Errorf("volume_id: %q is not 8 hex digits", s.VolumeID)
	}
	if _, err := strconv.ParseUint(s.VolumeID, 16, 32); err != nil {
		return fmt.Errorf("volume_id: %q is not 8 hex digits", s.VolumeID)
	}
	if err := checkFATLabel(s.Label); err != nil {
		return fmt.Errorf("label: %w", err)
	}
	return s.Source.validate("source")
}

// checkFATLabel accepts what a FAT volume label can hold without the
// tools rewriting it.
func checkFATLabel(l string) error {
	if len(l) > 11 {
		return fmt.Errorf("%q is longer than 11 characters", l)
	}
	for _, r := range l {
		switch {
		case r < 0x20 || r > 0x7e:
			return fmt.Errorf("%q: only printable ASCII is allowed", l)
		case r >= 'a' && r <= 'z':
			return fmt.Errorf("%q: lower-case letters are not portable in FAT labels", l)
		case strings.ContainsRune(`"*+,./:;<=>?[\]|`, r):
			return fmt.Errorf("%q: %q is not allowed in a FAT label", l, r)
		}
	}
	if strings.TrimSpace(l) != l {
		return fmt.Errorf("%q: leading or trailing spaces", l)
	}
	return nil
}

// fatEntry is a file or directory of the tree, relative to its root.
type fatEntry struct {
	rel string // "/EFI/BOOT/BOOTX64.EFI"
	dir bool
}

// Run formats the partition on a copy of the image, fills it and renames the
// copy over the image.
func (s *MkfsFAT) Run(ctx context.Context, env *Env) error {
	src, err := s.Source.sourceDir(env)
	if err != nil {
		return err
	}
	if err := needTools(env, "mkfs.fat"); err != nil {
		return err
	}
	part, err := findImagePartition(env, s.Filename, s.Partition)
	if err != nil {
		return err
	}
	// mtools takes the file times as they are: a copy of the tree with
	// times clamped to the epoch makes the result reproducible.
	staging, err := os.MkdirTemp(env.TempDir, "ibuild-fat-")
	if err != nil {
		return fmt.Errorf("staging %s: %w", src, err)
	}
	defer os.RemoveAll(staging)
	entries, err := stageFATTree(src, staging, env.SourceDateEpoch)
	if err != nil {
		return err
	}

	start := strconv.FormatInt(part.startSector(), 10)
	args := []string{"mkfs.fat",
		"--offset=" + start,
		// What a partition's boot sector says about where it starts.
		"-h", start,
		"--mbr=n", "--invariant",
		"-S", strconv.FormatInt(part.SectorSize, 10),
		"-i", s.VolumeID,
	}
	if s.Label != "" {
		args = append(args, "-n", s.Label)
	}
	if s.FAT != 0 {
		args = append(args, "-F", strconv.Itoa(s.FAT))
	}
	if s.FAT == 32 {
		spc, err := fat32ClusterSectors(part.Size / part.SectorSize)
		if err != nil {
			return fmt.Errorf("partition %d: %w", s.Partition, err)
		}
		args = append(args, "-s", strconv.Itoa(spc))
	}
	tz := []string{"TZ=UTC", fmt.Sprintf("SOURCE_DATE_EPOCH=%d", env.SourceDateEpoch)}
	return part.update(func(target string) error {
		binds := []Bind{outputBind(env), {Src: staging, Dst: inMount, ReadOnly: true}}
		mkfs := append(args, target, strconv.FormatInt(part.Size/1024, 10))
		if err := runTool(ctx, env, binds, tz, toolIO{}, mkfs...); err != nil {
			return err
		}
		image := fmt.Sprintf("%s@@%d", target, part.Start)
		// Directories first, parents before children, then each
		// directory's files in name order: the order of entries in a FAT
		// directory is the order they were made.
		var dirs []string
		files := map[string][]string{}
		for _, e := range entries {
			if e.dir {
				dirs = append(dirs, "::"+e.rel)
				continue
			}
			d := path.Dir(e.rel)
			files[d] = append(files[d], path.Join(inMount, e.rel))
		}
		for len(dirs) > 0 {
			n := min(len(dirs), 256)
			mmd := append([]string{"mmd", "-i", image}, dirs[:n]...)
			if err := runTool(ctx, env, binds, tz, toolIO{}, mmd...); err != nil {
				return err
			}
			dirs = dirs[n:]
		}
		var fileDirs []string
		for d := range files {
			fileDirs = append(fileDirs, d)
		}
		sort.Strings(fileDirs)
		for _, d := range fileDirs {
			batch := files[d]
			for len(batch) > 0 {
				n := min(len(batch), 256)
				// -p keeps the read-only attribute, -m the (clamped) times.
				mcopy := append([]string{"mcopy", "-p", "-m", "-i", image}, batch[:n]...)
				mcopy = append(mcopy, "::"+strings.TrimSuffix(d, "/")+"/")
				if err := runTool(ctx, env, binds, tz, toolIO{}, mcopy...); err != nil {
					return err
				}
				batch = batch[n:]
			}
		}
		return nil
	})
}

// fat32ClusterSectors picks sectors per cluster for a FAT32 of n sectors:
// at most 8 (4 KiB clusters, mkfs.fat's choice for small volumes) and small
// enough to keep the 65525 clusters FAT32 needs.
func fat32ClusterSectors(n int64) (int, error) {
	const minClusters = 65525 + 1024 // margin for the FATs and reserved sectors
	for spc := 8; spc >= 1; spc /= 2 {
		if n/int64(spc) >= minClusters {
			return spc, nil
		}
	}
	return 0, fmt.Errorf("%d sectors are too few for FAT32 (at least %d)", n, minClusters)
}

// stageFATTree copies the tree at src to dst with modification times
// clamped to epoch and returns its entries in the order to create them. A
// tree FAT cannot hold (symlinks, devices, names differing only in case,
// files of 4 GiB or more) is an error.
func stageFATTree(src, dst string, epoch int64) ([]fatEntry, error) {
	var entries []fatEntry
	clamp := func(t time.Time) time.Time {
		if t.Unix() > epoch {
			return time.Unix(epoch, 0)
		}
		return t.Truncate(2 * time.Second) // FAT's resolution
	}
	var dirTimes []struct {
		p string
		t time.Time
	}
	seen := map[string]string{} // upper-cased path -> path
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("reading %s: %w", p, err)
		}
		rel, _ := filepath.Rel(src, p)
		if rel == "." {
			return nil
		}
		rel = "/" + filepath.ToSlash(rel)
		if err := checkFATName(d.Name()); err != nil {
			return fmt.Errorf("copying %s to FAT: %w", rel, err)
		}
		if prev, dup := seen[strings.ToUpper(rel)]; dup {
			return fmt.Errorf("copying %s to FAT: %s has the same name in FAT's case-insensitive directories", rel, prev)
		}
		seen[strings.ToUpper(rel)] = rel
		fi, err := d.Info()
		if err != nil {
			return fmt.Errorf("reading %s: %w", p, err)
		}
		out := filepath.Join(dst, filepath.FromSlash(rel))
		switch {
		case fi.IsDir():
			if err := os.Mkdir(out, 0o755); err != nil {
				return fmt.Errorf("staging %s: %w", rel, err)
			}
			dirTimes = append(dirTimes, struct {
				p string
				t time.Time
			}{out, clamp(fi.ModTime())})
			entries = append(entries, fatEntry{rel: rel, dir: true})
		case fi.Mode().IsRegular():
			if fi.Size() >= 1<<32 {
				return fmt.Errorf("copying %s to FAT: %d bytes, FAT files end below 4 GiB", rel, fi.Size())
			}
			if err := copyRegular(p, out, fi.Mode().Perm()); err != nil {
				return fmt.Errorf("staging %s: %w", rel, err)
			}
			t := clamp(fi.ModTime())
			if err := os.Chtimes(out, t, t); err != nil {
				return fmt.Errorf("staging %s: %w", rel, err)
			}
			entries = append(entries, fatEntry{rel: rel})
		default:
			return fmt.Errorf("copying %s to FAT: a %s cannot be stored in FAT", rel, fileKind(fi.Mode()))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, d := range dirTimes {
		if err := os.Chtimes(d.p, d.t, d.t); err != nil {
			return nil, fmt.Errorf("staging %s: %w", d.p, err)
		}
	}
	return entries, nil
}

// checkFATName refuses names a VFAT long name cannot hold.
func checkFATName(n string) error {
	if len([]rune(n)) > 255 {
		return fmt.Errorf("name longer than 255 characters")
	}
	for _, r := range n {
		if r < 0x20 || strings.ContainsRune(`"*/:<>?\|`, r) {
			return fmt.Errorf("%q is not allowed in FAT names", r)
		}
	}
	if strings.TrimRight(n, ". ") != n {
		return fmt.Errorf("FAT drops trailing dots and spaces of %q", n)
	}
	return nil
}

func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m&fs.ModeDevice != 0:
		return "device node"
	case m&fs.ModeNamedPipe != 0:
		return "FIFO"
	case m&fs.ModeSocket != 0:
		return "socket"
	}
	return "special file"
}

// copyRegular copies the regular file src to a new file dst.
func copyRegular(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
