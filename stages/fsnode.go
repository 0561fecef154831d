package stages

// What the files and directories stages share: the node spec (path, mode,
// owner), its checks, and the walk that resolves owners in the tree.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strconv"

	"github.com/image-builder-action/image-builder-action/pkg/treepath"
)

// Node is a file or directory of the tree: where it is, its mode and its
// owner.
type Node struct {
	// Path is absolute and clean, without "..".
	Path string `json:"path"`
	// Mode is octal; each stage has its default for an empty one.
	Mode string `json:"mode,omitempty"`
	// User and Group own the node: a name or numeric id resolved against
	// the tree's /etc/passwd and /etc/group (root when empty).
	User  Owner `json:"user,omitempty"`
	Group Owner `json:"group,omitempty"`
}

// check validates n, the list entry field; rootErr says why "/" is refused,
// seen holds the paths of the entries before it.
func (n *Node) check(field, defMode, rootErr string, seen map[string]bool) error {
	if err := checkTreePath(field+".path", n.Path); err != nil {
		return err
	}
	if n.Path == "/" {
		return fmt.Errorf("%s.path: %s", field, rootErr)
	}
	if seen[n.Path] {
		return fmt.Errorf("%s.path: %s is listed twice", field, n.Path)
	}
	seen[n.Path] = true
	if _, err := parseMode(field+".mode", defaultString(n.Mode, defMode)); err != nil {
		return err
	}
	if err := n.User.validate(field + ".user"); err != nil {
		return err
	}
	return n.Group.validate(field + ".group")
}

// mode is n's mode, defMode when empty; check has accepted it.
func (n *Node) mode(defMode string) fs.FileMode {
	m, _ := parseMode("mode", defaultString(n.Mode, defMode))
	return m
}

// owner resolves n's user and group in the tree's accounts; an error names
// the field ("user: …", "group: …").
func (n *Node) owner(acc *treeAccounts) (uid, gid int, err error) {
	if uid, err = acc.userID(n.User); err != nil {
		return 0, 0, fmt.Errorf("user: %w", err)
	}
	if gid, err = acc.groupID(n.Group); err != nil {
		return 0, 0, fmt.Errorf("group: %w", err)
	}
	return uid, gid, nil
}

// parentError is a node's parent directory missing from the tree, not a
// directory, or not readable (err).
type parentError struct {
	dir    string
	notDir bool
	err    error
}

func (e *parentError) Error() string {
	switch {
	case e.err != nil:
		return e.err.Error()
	case e.notDir:
		return fmt.Sprintf("%s is not a directory in the tree", e.dir)
	}
	return fmt.Sprintf("parent directory %s does not exist in the tree", e.dir)
}

func (e *parentError) Unwrap() error { return e.err }

// parentDir returns the host path of the directory holding n, resolved
// inside the tree at root (a symlink leading out of it is an error); a
// parent that is not an existing directory is a *parentError.
func (n *Node) parentDir(root string) (string, error) {
	dir := path.Dir(n.Path)
	host, err := treepath.Resolve(root, dir, true)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(host)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", &parentError{dir: dir}
	case err != nil:
		return "", &parentError{dir: dir, err: err}
	case !fi.IsDir():
		return "", &parentError{dir: dir, notDir: true}
	}
	return host, nil
}

// eachNode calls fn for the indexes of n nodes in order, with the tree's
// accounts read once, until fn fails or ctx is done.
func eachNode(ctx context.Context, root string, n int, fn func(i int, acc *treeAccounts) error) error {
	if n == 0 {
		return nil
	}
	acc, err := loadTreeAccounts(root)
	if err != nil {
		return err
	}
	for i := range n {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(i, acc); err != nil {
			return err
		}
	}
	return nil
}

// MarshalJSON writes a numeric id as a JSON number and a name as a string,
// the forms the blueprint gives them in.
func (o Owner) MarshalJSON() ([]byte, error) {
	if id, ok := o.id(); ok && strconv.Itoa(id) == string(o) {
		return []byte(string(o)), nil
	}
	return json.Marshal(string(o))
}

func defaultString(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
