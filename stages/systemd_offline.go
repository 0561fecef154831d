package stages

// What `systemctl --root` does to a tree, for trees without systemctl
// (container trees without systemd): the symlinks of enable, disable, mask
// and set-default, from the units' [Install] sections.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/image-builder-action/image-builder-action/pkg/treepath"
)

// offlineUnitDirs are systemd 252's unit search path on Debian (split-usr
// build: /lib before /usr/lib), without the runtime directories; a link
// points at the first file found, as systemctl's do.
var offlineUnitDirs = []string{"/etc/systemd/system", "/usr/local/lib/systemd/system",
	"/lib/systemd/system", "/usr/lib/systemd/system"}

const offlineConfDir = "/etc/systemd/system"

// unitInstall is a unit file's [Install] section.
type unitInstall struct {
	wantedBy, requiredBy, upheldBy, alias, also []string
	defaultInstance                             string
}

// offlineUnit is a unit found in the tree.
type offlineUnit struct {
	name    string // as asked for: "getty@tty1.service"
	file    string // the path in the tree links point to: "/lib/systemd/system/getty@.service"
	install unitInstall
}

// findOfflineUnit looks name (or its template) up and reads its [Install]
// section.
func findOfflineUnit(root, name string) (*offlineUnit, error) {
	names := []string{name}
	if at := strings.Index(name, "@"); at >= 0 && !strings.HasPrefix(name[at:], "@.") {
		names = append(names, name[:at+1]+name[strings.LastIndex(name, "."):])
	}
	for _, n := range names {
		for _, d := range offlineUnitDirs {
			p := path.Join(d, n)
			if isDevNullLink(root, p) {
				return nil, fmt.Errorf("unit %s is masked", name)
			}
			host, err := treepath.Resolve(root, p, true)
			if err != nil {
				return nil, err
			}
			data, err := os.ReadFile(host)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("reading unit %s: %w", p, err)
			}
			in, err := parseUnitInstall(data)
			if err != nil {
				return nil, fmt.Errorf("unit %s: %w", p, err)
			}
			return &offlineUnit{name: name, file: p, install: in}, nil
		}
	}
	return nil, fmt.Errorf("unit %s does not exist in the tree", name)
}

// isDevNullLink reports whether p in the tree is a symlink to /dev/null.
func isDevNullLink(root, p string) bool {
	host, err := treepath.Resolve(root, p, false)
	if err != nil {
		return false
	}
	t, err := os.Readlink(host)
	return err == nil && t == "/dev/null"
}

// parseUnitInstall reads the [Install] section of a unit file; an empty
// assignment clears a list, as systemd does. Specifiers (%i…) are refused
// rather than guessed.
func parseUnitInstall(data []byte) (unitInstall, error) {
	var in unitInstall
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	var cont string
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasSuffix(line, "\\") {
			cont += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		line, cont = cont+line, ""
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '[' {
			section = strings.Trim(line, "[]")
			continue
		}
		if section != "Install" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if strings.Contains(v, "%") {
			return in, fmt.Errorf("[Install] %s=%s: specifiers need the tree's systemctl", k, v)
		}
		var list *[]string
		switch k {
		case "WantedBy":
			list = &in.wantedBy
		case "RequiredBy":
			list = &in.requiredBy
		case "UpheldBy":
			list = &in.upheldBy
		case "Alias":
			list = &in.alias
		case "Also":
			list = &in.also
		case "DefaultInstance":
			in.defaultInstance = v
			continue
		default:
			continue
		}
		if v == "" {
			*list = nil
			continue
		}
		*list = append(*list, strings.Fields(v)...)
	}
	return in, sc.Err()
}

// instanceName is the name the unit is enabled as: a template gets its
// DefaultInstance; "" when a template has none (nothing to enable).
func (u *offlineUnit) instanceName() string {
	at := strings.Index(u.name, "@")
	if at < 0 || !strings.HasPrefix(u.name[at:], "@.") {
		return u.name
	}
	if u.install.defaultInstance == "" {
		return ""
	}
	return u.name[:at+1] + u.install.defaultInstance + u.name[at+1:]
}

// links are the symlinks (in the configuration directory) enabling u
// makes, mapped to their targets.
func (u *offlineUnit) links() map[string]string {
	out := map[string]string{}
	name := u.instanceName()
	if name == "" {
		return out
	}
	for _, dep := range []struct {
		targets []string
		suffix  string
	}{{u.install.wantedBy, ".wants"}, {u.install.requiredBy, ".requires"}, {u.install.upheldBy, ".upholds"}} {
		for _, t := range dep.targets {
			out[path.Join(offlineConfDir, t+dep.suffix, name)] = u.file
		}
	}
	for _, a := range u.install.alias {
		out[path.Join(offlineConfDir, a)] = u.file
	}
	return out
}

// offlineEnable makes the links of units and of the units their Also=
// names.
func offlineEnable(root string, units []string) error {
	return offlineWalk(root, units, func(u *offlineUnit) error {
		links := u.links()
		for _, l := range sortedKeys(links) {
			if err := offlineLink(root, l, links[l]); err != nil {
				return err
			}
		}
		return nil
	})
}

// offlineDisable removes what enabling units made.
func offlineDisable(root string, units []string) error {
	return offlineWalk(root, units, func(u *offlineUnit) error {
		links := u.links()
		for _, l := range sortedKeys(links) {
			host, err := treepath.Resolve(root, l, false)
			if err != nil {
				return err
			}
			if target, err := os.Readlink(host); err == nil && path.Base(target) == path.Base(u.file) {
				if err := os.Remove(host); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// offlineWalk calls fn for units and, once each, the units they name in
// Also=.
func offlineWalk(root string, units []string, fn func(*offlineUnit) error) error {
	seen := map[string]bool{}
	var walk func(name string) error
	walk = func(name string) error {
		if seen[name] {
			return nil
		}
		seen[name] = true
		u, err := findOfflineUnit(root, name)
		if err != nil {
			return err
		}
		if err := fn(u); err != nil {
			return err
		}
		for _, a := range u.install.also {
			if err := walk(a); err != nil {
				return err
			}
		}
		return nil
	}
	for _, n := range units {
		if err := walk(n); err != nil {
			return err
		}
	}
	return nil
}

// offlineMask links units to /dev/null; a unit file of the administrator
// in the way is an error, as with systemctl.
func offlineMask(root string, units []string) error {
	for _, n := range units {
		p := path.Join(offlineConfDir, n)
		host, err := treepath.Resolve(root, p, false)
		if err != nil {
			return err
		}
		if fi, err := os.Lstat(host); err == nil && fi.Mode()&fs.ModeSymlink == 0 {
			return fmt.Errorf("masking %s: %s exists and is not a link", n, p)
		}
		if err := offlineLink(root, p, "/dev/null"); err != nil {
			return err
		}
	}
	return nil
}

// offlineSetDefault points default.target at target.
func offlineSetDefault(root, target string) error {
	u, err := findOfflineUnit(root, target)
	if err != nil {
		return err
	}
	return offlineLink(root, path.Join(offlineConfDir, "default.target"), u.file)
}

// offlineLink makes link (a path in the tree) a symlink to target,
// replacing a symlink already there.
func offlineLink(root, link, target string) error {
	dir, err := treeMkdirAll(root, path.Dir(link))
	if err != nil {
		return err
	}
	host := filepath.Join(dir, path.Base(link))
	if old, err := os.Readlink(host); err == nil && old == target {
		return nil
	}
	return replaceSymlink(host, target)
}
