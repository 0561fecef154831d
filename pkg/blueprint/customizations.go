package blueprint

// Customizations are the blueprint's changes to the image beyond packages.
// Field names and shapes follow osbuild-composer (github.com/osbuild/blueprint).
// All of them decode; which ones a distro honours is the distro's decision
// (see Blueprint.SetFields).
type Customizations struct {
	Hostname *string              `json:"hostname,omitempty" toml:"hostname,omitempty"`
	Kernel   *KernelCustomization `json:"kernel,omitempty" toml:"kernel,omitempty"`
	// SSHKey is composer's older way to give an existing user a key.
	SSHKey      []SSHKeyCustomization     `json:"sshkey,omitempty" toml:"sshkey,omitempty"`
	User        []UserCustomization       `json:"user,omitempty" toml:"user,omitempty"`
	Group       []GroupCustomization      `json:"group,omitempty" toml:"group,omitempty"`
	Timezone    *TimezoneCustomization    `json:"timezone,omitempty" toml:"timezone,omitempty"`
	Locale      *LocaleCustomization      `json:"locale,omitempty" toml:"locale,omitempty"`
	Firewall    *FirewallCustomization    `json:"firewall,omitempty" toml:"firewall,omitempty"`
	Services    *ServicesCustomization    `json:"services,omitempty" toml:"services,omitempty"`
	Filesystem  []FilesystemCustomization `json:"filesystem,omitempty" toml:"filesystem,omitempty"`
	Disk        *DiskCustomization        `json:"disk,omitempty" toml:"disk,omitempty"`
	Directories []DirectoryCustomization  `json:"directories,omitempty" toml:"directories,omitempty"`
	Files       []FileCustomization       `json:"files,omitempty" toml:"files,omitempty"`
	// Repositories are extra package repositories.
	Repositories []RepositoryCustomization `json:"repositories,omitempty" toml:"repositories,omitempty"`

	// The customizations below are specific to composer's RPM distros,
	// installers and Red Hat services. They decode so that composer's
	// blueprints are read, and a distro refuses the ones it cannot honour.

	InstallationDevice string                         `json:"installation_device,omitempty" toml:"installation_device,omitempty"`
	PartitioningMode   string                         `json:"partitioning_mode,omitempty" toml:"partitioning_mode,omitempty"`
	FDO                *FDOCustomization              `json:"fdo,omitempty" toml:"fdo,omitempty"`
	OpenSCAP           *OpenSCAPCustomization         `json:"openscap,omitempty" toml:"openscap,omitempty"`
	Ignition           *IgnitionCustomization         `json:"ignition,omitempty" toml:"ignition,omitempty"`
	FIPS               *bool                          `json:"fips,omitempty" toml:"fips,omitempty"`
	Installer          *InstallerCustomization        `json:"installer,omitempty" toml:"installer,omitempty"`
	RPM                *RPMCustomization              `json:"rpm,omitempty" toml:"rpm,omitempty"`
	RHSM               *RHSMCustomization             `json:"rhsm,omitempty" toml:"rhsm,omitempty"`
	CACerts            *CACustomization               `json:"cacerts,omitempty" toml:"cacerts,omitempty"`
	ContainersStorage  *ContainerStorageCustomization `json:"containers-storage,omitempty" toml:"containers-storage,omitempty"`
	DNF                *DNFCustomization              `json:"dnf,omitempty" toml:"dnf,omitempty"`
	ISO                *ISOCustomization              `json:"iso,omitempty" toml:"iso,omitempty"`
	// Firstboot runs scripts once, at the first boot.
	Firstboot *FirstbootCustomization `json:"firstboot,omitempty" toml:"firstboot,omitempty"`
	// Sshd sets options of the SSH server.
	Sshd *SshdCustomization `json:"sshd,omitempty" toml:"sshd,omitempty"`
}

// FirstbootCustomization lists scripts run once, in order, at the first
// boot; a failing script stops the ones after it unless it ignores
// failures.
type FirstbootCustomization struct {
	Scripts []FirstbootScript `json:"scripts,omitempty" toml:"scripts,omitempty"`
}

// FirstbootScript is one of composer's firstboot kinds, a union keyed by
// Type: "custom" (Contents), "satellite" (Command, CACerts) or "aap"
// (JobTemplateURL, HostConfigKey, CACerts).
type FirstbootScript struct {
	Type string `json:"type,omitempty" toml:"type,omitempty"`
	// Name is unique in the blueprint: letters, digits, '-' and '_'.
	Name          string   `json:"name,omitempty" toml:"name,omitempty"`
	IgnoreFailure bool     `json:"ignore_failure,omitempty" toml:"ignore_failure,omitempty"`
	After         []string `json:"after,omitempty" toml:"after,omitempty"`
	Before        []string `json:"before,omitempty" toml:"before,omitempty"`
	// Contents is a script: a shell script unless it starts with "#!".
	Contents       string   `json:"contents,omitempty" toml:"contents,omitempty"`
	CACerts        []string `json:"cacerts,omitempty" toml:"cacerts,omitempty"`
	Command        string   `json:"command,omitempty" toml:"command,omitempty"`
	JobTemplateURL string   `json:"job_template_url,omitempty" toml:"job_template_url,omitempty"`
	HostConfigKey  string   `json:"host_config_key,omitempty" toml:"host_config_key,omitempty"`
}

// SshdCustomization sets sshd_config options.
type SshdCustomization struct {
	PasswordAuthentication       *bool  `json:"password_authentication,omitempty" toml:"password_authentication,omitempty"`
	KbdInteractiveAuthentication *bool  `json:"kbd_interactive_authentication,omitempty" toml:"kbd_interactive_authentication,omitempty"`
	ClientAliveInterval          *int   `json:"client_alive_interval,omitempty" toml:"client_alive_interval,omitempty"`
	PermitRootLogin              string `json:"permit_root_login,omitempty" toml:"permit_root_login,omitempty"`
}

// KernelCustomization selects the kernel package and its command line.
type KernelCustomization struct {
	Name   string `json:"name,omitempty" toml:"name,omitempty"`
	Append string `json:"append,omitempty" toml:"append,omitempty"`
}

// SSHKeyCustomization adds an SSH public key to a user.
type SSHKeyCustomization struct {
	User string `json:"user" toml:"user"`
	Key  string `json:"key" toml:"key"`
}

// UserCustomization creates (or modifies) a user account.
type UserCustomization struct {
	Name        string  `json:"name" toml:"name"`
	Description *string `json:"description,omitempty" toml:"description,omitempty"`
	// Password is a crypt(3) hash or, as composer allows, plain text.
	Password *string `json:"password,omitempty" toml:"password,omitempty"`
	Key      *string `json:"key,omitempty" toml:"key,omitempty"`
	// Home is an absolute path; Parse trims trailing slashes, as
	// composer does.
	Home   *string  `json:"home,omitempty" toml:"home,omitempty"`
	Shell  *string  `json:"shell,omitempty" toml:"shell,omitempty"`
	Groups []string `json:"groups,omitempty" toml:"groups,omitempty"`
	UID    *int     `json:"uid,omitempty" toml:"uid,omitempty"`
	GID    *int     `json:"gid,omitempty" toml:"gid,omitempty"`
	// ExpireDate is in days since 1970-01-01.
	ExpireDate         *int  `json:"expiredate,omitempty" toml:"expiredate,omitempty"`
	ForcePasswordReset *bool `json:"force_password_reset,omitempty" toml:"force_password_reset,omitempty"`
}

// GroupCustomization creates a group.
type GroupCustomization struct {
	Name string `json:"name" toml:"name"`
	GID  *int   `json:"gid,omitempty" toml:"gid,omitempty"`
}

// TimezoneCustomization sets the time zone and NTP servers.
type TimezoneCustomization struct {
	Timezone   *string  `json:"timezone,omitempty" toml:"timezone,omitempty"`
	NTPServers []string `json:"ntpservers,omitempty" toml:"ntpservers,omitempty"`
}

// LocaleCustomization sets the languages (the first is the system locale)
// and the console keyboard layout.
type LocaleCustomization struct {
	Languages []string `json:"languages,omitempty" toml:"languages,omitempty"`
	Keyboard  *string  `json:"keyboard,omitempty" toml:"keyboard,omitempty"`
}

// FirewallCustomization opens ports and services. Ports are
// "port:protocol" or "from-to:protocol", where port is a number or a name
// from /etc/services and protocol is tcp, udp, sctp or dccp.
type FirewallCustomization struct {
	Ports    []string                    `json:"ports,omitempty" toml:"ports,omitempty"`
	Services *FirewallServices           `json:"services,omitempty" toml:"services,omitempty"`
	Zones    []FirewallZoneCustomization `json:"zones,omitempty" toml:"zones,omitempty"`
}

// FirewallServices enables and disables firewall services.
type FirewallServices struct {
	Enabled  []string `json:"enabled,omitempty" toml:"enabled,omitempty"`
	Disabled []string `json:"disabled,omitempty" toml:"disabled,omitempty"`
}

// FirewallZoneCustomization binds sources (addresses, networks, MACs,
// "ipset:NAME") to a firewall zone.
type FirewallZoneCustomization struct {
	Name    *string  `json:"name,omitempty" toml:"name,omitempty"`
	Sources []string `json:"sources,omitempty" toml:"sources,omitempty"`
}

// ServicesCustomization enables, disables and masks systemd units. A name
// without a unit suffix means a .service.
type ServicesCustomization struct {
	Enabled  []string `json:"enabled,omitempty" toml:"enabled,omitempty"`
	Disabled []string `json:"disabled,omitempty" toml:"disabled,omitempty"`
	Masked   []string `json:"masked,omitempty" toml:"masked,omitempty"`
}

// FilesystemCustomization asks for a mount point of at least MinSize
// bytes. In the file, minsize is an integer (bytes) or a string with a
// unit ("20 GiB", "512 MiB"); the deprecated key "size" is accepted as an
// alias, as composer does.
type FilesystemCustomization struct {
	Mountpoint string `json:"mountpoint" toml:"mountpoint"`
	MinSize    uint64 `json:"minsize" toml:"minsize" bp:"size,alias=size"`
}

// DirectoryCustomization creates a directory in the image.
type DirectoryCustomization struct {
	// Path is absolute and clean.
	Path string `json:"path" toml:"path"`
	// User and Group own the directory: nil, a name (string) or a numeric
	// id (int64 once decoded; int is accepted from code).
	User  any `json:"user,omitempty" toml:"user,omitempty" bp:"owner"`
	Group any `json:"group,omitempty" toml:"group,omitempty" bp:"owner"`
	// Mode is an octal string such as "0755".
	Mode          string `json:"mode,omitempty" toml:"mode,omitempty"`
	EnsureParents bool   `json:"ensure_parents,omitempty" toml:"ensure_parents,omitempty"`
}

// FileCustomization creates a file in the image.
type FileCustomization struct {
	// Path is absolute and clean.
	Path string `json:"path" toml:"path"`
	// User and Group own the file: nil, a name (string) or a numeric id
	// (int64 once decoded; int is accepted from code).
	User  any `json:"user,omitempty" toml:"user,omitempty" bp:"owner"`
	Group any `json:"group,omitempty" toml:"group,omitempty" bp:"owner"`
	// Mode is an octal string such as "0644".
	Mode string `json:"mode,omitempty" toml:"mode,omitempty"`
	// Data is the file's content.
	Data string `json:"data,omitempty" toml:"data,omitempty"`
	// DataEncoding is "plain" (the default) or "base64", as in composer's
	// cloud API and the hosted image builder's blueprints.
	DataEncoding string `json:"data_encoding,omitempty" toml:"data_encoding,omitempty"`
	// EnsureParents creates missing parent directories (cloud API).
	EnsureParents bool `json:"ensure_parents,omitempty" toml:"ensure_parents,omitempty"`
	// URI names the file's content elsewhere instead of Data.
	URI string `json:"uri,omitempty" toml:"uri,omitempty"`
}

// RepositoryCustomization adds a package repository. The fields up to
// InstallFrom are composer's (RPM-oriented); Suites and Components are an
// ibuild extension for Debian archives, which composer has nothing for.
type RepositoryCustomization struct {
	ID             string   `json:"id" toml:"id"`
	BaseURLs       []string `json:"baseurls,omitempty" toml:"baseurls,omitempty"`
	GPGKeys        []string `json:"gpgkeys,omitempty" toml:"gpgkeys,omitempty"`
	Metalink       string   `json:"metalink,omitempty" toml:"metalink,omitempty"`
	Mirrorlist     string   `json:"mirrorlist,omitempty" toml:"mirrorlist,omitempty"`
	Name           string   `json:"name,omitempty" toml:"name,omitempty"`
	Priority       *int     `json:"priority,omitempty" toml:"priority,omitempty"`
	Enabled        *bool    `json:"enabled,omitempty" toml:"enabled,omitempty"`
	GPGCheck       *bool    `json:"gpgcheck,omitempty" toml:"gpgcheck,omitempty"`
	RepoGPGCheck   *bool    `json:"repo_gpgcheck,omitempty" toml:"repo_gpgcheck,omitempty"`
	SSLVerify      *bool    `json:"sslverify,omitempty" toml:"sslverify,omitempty"`
	ModuleHotfixes *bool    `json:"module_hotfixes,omitempty" toml:"module_hotfixes,omitempty"`
	Filename       string   `json:"filename,omitempty" toml:"filename,omitempty"`
	// InstallFrom makes composer use the repository when resolving the
	// image's packages.
	InstallFrom bool `json:"install_from,omitempty" toml:"install_from,omitempty"`
	// ResolveOnly makes lock resolve the image's packages against the
	// repository without writing it into the image: what composer's
	// cloud API calls payload_repositories. ibuild extension.
	ResolveOnly bool `json:"resolve_only,omitempty" toml:"resolve_only,omitempty"`

	// Suites are Debian suites ("bookworm", "bookworm-updates"), or one
	// path ending in "/" for a flat repository. ibuild extension.
	Suites []string `json:"suites,omitempty" toml:"suites,omitempty"`
	// Components are Debian archive areas ("main", "contrib"). ibuild
	// extension; not allowed for a flat repository.
	Components []string `json:"components,omitempty" toml:"components,omitempty"`
}

// FDOCustomization configures FIDO Device Onboarding (RHEL for Edge).
type FDOCustomization struct {
	ManufacturingServerURL  string `json:"manufacturing_server_url,omitempty" toml:"manufacturing_server_url,omitempty"`
	DiunPubKeyInsecure      string `json:"diun_pub_key_insecure,omitempty" toml:"diun_pub_key_insecure,omitempty"`
	DiunPubKeyHash          string `json:"diun_pub_key_hash,omitempty" toml:"diun_pub_key_hash,omitempty"`
	DiunPubKeyRootCerts     string `json:"diun_pub_key_root_certs,omitempty" toml:"diun_pub_key_root_certs,omitempty"`
	DiMfgStringTypeMacIface string `json:"di_mfg_string_type_mac_iface,omitempty" toml:"di_mfg_string_type_mac_iface,omitempty"`
}

// OpenSCAPCustomization applies an OpenSCAP profile.
type OpenSCAPCustomization struct {
	DataStream    string                          `json:"datastream,omitempty" toml:"datastream,omitempty"`
	ProfileID     string                          `json:"profile_id,omitempty" toml:"profile_id,omitempty"`
	Tailoring     *OpenSCAPTailoringCustomization `json:"tailoring,omitempty" toml:"tailoring,omitempty"`
	JSONTailoring *OpenSCAPJSONTailoring          `json:"json_tailoring,omitempty" toml:"json_tailoring,omitempty"`
	PolicyID      string                          `json:"policy_id,omitempty" toml:"policy_id,omitempty"`
}

// OpenSCAPTailoringCustomization selects and unselects rules.
type OpenSCAPTailoringCustomization struct {
	Selected   []string `json:"selected,omitempty" toml:"selected,omitempty"`
	Unselected []string `json:"unselected,omitempty" toml:"unselected,omitempty"`
}

// OpenSCAPJSONTailoring points at a JSON tailoring file.
type OpenSCAPJSONTailoring struct {
	ProfileID string `json:"profile_id,omitempty" toml:"profile_id,omitempty"`
	Filepath  string `json:"filepath,omitempty" toml:"filepath,omitempty"`
}

// IgnitionCustomization configures Ignition.
type IgnitionCustomization struct {
	Embedded  *EmbeddedIgnitionCustomization  `json:"embedded,omitempty" toml:"embedded,omitempty"`
	FirstBoot *FirstBootIgnitionCustomization `json:"firstboot,omitempty" toml:"firstboot,omitempty"`
}

// EmbeddedIgnitionCustomization embeds an Ignition config.
type EmbeddedIgnitionCustomization struct {
	Config string `json:"config,omitempty" toml:"config,omitempty"`
}

// FirstBootIgnitionCustomization fetches an Ignition config at first boot.
type FirstBootIgnitionCustomization struct {
	ProvisioningURL string `json:"url,omitempty" toml:"url,omitempty"`
	Empty           bool   `json:"empty,omitempty" toml:"empty,omitempty"`
}

// InstallerCustomization configures the Anaconda installer.
type InstallerCustomization struct {
	Unattended   bool             `json:"unattended,omitempty" toml:"unattended,omitempty"`
	SudoNopasswd []string         `json:"sudo-nopasswd,omitempty" toml:"sudo-nopasswd,omitempty"`
	Kickstart    *Kickstart       `json:"kickstart,omitempty" toml:"kickstart,omitempty"`
	Modules      *AnacondaModules `json:"modules,omitempty" toml:"modules,omitempty"`
	// MenuTimeout is where older composer releases had the boot menu's
	// timeout; Bootloader.Grub2.MenuTimeout is the current place.
	MenuTimeout *int                 `json:"menu-timeout,omitempty" toml:"menu-timeout,omitempty"`
	Bootloader  *InstallerBootloader `json:"bootloader,omitempty" toml:"bootloader,omitempty"`
	Payload     *InstallerPayload    `json:"payload,omitempty" toml:"payload,omitempty"`
}

// InstallerBootloader configures the installer's boot loader.
type InstallerBootloader struct {
	Grub2 *InstallerGrub2 `json:"grub2,omitempty" toml:"grub2,omitempty"`
}

// InstallerGrub2 configures the installer's GRUB.
type InstallerGrub2 struct {
	MenuTimeout *int `json:"menu-timeout,omitempty" toml:"menu-timeout,omitempty"`
}

// InstallerPayload is what the installer installs besides the image.
type InstallerPayload struct {
	Flatpaks *FlatpakMeta `json:"flatpaks,omitempty" toml:"flatpaks,omitempty"`
}

// FlatpakMeta lists flatpaks the installer installs.
type FlatpakMeta struct {
	Force []Flatpak `json:"force,omitempty" toml:"force,omitempty"`
}

// Flatpak is a set of flatpak references from one registry.
type Flatpak struct {
	Registry   *FlatpakRegistry `json:"registry,omitempty" toml:"registry,omitempty"`
	References []string         `json:"references,omitempty" toml:"references,omitempty"`
}

// FlatpakRegistry is a flatpak remote.
type FlatpakRegistry struct {
	RemoteName string `json:"remote_name,omitempty" toml:"remote_name,omitempty"`
	URL        string `json:"url,omitempty" toml:"url,omitempty"`
}

// Kickstart holds kickstart contents for the installer.
type Kickstart struct {
	Contents string `json:"contents" toml:"contents"`
}

// AnacondaModules enables and disables Anaconda modules.
type AnacondaModules struct {
	Enable  []string `json:"enable,omitempty" toml:"enable,omitempty"`
	Disable []string `json:"disable,omitempty" toml:"disable,omitempty"`
}

// RPMCustomization configures RPM.
type RPMCustomization struct {
	ImportKeys *RPMImportKeys `json:"import_keys,omitempty" toml:"import_keys,omitempty"`
}

// RPMImportKeys lists key files in the image to import into RPM.
type RPMImportKeys struct {
	Files []string `json:"files,omitempty" toml:"files,omitempty"`
}

// RHSMCustomization configures Red Hat Subscription Manager.
type RHSMCustomization struct {
	Config *RHSMConfig `json:"config,omitempty" toml:"config,omitempty"`
}

// RHSMConfig is subscription-manager's configuration.
type RHSMConfig struct {
	DNFPlugins          *SubManDNFPluginsConfig `json:"dnf_plugins,omitempty" toml:"dnf_plugins,omitempty"`
	SubscriptionManager *SubManConfig           `json:"subscription_manager,omitempty" toml:"subscription_manager,omitempty"`
}

// SubManDNFPluginsConfig configures subscription-manager's DNF plugins.
type SubManDNFPluginsConfig struct {
	ProductID           *DNFPluginConfig `json:"product_id,omitempty" toml:"product_id,omitempty"`
	SubscriptionManager *DNFPluginConfig `json:"subscription_manager,omitempty" toml:"subscription_manager,omitempty"`
}

// DNFPluginConfig enables or disables a DNF plugin.
type DNFPluginConfig struct {
	Enabled *bool `json:"enabled,omitempty" toml:"enabled,omitempty"`
}

// SubManConfig is rhsm.conf.
type SubManConfig struct {
	RHSMConfig      *SubManRHSMConfig      `json:"rhsm,omitempty" toml:"rhsm,omitempty"`
	RHSMCertdConfig *SubManRHSMCertdConfig `json:"rhsmcertd,omitempty" toml:"rhsmcertd,omitempty"`
}

// SubManRHSMConfig is the [rhsm] section of rhsm.conf.
type SubManRHSMConfig struct {
	ManageRepos          *bool `json:"manage_repos,omitempty" toml:"manage_repos,omitempty"`
	AutoEnableYumPlugins *bool `json:"auto_enable_yum_plugins,omitempty" toml:"auto_enable_yum_plugins,omitempty"`
}

// SubManRHSMCertdConfig is the [rhsmcertd] section of rhsm.conf.
type SubManRHSMCertdConfig struct {
	AutoRegistration *bool `json:"auto_registration,omitempty" toml:"auto_registration,omitempty"`
}

// CACustomization adds CA certificates (PEM) to the trust store.
type CACustomization struct {
	PEMCerts []string `json:"pem_certs,omitempty" toml:"pem_certs,omitempty"`
}

// ContainerStorageCustomization sets where embedded containers are stored.
type ContainerStorageCustomization struct {
	StoragePath *string `json:"destination-path,omitempty" toml:"destination-path,omitempty"`
}

// DNFCustomization configures DNF.
type DNFCustomization struct {
	Config *DNFConfigCustomization `json:"config,omitempty" toml:"config,omitempty"`
}

// DNFConfigCustomization is DNF's configuration.
type DNFConfigCustomization struct {
	SetReleaseVer bool `json:"set_releasever,omitempty" toml:"set_releasever,omitempty"`
}

// ISOCustomization sets ISO 9660 metadata of installer images.
type ISOCustomization struct {
	ApplicationID string `json:"application_id,omitempty" toml:"application_id,omitempty"`
	Publisher     string `json:"publisher,omitempty" toml:"publisher,omitempty"`
	VolumeID      string `json:"volume_id,omitempty" toml:"volume_id,omitempty"`
}
