package stages

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"strings"
)

func init() { register[Hostname]("hostname", 1) }

// Hostname sets the tree's host name: /etc/hostname, and the 127.0.1.1
// line of /etc/hosts that Debian uses to resolve it without DNS.
type Hostname struct {
	// Hostname is a host name or a fully qualified domain name.
	Hostname string `json:"hostname"`
}

var hostLabel = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

// checkHostname checks an RFC 1123 host name.
func checkHostname(field, h string) error {
	if h == "" {
		return fmt.Errorf("%s: empty", field)
	}
	if len(h) > 253 {
		return fmt.Errorf("%s: %q is longer than 253 characters", field, h)
	}
	for _, l := range strings.Split(h, ".") {
		if !hostLabel.MatchString(l) {
			return fmt.Errorf("%s: %q is not a valid host name (label %q)", field, h, l)
		}
	}
	return nil
}

func (s *Hostname) validate() error { return checkHostname("hostname", s.Hostname) }

// Run writes /etc/hostname and /etc/hosts.
func (s *Hostname) Run(ctx context.Context, env *Env) error {
	if err := treeWriteConfig(env.Tree, "/etc/hostname", []byte(s.Hostname+"\n"), 0o644); err != nil {
		return fmt.Errorf("setting the host name: %w", err)
	}
	old, err := treeReadFile(env.Tree, "/etc/hosts")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("setting the host name: %w", err)
	}
	if err := treeWriteConfig(env.Tree, "/etc/hosts", hostsWithName(old, s.Hostname), 0o644); err != nil {
		return fmt.Errorf("setting the host name: %w", err)
	}
	return nil
}

// defaultHosts is Debian's installer's /etc/hosts, written when the tree
// has none.
const defaultHosts = `127.0.0.1	localhost
127.0.1.1	HOSTNAME

# The following lines are desirable for IPv6 capable hosts
::1     localhost ip6-localhost ip6-loopback
ff02::1 ip6-allnodes
ff02::2 ip6-allrouters
`

// hostsWithName returns hosts with its 127.0.1.1 line naming name (the
// short name as an alias of a fully qualified one), replacing the old line
// or adding one after the 127.0.0.1 line.
func hostsWithName(hosts []byte, name string) []byte {
	line := "127.0.1.1\t" + name
	if short, _, ok := strings.Cut(name, "."); ok {
		line += "\t" + short
	}
	if len(hosts) == 0 {
		return []byte(strings.Replace(defaultHosts, "127.0.1.1\tHOSTNAME", line, 1))
	}
	lines := strings.Split(strings.TrimSuffix(string(hosts), "\n"), "\n")
	var out []string
	done := false
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) > 0 && f[0] == "127.0.1.1" {
			if !done {
				out = append(out, line)
				done = true
			}
			continue
		}
		out = append(out, l)
	}
	if !done {
		at := 0
		for i, l := range out {
			if f := strings.Fields(l); len(f) > 0 && f[0] == "127.0.0.1" {
				at = i + 1
				break
			}
		}
		out = append(out[:at], append([]string{line}, out[at:]...)...)
	}
	return []byte(strings.Join(out, "\n") + "\n")
}
