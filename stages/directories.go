package stages

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"

	"github.com/image-builder-action/image-builder-action/pkg/treepath"
)

func init() { register[Directories]("directories", 1) }

// Directories creates directories in the tree, or sets the mode and owner
// of ones already there.
type Directories struct {
	Directories []DirectorySpec `json:"directories"`
}

// DirectorySpec is one directory; its mode is "0755" when empty.
type DirectorySpec struct {
	Node
	// EnsureParents creates missing parents as root:root 0755; without it
	// a missing parent is an error.
	EnsureParents bool `json:"ensure_parents,omitempty"`
}

const directoryMode = "0755"

func (s *Directories) validate() error {
	seen := map[string]bool{}
	for i := range s.Directories {
		field := fmt.Sprintf("directories[%d]", i)
		if err := s.Directories[i].check(field, directoryMode, "the tree's root cannot be changed here", seen); err != nil {
			return err
		}
	}
	return nil
}

// Run creates the directories in order.
func (s *Directories) Run(ctx context.Context, env *Env) error {
	return eachNode(ctx, env.Tree, len(s.Directories), func(i int, acc *treeAccounts) error {
		if err := s.Directories[i].make(env.Tree, acc); err != nil {
			return fmt.Errorf("directories[%d]: %w", i, err)
		}
		return nil
	})
}

func (d *DirectorySpec) make(root string, acc *treeAccounts) error {
	mode := d.mode(directoryMode)
	uid, gid, err := d.owner(acc)
	if err != nil {
		return err
	}
	parent := path.Dir(d.Path)
	if d.EnsureParents {
		if _, err := treeMkdirAll(root, parent); err != nil {
			return fmt.Errorf("path: %w", err)
		}
	} else if _, err := d.parentDir(root); err != nil {
		var pe *parentError
		if errors.As(err, &pe) {
			return fmt.Errorf("path: parent directory %s does not exist in the tree (set ensure_parents to create it)", parent)
		}
		return fmt.Errorf("path: %w", err)
	}
	// An existing symlink to a directory inside the tree is followed, as
	// mkdir -p would.
	host, err := treepath.Resolve(root, d.Path, true)
	if err != nil {
		return fmt.Errorf("path: %w", err)
	}
	fi, err := os.Stat(host)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if link, lerr := treepath.Resolve(root, d.Path, false); lerr == nil && link != host {
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
