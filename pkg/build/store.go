package build

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// Store is the build cache: verified packages under sources/, stage trees
// under objects/<key>/ (tree.tar.zst, or tree/ for trees of few files;
// tree.tar in caches written before), work in
// tmp/. Every entry is published by a
// rename of a complete directory or file, so a build killed at any point
// leaves no half-written entry, only leftovers in tmp/ that the next build
// running alone removes.
//
// Builds sharing a cache hold a shared flock on <dir>/lock; cleaning tmp/
// and evicting need the exclusive lock and are skipped while another build
// runs.
type Store struct {
	dir    string
	lock   *os.File
	tmp    string // this build's private temp directory
	closed bool
}

// objectMeta is stored beside each object's tree.
type objectMeta struct {
	Key      string    `json:"key"`
	Pipeline string    `json:"pipeline"`
	Stage    int       `json:"stage"`
	Type     string    `json:"type"`
	Size     int64     `json:"size"`
	Format   string    `json:"format"` // "tar.zst" (tree.tar.zst), "dir" (tree/) or "tar" (tree.tar, older caches)
	Created  time.Time `json:"created"`
}

// OpenStore opens (creating if needed) the cache at dir and takes a shared
// lock on it until Close.
func OpenStore(dir string) (*Store, error) {
	if !filepath.IsAbs(dir) {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, fmt.Errorf("opening cache %s: %w", dir, err)
		}
		dir = abs
	}
	for _, d := range []string{"objects", "sources/sha256", "sources/tmp", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("opening cache %s: %w", dir, err)
		}
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening cache %s: %w", dir, err)
	}
	s := &Store{dir: dir, lock: f}
	// Alone on the cache: what is in tmp/ was left by killed builds.
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err == nil {
		s.cleanTmp()
	}
	if err := flockRetry(f, unix.LOCK_SH); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking cache %s: %w", dir, err)
	}
	tmp, err := os.MkdirTemp(filepath.Join(dir, "tmp"), "build-")
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("opening cache %s: %w", dir, err)
	}
	s.tmp = tmp
	return s, nil
}

func flockRetry(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			return err
		}
	}
}

// cleanTmp removes leftovers of killed builds; call it with the exclusive
// lock held.
func (s *Store) cleanTmp() {
	for _, d := range []string{"tmp", "sources/tmp"} {
		entries, _ := os.ReadDir(filepath.Join(s.dir, d))
		for _, e := range entries {
			os.RemoveAll(filepath.Join(s.dir, d, e.Name()))
		}
	}
}

// Dir is the cache's directory.
func (s *Store) Dir() string { return s.dir }

// SourcesDir is where packages are kept.
func (s *Store) SourcesDir() string { return filepath.Join(s.dir, "sources") }

// TempDir makes a new directory in this build's temp area.
func (s *Store) TempDir(pattern string) (string, error) {
	return os.MkdirTemp(s.tmp, pattern)
}

// Close removes this build's temp area and releases the lock.
func (s *Store) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	err := os.RemoveAll(s.tmp)
	if cerr := s.lock.Close(); err == nil {
		err = cerr
	}
	return err
}

func (s *Store) objectDir(key string) string { return filepath.Join(s.dir, "objects", key) }

// Lookup reports whether the object key is stored, marking it used.
func (s *Store) Lookup(key string) bool {
	d := s.objectDir(key)
	if _, err := os.Stat(filepath.Join(d, "meta.json")); err != nil {
		return false
	}
	now := time.Now()
	os.Chtimes(d, now, now)
	return true
}

// dirFormatMax is the most entries a tree stored as a directory has; larger
// trees are stored as one tar file, because creating many small files is
// what costs (1.7 ms an inode on some disks) and a tar file is one.
const dirFormatMax = 256

// Commit stores a copy of tree as the object key. When another build
// published the same key first, its object is kept.
func (s *Store) Commit(ctx context.Context, key, tree string, meta objectMeta) error {
	if s.Lookup(key) {
		return nil
	}
	stage, err := s.TempDir("commit-")
	if err != nil {
		return fmt.Errorf("committing %s: %w", key, err)
	}
	defer os.RemoveAll(stage)
	n, err := countEntries(tree, dirFormatMax+1)
	if err != nil {
		return fmt.Errorf("committing %s: %w", key, err)
	}
	if n > dirFormatMax {
		meta.Format = "tar.zst"
		meta.Size, err = createTarZst(ctx, tree, filepath.Join(stage, "tree.tar.zst"))
	} else {
		meta.Format = "dir"
		err = CopyTree(ctx, tree, filepath.Join(stage, "tree"))
		if err == nil {
			meta.Size, err = treeSize(filepath.Join(stage, "tree"))
		}
	}
	if err != nil {
		return fmt.Errorf("committing %s: %w", key, err)
	}
	return s.publish(key, stage, meta)
}

// publish writes meta beside the tree in stage and renames stage to the
// object's directory: the one step that makes an object visible.
func (s *Store) publish(key, stage string, meta objectMeta) error {
	meta.Key = key
	meta.Created = time.Now().UTC()
	data, err := json.MarshalIndent(&meta, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(stage, "meta.json"), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("committing %s: %w", key, err)
	}
	if err := os.Rename(stage, s.objectDir(key)); err != nil {
		if s.Lookup(key) {
			return nil // published concurrently by another build
		}
		return fmt.Errorf("committing %s: %w", key, err)
	}
	return nil
}

func (s *Store) meta(key string) (objectMeta, error) {
	var m objectMeta
	data, err := os.ReadFile(filepath.Join(s.objectDir(key), "meta.json"))
	if err == nil {
		err = json.Unmarshal(data, &m)
	}
	return m, err
}

// Materialize makes dst (which must not exist) a copy of the object's tree.
func (s *Store) Materialize(ctx context.Context, key, dst string) error {
	m, err := s.meta(key)
	if err != nil {
		return fmt.Errorf("reading object %s: %w", key, err)
	}
	switch m.Format {
	case "tar.zst":
		if err := os.Mkdir(dst, 0o755); err != nil {
			return fmt.Errorf("extracting object %s: %w", key, err)
		}
		if err := extractTarZst(ctx, filepath.Join(s.objectDir(key), "tree.tar.zst"), dst); err != nil {
			return fmt.Errorf("extracting object %s: %w", key, err)
		}
	case "tar":
		if err := os.Mkdir(dst, 0o755); err != nil {
			return fmt.Errorf("extracting object %s: %w", key, err)
		}
		if err := runTar(ctx, "--extract", "--file", filepath.Join(s.objectDir(key), "tree.tar"), "--directory", dst,
			"--preserve-permissions", "--same-owner"); err != nil {
			return fmt.Errorf("extracting object %s: %w", key, err)
		}
	case "dir":
		if err := CopyTree(ctx, filepath.Join(s.objectDir(key), "tree"), dst); err != nil {
			return fmt.Errorf("copying object %s: %w", key, err)
		}
	default:
		return fmt.Errorf("object %s: unknown format %q", key, m.Format)
	}
	return nil
}

// DirTree returns the object's tree directory when it is stored as one
// (few files: image and export pipelines), so its files can be read in
// place.
func (s *Store) DirTree(key string) (string, bool) {
	m, err := s.meta(key)
	if err != nil || m.Format != "dir" {
		return "", false
	}
	return filepath.Join(s.objectDir(key), "tree"), true
}

// runTar runs GNU tar with what keeps a root tree intact: numeric owners,
// xattrs (file capabilities), hard links, device nodes.
func runTar(ctx context.Context, args ...string) error {
	return runTarStream(ctx, nil, nil, args...)
}

// createTarZst writes tree as a zstd-compressed tar file at p and returns
// its size. The fastest level: a Debian root tree (640 MB of tar) takes
// 195 MB, a third, for a few seconds of one core; a cache holds several
// trees per image (the package stages' and the last stage's), and a full
// disk fails every build.
func createTarZst(ctx context.Context, tree, p string) (int64, error) {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if err := writeTarZst(ctx, tree, f); err != nil {
		return 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// writeTarZst writes tree to w as a zstd-compressed tar.
func writeTarZst(ctx context.Context, tree string, w io.Writer) error {
	fw := &firstErrWriter{w: w}
	zw, err := zstd.NewWriter(fw, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		return err
	}
	tw := &firstErrWriter{w: zw}
	tarErr := runTarStream(ctx, nil, tw, "--create", "--file", "-", "--directory", tree, "--format=posix",
		"--pax-option=delete=atime,delete=ctime", "--sparse", ".")
	closeErr := zw.Close()
	// When the archive cannot be written (a full disk), tar dies of the
	// closed pipe, which says nothing: the write's own error comes first.
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case fw.err != nil:
		return fw.err
	case tw.err != nil:
		return tw.err
	case tarErr != nil:
		return tarErr
	}
	return closeErr
}

// firstErrWriter keeps the first error its writer returned.
type firstErrWriter struct {
	w   io.Writer
	err error
}

func (e *firstErrWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil && e.err == nil {
		e.err = err
	}
	return n, err
}

// extractTarZst unpacks the zstd-compressed tar file p into dir.
func extractTarZst(ctx context.Context, p, dir string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := zstd.NewReader(f)
	if err != nil {
		return err
	}
	defer zr.Close()
	return runTarStream(ctx, zr, nil, "--extract", "--file", "-", "--directory", dir,
		"--preserve-permissions", "--same-owner")
}

// runTarStream is runTar with the archive on stdin or stdout (nil: none).
func runTarStream(ctx context.Context, stdin io.Reader, stdout io.Writer, args ...string) error {
	full := append([]string{"--numeric-owner", "--xattrs", "--xattrs-include=*"}, args...)
	cmd := exec.CommandContext(ctx, "tar", full...)
	// As in hostOutput: killed with ibuild, from a thread kept until it ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, &stderr
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	err := cmd.Run()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("tar %s: %w: %s", args[0], err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// countEntries counts a tree's entries, stopping at limit.
func countEntries(dir string, limit int) (int, error) {
	n := 0
	errStop := errors.New("enough")
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		n++
		if n >= limit {
			return errStop
		}
		return nil
	})
	if err == errStop {
		err = nil
	}
	return n, err
}

// CopyTree copies the directory src to dst (which must not exist), keeping
// owners, modes, timestamps, hard links, device nodes, xattrs and holes,
// with reflinks where the file system has them.
func CopyTree(ctx context.Context, src, dst string) error {
	out, err := hostOutput(ctx, "cp", "-a", "--reflink=auto", "--", src, dst)
	if err != nil {
		return fmt.Errorf("copying %s to %s: %w: %s", src, dst, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// treeSize is the disk usage of a tree (allocated blocks, hard links once).
func treeSize(dir string) (int64, error) {
	var total int64
	seen := map[[2]uint64]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			total += fi.Size()
			return nil
		}
		if st.Nlink > 1 && !fi.IsDir() {
			id := [2]uint64{st.Dev, st.Ino}
			if seen[id] {
				return nil
			}
			seen[id] = true
		}
		total += st.Blocks * 512
		return nil
	})
	return total, err
}

// cacheEntry is an evictable thing: an object or a stored package.
type cacheEntry struct {
	path string
	size int64
	used time.Time
}

// Evict removes least recently used objects and packages until the cache
// holds at most maxSize bytes. It needs the exclusive lock and does
// nothing (returning false) while another build holds the cache.
func (s *Store) Evict(maxSize int64) (bool, error) {
	if err := unix.Flock(int(s.lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return false, nil
		}
		return false, fmt.Errorf("locking cache %s: %w", s.dir, err)
	}
	defer flockRetry(s.lock, unix.LOCK_SH)
	var entries []cacheEntry
	var total int64
	objs, err := os.ReadDir(filepath.Join(s.dir, "objects"))
	if err != nil {
		return false, fmt.Errorf("evicting: %w", err)
	}
	for _, e := range objs {
		d := filepath.Join(s.dir, "objects", e.Name())
		fi, err := os.Stat(d)
		if err != nil {
			continue
		}
		var m objectMeta
		data, err := os.ReadFile(filepath.Join(d, "meta.json"))
		if err == nil {
			err = json.Unmarshal(data, &m)
		}
		if err != nil {
			// Not published by Commit: cannot happen through renames, so
			// whatever it is goes first.
			m.Size, _ = treeSize(d)
			fi = nil
		}
		ce := cacheEntry{path: d, size: m.Size}
		if fi != nil {
			ce.used = fi.ModTime()
		}
		entries = append(entries, ce)
		total += m.Size
	}
	srcs, err := os.ReadDir(filepath.Join(s.dir, "sources", "sha256"))
	if err != nil {
		return false, fmt.Errorf("evicting: %w", err)
	}
	for _, e := range srcs {
		fi, err := e.Info()
		if err != nil {
			continue
		}
		entries = append(entries, cacheEntry{path: filepath.Join(s.dir, "sources", "sha256", e.Name()), size: fi.Size(), used: fi.ModTime()})
		total += fi.Size()
	}
	if total <= maxSize {
		return true, nil
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].used.Before(entries[j].used) })
	for _, e := range entries {
		if total <= maxSize {
			break
		}
		// Rename first so a half-removed object is never visible.
		grave := filepath.Join(s.tmp, "evict-"+randomHex())
		if err := os.Rename(e.path, grave); err != nil {
			return true, fmt.Errorf("evicting %s: %w", e.path, err)
		}
		if err := os.RemoveAll(grave); err != nil {
			return true, fmt.Errorf("evicting %s: %w", e.path, err)
		}
		total -= e.size
	}
	return true, nil
}

func randomHex() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// hostOutput runs a host tool (tar, cp) and returns its combined output.
// The tool is killed when ibuild dies (SIGKILL, the OOM killer) rather
// than left running as an orphan that writes into the cache or the work
// area while the next build cleans them; and when ctx ends, so a signal
// does not wait for a large commit to finish.
func hostOutput(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// The parent-death signal follows the thread that started the tool:
	// keep that thread until the tool has ended.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		// Not started, or killed: say why.
		return out, ctx.Err()
	}
	return out, err
}

// CommitMove stores tree as key by renaming it into the store, for a
// final tree that nothing changes any more, in the store's temp area (see
// TempDir). Afterwards the tree is read with DirTree(key); the directory
// tree is gone, also when another build stored key first.
func (s *Store) CommitMove(key, tree string, meta objectMeta) error {
	if s.Lookup(key) {
		return os.RemoveAll(tree)
	}
	stage, err := s.TempDir("commit-")
	if err != nil {
		return fmt.Errorf("committing %s: %w", key, err)
	}
	defer os.RemoveAll(stage)
	if err := os.Rename(tree, filepath.Join(stage, "tree")); err != nil {
		return fmt.Errorf("committing %s: %w", key, err)
	}
	meta.Format = "dir"
	if meta.Size, err = treeSize(filepath.Join(stage, "tree")); err != nil {
		return fmt.Errorf("committing %s: %w", key, err)
	}
	return s.publish(key, stage, meta)
}
