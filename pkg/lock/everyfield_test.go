package lock_test

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
	"github.com/image-builder-action/image-builder-action/pkg/lock"
	"github.com/image-builder-action/image-builder-action/pkg/lock/locktest"
	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/pkg/publish/publishtest"
	"github.com/image-builder-action/image-builder-action/pkg/repo"
)

// fate is where a field of composer's blueprint ends up: in a stage of
// the lockfile whose options hold marker (stage "" searches the whole
// lockfile), in a refusal containing refusal, or, for the blueprint's
// own metadata, nowhere but the blueprint digest.
type fate struct {
	stage, marker string
	refusal       string
	metadata      string
}

// everyField is the fate of every leaf field of fields.txt, as the
// every-field blueprints set it.
var everyField = map[string]fate{
	"architecture":                                                                 {stage: "", marker: `"arch": "x86_64"`},
	"containers.local-storage":                                                     {refusal: `containers[0].local-storage: debian-12 cannot honour this`},
	"containers.name":                                                              {stage: "containers", marker: `"name":"every-field-container"`},
	"containers.source":                                                            {stage: "containers", marker: `/every/field:1"`},
	"containers.tls-verify":                                                        {stage: "containers", marker: `"tls_verify":true`},
	"customizations.cacerts.pem_certs":                                             {stage: "cacerts", marker: `BEGIN CERTIFICATE`},
	"customizations.containers-storage.destination-path":                           {refusal: `customizations.containers-storage: debian-12 cannot honour this`},
	"customizations.directories.ensure_parents":                                    {stage: "directories", marker: `"ensure_parents":true`},
	"customizations.directories.group":                                             {stage: "directories", marker: `"group":"nogroup"`},
	"customizations.directories.mode":                                              {stage: "directories", marker: `"mode":"0750"`},
	"customizations.directories.path":                                              {stage: "directories", marker: `"/srv/every-dir/sub"`},
	"customizations.directories.user":                                              {stage: "directories", marker: `"user":"nobody"`},
	"customizations.disk.minsize":                                                  {stage: "disk", marker: `"size":7516192768`},
	"customizations.disk.partitions.fs_type":                                       {stage: "mkfs-ext4", marker: `"label":"every"`},
	"customizations.disk.partitions.label":                                         {stage: "mkfs-ext4", marker: `"label":"every"`},
	"customizations.disk.partitions.logical_volumes.fs_type":                       {stage: "mkfs-ext4", marker: `"label":"everylv"`},
	"customizations.disk.partitions.logical_volumes.label":                         {stage: "mkfs-ext4", marker: `"label":"everylv"`},
	"customizations.disk.partitions.logical_volumes.minsize":                       {stage: "lvm2", marker: `"everylv"`},
	"customizations.disk.partitions.logical_volumes.mountpoint":                    {stage: "fstab", marker: `"path":"/srv/lv"`},
	"customizations.disk.partitions.logical_volumes.name":                          {stage: "lvm2", marker: `"everylv"`},
	"customizations.disk.partitions.minsize":                                       {stage: "disk", marker: `"name":"every"`},
	"customizations.disk.partitions.mountpoint":                                    {stage: "fstab", marker: `"path":"/data"`},
	"customizations.disk.partitions.name":                                          {stage: "lvm2", marker: `"everyvg"`},
	"customizations.disk.partitions.part_label":                                    {stage: "disk", marker: `"name":"every"`},
	"customizations.disk.partitions.part_type":                                     {stage: "disk", marker: `"type":"0fc63daf-8483-4772-8e79-3d69d8477de4"`},
	"customizations.disk.partitions.part_uuid":                                     {stage: "disk", marker: `"uuid":"11111111-2222-4333-8444-555555555555"`},
	"customizations.disk.partitions.subvolumes.mountpoint":                         {stage: "mkfs-btrfs", marker: `"path":"/home"`},
	"customizations.disk.partitions.subvolumes.name":                               {stage: "mkfs-btrfs", marker: `"name":"home"`},
	"customizations.disk.partitions.type":                                          {stage: "lvm2", marker: `"everyvg"`},
	"customizations.disk.sector_size":                                              {stage: "disk", marker: `"sector_size":4096`},
	"customizations.disk.start_offset":                                             {stage: "disk", marker: `"start":2304`},
	"customizations.disk.type":                                                     {stage: "disk", marker: `"partitions"`},
	"customizations.dnf.config.set_releasever":                                     {refusal: `customizations.dnf: debian-12 cannot honour this`},
	"customizations.fdo.di_mfg_string_type_mac_iface":                              {refusal: `customizations.fdo: debian-12 cannot honour this`},
	"customizations.fdo.diun_pub_key_hash":                                         {refusal: `customizations.fdo: debian-12 cannot honour this`},
	"customizations.fdo.diun_pub_key_insecure":                                     {refusal: `customizations.fdo: debian-12 cannot honour this`},
	"customizations.fdo.diun_pub_key_root_certs":                                   {refusal: `customizations.fdo: debian-12 cannot honour this`},
	"customizations.fdo.manufacturing_server_url":                                  {refusal: `customizations.fdo: debian-12 cannot honour this`},
	"customizations.files.data":                                                    {stage: "files", marker: `every field data`},
	"customizations.files.group":                                                   {stage: "files", marker: `"group":0`},
	"customizations.files.mode":                                                    {stage: "files", marker: `"mode":"0640"`},
	"customizations.files.path":                                                    {stage: "files", marker: `"/etc/every-field.conf"`},
	"customizations.files.uri":                                                     {stage: "files", marker: `GNU GENERAL PUBLIC LICENSE`},
	"customizations.files.user":                                                    {stage: "files", marker: `"user":"root"`},
	"customizations.filesystem.minsize":                                            {stage: "disk", marker: `"size":6291456`},
	"customizations.filesystem.mountpoint":                                         {stage: "fstab", marker: `"/srv/every"`},
	"customizations.fips":                                                          {refusal: `customizations.fips: debian-12 cannot honour this`},
	"customizations.firewall.ports":                                                {stage: "firewall", marker: `4321:tcp`},
	"customizations.firewall.services.disabled":                                    {stage: "firewall", marker: `telnet`},
	"customizations.firewall.services.enabled":                                     {stage: "firewall", marker: `"ftp"`},
	"customizations.firewall.zones.name":                                           {stage: "firewall", marker: `"trusted"`},
	"customizations.firewall.zones.sources":                                        {stage: "firewall", marker: `198.51.100.0/24`},
	"customizations.firstboot.scripts.after":                                       {stage: "files", marker: `After=every-after.target`},
	"customizations.firstboot.scripts.before":                                      {stage: "files", marker: `Before=every-before.service`},
	"customizations.firstboot.scripts.cacerts":                                     {stage: "cacerts", marker: `BEGIN CERTIFICATE`},
	"customizations.firstboot.scripts.command":                                     {refusal: `customizations.firstboot.scripts[2].type: debian-12 cannot honour this: Satellite`},
	"customizations.firstboot.scripts.contents":                                    {stage: "files", marker: `echo every-firstboot`},
	"customizations.firstboot.scripts.host_config_key":                             {stage: "files", marker: `host_config_key=every-host-config-key`},
	"customizations.firstboot.scripts.ignore_failure":                              {stage: "files", marker: `ExecStart=-/usr/local/libexec/ibuild-firstboot/ibuild-firstboot-00-every-custom`},
	"customizations.firstboot.scripts.job_template_url":                            {stage: "files", marker: `https://aap.every-field.example/api/v2/job_templates/9/callback/`},
	"customizations.firstboot.scripts.name":                                        {stage: "systemd", marker: `ibuild-firstboot-01-every-aap.service`},
	"customizations.firstboot.scripts.type":                                        {stage: "files", marker: `exec curl`},
	"customizations.group.gid":                                                     {stage: "users", marker: `"gid":4321`},
	"customizations.group.name":                                                    {stage: "users", marker: `"every-group"`},
	"customizations.hostname":                                                      {stage: "hostname", marker: `every-field`},
	"customizations.ignition.embedded.config":                                      {refusal: `customizations.ignition: debian-12 cannot honour this`},
	"customizations.ignition.firstboot.empty":                                      {refusal: `customizations.ignition: debian-12 cannot honour this`},
	"customizations.ignition.firstboot.url":                                        {refusal: `customizations.ignition: debian-12 cannot honour this`},
	"customizations.installation_device":                                           {refusal: `customizations.installation_device: debian-12 cannot honour this`},
	"customizations.installer.bootloader.grub2.menu-timeout":                       {refusal: `customizations.installer: debian-12 cannot honour this`},
	"customizations.installer.kickstart.contents":                                  {refusal: `customizations.installer: debian-12 cannot honour this`},
	"customizations.installer.modules.disable":                                     {refusal: `customizations.installer: debian-12 cannot honour this`},
	"customizations.installer.modules.enable":                                      {refusal: `customizations.installer: debian-12 cannot honour this`},
	"customizations.installer.payload.flatpaks.force.references":                   {refusal: `customizations.installer: debian-12 cannot honour this`},
	"customizations.installer.payload.flatpaks.force.registry.remote_name":         {refusal: `customizations.installer: debian-12 cannot honour this`},
	"customizations.installer.payload.flatpaks.force.registry.url":                 {refusal: `customizations.installer: debian-12 cannot honour this`},
	"customizations.installer.sudo-nopasswd":                                       {refusal: `customizations.installer: debian-12 cannot honour this`},
	"customizations.installer.unattended":                                          {refusal: `customizations.installer: debian-12 cannot honour this`},
	"customizations.iso.application_id":                                            {refusal: `customizations.iso: debian-12 cannot honour this`},
	"customizations.iso.publisher":                                                 {refusal: `customizations.iso: debian-12 cannot honour this`},
	"customizations.iso.volume_id":                                                 {refusal: `customizations.iso: debian-12 cannot honour this`},
	"customizations.kernel.append":                                                 {stage: "grub2", marker: `every.field=1`},
	"customizations.kernel.name":                                                   {stage: "debs", marker: `linux-image-cloud-amd64`},
	"customizations.locale.keyboard":                                               {stage: "locale", marker: `"keyboard":"pt"`},
	"customizations.locale.languages":                                              {stage: "locale", marker: `"generate":["de_AT.UTF-8"]`},
	"customizations.openscap.datastream":                                           {refusal: `customizations.openscap: debian-12 cannot honour this`},
	"customizations.openscap.json_tailoring.filepath":                              {refusal: `customizations.openscap: debian-12 cannot honour this`},
	"customizations.openscap.json_tailoring.profile_id":                            {refusal: `customizations.openscap: debian-12 cannot honour this`},
	"customizations.openscap.policy_id":                                            {refusal: `customizations.openscap: debian-12 cannot honour this`},
	"customizations.openscap.profile_id":                                           {refusal: `customizations.openscap: debian-12 cannot honour this`},
	"customizations.openscap.tailoring.selected":                                   {refusal: `customizations.openscap: debian-12 cannot honour this`},
	"customizations.openscap.tailoring.unselected":                                 {refusal: `customizations.openscap: debian-12 cannot honour this`},
	"customizations.partitioning_mode":                                             {stage: "disk", marker: `"partitions"`},
	"customizations.repositories.baseurls":                                         {stage: "files", marker: `URIs: https://repo.every-field.example/debian`},
	"customizations.repositories.enabled":                                          {stage: "files", marker: `Enabled: no`},
	"customizations.repositories.filename":                                         {stage: "files", marker: `/etc/apt/sources.list.d/every-written.sources`},
	"customizations.repositories.gpgcheck":                                         {stage: "files", marker: `Signed-By:`},
	"customizations.repositories.gpgkeys":                                          {stage: "files", marker: `mDMEZ2xZfBYJKwYBBAHaRw8BAQdA0Yr2Y3pkF6qh0Zxq9xTq1Qp3Vq5xGx2w4q8y`},
	"customizations.repositories.id":                                               {stage: "files", marker: `Repository \"every-written\"`},
	"customizations.repositories.install_from":                                     {stage: "", marker: `trixie`},
	"customizations.repositories.metalink":                                         {refusal: `customizations.repositories[2].metalink: debian-12 cannot honour this`},
	"customizations.repositories.mirrorlist":                                       {stage: "files", marker: `URIs: mirror+https://mirrors.fedoraproject.org/mirrorlist?repo=fedora-40\u0026arch=x86_64`},
	"customizations.repositories.module_hotfixes":                                  {refusal: `customizations.repositories[4].module_hotfixes: debian-12 cannot honour this`},
	"customizations.repositories.name":                                             {stage: "files", marker: `Every written repository`},
	"customizations.repositories.priority":                                         {stage: "files", marker: `Pin-Priority: 579`},
	"customizations.repositories.repo_gpgcheck":                                    {stage: "files", marker: `Signed-By:`},
	"customizations.repositories.sslverify":                                        {stage: "files", marker: `Verify-Peer \"false\"`},
	"customizations.rhsm.config.dnf_plugins.product_id.enabled":                    {refusal: `customizations.rhsm: debian-12 cannot honour this`},
	"customizations.rhsm.config.dnf_plugins.subscription_manager.enabled":          {refusal: `customizations.rhsm: debian-12 cannot honour this`},
	"customizations.rhsm.config.subscription_manager.rhsm.auto_enable_yum_plugins": {refusal: `customizations.rhsm: debian-12 cannot honour this`},
	"customizations.rhsm.config.subscription_manager.rhsm.manage_repos":            {refusal: `customizations.rhsm: debian-12 cannot honour this`},
	"customizations.rhsm.config.subscription_manager.rhsmcertd.auto_registration":  {refusal: `customizations.rhsm: debian-12 cannot honour this`},
	"customizations.rpm.import_keys.files":                                         {refusal: `customizations.rpm: debian-12 cannot honour this`},
	"customizations.services.disabled":                                             {stage: "systemd", marker: `every-disabled.service`},
	"customizations.services.enabled":                                              {stage: "systemd", marker: `every-enabled.service`},
	"customizations.services.masked":                                               {stage: "systemd", marker: `every-masked.service`},
	"customizations.sshd.client_alive_interval":                                    {stage: "files", marker: `ClientAliveInterval 123`},
	"customizations.sshd.kbd_interactive_authentication":                           {stage: "files", marker: `KbdInteractiveAuthentication no`},
	"customizations.sshd.password_authentication":                                  {stage: "files", marker: `PasswordAuthentication no`},
	"customizations.sshd.permit_root_login":                                        {stage: "files", marker: `PermitRootLogin prohibit-password`},
	"customizations.sshkey.key":                                                    {stage: "users", marker: `sshkey@every-field`},
	"customizations.sshkey.user":                                                   {stage: "users", marker: `"name":"root"`},
	"customizations.timezone.ntpservers":                                           {stage: "timezone", marker: `ntp.every-field.example`},
	"customizations.timezone.timezone":                                             {stage: "timezone", marker: `Europe/Lisbon`},
	"customizations.user.description":                                              {stage: "users", marker: `Every Field`},
	"customizations.user.expiredate":                                               {stage: "users", marker: `"expiredate":20000`},
	"customizations.user.force_password_reset":                                     {stage: "users", marker: `"force_password_reset":true`},
	"customizations.user.gid":                                                      {stage: "users", marker: `"gid":1234`},
	"customizations.user.groups":                                                   {stage: "users", marker: `"groups":["sudo","every-group"]`},
	"customizations.user.home":                                                     {stage: "users", marker: `/home/every-home`},
	"customizations.user.key":                                                      {stage: "users", marker: `user@every-field`},
	"customizations.user.name":                                                     {stage: "users", marker: `"every.user"`},
	"customizations.user.password":                                                 {stage: "users", marker: `everyfieldsalt00`},
	"customizations.user.shell":                                                    {stage: "users", marker: `/bin/bash`},
	"customizations.user.uid":                                                      {stage: "users", marker: `"uid":1234`},
	"description":                                                                  {metadata: `the blueprint's description: recorded by its digest`},
	"distro":                                                                       {stage: "", marker: `"distro": "debian-12"`},
	"enabled_modules.name":                                                         {refusal: `enabled_modules: debian-12 cannot honour this`},
	"enabled_modules.stream":                                                       {refusal: `enabled_modules: debian-12 cannot honour this`},
	"groups.name":                                                                  {stage: "debs", marker: `build-essential`},
	"modules.name":                                                                 {stage: "debs", marker: `jq`},
	"modules.version":                                                              {stage: "debs", marker: `jq:amd64=1.6-`},
	"name":                                                                         {metadata: `the blueprint's name: recorded by its digest`},
	"packages.name":                                                                {stage: "debs", marker: `tmux`},
	"packages.version":                                                             {stage: "debs", marker: `tmux:amd64=3.3a`},
	"version":                                                                      {metadata: `the blueprint's version: recorded by its digest`},
}

// composerLeaves reads the leaf fields of fields.txt.
func composerLeaves(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("../../testdata/blueprints/composer/fields.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var all []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			all = append(all, l)
		}
	}
	var leaves []string
	for _, l := range all {
		leaf := true
		for _, o := range all {
			if strings.HasPrefix(o, l+".") {
				leaf = false
				break
			}
		}
		if leaf {
			leaves = append(leaves, l)
		}
	}
	return leaves
}

// TestEveryField checks that every field of composer's blueprint, set in
// the every-field blueprints, reaches a stage of the lockfile or a refusal
// that names it: none is silently ignored.
func TestEveryField(t *testing.T) {
	srcs := locktest.NeedArchive(t)
	leaves := composerLeaves(t)
	for _, l := range leaves {
		if _, ok := everyField[l]; !ok {
			t.Errorf("composer's field %s has no fate here", l)
		}
	}
	for l := range everyField {
		if !contains(leaves, l) {
			t.Errorf("%s is not a field of composer's", l)
		}
	}

	registry := publishtest.DockerRegistry(t)
	pushImage(t, registry, "every/field:1", "amd64")
	dir := "../../testdata/blueprints/composer/every-field"
	load := func(name string) *blueprint.Blueprint {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		// The install_from repository is the host's own mirror; the
		// container's registry Debian's docker-registry on 127.0.0.1.
		data = []byte(strings.ReplaceAll(string(data), "http://host-mirror.invalid/debian", srcs[0].URI))
		data = []byte(strings.ReplaceAll(string(data), "registry.example.com/", registry+"/"))
		bp, err := blueprint.Parse(filepath.Join(dir, name), data)
		if err != nil {
			t.Fatal(err)
		}
		return bp
	}
	full, disk, btrfs := load("every-field.toml"), load("every-field-disk.toml"), load("every-field-btrfs.toml")
	set := map[string]bool{}
	for _, bp := range []*blueprint.Blueprint{full, disk, btrfs} {
		for _, f := range bp.SetFields() {
			set[f] = true
		}
	}
	for _, l := range leaves {
		if !set[l] {
			t.Errorf("the every-field blueprints do not set %s", l)
		}
	}

	cache := os.Getenv("IBUILD_TEST_CACHE")
	if cache == "" {
		cache = filepath.Join(os.TempDir(), "ibuild-test-cache")
	}
	client := &repo.Client{CacheDir: filepath.Join(cache, "cli", "metadata")}
	lockBP := func(bp *blueprint.Blueprint) (*manifest.Lockfile, error) {
		return lock.Lock(context.Background(), bp, bp.Source.File, lock.WithFetcher(client), lock.WithSources(srcs...),
			lock.WithArches("x86_64"), lock.WithTypes("qcow2"))
	}

	// Whole, each blueprint is refused, naming every refused field; the
	// btrfs one locks (debian-12 makes it with debian-13's mkfs.btrfs).
	var refusals string
	for _, bp := range []*blueprint.Blueprint{full, disk} {
		_, err := lockBP(bp)
		if err == nil {
			t.Fatalf("%s locked whole", bp.Source.File)
		}
		refusals += err.Error() + "\n"
	}
	for _, l := range leaves {
		if f := everyField[l]; f.refusal != "" && !strings.Contains(refusals, f.refusal) {
			t.Errorf("%s: no refusal containing %q in:\n%s", l, f.refusal, refusals)
		}
	}

	// Without what is refused, each locks, and every other field is in
	// its stage.
	stripRefused(full)
	stripRefused(disk)
	var stageText = map[string]string{}
	var whole string
	for _, bp := range []*blueprint.Blueprint{full, disk, btrfs} {
		lf, err := lockBP(bp)
		if err != nil {
			t.Fatalf("%s without its refused fields: %v", bp.Source.File, err)
		}
		b, err := lf.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		whole += string(b)
		for _, e := range lf.Entries {
			for _, p := range e.Pipelines {
				for _, s := range p.Stages {
					stageText[s.Type] += string(s.Options) + "\n"
				}
			}
		}
	}
	var types []string
	for typ := range stageText {
		types = append(types, typ)
	}
	sort.Strings(types)
	for _, l := range leaves {
		f := everyField[l]
		if f.refusal != "" || f.metadata != "" {
			continue
		}
		text := whole
		if f.stage != "" {
			text = stageText[f.stage]
		}
		if !strings.Contains(text, f.marker) {
			t.Errorf("%s: stage %q does not hold %q (stages: %v)", l, f.stage, f.marker, types)
		}
	}
}

// stripRefused removes what the every-field blueprints set and Debian
// refuses, as everyField lists it.
func stripRefused(bp *blueprint.Blueprint) {
	bp.EnabledModules = nil
	for i := range bp.Containers {
		bp.Containers[i].LocalStorage = false
	}
	cu := bp.Customizations
	cu.ContainersStorage, cu.DNF, cu.FDO, cu.FIPS, cu.Ignition = nil, nil, nil, nil, nil
	cu.InstallationDevice, cu.Installer, cu.ISO, cu.OpenSCAP, cu.RHSM, cu.RPM = "", nil, nil, nil, nil, nil
	var repos []blueprint.RepositoryCustomization
	for _, r := range cu.Repositories {
		if (len(r.BaseURLs) > 0 || r.Mirrorlist != "") && (r.ModuleHotfixes == nil || !*r.ModuleHotfixes) {
			repos = append(repos, r)
		}
	}
	cu.Repositories = repos
	if fb := cu.Firstboot; fb != nil {
		var scripts []blueprint.FirstbootScript
		for _, s := range fb.Scripts {
			if s.Type != "satellite" {
				scripts = append(scripts, s)
			}
		}
		fb.Scripts = scripts
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
