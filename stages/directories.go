package stages

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
)

func init() {
	Register("directories", func(o json.RawMessage) (Stage, error) {
		var s Directories
		if err := Decode(o, &s); err != nil {
			return nil, err
		}
		return &s, s.validate()
	})
}

// Directories creates directories in the tree, or sets the mode and owner
// of ones already there.
type Directories struct {
	Directories []DirectorySpec `json:"directories"`
}

// DirectorySpec is one directory.
type DirectorySpec struct {
	// Path is absolute and clean, without "..".
	Path string `json:"path"`
	// Mode is octal ("0755" when empty).
	Mode string `json:"mode,omitempty"`
	// User and Group own the directory: a name or numeric id resolved
	// against the tree's /etc/passwd and /etc/group (root when empty).
	User  Owner `json:"user,omitempty"`
	Group Owner `json:"group,omitempty"`
	// EnsureParents creates missing parents as root:root 0755; without it
	// a missing parent is an error.
	EnsureParents bool `json:"ensure_parents,omitempty"`
}

func (s *Directories) validate() error {
	seen := map[string]bool{}
	for i, d := range s.Directories {
		field := fmt.Sprintf("directories[%d]", i)
		if err := checkTreePath(field+".path", d.Path); err != nil {
			return err
		}
		if d.Path == "/" {
			return fmt.Errorf("%s.path: the tree's root cannot be changed here", field)
		}
		if seen[d.Path] {
			return fmt.Errorf("%s.path: %s is listed twice", field, d.Path)
		}
		seen[d.Path] = true
		if _, err := parseMode(field+".mode", defaultString(d.Mode, "0755")); err != nil {
			return err
		}
		if err := d.User.validate(field + ".user"); err != nil {
			return err
		}
		if err := d.Group.validate(field + ".group"); err != nil {
			return err
		}
	}
	return nil
}

// Run creates the directories in order.
func (s *Directories) Run(ctx context.Context, env *Env) error {
	if len(s.Directories) == 0 {
		return nil
	}
	acc, err := loadTreeAccounts(env.Tree)
	if err != nil {
		return err
	}
	for i, d := range s.Directories {
		if err := ctx.Err(); err != nil {
			return err
		}
		field := fmt.Sprintf("directories[%d]", i)
		if err := d.make(env.Tree, acc); err != nil {
			return fmt.Errorf("%s: %w", field, err)
		}
	}
	return nil
}

func (d *DirectorySpec) make(root string, acc *treeAccounts) error {
	mode, _ := parseMode("mode", defaultString(d.Mode, "0755"))
	uid, err := acc.userID(d.User)
	if err != nil {
		return fmt.Errorf("user: %w", err)
	}
	gid, err := acc.groupID(d.Group)
	if err != nil {
		return fmt.Errorf("group: %w", err)
	}
	parent := path.Dir(d.Path)
	if d.EnsureParents {
		if _, err := treeMkdirAll(root, parent); err != nil {
			return fmt.Errorf("path: %w", err)
		}
	} else {
		host, err := treeResolve(root, parent, true)
		if err != nil {
			return fmt.Errorf("path: %w", err)
		}
		if fi, err := os.Stat(host); err != nil || !fi.IsDir() {
			return fmt.Errorf("path: parent directory %s does not exist in the tree (set ensure_parents to create it)", parent)
		}
	}
	// An existing symlink to a directory inside the tree is followed, as
	// mkdir -p would.
	host, err := treeResolve(root, d.Path, true)
	if err != nil {
		return fmt.Errorf("path: %w", err)
	}
	fi, err := os.Stat(host)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if link, lerr := treeResolve(root, d.Path, false); lerr == nil && link != host {
			return fmt.Errorf("path: %s is a dangling symlink", d.Path)
		}
		if err := os.Mkdir(host, 0o700); err != nil {
			return fmt.Errorf("creating %s: %w", d.Path, err)
		}
	case err != nil:
		return fmt.Errorf("creating %s: %w", d.Path, err)
	case !fi.IsDir():
		return fmt.Errorf("path: %s exists and is not a directory", d.Path)
	}
	// Chown first: it may clear the setgid bit that chmod then sets.
	if err := os.Lchown(host, uid, gid); err != nil {
		return fmt.Errorf("setting the owner of %s: %w", d.Path, err)
	}
	if err := os.Chmod(host, mode); err != nil {
		return fmt.Errorf("setting the mode of %s: %w", d.Path, err)
	}
	return nil
}
