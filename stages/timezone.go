package stages

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/image-builder-action/image-builder-action/pkg/treepath"
)

func init() { register[Timezone]("timezone", 1) }

// Timezone sets the time zone and the NTP servers of systemd-timesyncd.
type Timezone struct {
	// Timezone names a file under the tree's /usr/share/zoneinfo
	// ("Europe/Berlin").
	Timezone string `json:"timezone,omitempty"`
	// NTPServers are host names or addresses, written as timesyncd's NTP=.
	NTPServers []string `json:"ntpservers,omitempty"`
}

var tzName = regexp.MustCompile(`^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$`)

// timesyncdDropIn is the drop-in that holds the NTP servers.
const timesyncdDropIn = "/etc/systemd/timesyncd.conf.d/ibuild.conf"

func (s *Timezone) validate() error {
	if s.Timezone != "" && !tzName.MatchString(s.Timezone) {
		return fmt.Errorf("timezone: %q is not a time zone name such as Europe/Berlin", s.Timezone)
	}
	for i, n := range s.NTPServers {
		if net.ParseIP(n) == nil {
			if err := checkHostname(fmt.Sprintf("ntpservers[%d]", i), n); err != nil {
				return err
			}
		}
	}
	return nil
}

// Run links /etc/localtime, writes /etc/timezone and the timesyncd drop-in.
func (s *Timezone) Run(ctx context.Context, env *Env) error {
	if s.Timezone != "" {
		if err := s.setZone(env.Tree); err != nil {
			return err
		}
	}
	if len(s.NTPServers) > 0 {
		conf := "[Time]\nNTP=" + strings.Join(s.NTPServers, " ") + "\n"
		if err := treeWriteConfig(env.Tree, timesyncdDropIn, []byte(conf), 0o644); err != nil {
			return fmt.Errorf("ntpservers: %w", err)
		}
	}
	return nil
}

func (s *Timezone) setZone(root string) error {
	zone := path.Join("/usr/share/zoneinfo", s.Timezone)
	host, err := treepath.Resolve(root, zone, true)
	if err != nil {
		return fmt.Errorf("timezone: %w", err)
	}
	fi, err := os.Stat(host)
	if err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("timezone: %s does not exist in the tree (is tzdata installed?)", zone)
	}
	etc, err := treeMkdirAll(root, "/etc")
	if err != nil {
		return fmt.Errorf("timezone: %w", err)
	}
	if err := replaceSymlink(filepath.Join(etc, "localtime"), zone); err != nil {
		return fmt.Errorf("timezone: %w", err)
	}
	if err := treeWriteConfig(root, "/etc/timezone", []byte(s.Timezone+"\n"), 0o644); err != nil {
		return fmt.Errorf("timezone: %w", err)
	}
	return nil
}

// replaceSymlink makes p a symlink to target atomically, whatever p was
// (a directory excepted).
func replaceSymlink(p, target string) error {
	if fi, err := os.Lstat(p); err == nil && fi.IsDir() {
		return fmt.Errorf("linking %s: is a directory", p)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("linking %s: %w", p, err)
	}
	tmp := filepath.Join(filepath.Dir(p), ".ibuild-"+filepath.Base(p)+".link")
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("linking %s: %w", p, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("linking %s: %w", p, err)
	}
	return nil
}
