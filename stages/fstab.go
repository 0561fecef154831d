package stages

import (
	"context"
	"fmt"
	"regexp"
	"strings"
)

func init() { register[Fstab]("fstab", 1) }

// Fstab writes the tree's /etc/fstab (replacing it) and makes the mount
// points it names.
type Fstab struct {
	// Filesystems are written in the order given.
	Filesystems []FstabEntry `json:"filesystems"`
}

// FstabEntry is one file system, mounted by UUID.
type FstabEntry struct {
	// UUID is 8-4-4-4-12 lower-case hex, or XXXX-XXXX upper-case hex for
	// vfat: the form udev uses in /dev/disk/by-uuid.
	UUID    string `json:"uuid"`
	VFSType string `json:"vfs_type"`
	// Path is the mount point ("none" for swap).
	Path string `json:"path"`
	// Options are the mount options ("defaults" when empty).
	Options string `json:"options,omitempty"`
	Freq    int    `json:"freq,omitempty"`
	PassNo  int    `json:"passno,omitempty"`
}

var (
	fsUUID    = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	vfatUUID  = regexp.MustCompile(`^[0-9A-F]{4}-[0-9A-F]{4}$`)
	mountOpts = regexp.MustCompile(`^[A-Za-z0-9_.,=:@/+-]+$`)
)

func (s *Fstab) validate() error {
	if len(s.Filesystems) == 0 {
		return fmt.Errorf("filesystems: empty")
	}
	paths, uuids, prevIndex := map[string]string{}, map[string]string{}, map[string]int{}
	for i, e := range s.Filesystems {
		f := fmt.Sprintf("filesystems[%d]", i)
		switch e.VFSType {
		case "ext2", "ext3", "ext4", "xfs", "btrfs", "swap":
			if !fsUUID.MatchString(e.UUID) {
				return fmt.Errorf("%s.uuid: %q is not a lower-case 8-4-4-4-12 UUID", f, e.UUID)
			}
		case "vfat":
			if !vfatUUID.MatchString(e.UUID) {
				return fmt.Errorf("%s.uuid: %q is not a vfat volume id XXXX-XXXX (upper-case hex)", f, e.UUID)
			}
		default:
			return fmt.Errorf("%s.vfs_type: %q is not one of ext2, ext3, ext4, xfs, btrfs, vfat, swap", f, e.VFSType)
		}
		if e.VFSType == "swap" {
			if e.Path != "none" {
				return fmt.Errorf("%s.path: a swap entry's path is \"none\", not %q", f, e.Path)
			}
		} else if err := checkTreePath(f+".path", e.Path); err != nil {
			return err
		}
		if prev, dup := paths[e.Path]; dup && e.Path != "none" {
			return fmt.Errorf("%s.path: %s is already mounted by %s", f, e.Path, prev)
		}
		paths[e.Path] = f
		// Subvolumes of one btrfs volume share its UUID.
		if prev, dup := uuids[e.UUID]; dup && (e.VFSType != "btrfs" || s.Filesystems[prevIndex[e.UUID]].VFSType != "btrfs") {
			return fmt.Errorf("%s.uuid: %s is already used by %s", f, e.UUID, prev)
		}
		prevIndex[e.UUID] = i
		uuids[e.UUID] = f
		if e.Options != "" && !mountOpts.MatchString(e.Options) {
			return fmt.Errorf("%s.options: %q is not a comma-separated list of mount options", f, e.Options)
		}
		if e.Freq != 0 && e.Freq != 1 {
			return fmt.Errorf("%s.freq: %d is not 0 or 1", f, e.Freq)
		}
		if e.PassNo < 0 || e.PassNo > 2 {
			return fmt.Errorf("%s.passno: %d is not 0, 1 or 2", f, e.PassNo)
		}
	}
	return nil
}

// fstab returns the file's content.
func (s *Fstab) fstab() []byte {
	var b strings.Builder
	for _, e := range s.Filesystems {
		fmt.Fprintf(&b, "UUID=%s\t%s\t%s\t%s\t%d\t%d\n", e.UUID, e.Path, e.VFSType,
			defaultString(e.Options, "defaults"), e.Freq, e.PassNo)
	}
	return []byte(b.String())
}

// Run writes /etc/fstab and makes missing mount points (root:root 0755):
// a mount point must exist in the root file system for the mount to work.
func (s *Fstab) Run(ctx context.Context, env *Env) error {
	for i, e := range s.Filesystems {
		if e.Path == "none" || e.Path == "/" {
			continue
		}
		if _, err := treeMkdirAll(env.Tree, e.Path); err != nil {
			return fmt.Errorf("filesystems[%d].path: %w", i, err)
		}
	}
	if err := treeWriteConfig(env.Tree, "/etc/fstab", s.fstab(), 0o644); err != nil {
		return fmt.Errorf("writing fstab: %w", err)
	}
	return nil
}
