package stages

import (
	"context"
	"fmt"
	"path"
	"regexp"
	"strings"
)

func init() { register[Systemd]("systemd", 1) }

// Systemd enables, disables and masks units and sets the default target
// with the tree's own systemctl, which works offline in a chroot. A tree
// without systemctl (a container without systemd) gets the same symlinks
// from the units' [Install] sections, as `systemctl --root` would make.
type Systemd struct {
	// Unit names without a suffix get ".service".
	Enabled  []string `json:"enabled,omitempty"`
	Disabled []string `json:"disabled,omitempty"`
	Masked   []string `json:"masked,omitempty"`
	// DefaultTarget gets ".target" when it has no suffix.
	DefaultTarget string `json:"default_target,omitempty"`
}

var (
	unitName     = regexp.MustCompile(`^[A-Za-z0-9:_.\\-]+(@[A-Za-z0-9:_.\\-]*)?$`)
	unitSuffixes = []string{".service", ".socket", ".target", ".timer", ".path", ".mount",
		".automount", ".swap", ".slice", ".device", ".scope"}
)

// unitDirs are where systemd looks for a system's unit files, in order.
var unitDirs = []string{"/etc/systemd/system", "/usr/local/lib/systemd/system",
	"/usr/lib/systemd/system", "/lib/systemd/system"}

// fullUnitName adds ".service" to a name without a unit suffix.
func fullUnitName(n string) string {
	for _, s := range unitSuffixes {
		if strings.HasSuffix(n, s) && len(n) > len(s) {
			return n
		}
	}
	return n + ".service"
}

func checkUnits(field string, units []string, seen map[string]string) error {
	for i, u := range units {
		f := fmt.Sprintf("%s[%d]", field, i)
		if !unitName.MatchString(u) || strings.HasPrefix(u, "-") {
			return fmt.Errorf("%s: %q is not a unit name", f, u)
		}
		full := fullUnitName(u)
		if prev, dup := seen[full]; dup {
			return fmt.Errorf("%s: %s is already listed in %s", f, full, prev)
		}
		seen[full] = f
	}
	return nil
}

func (s *Systemd) validate() error {
	seen := map[string]string{}
	if err := checkUnits("enabled", s.Enabled, seen); err != nil {
		return err
	}
	if err := checkUnits("disabled", s.Disabled, seen); err != nil {
		return err
	}
	if err := checkUnits("masked", s.Masked, seen); err != nil {
		return err
	}
	if t := s.DefaultTarget; t != "" {
		if !unitName.MatchString(t) || strings.HasPrefix(t, "-") || strings.Contains(t, "@") {
			return fmt.Errorf("default_target: %q is not a target name", t)
		}
		if full := s.defaultTarget(); !strings.HasSuffix(full, ".target") {
			return fmt.Errorf("default_target: %q is not a target", t)
		}
	}
	return nil
}

func (s *Systemd) defaultTarget() string {
	t := s.DefaultTarget
	for _, suf := range unitSuffixes {
		if strings.HasSuffix(t, suf) {
			return t
		}
	}
	return t + ".target"
}

// unitExists looks a unit (or the template of an instance) up in the tree.
func unitExists(root, unit string) bool {
	names := []string{unit}
	if at := strings.Index(unit, "@"); at >= 0 {
		names = append(names, unit[:at+1]+unit[strings.LastIndex(unit, "."):])
	}
	for _, d := range unitDirs {
		for _, n := range names {
			if treeExists(root, path.Join(d, n)) {
				return true
			}
		}
	}
	return false
}

// Run runs systemctl in the tree, once per action.
func (s *Systemd) Run(ctx context.Context, env *Env) error {
	actions := []struct {
		field, verb string
		units       []string
		mustExist   bool
	}{
		{"enabled", "enable", s.Enabled, true},
		{"disabled", "disable", s.Disabled, true},
		{"masked", "mask", s.Masked, false},
	}
	for _, a := range actions {
		var units []string
		for i, u := range a.units {
			full := fullUnitName(u)
			if a.mustExist && !unitExists(env.Tree, full) {
				return fmt.Errorf("%s[%d]: unit %s does not exist in the tree", a.field, i, full)
			}
			units = append(units, full)
		}
		if len(units) == 0 {
			continue
		}
		if !hasSystemctl(env.Tree) {
			if err := offlineSystemctl(env.Tree, a.verb, units); err != nil {
				return fmt.Errorf("%s: %w", a.field, err)
			}
			continue
		}
		if err := systemctl(ctx, env, append([]string{a.verb}, units...)...); err != nil {
			return fmt.Errorf("%s: %w", a.field, err)
		}
	}
	if s.DefaultTarget != "" {
		t := s.defaultTarget()
		if !unitExists(env.Tree, t) {
			return fmt.Errorf("default_target: unit %s does not exist in the tree", t)
		}
		if !hasSystemctl(env.Tree) {
			if err := offlineSetDefault(env.Tree, t); err != nil {
				return fmt.Errorf("default_target: %w", err)
			}
		} else if err := systemctl(ctx, env, "set-default", t); err != nil {
			return fmt.Errorf("default_target: %w", err)
		}
	}
	return nil
}

// hasSystemctl reports whether the tree has its own systemctl.
func hasSystemctl(root string) bool {
	return treeExists(root, "/usr/bin/systemctl") || treeExists(root, "/bin/systemctl")
}

// offlineSystemctl does verb (enable, disable, mask) to units in Go.
func offlineSystemctl(root, verb string, units []string) error {
	var err error
	switch verb {
	case "enable":
		err = offlineEnable(root, units)
	case "disable":
		err = offlineDisable(root, units)
	case "mask":
		err = offlineMask(root, units)
	default:
		err = fmt.Errorf("unknown action %s", verb)
	}
	if err != nil {
		return fmt.Errorf("%s %s without systemctl: %w", verb, strings.Join(units, " "), err)
	}
	return nil
}

// systemctl runs the tree's systemctl offline: it sees it is in a chroot,
// and SYSTEMD_OFFLINE makes sure it never looks for a running manager.
func systemctl(ctx context.Context, env *Env, args ...string) error {
	cmd := &Cmd{
		Root: env.Tree,
		Args: append([]string{"systemctl"}, args...),
		Env:  []string{"SYSTEMD_OFFLINE=1"},
	}
	if err := env.Runner.Run(ctx, cmd); err != nil {
		return fmt.Errorf("running systemctl %s in the tree: %w", strings.Join(args, " "), err)
	}
	return nil
}
