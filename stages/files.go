package stages

import (
	"context"
	"encoding/base64"
	"fmt"
	"path"
	"path/filepath"
	"strings"
)

func init() { register[Files]("files", 1) }

// Files writes files into the tree.
type Files struct {
	Files []FileSpec `json:"files"`
}

// FileSpec is one file to write; its mode is "0644" when empty. Its parent
// directory must exist in the tree; a symlink at Path is replaced, not
// followed.
type FileSpec struct {
	Node
	// Data is the file's whole content.
	Data string `json:"data"`
	// Encoding is how Data is written: empty for the text itself,
	// "base64" for any bytes (JSON strings hold only text).
	Encoding string `json:"encoding,omitempty"`
	// EnsureParents creates missing parents as root:root 0755, as
	// directories' ensure_parents does; without it the parent must exist.
	EnsureParents bool `json:"ensure_parents,omitempty"`
}

// content returns the file's bytes.
func (f *FileSpec) content() ([]byte, error) {
	switch f.Encoding {
	case "":
		return []byte(f.Data), nil
	case "base64":
		b, err := base64.StdEncoding.DecodeString(f.Data)
		if err != nil {
			return nil, fmt.Errorf("data: not valid base64: %w", err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("encoding: %q is not base64 or empty", f.Encoding)
}

const fileMode = "0644"

// treeDirs are directories in every Debian tree (the FHS's, and those of
// base-files, dpkg and apt): a file there could never be written, so it is
// refused before a build starts.
var treeDirs = map[string]bool{}

func init() {
	for _, d := range strings.Fields(`/bin /boot /dev /etc /home /lib /media /mnt /opt /proc /root /run /sbin
		/srv /sys /tmp /usr /var /usr/bin /usr/include /usr/lib /usr/libexec /usr/local /usr/local/bin
		/usr/local/etc /usr/local/games /usr/local/include /usr/local/lib /usr/local/man /usr/local/sbin
		/usr/local/share /usr/local/src /usr/sbin /usr/share /usr/src /var/backups /var/cache /var/lib
		/var/local /var/lock /var/log /var/mail /var/opt /var/run /var/spool /var/tmp /etc/alternatives
		/etc/apt /etc/default /etc/dpkg /etc/profile.d /etc/skel /etc/update-motd.d`) {
		treeDirs[d] = true
	}
}

func (s *Files) validate() error {
	seen := map[string]bool{}
	for i := range s.Files {
		field := fmt.Sprintf("files[%d]", i)
		if err := s.Files[i].check(field, fileMode, `"/" is not a file`, seen); err != nil {
			return err
		}
		if treeDirs[s.Files[i].Path] {
			return fmt.Errorf("%s.path: %s is a directory in every tree, not a file", field, s.Files[i].Path)
		}
		if _, err := s.Files[i].content(); err != nil {
			return fmt.Errorf("%s.%w", field, err)
		}
	}
	return nil
}

// Run writes each file atomically.
func (s *Files) Run(ctx context.Context, env *Env) error {
	return eachNode(ctx, env.Tree, len(s.Files), func(i int, acc *treeAccounts) error {
		f := &s.Files[i]
		field := fmt.Sprintf("files[%d]", i)
		uid, gid, err := f.owner(acc)
		if err != nil {
			// "files[0].user: …", as validate names the field.
			return fmt.Errorf("%s.%w", field, err)
		}
		if f.EnsureParents {
			if _, err := treeMkdirAll(env.Tree, path.Dir(f.Path)); err != nil {
				return fmt.Errorf("%s.path: %w", field, err)
			}
		}
		dir, err := f.parentDir(env.Tree)
		if err != nil {
			return fmt.Errorf("%s.path: %w", field, err)
		}
		data, err := f.content()
		if err != nil {
			return fmt.Errorf("%s.%w", field, err)
		}
		if err := treeWriteFile(filepath.Join(dir, path.Base(f.Path)), data, f.mode(fileMode), uid, gid); err != nil {
			return fmt.Errorf("%s: %w", field, err)
		}
		return nil
	})
}
