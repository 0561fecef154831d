package blueprint

import (
	"strings"
	"testing"
)

// validBlueprint sets most customizations to valid values; each case of
// TestValidate breaks one thing.
func validBlueprint() *Blueprint {
	return &Blueprint{
		Name:     "test",
		Version:  "1.2.3",
		Distro:   "debian-12",
		Packages: []Package{{Name: "curl", Version: "7.88.*"}, {Name: "openssh-server"}},
		Groups:   []Group{{Name: "Development Tools"}},
		Customizations: &Customizations{
			Hostname: ptr("host"),
			Kernel:   &KernelCustomization{Name: "linux-image-amd64", Append: "console=ttyS0 quiet"},
			SSHKey:   []SSHKeyCustomization{{User: "root", Key: exampleKey}},
			User: []UserCustomization{{
				Name: "admin", Key: ptr(exampleKey), Home: ptr("/home/admin"), Shell: ptr("/bin/bash"),
				Groups: []string{"sudo"}, UID: ptr(1000), GID: ptr(1000), ExpireDate: ptr(20000),
			}},
			Group:    []GroupCustomization{{Name: "ops", GID: ptr(2000)}},
			Timezone: &TimezoneCustomization{Timezone: ptr("UTC"), NTPServers: []string{"pool.ntp.org", "192.0.2.1"}},
			Locale:   &LocaleCustomization{Languages: []string{"en_US.UTF-8"}, Keyboard: ptr("de-latin1")},
			Firewall: &FirewallCustomization{
				Ports:    []string{"22:tcp"},
				Services: &FirewallServices{Enabled: []string{"http"}, Disabled: []string{"telnet"}},
				Zones:    []FirewallZoneCustomization{{Name: ptr("trusted"), Sources: []string{"192.0.2.0/24"}}},
			},
			Services:    &ServicesCustomization{Enabled: []string{"ssh"}, Masked: []string{"rpcbind"}},
			Filesystem:  []FilesystemCustomization{{Mountpoint: "/", MinSize: 1 << 30}},
			Directories: []DirectoryCustomization{{Path: "/srv/data", Mode: "0750", User: "admin", Group: int64(2000)}},
			Files:       []FileCustomization{{Path: "/etc/motd", Mode: "0644", User: 0, Data: "hi\n"}},
			Repositories: []RepositoryCustomization{{
				ID: "extra", BaseURLs: []string{"https://example.com/debian"}, Suites: []string{"bookworm"},
				Components: []string{"main"}, GPGKeys: []string{"https://example.com/key.asc"}, GPGCheck: ptr(true),
			}},
		},
	}
}

func TestValidate(t *testing.T) {
	if err := validBlueprint().Validate(); err != nil {
		t.Fatalf("valid blueprint: %v", err)
	}
	tests := []struct {
		name      string
		change    func(b *Blueprint)
		wantField string
		wantMsg   string
	}{
		{"name missing", func(b *Blueprint) { b.Name = "" }, "name", "required"},
		{"name with slash", func(b *Blueprint) { b.Name = "a/b" }, "name", "'/'"},
		{"version", func(b *Blueprint) { b.Version = "1" }, "version", "semantic version"},
		{"architecture", func(b *Blueprint) { b.Architecture = "x86-64" }, "architecture", "invalid"},
		{"group name", func(b *Blueprint) { b.Groups[0].Name = " core" }, "groups[0].name", "invalid"},
		{"container source", func(b *Blueprint) { b.Containers = []Container{{Source: "a b"}} }, "containers[0].source", "invalid"},
		{"enabled module", func(b *Blueprint) { b.EnabledModules = []EnabledModule{{}} }, "enabled_modules[0].name", "invalid"},
		{"kernel append", func(b *Blueprint) { b.Customizations.Kernel.Append = "a\nb" }, "customizations.kernel.append", "one line"},
		{"user home", func(b *Blueprint) { b.Customizations.User[0].Home = ptr("home/admin") }, "customizations.user[0].home", "not absolute"},
		{"user shell", func(b *Blueprint) { b.Customizations.User[0].Shell = ptr("/bin/../bash") }, "customizations.user[0].shell", `".."`},
		{"user description", func(b *Blueprint) { b.Customizations.User[0].Description = ptr("a:b") }, "customizations.user[0].description", "':'"},
		{"user password", func(b *Blueprint) { b.Customizations.User[0].Password = ptr("pw\n") }, "customizations.user[0].password", "control"},
		{"user groups", func(b *Blueprint) { b.Customizations.User[0].Groups = []string{"sudo", "a b"} }, "customizations.user[0].groups[1]", "invalid group name"},
		{"user gid", func(b *Blueprint) { b.Customizations.User[0].GID = ptr(-5) }, "customizations.user[0].gid", "negative"},
		{"user expiredate", func(b *Blueprint) { b.Customizations.User[0].ExpireDate = ptr(-1) }, "customizations.user[0].expiredate", "negative"},
		{"sshkey key", func(b *Blueprint) { b.Customizations.SSHKey[0].Key = "key" }, "customizations.sshkey[0].key", "not an SSH public key"},
		{"group gid", func(b *Blueprint) { b.Customizations.Group[0].GID = ptr(4294967295) }, "customizations.group[0].gid", "larger than"},
		{"ntp server", func(b *Blueprint) { b.Customizations.Timezone.NTPServers[0] = "pool ntp" }, "customizations.timezone.ntpservers[0]", "NTP server"},
		{"keyboard", func(b *Blueprint) { b.Customizations.Locale.Keyboard = ptr("") }, "customizations.locale.keyboard", "invalid"},
		{"zone name", func(b *Blueprint) { b.Customizations.Firewall.Zones[0].Name = ptr("a b") }, "customizations.firewall.zones[0].name", "invalid zone"},
		{"firewall service", func(b *Blueprint) { b.Customizations.Firewall.Services.Enabled[0] = "" }, "customizations.firewall.services.enabled[0]", "invalid firewall service"},
		{"service enabled and disabled", func(b *Blueprint) { b.Customizations.Services.Disabled = []string{"ssh.service"} }, "customizations.services.disabled[0]", "both enabled and disabled"},
		{"filesystem minsize", func(b *Blueprint) { b.Customizations.Filesystem[0].MinSize = 0 }, "customizations.filesystem[0].minsize", "greater than 0"},
		{"filesystem and disk", func(b *Blueprint) {
			b.Customizations.Disk = &DiskCustomization{Partitions: []PartitionCustomization{{MinSize: 1, FilesystemTypedCustomization: FilesystemTypedCustomization{Mountpoint: "/", FSType: "ext4"}}}}
		}, "customizations.disk", "cannot be combined"},
		{"directory owner", func(b *Blueprint) { b.Customizations.Directories[0].User = 3.5 }, "customizations.directories[0].user", "name or a numeric id"},
		{"file group", func(b *Blueprint) { b.Customizations.Files[0].Group = "-x" }, "customizations.files[0].group", "invalid group name"},
		{"file is root", func(b *Blueprint) { b.Customizations.Files[0].Path = "/" }, "customizations.files[0].path", "must not be /"},
		{"file under a file", func(b *Blueprint) {
			b.Customizations.Files = append(b.Customizations.Files, FileCustomization{Path: "/etc/motd/x"})
		}, "customizations.files[0].path", `file "/etc/motd" is also used as a directory by customizations.files[1]`},
		{"directory under a file", func(b *Blueprint) {
			b.Customizations.Directories = append(b.Customizations.Directories, DirectoryCustomization{Path: "/etc/motd/d"})
		}, "customizations.files[0].path", "customizations.directories[1]"},
		{"repository id", func(b *Blueprint) { b.Customizations.Repositories[0].ID = "" }, "customizations.repositories[0].id", "required"},
		{"duplicate repository", func(b *Blueprint) {
			b.Customizations.Repositories = append(b.Customizations.Repositories, b.Customizations.Repositories[0])
		}, "customizations.repositories[1].id", "duplicate repository"},
		{"repository filename", func(b *Blueprint) { b.Customizations.Repositories[0].Filename = "a/b" }, "customizations.repositories[0].filename", "invalid"},
		{"repository mirrorlist", func(b *Blueprint) { b.Customizations.Repositories[0].Mirrorlist = "nope" }, "customizations.repositories[0].mirrorlist", "scheme"},
		{"repository suite", func(b *Blueprint) { b.Customizations.Repositories[0].Suites = []string{"../x"} }, "customizations.repositories[0].suites[0]", "invalid suite"},
		{"flat repository with two suites", func(b *Blueprint) {
			b.Customizations.Repositories[0].Suites = []string{"./", "bookworm"}
			b.Customizations.Repositories[0].Components = nil
		}, "customizations.repositories[0].suites[0]", "exactly one suite"},
		{"component", func(b *Blueprint) { b.Customizations.Repositories[0].Components = []string{"main/x"} }, "customizations.repositories[0].components[0]", "invalid component"},
		{"partitioning mode", func(b *Blueprint) { b.Customizations.PartitioningMode = "zfs" }, "customizations.partitioning_mode", "unknown partitioning mode"},
		{"ignition", func(b *Blueprint) {
			b.Customizations.Ignition = &IgnitionCustomization{FirstBoot: &FirstBootIgnitionCustomization{ProvisioningURL: "http://x", Empty: true}}
		}, "customizations.ignition.firstboot", "mutually exclusive"},
		{"installer kickstart", func(b *Blueprint) {
			b.Customizations.Installer = &InstallerCustomization{Unattended: true, Kickstart: &Kickstart{Contents: "text"}}
		}, "customizations.installer.unattended", "kickstart"},
		{"installer users module", func(b *Blueprint) {
			b.Customizations.Installer = &InstallerCustomization{Modules: &AnacondaModules{Disable: []string{"org.fedoraproject.Anaconda.Modules.Users"}}}
		}, "customizations.installer.modules.disable[0]", "Users module"},
		{"iso volume id", func(b *Blueprint) { b.Customizations.ISO = &ISOCustomization{VolumeID: "a b"} }, "customizations.iso.volume_id", "invalid volume id"},
		{"cacerts", func(b *Blueprint) { b.Customizations.CACerts = &CACustomization{PEMCerts: []string{"x"}} }, "customizations.cacerts.pem_certs[0]", "no PEM"},
		{"containers storage", func(b *Blueprint) {
			b.Customizations.ContainersStorage = &ContainerStorageCustomization{StoragePath: ptr("rel")}
		}, "customizations.containers-storage.destination-path", "not absolute"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := validBlueprint()
			tt.change(b)
			errs := Errors(b.Validate())
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1: %v", len(errs), errs)
			}
			if errs[0].Field != tt.wantField || !strings.Contains(errs[0].Msg, tt.wantMsg) {
				t.Errorf("got %q, want field %q with %q", errs[0].Error(), tt.wantField, tt.wantMsg)
			}
			if errs[0].File != "" || errs[0].Line != 0 {
				t.Errorf("a blueprint built in code has no location, got %+v", errs[0])
			}
		})
	}
}

func TestValidateDisk(t *testing.T) {
	plain := func(mp, fs string) PartitionCustomization {
		return PartitionCustomization{MinSize: 1 << 30, FilesystemTypedCustomization: FilesystemTypedCustomization{Mountpoint: mp, FSType: fs}}
	}
	lvm := func(lvs ...LVCustomization) PartitionCustomization {
		return PartitionCustomization{Type: "lvm", MinSize: 1 << 30, VGCustomization: VGCustomization{Name: "vg", LogicalVolumes: lvs}}
	}
	lv := func(name, mp, fs string) LVCustomization {
		return LVCustomization{Name: name, MinSize: 1 << 20, FilesystemTypedCustomization: FilesystemTypedCustomization{Mountpoint: mp, FSType: fs}}
	}
	tests := []struct {
		name string
		disk DiskCustomization
		want []string // "field: message substring"
	}{
		{"valid gpt", DiskCustomization{Type: "gpt", Partitions: []PartitionCustomization{
			plain("/boot/efi", "vfat"), plain("/boot", "ext4"), lvm(lv("root", "/", "xfs"), lv("swap", "", "swap")),
		}}, nil},
		{"valid dos with swap and none", DiskCustomization{Type: "dos", SectorSize: 4096, Partitions: []PartitionCustomization{
			plain("/", "ext4"), plain("", "swap"), plain("", "none"),
		}}, nil},
		{"too many dos partitions", DiskCustomization{Type: "dos", Partitions: []PartitionCustomization{
			plain("/", "ext4"), plain("/a", "ext4"), plain("/b", "ext4"), plain("/c", "ext4"), plain("/d", "ext4"),
		}}, []string{"customizations.disk.partitions: at most 4"}},
		{"sector size", DiskCustomization{SectorSize: 1000}, []string{"customizations.disk.sector_size: power of 2"}},
		{"missing fs_type", DiskCustomization{Partitions: []PartitionCustomization{plain("/", "")}},
			[]string{"customizations.disk.partitions[0].fs_type: fs_type is required"}},
		{"swap with mountpoint", DiskCustomization{Partitions: []PartitionCustomization{plain("/swap", "swap")}},
			[]string{"customizations.disk.partitions[0].mountpoint: a swap partition has no mountpoint"}},
		{"none on a logical volume", DiskCustomization{Partitions: []PartitionCustomization{lvm(lv("x", "", "none"))}},
			[]string{"customizations.disk.partitions[0].logical_volumes[0].fs_type: unknown filesystem type"}},
		{"label too long", DiskCustomization{Partitions: []PartitionCustomization{{
			MinSize: 1, FilesystemTypedCustomization: FilesystemTypedCustomization{Mountpoint: "/", FSType: "vfat", Label: "ABCDEFGHIJKL"},
		}}}, []string{"customizations.disk.partitions[0].label: at most 11 bytes"}},
		{"duplicate mountpoint across lvm", DiskCustomization{Partitions: []PartitionCustomization{
			plain("/", "ext4"), lvm(lv("root", "/", "ext4")),
		}}, []string{`customizations.disk.partitions[1].logical_volumes[0].mountpoint: duplicate mountpoint "/"`}},
		{"duplicate logical volumes", DiskCustomization{Partitions: []PartitionCustomization{
			lvm(lv("a", "/", "ext4"), lv("a", "/var", "ext4")),
		}}, []string{`customizations.disk.partitions[0].logical_volumes[1].name: duplicate logical volume "a"`}},
		{"empty volume group", DiskCustomization{Partitions: []PartitionCustomization{lvm()}},
			[]string{"customizations.disk.partitions[0].logical_volumes: at least one logical volume"}},
		{"lv minsize", DiskCustomization{Partitions: []PartitionCustomization{lvm(LVCustomization{
			FilesystemTypedCustomization: FilesystemTypedCustomization{Mountpoint: "/", FSType: "ext4"},
		})}}, []string{"customizations.disk.partitions[0].logical_volumes[0].minsize: greater than 0"}},
		{"two volume groups", DiskCustomization{Partitions: []PartitionCustomization{
			lvm(lv("a", "/", "ext4")), {Type: "lvm", MinSize: 1, VGCustomization: VGCustomization{LogicalVolumes: []LVCustomization{lv("b", "/b", "ext4")}}},
		}}, []string{"customizations.disk.partitions: only one lvm volume group"}},
		{"lvm and btrfs", DiskCustomization{Partitions: []PartitionCustomization{
			lvm(lv("a", "/", "ext4")),
			{Type: "btrfs", MinSize: 1, BtrfsVolumeCustomization: BtrfsVolumeCustomization{Subvolumes: []BtrfsSubvolumeCustomization{{Name: "home", Mountpoint: "/home"}}}},
		}}, []string{"customizations.disk.partitions: lvm and btrfs partitions cannot be combined"}},
		{"btrfs subvolumes", DiskCustomization{Partitions: []PartitionCustomization{
			{Type: "btrfs", MinSize: 1, BtrfsVolumeCustomization: BtrfsVolumeCustomization{Subvolumes: []BtrfsSubvolumeCustomization{
				{Name: "root", Mountpoint: "/"}, {Name: "root", Mountpoint: "/x"}, {Name: "", Mountpoint: "/y"}, {Name: "efi", Mountpoint: "/boot/efi"},
			}}},
		}}, []string{
			`customizations.disk.partitions[0].subvolumes[1].name: duplicate subvolume "root"`,
			"customizations.disk.partitions[0].subvolumes[2].name: subvolume name is required",
			"customizations.disk.partitions[0].subvolumes[3].mountpoint: /boot/efi must be on a plain partition",
		}},
		{"btrfs without subvolumes", DiskCustomization{Partitions: []PartitionCustomization{{Type: "btrfs", MinSize: 1}}},
			[]string{"customizations.disk.partitions[0].subvolumes: at least one subvolume"}},
		{"gpt ids", DiskCustomization{Type: "gpt", Partitions: []PartitionCustomization{{
			MinSize: 1, PartType: "83", PartUUID: "nope", PartLabel: strings.Repeat("x", 37),
			FilesystemTypedCustomization: FilesystemTypedCustomization{Mountpoint: "/", FSType: "ext4"},
		}}}, []string{
			"customizations.disk.partitions[0].part_type: a gpt partition type is a UUID",
			"customizations.disk.partitions[0].part_uuid: must be a UUID",
			"customizations.disk.partitions[0].part_label: at most 36",
		}},
		{"dos ids", DiskCustomization{Type: "dos", Partitions: []PartitionCustomization{{
			MinSize: 1, PartType: "0fc63daf-8483-4772-8e79-3d69d8477de4", PartUUID: "0fc63daf-8483-4772-8e79-3d69d8477de4", PartLabel: "root",
			FilesystemTypedCustomization: FilesystemTypedCustomization{Mountpoint: "/", FSType: "ext4"},
		}}}, []string{
			"customizations.disk.partitions[0].part_type: two hex digits",
			"customizations.disk.partitions[0].part_uuid: not supported on a dos",
			"customizations.disk.partitions[0].part_label: not supported on a dos",
		}},
		{"valid ids", DiskCustomization{Partitions: []PartitionCustomization{{
			MinSize: 1, PartType: "0FC63DAF-8483-4772-8E79-3D69D8477DE4", PartUUID: "6264d520-3fb9-423f-8ab8-7a0a8e3d3562", PartLabel: "root",
			FilesystemTypedCustomization: FilesystemTypedCustomization{Mountpoint: "/", FSType: "ext4"},
		}}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &Blueprint{Name: "x", Customizations: &Customizations{Disk: &tt.disk}}
			errs := Errors(b.Validate())
			if len(errs) != len(tt.want) {
				t.Fatalf("got %d errors, want %d: %v", len(errs), len(tt.want), errs)
			}
			for i, w := range tt.want {
				field, msg, _ := strings.Cut(w, ": ")
				if errs[i].Field != field || !strings.Contains(errs[i].Msg, msg) {
					t.Errorf("error %d = %q, want %q", i, errs[i].Error(), w)
				}
			}
		})
	}
}
