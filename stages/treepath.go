package stages

// Helpers shared by the stages that customise a root tree: paths resolved
// inside the tree the way its booted system would resolve them, owners
// looked up in the tree's own account files, and atomic writes.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"github.com/image-builder-action/image-builder-action/pkg/treepath"
)

// checkTreePath checks that p names a location in a tree: absolute, clean
// and without "..".
func checkTreePath(field, p string) error {
	switch {
	case p == "":
		return fmt.Errorf("%s: empty path", field)
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("%s: %q is not absolute", field, p)
	case strings.ContainsRune(p, 0) || strings.ContainsRune(p, '\n'):
		return fmt.Errorf("%s: %q contains a NUL or newline", field, p)
	case path.Clean(p) != p:
		return fmt.Errorf("%s: %q is not clean (want %q)", field, p, path.Clean(p))
	}
	for _, c := range strings.Split(p, "/") {
		if c == ".." {
			return fmt.Errorf("%s: %q contains \"..\"", field, p)
		}
	}
	return nil
}

// treeMkdirAll creates the missing directories of dir (a path inside the
// tree) as root:root 0755, resolving each one inside the tree, and returns
// dir's host path.
func treeMkdirAll(root, dir string) (string, error) {
	cur := "/"
	for _, c := range treepath.Split(dir) {
		cur = path.Join(cur, c)
		host, err := treepath.Resolve(root, cur, true)
		if err != nil {
			return "", err
		}
		fi, err := os.Stat(host)
		switch {
		case err == nil && fi.IsDir():
			continue
		case err == nil:
			return "", fmt.Errorf("creating %s: %s is not a directory", dir, cur)
		case !errors.Is(err, fs.ErrNotExist):
			return "", fmt.Errorf("creating %s: %w", dir, err)
		}
		// mkdir -p in the booted system refuses a dangling symlink too.
		link, err := treepath.Resolve(root, cur, false)
		if err != nil {
			return "", err
		}
		if fi, err := os.Lstat(link); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return "", fmt.Errorf("creating %s: %s is a dangling symlink", dir, cur)
		}
		if err := os.Mkdir(host, 0o755); err != nil {
			return "", fmt.Errorf("creating %s: %w", cur, err)
		}
		if err := os.Chmod(host, 0o755); err != nil {
			return "", fmt.Errorf("creating %s: %w", cur, err)
		}
		if err := os.Lchown(host, 0, 0); err != nil {
			return "", fmt.Errorf("creating %s: %w", cur, err)
		}
	}
	return treepath.Resolve(root, dir, true)
}

// treeWriteFile writes data to host path p (already resolved inside a
// tree) atomically: a temporary file in the same directory, owned and
// moded before it is renamed over p, so no reader sees a partial file (no
// fsync: a tree is committed as a whole by the object store). An existing
// symlink at p is replaced, not followed.
func treeWriteFile(p string, data []byte, mode fs.FileMode, uid, gid int) error {
	if fi, err := os.Lstat(p); err == nil && fi.IsDir() {
		return fmt.Errorf("writing %s: is a directory", p)
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".ibuild-"+filepath.Base(p)+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	// Chown first: it clears setuid and setgid bits that chmod then sets.
	if err := f.Chown(uid, gid); err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	if err := f.Chmod(mode); err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	ok = true
	return nil
}

// treeWriteConfig writes a root-owned file at p inside the tree, creating
// its parents, keeping the mode of a file already there (perm otherwise).
func treeWriteConfig(root, p string, data []byte, perm fs.FileMode) error {
	dir, err := treeMkdirAll(root, path.Dir(p))
	if err != nil {
		return err
	}
	host := filepath.Join(dir, path.Base(p))
	uid, gid := 0, 0
	if fi, err := os.Stat(host); err == nil && fi.Mode().IsRegular() {
		perm = fi.Mode().Perm()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(st.Uid), int(st.Gid)
		}
	}
	return treeWriteFile(host, data, perm, uid, gid)
}

// treeReadFile reads a file at p inside the tree, following symlinks inside
// the tree. A missing file gives fs.ErrNotExist.
func treeReadFile(root, p string) ([]byte, error) {
	host, err := treepath.Resolve(root, p, true)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(host)
}

// treeExists reports whether p exists inside the tree (following symlinks
// inside it).
func treeExists(root, p string) bool {
	host, err := treepath.Resolve(root, p, true)
	if err != nil {
		return false
	}
	_, err = os.Stat(host)
	return err == nil
}

// Owner names a user or a group by name or by numeric id. In JSON it is a
// string ("admin", "1000") or a number (1000).
type Owner string

// UnmarshalJSON accepts a string or a non-negative integer.
func (o *Owner) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*o = Owner(s)
		return nil
	}
	var n json.Number
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&n); err != nil {
		return fmt.Errorf("owner %s: want a name or a numeric id", b)
	}
	id, err := strconv.ParseUint(n.String(), 10, 32)
	if err != nil {
		return fmt.Errorf("owner %s: want a name or a numeric id", b)
	}
	*o = Owner(strconv.FormatUint(id, 10))
	return nil
}

// id returns the numeric id when o is one.
func (o Owner) id() (int, bool) {
	n, err := strconv.ParseUint(string(o), 10, 32)
	if err != nil {
		return 0, false
	}
	return int(n), true
}

// accountName matches the user and group names shadow's tools accept
// (Debian allows upper case and dots; a trailing $ is for machine accounts).
var accountName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$`)

// validate checks that o is a valid name or id; empty is allowed (the
// caller's default applies).
func (o Owner) validate(field string) error {
	if o == "" {
		return nil
	}
	if _, ok := o.id(); ok {
		return nil
	}
	if !accountName.MatchString(string(o)) {
		return fmt.Errorf("%s: %q is neither a valid name nor a numeric id", field, string(o))
	}
	return nil
}

// treeAccounts are the users and groups of a tree, from its /etc/passwd and
// /etc/group.
type treeAccounts struct {
	uid    map[string]int
	gid    map[string]int
	home   map[string]string
	userGr map[string]int // a user's primary gid
	// groupIDs holds every gid of /etc/group.
	groupIDs map[int]string
}

// loadTreeAccounts reads the tree's account files, never the host's.
func loadTreeAccounts(root string) (*treeAccounts, error) {
	a := &treeAccounts{
		uid: map[string]int{}, gid: map[string]int{}, home: map[string]string{},
		userGr: map[string]int{}, groupIDs: map[int]string{},
	}
	err := readColonFile(root, "/etc/passwd", 7, func(f []string) error {
		uid, err := strconv.Atoi(f[2])
		if err != nil {
			return fmt.Errorf("user %s: uid %q", f[0], f[2])
		}
		gid, err := strconv.Atoi(f[3])
		if err != nil {
			return fmt.Errorf("user %s: gid %q", f[0], f[3])
		}
		a.uid[f[0]], a.userGr[f[0]], a.home[f[0]] = uid, gid, f[5]
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = readColonFile(root, "/etc/group", 4, func(f []string) error {
		gid, err := strconv.Atoi(f[2])
		if err != nil {
			return fmt.Errorf("group %s: gid %q", f[0], f[2])
		}
		a.gid[f[0]] = gid
		if _, dup := a.groupIDs[gid]; !dup {
			a.groupIDs[gid] = f[0]
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// readColonFile calls fn with the fields of each entry of a passwd-style
// file in the tree; a missing file has no entries.
func readColonFile(root, p string, fields int, fn func([]string) error) error {
	data, err := treeReadFile(root, p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the tree's %s: %w", p, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) != fields {
			return fmt.Errorf("reading the tree's %s:%d: %d fields, want %d", p, n, len(f), fields)
		}
		if err := fn(f); err != nil {
			return fmt.Errorf("reading the tree's %s:%d: %w", p, n, err)
		}
	}
	return sc.Err()
}

// userID resolves a user by name or id; empty means root.
func (a *treeAccounts) userID(o Owner) (int, error) {
	if o == "" {
		return 0, nil
	}
	if id, ok := o.id(); ok {
		return id, nil
	}
	id, ok := a.uid[string(o)]
	if !ok {
		return 0, fmt.Errorf("user %q does not exist in the tree's /etc/passwd", string(o))
	}
	return id, nil
}

// groupID resolves a group by name or id; empty means root.
func (a *treeAccounts) groupID(o Owner) (int, error) {
	if o == "" {
		return 0, nil
	}
	if id, ok := o.id(); ok {
		return id, nil
	}
	id, ok := a.gid[string(o)]
	if !ok {
		return 0, fmt.Errorf("group %q does not exist in the tree's /etc/group", string(o))
	}
	return id, nil
}

// parseMode parses an octal permission string such as "0750" (setuid,
// setgid and sticky bits allowed).
func parseMode(field, s string) (fs.FileMode, error) {
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || s == "" || n > 0o7777 {
		return 0, fmt.Errorf("%s: %q is not an octal mode", field, s)
	}
	m := fs.FileMode(n & 0o777)
	if n&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if n&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if n&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m, nil
}
