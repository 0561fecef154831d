// Package treepath resolves paths inside a directory tree (a root file
// system being built) the way its booted system would: symlinks are
// followed inside the tree, absolute targets starting again at the tree's
// root. Where the kernel would stop a ".." at "/", a path or symlink that
// climbs above the tree's root is refused instead: such a link in an image
// is a mistake or an attack, and every stage, the deb extractor and the
// namespace runner resolve paths this one way.
package treepath

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

// maxSymlinks bounds symlink expansions in one resolution, as the
// kernel's ELOOP limit does.
const maxSymlinks = 40

// Resolve returns the host path of p, an absolute path inside the tree
// at root, resolving it component by component: symlinks are followed
// inside the tree (absolute targets start again at the tree's root), as
// the booted system would follow them. A path or symlink that climbs above
// the tree's root is refused rather than clamped. The last component is
// followed only when followLast is set; components that do not exist are
// taken literally.
func Resolve(root, p string, followLast bool) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("resolving %s in the tree: not absolute", p)
	}
	rest := Split(p)
	cur := "/"
	links := 0
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if cur == "/" {
				return "", fmt.Errorf("resolving %s in the tree: leads out of the tree", p)
			}
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, c)
		if len(rest) == 0 && !followLast {
			cur = next
			break
		}
		fi, err := os.Lstat(filepath.Join(root, next))
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			// A missing component, or one under a non-directory, is taken
			// literally: the caller's own operation reports it.
			if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
				return "", fmt.Errorf("resolving %s in the tree: %w", p, err)
			}
			cur = next
			continue
		}
		if links++; links > maxSymlinks {
			return "", fmt.Errorf("resolving %s in the tree: too many levels of symbolic links", p)
		}
		target, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", fmt.Errorf("resolving %s in the tree: %w", p, err)
		}
		if strings.HasPrefix(target, "/") {
			cur = "/"
		}
		// A ".." the link brings that climbs above the root is an escape,
		// reported with the link that caused it.
		if err := checkLinkStaysInside(cur, target); err != nil {
			return "", fmt.Errorf("resolving %s in the tree: symlink %s -> %s leads out of the tree", p, next, target)
		}
		rest = append(Split(target), rest...)
	}
	return filepath.Join(root, cur), nil
}

// checkLinkStaysInside reports whether target, read from a link in
// directory dir, climbs above "/" lexically.
func checkLinkStaysInside(dir, target string) error {
	depth := len(Split(dir))
	if strings.HasPrefix(target, "/") {
		depth = 0
	}
	for _, c := range Split(target) {
		switch c {
		case "", ".":
		case "..":
			if depth == 0 {
				return errors.New("escapes")
			}
			depth--
		default:
			depth++
		}
	}
	return nil
}

// Split returns the non-empty components of p.
func Split(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" {
			out = append(out, c)
		}
	}
	return out
}
