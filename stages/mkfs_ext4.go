package stages

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// MkfsExt4 makes an ext4 file system from a tree straight into a partition
// of a disk image with the build root's mkfs.ext4 -d: no loop device, no
// mount. Owners, modes, hard links, extended attributes and device nodes
// come from the tree; times are made reproducible.
type MkfsExt4 struct {
	// Filename is the image in the output directory.
	Filename string `json:"filename"`
	// Partition is the 1-based GPT partition number.
	Partition int `json:"partition"`
	// UUID is the file system UUID.
	UUID string `json:"uuid"`
	// Label is the volume label (up to 16 bytes).
	Label string `json:"label"`
	// HashSeed seeds the directory index hashes (a UUID).
	HashSeed string `json:"hash_seed"`
	// Source is the tree the file system holds.
	Source Source `json:"source"`
	// Exclude lists "<dir>/*" patterns: those directories' contents are
	// left out, the directories themselves stay (mount points such as
	// /boot/efi, whose contents go to another file system).
	Exclude []string `json:"exclude,omitempty"`
	// Volume, when set, places the file system in that region of the
	// partition instead of the whole partition: a logical volume of an
	// LVM2 physical volume (LVM2.Layout).
	Volume *LVM2Region `json:"volume,omitempty"`
}

func init() { register[MkfsExt4]("mkfs-ext4", 1) }

func (s *MkfsExt4) validate() error {
	if err := checkFilename("filename", s.Filename); err != nil {
		return err
	}
	if err := checkPartitionNumber("partition", s.Partition); err != nil {
		return err
	}
	if err := checkGUID("uuid", s.UUID); err != nil {
		return err
	}
	if err := checkGUID("hash_seed", s.HashSeed); err != nil {
		return err
	}
	if len(s.Label) > 16 {
		return fmt.Errorf("label: %q is longer than 16 bytes", s.Label)
	}
	if strings.ContainsAny(s.Label, "\x00\n") {
		return fmt.Errorf("label: %q contains a NUL or newline", s.Label)
	}
	if err := s.Source.validate("source"); err != nil {
		return err
	}
	if err := s.Volume.validate("volume"); err != nil {
		return err
	}
	seen := map[string]bool{}
	for i, e := range s.Exclude {
		field := fmt.Sprintf("exclude[%d]", i)
		dir, ok := strings.CutSuffix(e, "/*")
		if !ok || dir == "" {
			return fmt.Errorf("%s: %q is not supported: only \"<dir>/*\" (a directory's contents) can be excluded", field, e)
		}
		if err := (Source{Pipeline: "-", Path: dir}).validate(field); err != nil {
			return fmt.Errorf("%s: %q: directory must be absolute and clean", field, e)
		}
		if strings.ContainsAny(dir, "*?[") {
			return fmt.Errorf("%s: %q: wildcards are only allowed as the final \"/*\"", field, e)
		}
		if seen[dir] {
			return fmt.Errorf("%s: %q is listed twice", field, e)
		}
		seen[dir] = true
	}
	return nil
}

// Run makes the file system on a copy of the image and renames the copy
// over the image.
func (s *MkfsExt4) Run(ctx context.Context, env *Env) error {
	src, err := s.Source.sourceDir(env)
	if err != nil {
		return err
	}
	if err := needTools(env, "mkfs.ext4"); err != nil {
		return err
	}
	part, err := findImagePartition(env, s.Filename, s.Partition)
	if err != nil {
		return err
	}
	if part, err = part.region(s.Partition, s.Volume); err != nil {
		return err
	}
	if part.Size < 1<<20 {
		return fmt.Errorf("partition %d: %d bytes are too few for ext4", s.Partition, part.Size)
	}

	binds := []Bind{outputBind(env), {Src: src, Dst: inMount, ReadOnly: true}}
	// mkfs.ext4 -d has no exclusions: an empty directory, made like the
	// excluded one, is bound over it for the command.
	empties, err := os.MkdirTemp(env.TempDir, "ibuild-ext4-")
	if err != nil {
		return fmt.Errorf("making exclusions: %w", err)
	}
	defer os.RemoveAll(empties)
	excluded := map[string]bool{}
	for i, e := range s.Exclude {
		rel := strings.TrimSuffix(e, "/*")
		host := filepath.Join(src, filepath.FromSlash(rel))
		fi, err := os.Lstat(host)
		if os.IsNotExist(err) {
			continue // nothing to leave out
		}
		if err != nil {
			return fmt.Errorf("exclude %s: %w", e, err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("exclude %s: %s is not a directory in the tree", e, rel)
		}
		if err := checkNoSymlinks(src, rel); err != nil {
			return fmt.Errorf("exclude %s: %w", e, err)
		}
		empty := filepath.Join(empties, strconv.Itoa(i))
		if err := os.Mkdir(empty, 0o700); err != nil {
			return fmt.Errorf("making exclusions: %w", err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if err := os.Lchown(empty, int(st.Uid), int(st.Gid)); err != nil {
			return fmt.Errorf("making exclusions: %w", err)
		}
		if err := os.Chmod(empty, fi.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
			return fmt.Errorf("making exclusions: %w", err)
		}
		// mkfs copies the directory's mtime from the stand-in.
		if err := os.Chtimes(empty, fi.ModTime(), fi.ModTime()); err != nil {
			return fmt.Errorf("making exclusions: %w", err)
		}
		binds = append(binds, Bind{Src: empty, Dst: path.Join(inMount, rel), ReadOnly: true})
		excluded[rel] = true
	}

	// Every inode's times, set after mkfs: mkfs.ext4 -d copies atime,
	// ctime and mtime from the tree, and ctime cannot be set there.
	script, err := ext4TimesScript(src, excluded, env.SourceDateEpoch)
	if err != nil {
		return err
	}
	scriptDir, err := os.MkdirTemp(env.TempDir, "ibuild-debugfs-")
	if err != nil {
		return fmt.Errorf("writing debugfs script: %w", err)
	}
	defer os.RemoveAll(scriptDir)
	if err := os.WriteFile(filepath.Join(scriptDir, "times"), script, 0o644); err != nil {
		return fmt.Errorf("writing debugfs script: %w", err)
	}

	toolEnv := []string{
		// Superblock times, lost+found and the journal.
		fmt.Sprintf("E2FSPROGS_FAKE_TIME=%d", env.SourceDateEpoch),
		// scandir's alphasort: byte order.
		"LC_ALL=C",
		// The build root's mke2fs.conf sets the defaults; the options
		// below pin what matters for the boot loader.
	}
	return part.update(func(target string) error {
		mkfs := []string{"mkfs.ext4", "-q", "-F",
			"-T", "default",
			// GRUB 2.06 refuses metadata_csum_seed (an incompat
			// feature); orphan_file is left out for older e2fsck.
			"-O", "^metadata_csum_seed,^orphan_file",
			"-U", s.UUID,
			"-L", s.Label,
			"-E", fmt.Sprintf("offset=%d,root_owner=0:0,hash_seed=%s", part.Start, s.HashSeed),
			"-d", inMount,
		}
		if part.SectorSize > 1024 {
			// A block is at least a sector: small file systems would
			// get 1 KiB blocks, which a 4096-byte sector disk cannot
			// mount.
			mkfs = append(mkfs, "-b", strconv.FormatInt(part.SectorSize, 10))
		}
		mkfs = append(mkfs, target, fmt.Sprintf("%dk", part.Size/1024))
		if err := runTool(ctx, env, binds, toolEnv, toolIO{}, mkfs...); err != nil {
			return err
		}
		// debugfs reports failed commands on stderr and still exits 0.
		var stderr bytes.Buffer
		debugfs := []string{"debugfs", "-w", "-f", "/run/ibuild/script/times", fmt.Sprintf("%s?offset=%d", target, part.Start)}
		dbinds := []Bind{outputBind(env), {Src: scriptDir, Dst: "/run/ibuild/script", ReadOnly: true}}
		if err := runTool(ctx, env, dbinds, toolEnv, toolIO{stdout: io.Discard, stderr: &stderr}, debugfs...); err != nil {
			return err
		}
		if msg := debugfsErrors(stderr.String()); msg != "" {
			return fmt.Errorf("setting times with debugfs: %s", msg)
		}
		return nil
	})
}

// checkNoSymlinks refuses a path inside root that goes through a symlink:
// the bind mount would follow it.
func checkNoSymlinks(root, rel string) error {
	p := root
	for _, c := range strings.Split(strings.TrimPrefix(rel, "/"), "/") {
		p = filepath.Join(p, c)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("%s is a symlink", p)
		}
	}
	return nil
}

// ext4TimesScript returns debugfs commands that set every inode's atime and
// ctime to epoch and clamp its mtime to epoch, walking the tree as mkfs
// sees it (excluded directories empty). Hard links are set once.
func ext4TimesScript(src string, excluded map[string]bool, epoch int64) ([]byte, error) {
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	type inode struct{ dev, ino uint64 }
	seen := map[inode]bool{}
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("reading %s: %w", p, err)
		}
		rel, _ := filepath.Rel(src, p)
		rel = path.Clean("/" + filepath.ToSlash(rel))
		if strings.ContainsAny(rel, "\n\x00") {
			return fmt.Errorf("%q: names with newlines cannot be handled", rel)
		}
		fi, err := d.Info()
		if err != nil {
			return fmt.Errorf("reading %s: %w", p, err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		key := inode{uint64(st.Dev), st.Ino}
		if !fi.IsDir() && seen[key] {
			return nil
		}
		seen[key] = true
		q := `"` + strings.ReplaceAll(rel, `"`, `""`) + `"`
		fmt.Fprintf(w, "sif %s atime @%d\nsif %s ctime @%d\n", q, epoch, q, epoch)
		if st.Mtim.Sec > epoch {
			fmt.Fprintf(w, "sif %s mtime @%d\n", q, epoch)
		}
		if fi.IsDir() && excluded[rel] {
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", src, err)
	}
	if err := w.Flush(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// debugfsErrors returns debugfs' stderr without its version banner.
func debugfsErrors(stderr string) string {
	var lines []string
	for _, l := range strings.Split(stderr, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "debugfs ") && strings.HasSuffix(l, ")") {
			continue
		}
		lines = append(lines, l)
		if len(lines) == 10 {
			lines = append(lines, "…")
			break
		}
	}
	return strings.Join(lines, "; ")
}
