package build

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// workArea is one build's private directory for trees. Outside the cache
// (a tmpfs, say) it is guarded by a lock file so a later build can tell a
// killed build's leftovers from a running build's work.
type workArea struct {
	dir  string
	tmp  string // the stages' and tools' temp directory, inside dir
	lock *os.File
}

// minShmFree is the free space /dev/shm needs to be used by default.
const minShmFree = 8 << 30

// defaultWorkRoot picks /dev/shm when it is a big enough tmpfs.
func defaultWorkRoot() string {
	var st unix.Statfs_t
	if err := unix.Statfs("/dev/shm", &st); err != nil {
		return ""
	}
	if st.Type != unix.TMPFS_MAGIC || int64(st.Bavail)*int64(st.Bsize) < minShmFree {
		return ""
	}
	return "/dev/shm"
}

// openWorkArea makes the build's work directory under root ("" picks the
// default: /dev/shm or the store's temp area), first removing what killed
// builds left there.
func openWorkArea(store *Store, root string) (*workArea, error) {
	if root == "" {
		root = defaultWorkRoot()
	}
	if root == "" {
		dir, err := store.TempDir("work-")
		if err != nil {
			return nil, fmt.Errorf("making the work directory: %w", err)
		}
		return newWorkArea(dir, nil)
	}
	root = filepath.Join(root, "ibuild-work")
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("making the work directory: %w", err)
	}
	cleanDeadWork(root)
	// The lock file comes first, so a directory without one is never a
	// running build's.
	var lock *os.File
	for attempt := 0; ; attempt++ {
		f, err := os.CreateTemp(root, "build-*.lock")
		if err != nil {
			return nil, fmt.Errorf("making the work directory: %w", err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err == nil && sameFile(f) {
			lock = f
			break
		}
		// A cleaner took it for a dead build's between creation and flock.
		f.Close()
		if attempt > 10 {
			return nil, errors.New("making the work directory: cannot lock it")
		}
	}
	dir := strings.TrimSuffix(lock.Name(), ".lock")
	if err := os.Mkdir(dir, 0o700); err != nil {
		os.Remove(lock.Name())
		lock.Close()
		return nil, fmt.Errorf("making the work directory: %w", err)
	}
	return newWorkArea(dir, lock)
}

// newWorkArea makes the temp directory inside dir: what stages leave
// there after a kill goes with the work area.
func newWorkArea(dir string, lock *os.File) (*workArea, error) {
	w := &workArea{dir: dir, tmp: filepath.Join(dir, "tmp"), lock: lock}
	if err := os.Mkdir(w.tmp, 0o700); err != nil {
		w.Close()
		return nil, fmt.Errorf("making the work directory: %w", err)
	}
	return w, nil
}

// sameFile reports whether f's path still names f.
func sameFile(f *os.File) bool {
	a, err1 := f.Stat()
	b, err2 := os.Stat(f.Name())
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}

// cleanDeadWork removes work directories whose lock nobody holds.
func cleanDeadWork(root string) {
	locks, _ := filepath.Glob(filepath.Join(root, "build-*.lock"))
	for _, l := range locks {
		f, err := os.OpenFile(l, os.O_RDWR, 0)
		if err != nil {
			continue
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err == nil {
			os.RemoveAll(strings.TrimSuffix(l, ".lock"))
			os.Remove(l)
		}
		f.Close()
	}
	// A directory without its lock file belongs to no running build.
	dirs, _ := filepath.Glob(filepath.Join(root, "build-*"))
	for _, d := range dirs {
		if strings.HasSuffix(d, ".lock") {
			continue
		}
		if _, err := os.Stat(d + ".lock"); errors.Is(err, os.ErrNotExist) {
			os.RemoveAll(d)
		}
	}
}

// Close removes the work directory.
func (w *workArea) Close() error {
	if w.dir == "" {
		return nil
	}
	err := os.RemoveAll(w.dir)
	if w.lock != nil {
		os.Remove(w.lock.Name())
		w.lock.Close()
	}
	w.dir = ""
	return err
}
