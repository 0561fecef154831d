package stages

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
	"unicode"
)

// MkfsXFS makes an xfs file system from a tree in a partition of a disk
// image with the build root's mkfs.xfs and a protofile (-p): no loop
// device, no mount. What xfsprogs 6.1 (bookworm) offers decides the rest:
//   - mkfs.xfs writes no offset of a file: it formats a sparse file of the
//     partition's size, which is copied in;
//   - a protofile gives owners, modes, symlinks and device nodes, not
//     extended attributes or hard links (a hard-linked file is copied
//     once per name), and names without white space;
//   - it stamps every inode with the clock, and has no SOURCE_DATE_EPOCH
//     (xfs_db 6.1 cannot write an inode's seconds either): the build
//     root's libfaketime stops the clock at the epoch for mkfs.xfs alone,
//     so every time is the epoch and the bytes repeat.
type MkfsXFS struct {
	// Filename is the image in the output directory.
	Filename string `json:"filename"`
	// Partition is the 1-based partition number.
	Partition int `json:"partition"`
	// UUID is the file system UUID.
	UUID string `json:"uuid"`
	// Label is the volume label (up to 12 bytes).
	Label string `json:"label,omitempty"`
	// Source is the tree the file system holds.
	Source Source `json:"source"`
	// Exclude lists "<dir>/*" patterns: those directories' contents are
	// left out, the directories themselves stay (mount points).
	Exclude []string `json:"exclude,omitempty"`
	// Volume, when set, places the file system in that region of the
	// partition: a logical volume of an LVM2 physical volume (LVM2.Layout).
	Volume *LVM2Region `json:"volume,omitempty"`
}

func init() { register[MkfsXFS]("mkfs-xfs", 1) }

func (s *MkfsXFS) validate() error {
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
	if len(s.Label) > 12 || strings.IndexFunc(s.Label, unicode.IsSpace) >= 0 || strings.ContainsRune(s.Label, 0) {
		return fmt.Errorf("label: %q is not a label of up to 12 bytes without spaces", s.Label)
	}
	for i, e := range s.Exclude {
		if !strings.HasSuffix(e, "/*") || !strings.HasPrefix(e, "/") || path.Clean(strings.TrimSuffix(e, "/*")) != strings.TrimSuffix(e, "/*") {
			return fmt.Errorf("exclude[%d]: %q is not /DIR/*", i, e)
		}
	}
	return s.Source.validate("source")
}

// Run formats the partition.
func (s *MkfsXFS) Run(ctx context.Context, env *Env) error {
	src, err := s.Source.sourceDir(env)
	if err != nil {
		return err
	}
	if err := needTools(env, "mkfs.xfs"); err != nil {
		return err
	}
	faketime, err := buildRootFaketime(env)
	if err != nil {
		return fmt.Errorf("mkfs.xfs: %w", err)
	}
	part, err := findImagePartition(env, s.Filename, s.Partition)
	if err != nil {
		return err
	}
	if part, err = part.region(s.Partition, s.Volume); err != nil {
		return err
	}
	excluded := map[string]bool{}
	for _, e := range s.Exclude {
		excluded[strings.TrimPrefix(strings.TrimSuffix(e, "/*"), "/")] = true
	}
	proto, err := xfsProtofile(src, inMount, excluded)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp(env.TempDir, "ibuild-xfs-")
	if err != nil {
		return fmt.Errorf("writing protofile: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "proto"), proto, 0o644); err != nil {
		return fmt.Errorf("writing protofile: %w", err)
	}
	epoch := time.Unix(env.SourceDateEpoch, 0).UTC().Format("2006-01-02 15:04:05")
	toolEnv := []string{
		"TZ=UTC",
		"LD_PRELOAD=" + strings.TrimPrefix(faketime, env.BuildRoot),
		// A date without "@": the clock stands still.
		"FAKETIME=" + epoch,
		"FAKETIME_DONT_FAKE_MONOTONIC=1",
	}
	binds := []Bind{outputBind(env), {Src: src, Dst: inMount, ReadOnly: true}, {Src: dir, Dst: "/run/ibuild/script", ReadOnly: true}}
	return part.formatInFile(env, func(file string) error {
		args := []string{"mkfs.xfs", "-q", "-f", "-m", "uuid=" + s.UUID, "-s", fmt.Sprintf("size=%d", part.SectorSize), "-p", "/run/ibuild/script/proto"}
		if s.Label != "" {
			args = append(args, "-L", s.Label)
		}
		return runTool(ctx, env, binds, toolEnv, toolIO{}, append(args, file)...)
	})
}

// xfsProtofile writes mkfs.xfs's prototype of the tree at src, which the
// tool sees at dst, leaving out the contents of the directories excluded
// (paths relative to src).
func xfsProtofile(src, dst string, excluded map[string]bool) ([]byte, error) {
	var b strings.Builder
	b.WriteString("/dev/null\n0 0\n")
	mode := func(fi fs.FileInfo) (string, error) {
		m := fi.Mode()
		t := "-"
		switch {
		case m.IsDir():
			t = "d"
		case m&fs.ModeSymlink != 0:
			t = "l"
		case m&fs.ModeCharDevice != 0:
			t = "c"
		case m&fs.ModeDevice != 0:
			t = "b"
		case m&fs.ModeNamedPipe != 0:
			t = "p"
		case !m.IsRegular():
			return "", fmt.Errorf("%s: a %v cannot go in an xfs protofile", fi.Name(), m.Type())
		}
		u, g := "-", "-"
		if m&fs.ModeSetuid != 0 {
			u = "u"
		}
		if m&fs.ModeSetgid != 0 {
			g = "g"
		}
		perm := uint32(m.Perm())
		if m&fs.ModeSticky != 0 {
			perm |= 0o1000
		}
		return fmt.Sprintf("%s%s%s%03o", t, u, g, perm), nil
	}
	owner := func(fi fs.FileInfo) string {
		st := fi.Sys().(*syscall.Stat_t)
		return fmt.Sprintf("%d %d", st.Uid, st.Gid)
	}
	var walk func(rel string, depth int) error
	walk = func(rel string, depth int) error {
		ents, err := os.ReadDir(filepath.Join(src, rel))
		if err != nil {
			return err
		}
		sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
		for _, e := range ents {
			r := path.Join(rel, e.Name())
			if strings.IndexFunc(e.Name(), unicode.IsSpace) >= 0 {
				return fmt.Errorf("%s: an xfs protofile cannot hold a name with white space", "/"+r)
			}
			fi, err := e.Info()
			if err != nil {
				return err
			}
			m, err := mode(fi)
			if err != nil {
				return fmt.Errorf("/%s: %w", r, err)
			}
			line := fmt.Sprintf("%s %s %s", e.Name(), m, owner(fi))
			switch m[0] {
			case '-':
				line += " " + path.Join(dst, r)
			case 'l':
				target, err := os.Readlink(filepath.Join(src, r))
				if err != nil {
					return err
				}
				if target == "" || strings.IndexFunc(target, unicode.IsSpace) >= 0 {
					return fmt.Errorf("/%s: an xfs protofile cannot hold the symlink target %q", r, target)
				}
				line += " " + target
			case 'b', 'c':
				rdev := fi.Sys().(*syscall.Stat_t).Rdev
				line += fmt.Sprintf(" %d %d", unixMajor(rdev), unixMinor(rdev))
			}
			b.WriteString(strings.Repeat(" ", depth) + line + "\n")
			if m[0] == 'd' {
				if !excluded[r] {
					if err := walk(r, depth+1); err != nil {
						return err
					}
				}
				b.WriteString(strings.Repeat(" ", depth+1) + "$\n")
			}
		}
		return nil
	}
	fi, err := os.Stat(src)
	if err != nil {
		return nil, err
	}
	m, err := mode(fi)
	if err != nil {
		return nil, err
	}
	b.WriteString(m + " " + owner(fi) + "\n")
	if err := walk("", 1); err != nil {
		return nil, fmt.Errorf("writing protofile: %w", err)
	}
	b.WriteString("$\n")
	return []byte(b.String()), nil
}

func unixMajor(dev uint64) uint64 { return (dev>>8)&0xfff | (dev>>32)&^0xfff }
func unixMinor(dev uint64) uint64 { return dev&0xff | (dev>>12)&^0xff }

// buildRootFaketime returns the host path of the build root's
// libfaketime, which tools without SOURCE_DATE_EPOCH run under.
func buildRootFaketime(env *Env) (string, error) {
	faketime, err := filepath.Glob(filepath.Join(env.BuildRoot, "usr/lib/*/faketime/libfaketime.so.1"))
	if err != nil || len(faketime) != 1 {
		return "", fmt.Errorf("the build root has no libfaketime (package libfaketime), which makes the tool's times reproducible")
	}
	return faketime[0], nil
}
