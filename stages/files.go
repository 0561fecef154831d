package stages

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
)

func init() {
	Register("files", func(o json.RawMessage) (Stage, error) {
		var s Files
		if err := Decode(o, &s); err != nil {
			return nil, err
		}
		return &s, s.validate()
	})
}

// Files writes files into the tree.
type Files struct {
	Files []FileSpec `json:"files"`
}

// FileSpec is one file to write. Its parent directory must exist in the
// tree; a symlink at Path is replaced, not followed.
type FileSpec struct {
	// Path is absolute and clean, without "..".
	Path string `json:"path"`
	// Mode is octal ("0644" when empty).
	Mode string `json:"mode,omitempty"`
	// User and Group own the file: a name or numeric id resolved against
	// the tree's /etc/passwd and /etc/group (root when empty).
	User  Owner `json:"user,omitempty"`
	Group Owner `json:"group,omitempty"`
	// Data is the file's whole content.
	Data string `json:"data"`
}

func (s *Files) validate() error {
	seen := map[string]bool{}
	for i, f := range s.Files {
		field := fmt.Sprintf("files[%d]", i)
		if err := checkTreePath(field+".path", f.Path); err != nil {
			return err
		}
		if f.Path == "/" {
			return fmt.Errorf("%s.path: \"/\" is not a file", field)
		}
		if seen[f.Path] {
			return fmt.Errorf("%s.path: %s is listed twice", field, f.Path)
		}
		seen[f.Path] = true
		if _, err := parseMode(field+".mode", defaultString(f.Mode, "0644")); err != nil {
			return err
		}
		if err := f.User.validate(field + ".user"); err != nil {
			return err
		}
		if err := f.Group.validate(field + ".group"); err != nil {
			return err
		}
	}
	return nil
}

// Run writes each file atomically.
func (s *Files) Run(ctx context.Context, env *Env) error {
	if len(s.Files) == 0 {
		return nil
	}
	acc, err := loadTreeAccounts(env.Tree)
	if err != nil {
		return err
	}
	for i, f := range s.Files {
		if err := ctx.Err(); err != nil {
			return err
		}
		field := fmt.Sprintf("files[%d]", i)
		mode, _ := parseMode(field+".mode", defaultString(f.Mode, "0644"))
		uid, err := acc.userID(f.User)
		if err != nil {
			return fmt.Errorf("%s.user: %w", field, err)
		}
		gid, err := acc.groupID(f.Group)
		if err != nil {
			return fmt.Errorf("%s.group: %w", field, err)
		}
		dir, err := treeResolve(env.Tree, path.Dir(f.Path), true)
		if err != nil {
			return fmt.Errorf("%s.path: %w", field, err)
		}
		fi, err := os.Stat(dir)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s.path: parent directory %s does not exist in the tree", field, path.Dir(f.Path))
		}
		if err != nil {
			return fmt.Errorf("%s.path: %w", field, err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s.path: %s is not a directory in the tree", field, path.Dir(f.Path))
		}
		if err := treeWriteFile(filepath.Join(dir, path.Base(f.Path)), []byte(f.Data), mode, uid, gid); err != nil {
			return fmt.Errorf("%s: %w", field, err)
		}
	}
	return nil
}

func defaultString(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
