package depsolve

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/repo"
)

// The differential test resolves package sets with depsolve and with apt
// itself, in a throw-away apt root fed from the host's apt sources, and
// compares the results package by package, version by version.
//
// apt is run as `apt-get install -s --no-install-recommends LIST` on an
// empty dpkg status, where LIST is Universe.CommandLine(req): the base
// (Essential and Priority: required) followed by the request. Sets marked
// bare leave the base out, as a plain apt-get install on an empty system
// does.

// aptSet is one package set both sides resolve.
type aptSet struct {
	name    string
	arch    string
	install []string
	bare    bool // without the base
	// checkInst also runs apt-get install -s and checks that its Inst
	// lines agree with --print-uris.
	checkInst bool
}

var aptSets = []aptSet{
	{name: "nginx", install: []string{"nginx"}, checkInst: true},
	{name: "postgresql", install: []string{"postgresql"}},
	{name: "cockpit", install: []string{"cockpit"}},
	{name: "openssh-server", install: []string{"openssh-server"}},
	{name: "python3", install: []string{"python3"}},
	{name: "qemu-guest-agent", install: []string{"qemu-guest-agent"}},
	{name: "firewalld", install: []string{"firewalld"}},
	{name: "npm", install: []string{"npm"}},
	{name: "systemd", install: []string{"systemd"}},
	{name: "linux-image-amd64", install: []string{"linux-image-amd64"}},
	{name: "grub-efi-amd64", install: []string{"grub-efi-amd64"}},
	{name: "grub-pc", install: []string{"grub-pc"}},
	{name: "systemd-boot", install: []string{"systemd-boot"}},
	{name: "cloud-init", install: []string{"cloud-init"}},
	{name: "sudo", install: []string{"sudo"}},
	{name: "curl", install: []string{"curl"}},
	{name: "vim", install: []string{"vim"}},
	{name: "git", install: []string{"git"}},
	{name: "build-essential", install: []string{"build-essential"}},
	{name: "docker.io", install: []string{"docker.io"}},
	{name: "podman", install: []string{"podman"}},
	{name: "network-manager", install: []string{"network-manager"}},
	{name: "chrony", install: []string{"chrony"}},
	{name: "apache2", install: []string{"apache2"}},
	{name: "mariadb-server", install: []string{"mariadb-server"}},
	{name: "redis-server", install: []string{"redis-server"}},
	{name: "openjdk-17-jre-headless", install: []string{"openjdk-17-jre-headless"}},
	{name: "golang", install: []string{"golang"}},
	{name: "emacs-nox", install: []string{"emacs-nox"}},
	{name: "libreoffice-core", install: []string{"libreoffice-core"}},
	{name: "cloud-image", install: []string{"openssh-server", "linux-image-cloud-amd64", "systemd-boot", "initramfs-tools", "e2fsprogs"}},
	{name: "server", install: []string{"systemd-sysv", "linux-image-amd64", "grub-pc", "openssh-server", "sudo", "chrony", "ifupdown", "isc-dhcp-client", "locales"}},
	{name: "web-stack", install: []string{"nginx", "postgresql", "redis-server", "python3-venv"}},
	{name: "desktop-ish", install: []string{"network-manager", "pipewire", "dbus-user-session", "fonts-dejavu-core"}},
	{name: "pinned-glob", install: []string{"tzdata=2025*", "curl"}},
	{name: "virtual-mta", install: []string{"mailutils"}},
	{name: "xfce4", install: []string{"xfce4"}},
	{name: "elogind", install: []string{"elogind", "libpam-elogind", "dbus-x11"}},
	{name: "sysvinit", install: []string{"sysvinit-core", "openssh-server"}},
	{name: "runit-init", install: []string{"runit-init"}},
	{name: "storage", install: []string{"lvm2", "cryptsetup", "mdadm", "btrfs-progs", "xfsprogs", "nfs-kernel-server"}},
	{name: "infra", install: []string{"bind9", "haproxy", "keepalived", "samba", "ansible"}},
	{name: "langs", install: []string{"php", "nodejs", "default-jdk-headless", "ruby", "texlive-latex-base"}},
	{name: "pinned-kernel", install: []string{"linux-image-amd64=6.1.176-1"}},
	{name: "pinned-openssl", install: []string{"openssl=3.0.17*", "curl"}},
	{name: "pinned-arch-qualified", install: []string{"curl:amd64", "bash:native", "tzdata:all"}},
	{name: "tied-providers", install: []string{"kde-telepathy-minimal"}},
	// Sets apt refuses: depsolve must refuse them too.
	{name: "fail/pinned-systemd", install: []string{"systemd=252.38-1~deb12u1"}},
	{name: "fail/two-mtas", install: []string{"exim4-daemon-light", "postfix"}},
	// Bare sets: apt-get install on an empty system, no base.
	{name: "bare/nginx", install: []string{"nginx"}, bare: true},
	{name: "bare/openssh-server", install: []string{"openssh-server"}, bare: true},
	{name: "bare/systemd", install: []string{"systemd"}, bare: true},
	{name: "bare/python3", install: []string{"python3"}, bare: true},
	{name: "bare/git", install: []string{"git"}, bare: true},
	{name: "bare/cloud-init", install: []string{"cloud-init"}, bare: true},
	{name: "bare/mailutils", install: []string{"mailutils"}, bare: true},
	// arm64, from the same sources.
	{name: "arm64/cloud-image", arch: "arm64", install: []string{"openssh-server", "linux-image-cloud-arm64", "systemd-boot", "initramfs-tools"}},
	{name: "arm64/grub-efi-arm64", arch: "arm64", install: []string{"grub-efi-arm64", "linux-image-arm64"}},
	{name: "arm64/podman", arch: "arm64", install: []string{"podman", "curl"}},
	// What ibuild lock resolves for aarch64 entries (imagedefs/distros):
	// the build root, a generic and a cloud image's os tree, a container.
	{name: "arm64/build-root", arch: "arm64", install: []string{"dpkg", "tar", "gzip", "xz-utils", "zstd", "e2fsprogs", "dosfstools", "mtools", "qemu-utils"}},
	{name: "arm64/os-generic", arch: "arm64", install: []string{"systemd", "systemd-sysv", "systemd-resolved", "udev", "dbus", "netbase",
		"iproute2", "ca-certificates", "apt", "linux-image-arm64", "grub-efi-arm64-bin", "grub2-common", "initramfs-tools", "zstd", "e2fsprogs",
		"openssh-server", "sudo"}},
	{name: "arm64/os-cloud", arch: "arm64", install: []string{"systemd", "systemd-sysv", "systemd-resolved", "udev", "dbus", "netbase",
		"iproute2", "ca-certificates", "apt", "linux-image-cloud-arm64", "grub-efi-arm64-bin", "grub2-common", "initramfs-tools", "zstd",
		"e2fsprogs", "cloud-init"}},
	{name: "arm64/container", arch: "arm64", install: []string{"ca-certificates", "netbase"}},
	{name: "bare/arm64/openssh-server", arch: "arm64", install: []string{"openssh-server"}, bare: true},
}

// expectedDiff documents a difference from apt that the test accepts.
type expectedDiff struct {
	onlyApt, onlyOurs []string // package names
	why               string
}

// expectedDiffs lists every accepted difference, by set name. An entry that
// no longer matches what the test sees fails the test, so the table stays
// true.
var expectedDiffs = map[string]expectedDiff{
	"tied-providers": {
		onlyApt:  []string{"telepathy-idle"},
		onlyOurs: []string{"libsofia-sip-ua-glib3", "libsofia-sip-ua0", "telepathy-rakia"},
		why: "telepathy-connection-manager has three providers of equal standing; apt takes the one its " +
			"cache numbered last, and it numbers a name where it first meets it, here in another " +
			"package's Suggests (\"Suggests: telepathy-rakia, telepathy-idle\"), which repo.Package " +
			"does not carry, so depsolve numbers them in stanza order and picks telepathy-rakia",
	},
}

func TestAptDifferential(t *testing.T) {
	if testing.Short() {
		t.Skip("differential test against apt: needs the network and ~1 min; skipped with -short")
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Skip("apt-get not installed")
	}
	if _, err := hostSourceFiles(); err != nil {
		t.Skip(err)
	}
	before, err := hostAptState()
	if err != nil {
		t.Fatalf("checksumming the host's apt state: %v", err)
	}
	t.Cleanup(func() {
		after, err := hostAptState()
		if err != nil {
			t.Errorf("checksumming the host's apt state: %v", err)
		} else if after != before {
			t.Errorf("the host's /var/lib/apt or /var/lib/dpkg changed during the test (%s → %s); an apt run elsewhere on the host changes it too", before, after)
		}
	})

	t.Run("sets", func(t *testing.T) {
		for _, set := range aptSets {
			t.Run(set.name, func(t *testing.T) {
				t.Parallel()
				compareWithApt(t, sharedAptRoot(t, set.archOr()), set)
			})
		}
	})
	// Entries for sets that are gone are errors too.
	for name := range expectedDiffs {
		found := false
		for _, set := range aptSets {
			found = found || set.name == name
		}
		if !found {
			t.Errorf("expectedDiffs has %q, which is not a set", name)
		}
	}
}

func (s aptSet) archOr() string {
	if s.arch == "" {
		return "amd64"
	}
	return s.arch
}

func compareWithApt(t *testing.T, r *aptRoot, set aptSet) {
	req := Request{Arch: r.arch, Install: set.install}
	var args []string
	if set.bare {
		args = set.install
	} else {
		args = r.u.CommandLine(req)
	}
	start := time.Now()
	aptGot, aptErr := r.simulate(args, false)
	aptTime := time.Since(start)
	if set.checkInst {
		// The faster --print-uris must agree with install -s.
		inst, err := r.simulate(args, true)
		if (err == nil) != (aptErr == nil) || fmt.Sprint(inst) != fmt.Sprint(aptGot) {
			t.Fatalf("apt-get install -s and --print-uris disagree:\n-s: %v (%v)\n--print-uris: %v (%v)", inst, err, aptGot, aptErr)
		}
	}

	start = time.Now()
	sol, err := r.u.solve(context.Background(), req, !set.bare)
	ourTime := time.Since(start)
	t.Logf("%d packages; apt-get -s %v, depsolve %v", len(aptGot), aptTime.Round(time.Millisecond), ourTime.Round(time.Microsecond))

	if aptErr != nil {
		if err == nil {
			t.Fatalf("apt fails, depsolve does not: %v", aptErr)
		}
		t.Logf("both fail; apt: %v; depsolve: %v", aptErr, err)
		return
	}
	if err != nil {
		t.Fatalf("depsolve fails, apt does not: %v", err)
	}
	ours := map[string]string{}
	for _, p := range sol.Packages {
		ours[p.Name] = p.Version
	}
	var onlyApt, onlyOurs, versions []string
	for n, v := range aptGot {
		ov, ok := ours[n]
		switch {
		case !ok:
			onlyApt = append(onlyApt, n)
		case ov != v:
			versions = append(versions, fmt.Sprintf("%s: apt %s, depsolve %s", n, v, ov))
		}
	}
	for n := range ours {
		if _, ok := aptGot[n]; !ok {
			onlyOurs = append(onlyOurs, n)
		}
	}
	sort.Strings(onlyApt)
	sort.Strings(onlyOurs)
	sort.Strings(versions)
	if len(versions) > 0 {
		t.Errorf("versions differ:\n%s", strings.Join(versions, "\n"))
	}
	want, documented := expectedDiffs[set.name]
	switch {
	case documented && (!equalStrings(want.onlyApt, onlyApt) || !equalStrings(want.onlyOurs, onlyOurs)):
		t.Errorf("documented difference (%s) no longer holds:\nonly apt: %v (documented %v)\nonly depsolve: %v (documented %v)",
			want.why, onlyApt, want.onlyApt, onlyOurs, want.onlyOurs)
	case documented:
		t.Logf("documented difference: %s", want.why)
	case len(onlyApt) > 0 || len(onlyOurs) > 0:
		t.Errorf("package sets differ:\nonly apt: %v\nonly depsolve: %v", onlyApt, onlyOurs)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// aptRoot is a throw-away apt configuration and state directory for one
// architecture, shared by all tests and benchmarks of a run: apt-get update
// runs once per architecture.
type aptRoot struct {
	arch, dir, conf string
	srcFiles        []string

	once sync.Once
	err  error // setup failed: tests skip
	fail bool  // setup failed in a way that is a test failure
	u    *Universe
	// lists are the Packages files apt fetched, in sources order.
	lists []aptList
}

type aptList struct{ file, uri string }

var aptRoots = struct {
	sync.Mutex
	m map[string]*aptRoot
}{m: map[string]*aptRoot{}}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, r := range aptRoots.m {
		os.RemoveAll(r.dir)
	}
	os.Exit(code)
}

// sharedAptRoot returns the run's apt root for arch, set up: the host's
// sources, apt-get update done, the lists loaded into a Universe. It skips
// tb when the sources cannot be read or the archive cannot be reached.
func sharedAptRoot(tb testing.TB, arch string) *aptRoot {
	aptRoots.Lock()
	r := aptRoots.m[arch]
	if r == nil {
		r = &aptRoot{arch: arch}
		aptRoots.m[arch] = r
	}
	aptRoots.Unlock()
	r.once.Do(func() { r.err = r.setup() })
	if r.err != nil {
		if r.fail {
			tb.Fatal(r.err)
		}
		tb.Skip(r.err)
	}
	return r
}

func (r *aptRoot) setup() error {
	if _, err := exec.LookPath("apt-get"); err != nil {
		return fmt.Errorf("apt-get not installed")
	}
	srcFiles, err := hostSourceFiles()
	if err != nil {
		return err
	}
	r.srcFiles = srcFiles
	if r.dir, err = os.MkdirTemp("", "depsolve-apt-"+r.arch+"-"); err != nil {
		return err
	}
	for _, d := range []string{"etc/apt/sources.list.d", "etc/apt/apt.conf.d", "etc/apt/preferences.d",
		"var/lib/apt/lists/partial", "var/cache/apt/archives/partial", "var/lib/dpkg", "var/log/apt"} {
		if err := os.MkdirAll(filepath.Join(r.dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(r.dir, "var/lib/dpkg/status"), nil, 0o644); err != nil {
		return err
	}
	for i, f := range r.srcFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("reading host apt sources: %w", err)
		}
		dst := filepath.Join(r.dir, "etc/apt/sources.list.d", fmt.Sprintf("%02d-%s", i, filepath.Base(f)))
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			return err
		}
	}
	// Debian's apt ships 01autoremove (APT::NeverAutoRemove and
	// friends); depsolve mirrors apt configured so.
	if data, err := os.ReadFile("/etc/apt/apt.conf.d/01autoremove"); err == nil {
		if err := os.WriteFile(filepath.Join(r.dir, "etc/apt/apt.conf.d/01autoremove"), data, 0o644); err != nil {
			return err
		}
	}
	// APT_CONFIG is read before apt.conf.d, so Dir keeps the host's
	// configuration and state out of it entirely. Keys without Signed-By
	// come from the host's trusted keyrings, read-only.
	conf := fmt.Sprintf(`Dir "%s/";
Dir::State::status "%s/var/lib/dpkg/status";
Dir::Etc::Trusted "/etc/apt/trusted.gpg";
Dir::Etc::TrustedParts "/etc/apt/trusted.gpg.d/";
APT::Architecture "%s";
APT::Architectures "%s";
Acquire::Languages "none";
Debug::NoLocking "true";
APT::Install-Recommends "false";
APT::Install-Suggests "false";
`, r.dir, r.dir, r.arch, r.arch)
	r.conf = filepath.Join(r.dir, "apt.conf")
	if err := os.WriteFile(r.conf, []byte(conf), 0o644); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if out, err := r.apt(ctx, "update"); err != nil {
		return fmt.Errorf("apt-get update in %s failed (archive unreachable?): %v\n%s", r.dir, err, out)
	}
	r.fail = true // from here on a failure is the test's
	out, err := r.apt(ctx, "indextargets", "--format", "$(FILENAME)\t$(REPO_URI)", "Identifier: Packages")
	if err != nil {
		return fmt.Errorf("apt-get indextargets: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		file, uri, ok := strings.Cut(line, "\t")
		if !ok {
			return fmt.Errorf("apt-get indextargets: unexpected line %q", line)
		}
		if _, err := os.Stat(file); errors.Is(err, fs.ErrNotExist) {
			continue // apt had nothing for it
		}
		r.lists = append(r.lists, aptList{file, uri})
	}
	pkgs, err := r.load()
	if err != nil {
		return err
	}
	if len(pkgs) == 0 {
		return fmt.Errorf("apt-get update fetched no Packages lists for %s", r.arch)
	}
	r.u = NewUniverse(pkgs, r.arch)
	// Build apt's cache now, so that parallel runs only read it.
	if out, err := r.apt(ctx, "check"); err != nil {
		return fmt.Errorf("apt-get check: %v\n%s", err, out)
	}
	return nil
}

// load parses the lists apt fetched, in sources order.
func (r *aptRoot) load() ([]repo.Package, error) {
	var pkgs []repo.Package
	for origin, l := range r.lists {
		got, err := parseList(l.file, l.uri, origin)
		if err != nil {
			return nil, err
		}
		pkgs = append(pkgs, got...)
	}
	return pkgs, nil
}

func parseList(file, uri string, origin int) ([]repo.Package, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	pkgs, err := repo.ParsePackages(bufio.NewReader(f), uri, origin)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", file, err)
	}
	return pkgs, nil
}

func (r *aptRoot) apt(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "apt-get", args...)
	cmd.Env = append(os.Environ(), "APT_CONFIG="+r.conf, "LC_ALL=C.UTF-8", "DEBIAN_FRONTEND=noninteractive")
	return cmd.CombinedOutput()
}

var (
	instLine = regexp.MustCompile(`^Inst (\S+) (?:\[\S+\] )?\((\S+) `)
	uriLine  = regexp.MustCompile(`^'[^']+' (\S+)_(\S+)_(\S+)\.deb \d+ `)
)

// simulate asks apt which packages `apt-get install --no-install-recommends
// args` installs, name → version. By default it uses --print-uris, which
// marks packages exactly as install -s does but skips the simulated dpkg
// run (a third of the CPU time); withInst parses install -s's "Inst" lines
// instead.
func (r *aptRoot) simulate(args []string, withInst bool) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	mode := []string{"install", "-y", "-qq", "--print-uris", "--no-install-recommends"}
	if withInst {
		mode = []string{"install", "-s", "-q", "--no-install-recommends"}
	}
	out, err := r.apt(ctx, append(mode, args...)...)
	if err != nil {
		return nil, fmt.Errorf("apt-get %s: %v\n%s", strings.Join(mode, " "), err, lastLines(out, 15))
	}
	got := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if withInst {
			if m := instLine.FindStringSubmatch(line); m != nil {
				name, _, _ := strings.Cut(m[1], ":")
				got[name] = m[2]
			}
			continue
		}
		if m := uriLine.FindStringSubmatch(line); m != nil {
			// apt names the file name_version_arch.deb, with ':' (of an
			// epoch) and '_' escaped.
			name, err1 := url.PathUnescape(m[1])
			ver, err2 := url.PathUnescape(m[2])
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("apt-get --print-uris: bad file name in %q", line)
			}
			got[name] = ver
		} else if strings.HasPrefix(line, "'") {
			return nil, fmt.Errorf("apt-get --print-uris: unexpected line %q", line)
		}
	}
	return got, nil
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// hostSourceFiles lists the host's apt source files, as apt reads them, and
// fails when there are none or one cannot be read.
func hostSourceFiles() ([]string, error) {
	var files []string
	if _, err := os.Stat("/etc/apt/sources.list"); err == nil {
		files = append(files, "/etc/apt/sources.list")
	}
	parts, err := filepath.Glob("/etc/apt/sources.list.d/*")
	if err != nil {
		return nil, err
	}
	sort.Strings(parts)
	for _, p := range parts {
		if strings.HasSuffix(p, ".list") || strings.HasSuffix(p, ".sources") {
			files = append(files, p)
		}
	}
	for _, f := range files {
		if _, err := os.ReadFile(f); err != nil {
			return nil, fmt.Errorf("cannot read the host's apt sources: %w", err)
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("the host has no apt sources")
	}
	return files, nil
}

// hostAptState checksums the host's /var/lib/apt and /var/lib/dpkg: names,
// modes, sizes and contents.
func hostAptState() (string, error) {
	h := sha256.New()
	for _, root := range []string{"/var/lib/apt", "/var/lib/dpkg"} {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "%s %v %d\n", p, info.Mode(), info.Size())
			if !info.Mode().IsRegular() {
				return nil
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(h, f)
			return err
		})
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}
