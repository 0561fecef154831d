package stages

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/image-builder-action/image-builder-action/pkg/treepath"
)

func init() { register[Firewall]("firewall", 1) }

// Firewall configures firewalld's default zone offline, with the tree's
// firewall-offline-cmd.
type Firewall struct {
	// Ports are "port:protocol" or "from-to:protocol" ("22:tcp"), where a
	// port is a number or a name of the tree's /etc/services ("imap:tcp"),
	// as composer's blueprints have them.
	Ports []string `json:"ports,omitempty"`
	// EnabledServices and DisabledServices name firewalld services.
	EnabledServices  []string `json:"enabled_services,omitempty"`
	DisabledServices []string `json:"disabled_services,omitempty"`
	// Zones bind sources (addresses, networks, MAC addresses,
	// "ipset:NAME") to firewalld zones.
	Zones []FirewallZone `json:"zones,omitempty"`
}

// FirewallZone is a firewalld zone and the sources it takes; an empty
// name is the default zone.
type FirewallZone struct {
	Name    string   `json:"name,omitempty"`
	Sources []string `json:"sources"`
}

var (
	firewallZone   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,16}$`)
	firewallSource = regexp.MustCompile(`^(ipset:[A-Za-z0-9_.:-]+|[0-9A-Fa-f:./]+)$`)
)

var (
	firewallPort     = regexp.MustCompile(`^([0-9]{1,5})(?:-([0-9]{1,5}))?:(tcp|udp|sctp|dccp)$`)
	firewallPortName = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9_.+-]*):(tcp|udp|sctp|dccp)$`)
	firewallService  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.+-]*$`)
)

func (s *Firewall) validate() error {
	for i, z := range s.Zones {
		f := fmt.Sprintf("zones[%d]", i)
		if z.Name != "" && !firewallZone.MatchString(z.Name) {
			return fmt.Errorf("%s.name: %q is not a firewalld zone name", f, z.Name)
		}
		if len(z.Sources) == 0 {
			return fmt.Errorf("%s.sources: a zone needs sources", f)
		}
		for j, src := range z.Sources {
			if !firewallSource.MatchString(src) {
				return fmt.Errorf("%s.sources[%d]: %q is not an address, a network, a MAC address or ipset:NAME", f, j, src)
			}
		}
	}
	for i, p := range s.Ports {
		if firewallPortName.MatchString(p) {
			continue
		}
		m := firewallPort.FindStringSubmatch(p)
		if m == nil {
			return fmt.Errorf("ports[%d]: %q is not \"port:protocol\" or \"from-to:protocol\" (tcp, udp, sctp, dccp)", i, p)
		}
		from, _ := strconv.Atoi(m[1])
		to := from
		if m[2] != "" {
			to, _ = strconv.Atoi(m[2])
		}
		if from < 1 || to > 65535 || to < from {
			return fmt.Errorf("ports[%d]: %q is not a port or range within 1-65535", i, p)
		}
	}
	seen := map[string]string{}
	for _, l := range []struct {
		field string
		names []string
	}{{"enabled_services", s.EnabledServices}, {"disabled_services", s.DisabledServices}} {
		for i, n := range l.names {
			f := fmt.Sprintf("%s[%d]", l.field, i)
			if !firewallService.MatchString(n) {
				return fmt.Errorf("%s: %q is not a firewalld service name", f, n)
			}
			if prev, dup := seen[n]; dup {
				return fmt.Errorf("%s: %s is already listed in %s", f, n, prev)
			}
			seen[n] = f
		}
	}
	return nil
}

// Run adds the ports, then enables and disables the services.
func (s *Firewall) Run(ctx context.Context, env *Env) error {
	if len(s.Ports)+len(s.EnabledServices)+len(s.DisabledServices)+len(s.Zones) == 0 {
		return nil
	}
	if !treeExists(env.Tree, "/usr/bin/firewall-offline-cmd") {
		return errors.New("firewall: the tree has no firewall-offline-cmd: install the firewalld package")
	}
	// firewalld checks protocols against /etc/protocols and gives up on its
	// whole configuration without it.
	if !treeExists(env.Tree, "/etc/protocols") {
		return errors.New("firewall: firewalld needs /etc/protocols in the tree: install the netbase package")
	}
	for i, p := range s.Ports {
		if m := firewallPortName.FindStringSubmatch(p); m != nil && !netService(env.Tree, m[1], m[2]) {
			return fmt.Errorf("ports[%d]: %q: the tree's /etc/services has no %s/%s", i, p, m[1], m[2])
		}
	}
	for i, n := range s.EnabledServices {
		if !firewallServiceExists(env.Tree, n) {
			return fmt.Errorf("enabled_services[%d]: service %q is not defined in the tree's firewalld (no %s.xml in /usr/lib/firewalld/services or /etc/firewalld/services)", i, n, n)
		}
	}
	_, before := zoneFiles(env.Tree)
	// firewall-offline-cmd takes one kind of change a run.
	var runs [][]string
	if len(s.Ports) > 0 {
		var args []string
		for _, p := range s.Ports {
			args = append(args, "--add-port="+strings.Replace(p, ":", "/", 1))
		}
		runs = append(runs, args)
	}
	if len(s.EnabledServices) > 0 {
		var args []string
		for _, n := range s.EnabledServices {
			args = append(args, "--add-service="+n)
		}
		runs = append(runs, args)
	}
	for _, n := range s.DisabledServices {
		// Removing a service the zone does not have succeeds.
		runs = append(runs, []string{"--remove-service=" + n})
	}
	for _, z := range s.Zones {
		args := []string{}
		if z.Name != "" {
			args = append(args, "--zone="+z.Name)
		}
		for _, src := range z.Sources {
			args = append(args, "--add-source="+src)
		}
		runs = append(runs, args)
	}
	for _, args := range runs {
		if err := runInTree(ctx, env, append([]string{"firewall-offline-cmd"}, args...)...); err != nil {
			return fmt.Errorf("firewall: %w", err)
		}
	}
	// firewalld keeps the previous zone file as <zone>.xml.old: build
	// leftovers the image does not need.
	dir, after := zoneFiles(env.Tree)
	for n := range after {
		if strings.HasSuffix(n, ".xml.old") && !before[n] {
			if err := os.Remove(path.Join(dir, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("firewall: %w", err)
			}
		}
	}
	return nil
}

// zoneFiles lists the names in the tree's /etc/firewalld/zones.
func zoneFiles(root string) (string, map[string]bool) {
	dir, err := treepath.Resolve(root, "/etc/firewalld/zones", true)
	if err != nil {
		return "", nil
	}
	names := map[string]bool{}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		names[e.Name()] = true
	}
	return dir, names
}

func firewallServiceExists(root, name string) bool {
	for _, d := range []string{"/etc/firewalld/services", "/usr/lib/firewalld/services"} {
		if treeExists(root, path.Join(d, name+".xml")) {
			return true
		}
	}
	return false
}

// netService says whether the tree's /etc/services names a port for
// name (or an alias of it) and proto, which firewalld resolves it by.
func netService(root, name, proto string) bool {
	data, err := treeReadFile(root, "/etc/services")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(line)
		if len(f) < 2 || !strings.HasSuffix(f[1], "/"+proto) {
			continue
		}
		for _, n := range append(f[:1:1], f[2:]...) {
			if n == name {
				return true
			}
		}
	}
	return false
}
