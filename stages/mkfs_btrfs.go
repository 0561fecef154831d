package stages

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// MkfsBtrfs makes a btrfs file system with subvolumes from a tree with the
// build root's mkfs.btrfs --rootdir --subvol (btrfs-progs 6.6 or newer:
// Debian 13's build root; Debian 12's btrfs-progs 6.2 cannot make
// subvolumes without mounting the file system). mkfs.btrfs has no offset
// option: it writes a file of the partition's size, which is then copied
// into the partition, holes kept.
//
// With Output and Size instead of Filename and Partition, it writes the
// file system to a file of the pipeline's own tree, which write-partition
// then places: a release whose own mkfs.btrfs is older makes the volume in
// a pipeline whose build root is a newer release's (see package lock).
type MkfsBtrfs struct {
	// Filename is the image in the output directory.
	Filename string `json:"filename,omitempty"`
	// Partition is the 1-based GPT partition number.
	Partition int `json:"partition,omitempty"`
	// Output is the file made in the pipeline's tree, and Size its
	// size in bytes: the partition's.
	Output string `json:"output,omitempty"`
	Size   int64  `json:"size,omitempty"`
	// UUID is the file system UUID; DeviceUUID the device's (sub-)UUID.
	UUID       string `json:"uuid"`
	DeviceUUID string `json:"device_uuid"`
	// Label is the volume label (up to 255 bytes).
	Label string `json:"label"`
	// Source is the tree the subvolumes' paths are in.
	Source Source `json:"source"`
	// Subvolumes are made at the file system's top level, each holding
	// the tree at its path less the paths of the subvolumes below it
	// (their mount points stay, empty).
	Subvolumes []BtrfsSubvolume `json:"subvolumes"`
}

// BtrfsSubvolume is a subvolume of the top level.
type BtrfsSubvolume struct {
	// Name is the subvolume's name at the top level (mounted with
	// subvol=NAME).
	Name string `json:"name"`
	// Path is the directory of the source tree it holds (its mount point).
	Path string `json:"path"`
}

// Version 2: the clock and the random numbers of mkfs.btrfs are fixed, and
// it reads the tree through btrfsView.
func init() { register[MkfsBtrfs]("mkfs-btrfs", 2) }

var btrfsSubvolNameRe = regexp.MustCompile(`^[A-Za-z0-9_@+][A-Za-z0-9_@+.-]*$`)

func (s *MkfsBtrfs) validate() error {
	if s.Output != "" || s.Size != 0 {
		if s.Filename != "" || s.Partition != 0 {
			return fmt.Errorf("output: set with filename or partition (one or the other)")
		}
		if err := checkFilename("output", s.Output); err != nil {
			return err
		}
		if s.Size < 128<<20 {
			return fmt.Errorf("size: %d bytes are too few for btrfs (128 MiB at least)", s.Size)
		}
	} else {
		if err := checkFilename("filename", s.Filename); err != nil {
			return err
		}
		if err := checkPartitionNumber("partition", s.Partition); err != nil {
			return err
		}
	}
	if err := checkGUID("uuid", s.UUID); err != nil {
		return err
	}
	if err := checkGUID("device_uuid", s.DeviceUUID); err != nil {
		return err
	}
	if strings.EqualFold(s.UUID, s.DeviceUUID) {
		return fmt.Errorf("device_uuid: %s is the file system's uuid too", s.DeviceUUID)
	}
	if len(s.Label) > 255 || strings.ContainsAny(s.Label, "\x00\n") {
		return fmt.Errorf("label: %q is longer than 255 bytes or has a NUL or newline", s.Label)
	}
	if err := s.Source.validate("source"); err != nil {
		return err
	}
	if len(s.Subvolumes) == 0 {
		return fmt.Errorf("subvolumes: none")
	}
	names, paths := map[string]int{}, map[string]int{}
	for i, sv := range s.Subvolumes {
		field := fmt.Sprintf("subvolumes[%d]", i)
		if len(sv.Name) > 255 || !btrfsSubvolNameRe.MatchString(sv.Name) {
			return fmt.Errorf("%s.name: %q is not a subvolume name (letters, digits, _ @ + . -; one path component)", field, sv.Name)
		}
		if j, dup := names[sv.Name]; dup {
			return fmt.Errorf("%s.name: %q is subvolumes[%d]'s name too", field, sv.Name, j)
		}
		names[sv.Name] = i
		if err := (Source{Pipeline: "-", Path: sv.Path}).validate(field); err != nil {
			return fmt.Errorf("%s.path: %q must be absolute and clean", field, sv.Path)
		}
		if j, dup := paths[sv.Path]; dup {
			return fmt.Errorf("%s.path: %q is subvolumes[%d]'s path too", field, sv.Path, j)
		}
		paths[sv.Path] = i
	}
	return nil
}

// nested returns the paths of the other subvolumes below p, relative to p.
func (s *MkfsBtrfs) nested(p string) []string {
	prefix := strings.TrimSuffix(p, "/") + "/"
	var out []string
	for _, o := range s.Subvolumes {
		if o.Path != p && strings.HasPrefix(o.Path, prefix) {
			out = append(out, strings.TrimPrefix(o.Path, prefix))
		}
	}
	sort.Strings(out)
	return out
}

// Run makes the file system in a temporary file and copies it into the
// partition of a copy of the image, renamed over the image.
func (s *MkfsBtrfs) Run(ctx context.Context, env *Env) error {
	src, err := s.Source.sourceDir(env)
	if err != nil {
		return err
	}
	if err := needTools(env, "mkfs.btrfs"); err != nil {
		return err
	}
	faketime, err := buildRootFaketime(env)
	if err != nil {
		return fmt.Errorf("mkfs.btrfs: %w", err)
	}
	size := s.Size
	var part imagePartition
	if s.Output == "" {
		if part, err = findImagePartition(env, s.Filename, s.Partition); err != nil {
			return err
		}
		if part.Size < 128<<20 {
			return fmt.Errorf("partition %d: %d bytes are too few for btrfs (128 MiB at least)", s.Partition, part.Size)
		}
		size = part.Size
	}
	// --help exits 0 or 1 depending on the version, on stdout or stderr.
	var help, helpErr bytes.Buffer
	err = runTool(ctx, env, nil, nil, toolIO{stdout: &help, stderr: &helpErr}, "mkfs.btrfs", "--help")
	if err != nil && help.Len()+helpErr.Len() == 0 {
		return err
	}
	if !strings.Contains(help.String()+helpErr.String(), "--subvol") {
		return fmt.Errorf("mkfs.btrfs of the build root cannot make subvolumes (it has no --subvol: btrfs-progs 6.6 or newer is needed, as in Debian 13)")
	}

	work, err := os.MkdirTemp(env.TempDir, "ibuild-btrfs-")
	if err != nil {
		return fmt.Errorf("making btrfs: %w", err)
	}
	defer os.RemoveAll(work)
	args := []string{"mkfs.btrfs", "-q", "-f", "-U", s.UUID, "--device-uuid", s.DeviceUUID, "-r", inMount}
	if s.Label != "" {
		args = append(args, "-L", s.Label)
	}
	subvols := map[string]string{}
	for _, sv := range s.Subvolumes {
		host := filepath.Join(src, filepath.FromSlash(sv.Path))
		fi, err := os.Lstat(host)
		if err != nil {
			return fmt.Errorf("subvolume %s: %w", sv.Name, err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("subvolume %s: %s is not a directory in the tree", sv.Name, sv.Path)
		}
		if err := checkNoSymlinks(src, sv.Path); err != nil && sv.Path != "/" {
			return fmt.Errorf("subvolume %s: %w", sv.Name, err)
		}
		subvols[sv.Name] = sv.Path
		args = append(args, "--subvol", "rw:"+sv.Name)
		for _, rel := range s.nested(sv.Path) {
			fi, err := os.Lstat(filepath.Join(host, filepath.FromSlash(rel)))
			if os.IsNotExist(err) {
				continue
			}
			if err != nil {
				return fmt.Errorf("subvolume %s: %w", sv.Name, err)
			}
			if !fi.IsDir() {
				return fmt.Errorf("subvolume %s: %s is not a directory in the tree", sv.Name, path.Join(sv.Path, rel))
			}
			if err := checkNoSymlinks(host, rel); err != nil {
				return fmt.Errorf("subvolume %s: %w", sv.Name, err)
			}
		}
	}
	// mkfs.btrfs reads the top level from the view (see btrfsView): a
	// directory per subvolume, sorted, with fixed times.
	view := filepath.Join(work, "view")
	if err := os.Mkdir(filepath.Join(work, "out"), 0o755); err != nil {
		return fmt.Errorf("making btrfs: %w", err)
	}
	if err := os.Mkdir(view, 0o755); err != nil {
		return fmt.Errorf("making btrfs: %w", err)
	}
	unmount, err := mountBtrfsView(view, src, subvols, env.SourceDateEpoch)
	if err != nil {
		return fmt.Errorf("making btrfs: %w", err)
	}
	defer unmount()
	binds := []Bind{{Src: view, Dst: inMount, ReadOnly: true}}
	// The file system is made in a file of the partition's size, then
	// copied into the partition.
	fsFile := filepath.Join(work, "out", "fs.img")
	f, err := os.Create(fsFile)
	if err != nil {
		return fmt.Errorf("making btrfs: %w", err)
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("making btrfs: %w", err)
	}
	binds = append(binds, Bind{Src: filepath.Join(work, "out"), Dst: outMount})
	args = append(args, path.Join(outMount, "fs.img"))
	// mkfs.btrfs stamps the top-level directory and the root items with the
	// clock and draws the chunk tree's and the subvolumes' UUIDs from
	// libuuid, which mixes getrandom() with random() seeded from the pid
	// and the clock: the clock stopped at the epoch, getrandom() seeded
	// from the file system's UUIDs (libfaketime's FAKERANDOM_SEED) and a
	// fixed pid make them repeat. The build's namespace starts its tools
	// after its own threads, which take pids as the scheduler goes: the
	// build root's unshare gives mkfs.btrfs a pid namespace of its own, in
	// which it is pid 1.
	seed := sha256.Sum256([]byte("ibuild mkfs-btrfs\x00" + strings.ToLower(s.UUID) + "\x00" + strings.ToLower(s.DeviceUUID)))
	toolEnv := []string{
		"LC_ALL=C",
		"TZ=UTC",
		"LD_PRELOAD=" + strings.TrimPrefix(faketime, env.BuildRoot),
		"FAKETIME=" + time.Unix(env.SourceDateEpoch, 0).UTC().Format("2006-01-02 15:04:05"),
		"FAKETIME_DONT_FAKE_MONOTONIC=1",
		"FAKERANDOM_SEED=0x" + hex.EncodeToString(seed[:8]),
	}
	if err := runTool(ctx, env, binds, toolEnv, toolIO{}, append([]string{"unshare", "--pid", "--fork"}, args...)...); err != nil {
		return err
	}
	if err := unmount(); err != nil {
		return fmt.Errorf("making btrfs: unmounting the tree's view: %w", err)
	}
	if s.Output != "" {
		if err := os.Rename(fsFile, filepath.Join(env.Tree, s.Output)); err == nil {
			return nil
		}
		// Another file system: copied, holes kept.
		out := filepath.Join(env.Tree, s.Output)
		if err := os.WriteFile(out, nil, 0o644); err != nil {
			return fmt.Errorf("making btrfs: %w", err)
		}
		if err := os.Truncate(out, size); err != nil {
			return fmt.Errorf("making btrfs: %w", err)
		}
		return copyInto(out, 0, fsFile, size)
	}
	return updateImage(part.img, func(tmpBase string) error {
		return copyInto(filepath.Join(filepath.Dir(part.img), tmpBase), part.Start, fsFile, part.Size)
	})
}

// copyInto copies the data extents of the file src (size bytes) into the
// file dst at offset off; holes stay holes.
func copyInto(dst string, off int64, src string, size int64) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("placing file system: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("placing file system: %w", err)
	}
	defer out.Close()
	// What the partition held before is cleared first.
	if err := punchHole(out, off, size); err != nil {
		return fmt.Errorf("placing file system: %w", err)
	}
	err = forEachExtent(in, size, func(o, n int64) error {
		_, err := io.Copy(io.NewOffsetWriter(out, off+o), io.NewSectionReader(in, o, n))
		return err
	})
	if err != nil {
		return fmt.Errorf("placing file system: %w", err)
	}
	return out.Close()
}

// punchHole deallocates n bytes of f at off, which then read as zeros;
// a file system without hole punching gets zeros written.
func punchHole(f *os.File, off, n int64) error {
	err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	if err == nil {
		return nil
	}
	zero := make([]byte, 1<<20)
	for n > 0 {
		c := min(n, int64(len(zero)))
		if _, err := f.WriteAt(zero[:c], off); err != nil {
			return err
		}
		off += c
		n -= c
	}
	return nil
}
