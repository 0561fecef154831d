package stages

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	"pault.ag/go/debian/dependency"

	"github.com/image-builder-action/image-builder-action/pkg/deb"
	"github.com/image-builder-action/image-builder-action/pkg/treepath"
)

func init() { register[Debs]("debs", 1) }

// Debs installs pinned packages into the tree the way mmdebstrap does: on an
// empty tree the essential set is extracted first (in Go: no dpkg exists
// yet) and installed by the tree's own dpkg with --force-depends, then the
// other packages are unpacked and configured by that dpkg in dependency
// order. Services never start and no initramfs is built meanwhile; the
// initramfs stage builds it once.
type Debs struct {
	// Packages are refs ("name:arch=version") of the lockfile's packages.
	Packages []string `json:"packages"`
	// PathExclude and PathInclude are dpkg's path filters, written to
	// /etc/dpkg/dpkg.cfg.d/ibuild-excludes before anything is unpacked.
	PathExclude []string `json:"path_exclude,omitempty"`
	PathInclude []string `json:"path_include,omitempty"`
}

var (
	debNameRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	debArchRE    = regexp.MustCompile(`^[a-z0-9-]+$`)
	debVersionRE = regexp.MustCompile(`^([0-9]+:)?[A-Za-z0-9.+~-]+(:[A-Za-z0-9.+~-]+)*$`)
)

// debsParseRef splits "name:arch=version".
func debsParseRef(ref string) (name, arch, version string, err error) {
	na, version, ok := strings.Cut(ref, "=")
	if ok {
		name, arch, ok = strings.Cut(na, ":")
	}
	if !ok || !debNameRE.MatchString(name) || !debArchRE.MatchString(arch) || !debVersionRE.MatchString(version) {
		return "", "", "", fmt.Errorf("%q is not a package ref (name:arch=version)", ref)
	}
	return name, arch, version, nil
}

func (s *Debs) validate() error {
	if len(s.Packages) == 0 {
		return errors.New("packages: empty")
	}
	seen := map[string]int{}
	for i, ref := range s.Packages {
		name, arch, _, err := debsParseRef(ref)
		if err != nil {
			return fmt.Errorf("packages[%d]: %w", i, err)
		}
		if j, dup := seen[name+":"+arch]; dup {
			return fmt.Errorf("packages[%d]: %s:%s is already packages[%d]", i, name, arch, j)
		}
		seen[name+":"+arch] = i
	}
	for field, list := range map[string][]string{"path_exclude": s.PathExclude, "path_include": s.PathInclude} {
		for i, p := range list {
			if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\n\x00") {
				return fmt.Errorf("%s[%d]: %q must be an absolute path glob on one line", field, i, p)
			}
		}
	}
	if len(s.PathInclude) > 0 && len(s.PathExclude) == 0 {
		return errors.New("path_include: without path_exclude it has no effect")
	}
	return nil
}

// debInfo is what the stage needs of one package.
type debInfo struct {
	ref        string
	path       string
	name       string
	arch       string
	version    string
	essential  bool
	size       int64
	preDepends [][]string // alternatives of names
	depends    [][]string
	provides   []string
}

// debsEnv is the environment maintainer scripts run with.
func debsEnv(epoch int64) []string {
	return []string{
		"DEBIAN_FRONTEND=noninteractive",
		"DEBCONF_NONINTERACTIVE_SEEN=true",
		// Kernel hooks skip the initramfs; the initramfs stage builds it.
		"INITRD=No",
		fmt.Sprintf("SOURCE_DATE_EPOCH=%d", epoch),
	}
}

const (
	// debsPath is the runner's PATH when a command's environment has none.
	debsPath         = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	debsExcludesFile = "/etc/dpkg/dpkg.cfg.d/ibuild-excludes"
	debsMount        = "/tmp/ibuild-debs" // under the runner's /tmp tmpfs: leaves no trace
	debsPolicyRcD    = "/usr/sbin/policy-rc.d"
	debsDivertSuffix = ".ibuild-diverted"
)

// Run installs the packages into env.Tree.
func (s *Debs) Run(ctx context.Context, env *Env) error {
	logf := func(format string, a ...any) {
		if env.Log != nil {
			fmt.Fprintf(env.Log, "debs: "+format+"\n", a...)
		}
	}
	start := time.Now()
	pkgs, err := s.readPackages(ctx, env)
	if err != nil {
		return err
	}
	logf("read %d control files in %s", len(pkgs), time.Since(start).Round(time.Millisecond))

	tree := env.Tree
	installed, err := readDpkgStatus(tree)
	if err != nil {
		return err
	}
	bootstrap := len(installed) == 0
	if err := s.writeExcludes(tree); err != nil {
		return err
	}
	var essential, rest []*debInfo
	if debsForeign(env.Arch) {
		// dpkg runs under emulation: decompress what it will read here.
		todo := pkgs
		if !bootstrap {
			todo = nil
			for _, p := range pkgs {
				if st, ok := installed[p.name+":"+p.arch]; !ok || st.version != p.version || st.status != "install ok installed" {
					todo = append(todo, p)
				}
			}
		}
		t := time.Now()
		dir, err := debsUncompress(ctx, env.TempDir, todo)
		if dir != "" {
			defer os.RemoveAll(dir)
		}
		if err != nil {
			return err
		}
		logf("decompressed %d packages for an emulated dpkg in %s", len(todo), time.Since(t).Round(time.Millisecond))
	}
	if bootstrap {
		essential, rest = debsSplitEssential(pkgs)
		if err := debsSetupTree(tree, env.Arch); err != nil {
			return err
		}
		t := time.Now()
		filter := deb.NewFilter(s.PathExclude, s.PathInclude)
		if err := debsExtractAll(ctx, tree, essential, filter); err != nil {
			return err
		}
		logf("extracted %d essential packages in %s", len(essential), time.Since(t).Round(time.Millisecond))
	} else {
		for _, p := range pkgs {
			if st, ok := installed[p.name+":"+p.arch]; !ok || st.version != p.version || st.status != "install ok installed" {
				rest = append(rest, p)
			}
		}
	}

	d := &debsDpkg{env: env, binds: debsBindDirs(pkgs), logf: logf}
	restore, err := debsPreventServices(tree)
	if err != nil {
		return err
	}
	// Restore what was changed for the installation on every path out.
	var undo []func() error
	defer func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		restore()
	}()

	configured := map[string]bool{}
	for k, st := range installed {
		if st.status == "install ok installed" {
			configured[strings.SplitN(k, ":", 2)[0]] = true
			for _, p := range st.provides {
				configured[p] = true
			}
		}
	}
	if bootstrap {
		t := time.Now()
		args := []string{"--install", "--force-depends"}
		if native := debsEssentialNative(env, essential); native != nil {
			unlink, err := debsNativeLink(tree)
			if err != nil {
				return err
			}
			undo = append(undo, func() error { d.native, d.path = nil, ""; return unlink() })
			d.native, d.path = native, debsEssentialNativeDir
			logf("%d programs the essential set's dpkg finds on PATH run natively (the build root's, same versions)", len(native)-2)
		}
		if err := d.run(ctx, args, debsOrder(essential)); err != nil {
			return fmt.Errorf("installing the essential packages: %w", err)
		}
		for i := len(undo) - 1; i >= 0; i-- {
			if err := undo[i](); err != nil {
				return err
			}
		}
		undo = nil
		for _, p := range essential {
			debsMarkConfigured(configured, p)
		}
		logf("installed %d essential packages in %s", len(essential), time.Since(t).Round(time.Millisecond))
	}
	u, err := debsDivertTools(ctx, d, tree, pkgs)
	undo = append(undo, u...)
	if err != nil {
		return err
	}
	t := time.Now()
	if native := debsNative(env, rest); native != nil {
		unlink, err := debsNativeLink(tree)
		if err != nil {
			return err
		}
		undo = append(undo, func() error { d.native = nil; return unlink() })
		d.native = native
		logf("%d of the tree's programs run natively (the build root's, same versions)", len(d.native)-2)
	}
	if err := d.installSet(ctx, rest, configured); err != nil {
		return err
	}
	logf("installed %d packages in %s", len(rest), time.Since(t).Round(time.Millisecond))

	// Undo the diversions now, so failures surface as errors.
	for i := len(undo) - 1; i >= 0; i-- {
		if err := undo[i](); err != nil {
			return err
		}
	}
	undo = nil
	if err := restore(); err != nil {
		return err
	}
	return debsVerify(ctx, d, tree, pkgs)
}

// debsForeign reports whether a tree of dpkg architecture arch runs its
// programs under emulation here (GOARCH and dpkg agree on amd64 and arm64).
func debsForeign(arch string) bool { return arch != "" && arch != runtime.GOARCH }

// debsUncompress writes the packages again, their data archives
// uncompressed, into a new directory under tmp, and points them there: an
// emulated dpkg then only reads tar. Decompressing takes most of an
// emulated unpack's time (the kernel's 67 MiB of xz above all), and here it
// runs natively, in parallel.
func debsUncompress(ctx context.Context, tmp string, pkgs []*debInfo) (string, error) {
	if len(pkgs) == 0 {
		return "", nil
	}
	dir, err := os.MkdirTemp(tmp, "ibuild-debs-")
	if err != nil {
		return "", fmt.Errorf("decompressing packages: %w", err)
	}
	sorted := append([]*debInfo(nil), pkgs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].size > sorted[j].size })
	err = debsParallel(ctx, len(sorted), runtime.GOMAXPROCS(0), func(i int) error {
		p := sorted[i]
		d, err := deb.Open(p.path)
		if err != nil {
			return fmt.Errorf("package %s: %w", p.ref, err)
		}
		defer d.Close()
		dst := filepath.Join(dir, fmt.Sprintf("%s_%s.deb", p.name, p.arch))
		if err := d.WriteUncompressed(dst); err != nil {
			return fmt.Errorf("package %s: %w", p.ref, err)
		}
		p.path = dst
		return nil
	})
	return dir, err
}

// readPackages resolves every ref and reads its control file, in debsParallel.
func (s *Debs) readPackages(ctx context.Context, env *Env) ([]*debInfo, error) {
	if env.Packages == nil {
		return nil, errors.New("no package source")
	}
	out := make([]*debInfo, len(s.Packages))
	err := debsParallel(ctx, len(s.Packages), 2*runtime.GOMAXPROCS(0), func(i int) error {
		ref := s.Packages[i]
		p, err := env.Packages.Path(ref)
		if err != nil {
			return err
		}
		info, err := debsReadInfo(ref, p)
		if err != nil {
			return err
		}
		out[i] = info
		return nil
	})
	return out, err
}

func debsReadInfo(ref, p string) (*debInfo, error) {
	name, arch, version, err := debsParseRef(ref)
	if err != nil {
		return nil, err
	}
	pkg, err := deb.Open(p)
	if err != nil {
		return nil, fmt.Errorf("package %s: %w", ref, err)
	}
	defer pkg.Close()
	c, err := pkg.Control()
	if err != nil {
		return nil, fmt.Errorf("package %s: %w", ref, err)
	}
	if c["Package"] != name || c["Architecture"] != arch || c["Version"] != version {
		return nil, fmt.Errorf("package %s: the file is %s:%s=%s", ref, c["Package"], c["Architecture"], c["Version"])
	}
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	info := &debInfo{ref: ref, path: p, name: name, arch: arch, version: version, essential: c["Essential"] == "yes", size: fi.Size()}
	if info.preDepends, err = debsParseRelations(c["Pre-Depends"]); err != nil {
		return nil, fmt.Errorf("package %s: Pre-Depends: %w", ref, err)
	}
	if info.depends, err = debsParseRelations(c["Depends"]); err != nil {
		return nil, fmt.Errorf("package %s: Depends: %w", ref, err)
	}
	prov, err := debsParseRelations(c["Provides"])
	if err != nil {
		return nil, fmt.Errorf("package %s: Provides: %w", ref, err)
	}
	for _, alts := range prov {
		info.provides = append(info.provides, alts...)
	}
	return info, nil
}

// debsParseRelations returns a relationship field as lists of alternative
// package names (versions and architecture qualifiers dropped: the set is
// already solved, only the order matters here).
func debsParseRelations(field string) ([][]string, error) {
	field = strings.TrimSpace(field)
	if field == "" {
		return nil, nil
	}
	dep, err := dependency.Parse(field)
	if err != nil {
		return nil, err
	}
	var out [][]string
	for _, rel := range dep.Relations {
		var alts []string
		for _, p := range rel.Possibilities {
			alts = append(alts, p.Name)
		}
		out = append(out, alts)
	}
	return out, nil
}

// debsProviders maps names (packages and what they provide) to packages.
func debsProviders(set []*debInfo) map[string][]*debInfo {
	m := map[string][]*debInfo{}
	for _, p := range set {
		m[p.name] = append(m[p.name], p)
		for _, v := range p.provides {
			m[v] = append(m[v], p)
		}
	}
	return m
}

// debsSatisfying returns the package of set that satisfies a relation's
// alternatives, trying them in order.
func debsSatisfying(alts []string, prov map[string][]*debInfo) *debInfo {
	for _, a := range alts {
		if ps := prov[a]; len(ps) > 0 {
			return ps[0]
		}
	}
	return nil
}

// debsSplitEssential returns the Essential: yes packages with everything they
// depend on, and the others.
func debsSplitEssential(pkgs []*debInfo) (essential, rest []*debInfo) {
	prov := debsProviders(pkgs)
	in := map[*debInfo]bool{}
	var visit func(p *debInfo)
	visit = func(p *debInfo) {
		if in[p] {
			return
		}
		in[p] = true
		for _, rels := range [][][]string{p.preDepends, p.depends} {
			for _, alts := range rels {
				if q := debsSatisfying(alts, prov); q != nil {
					visit(q)
				}
			}
		}
	}
	for _, p := range pkgs {
		if p.essential {
			visit(p)
		}
	}
	for _, p := range pkgs {
		if in[p] {
			essential = append(essential, p)
		} else {
			rest = append(rest, p)
		}
	}
	return essential, rest
}

// debsOrder orders the set so that dependencies (Pre-Depends first) come
// before their dependents where cycles allow; ties by name.
func debsOrder(set []*debInfo) []*debInfo {
	sorted := append([]*debInfo(nil), set...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].name < sorted[j].name })
	prov := debsProviders(sorted)
	state := map[*debInfo]int{} // 1 visiting, 2 done
	var out []*debInfo
	var visit func(p *debInfo)
	visit = func(p *debInfo) {
		if state[p] != 0 {
			return // done, or a cycle: break it here
		}
		state[p] = 1
		for _, rels := range [][][]string{p.preDepends, p.depends} {
			for _, alts := range rels {
				if q := debsSatisfying(alts, prov); q != nil && q != p {
					visit(q)
				}
			}
		}
		state[p] = 2
		out = append(out, p)
	}
	for _, p := range sorted {
		visit(p)
	}
	return out
}

func debsMarkConfigured(configured map[string]bool, p *debInfo) {
	configured[p.name] = true
	for _, v := range p.provides {
		configured[v] = true
	}
}

func debsSatisfied(alts []string, configured map[string]bool) bool {
	for _, a := range alts {
		if configured[a] {
			return true
		}
	}
	return false
}

// debsDpkg runs the tree's dpkg.
type debsDpkg struct {
	env   *Env
	binds []debsBind
	// native are binds that run programs of the host's architecture in a
	// foreign tree (debsNative).
	native []Bind
	// path, when set, comes first on the commands' PATH (debsEssentialNative).
	path string
	logf func(string, ...any)
}

type debsBind struct{ hostDir, mount string }

// debsBindDirs mounts each directory holding packages under debsMount.
func debsBindDirs(pkgs []*debInfo) []debsBind {
	seen := map[string]string{}
	var out []debsBind
	for _, p := range pkgs {
		dir := filepath.Dir(p.path)
		if _, ok := seen[dir]; !ok {
			m := fmt.Sprintf("%s/%d", debsMount, len(out))
			seen[dir] = m
			out = append(out, debsBind{hostDir: dir, mount: m})
		}
	}
	return out
}

func (d *debsDpkg) inside(p *debInfo) string {
	dir := filepath.Dir(p.path)
	for _, b := range d.binds {
		if b.hostDir == dir {
			return b.mount + "/" + filepath.Base(p.path)
		}
	}
	panic("debs: package outside the bound directories: " + p.path)
}

// exec runs a command in the tree.
func (d *debsDpkg) exec(ctx context.Context, args []string, stdout io.Writer) error {
	cmd := &Cmd{Root: d.env.Tree, Args: args, Env: debsEnv(d.env.SourceDateEpoch), Stdout: stdout, Stderr: d.env.Log}
	if d.path != "" {
		cmd.Env = append(cmd.Env, "PATH="+d.path+":"+debsPath)
	}
	if cmd.Stdout == nil {
		cmd.Stdout = d.env.Log
	}
	for _, b := range d.binds {
		cmd.Binds = append(cmd.Binds, Bind{Src: b.hostDir, Dst: b.mount, ReadOnly: true})
	}
	cmd.Binds = append(cmd.Binds, d.native...)
	return d.env.Runner.Run(ctx, cmd)
}

// run runs dpkg with args followed by the packages' files.
func (d *debsDpkg) run(ctx context.Context, args []string, pkgs []*debInfo) error {
	full := append([]string{"dpkg", "--force-unsafe-io"}, args...)
	for _, p := range pkgs {
		full = append(full, d.inside(p))
	}
	return d.exec(ctx, full, nil)
}

// installSet unpacks and configures set. dpkg --unpack refuses a package
// whose Pre-Depends are not configured yet, so the packages others
// pre-depend on (with what they need) go first, recursively.
func (d *debsDpkg) installSet(ctx context.Context, set []*debInfo, configured map[string]bool) error {
	if len(set) == 0 {
		return nil
	}
	prov := debsProviders(set)
	first := map[*debInfo]bool{}
	var visit func(p *debInfo)
	visit = func(p *debInfo) {
		if first[p] {
			return
		}
		first[p] = true
		for _, rels := range [][][]string{p.preDepends, p.depends} {
			for _, alts := range rels {
				if debsSatisfied(alts, configured) {
					continue
				}
				if q := debsSatisfying(alts, prov); q != nil {
					visit(q)
				}
			}
		}
	}
	for _, p := range set {
		for _, alts := range p.preDepends {
			if debsSatisfied(alts, configured) {
				continue
			}
			if q := debsSatisfying(alts, prov); q != nil && q != p {
				visit(q)
			}
		}
	}
	if len(first) == 0 || len(first) == len(set) {
		args := []string{"--unpack"}
		if len(first) != 0 {
			// Pre-dependencies in a cycle: nothing can go first.
			args = append(args, "--force-depends")
		}
		if err := d.run(ctx, args, debsOrder(set)); err != nil {
			return fmt.Errorf("unpacking %d packages: %w", len(set), err)
		}
		if err := d.exec(ctx, []string{"dpkg", "--force-unsafe-io", "--configure", "-a"}, nil); err != nil {
			return fmt.Errorf("configuring packages: %w", err)
		}
		for _, p := range set {
			debsMarkConfigured(configured, p)
		}
		return nil
	}
	var a, b []*debInfo
	for _, p := range set {
		if first[p] {
			a = append(a, p)
		} else {
			b = append(b, p)
		}
	}
	d.logf("installing %d pre-dependencies before %d packages", len(a), len(b))
	if err := d.installSet(ctx, a, configured); err != nil {
		return err
	}
	return d.installSet(ctx, b, configured)
}

// writeExcludes writes dpkg's path filters into the tree.
func (s *Debs) writeExcludes(tree string) error {
	p := filepath.Join(tree, debsExcludesFile)
	if len(s.PathExclude) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString("# Written by ibuild: paths dpkg leaves out of this system.\n")
	for _, x := range s.PathExclude {
		b.WriteString("path-exclude=" + x + "\n")
	}
	for _, x := range s.PathInclude {
		b.WriteString("path-include=" + x + "\n")
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("writing %s: %w", debsExcludesFile, err)
	}
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", debsExcludesFile, err)
	}
	return nil
}

// debsMergedUsrDirs are the top-level directories that are symlinks into /usr
// (Debian's merged /usr, as debootstrap sets it up).
func debsMergedUsrDirs(arch string) []string {
	dirs := []string{"bin", "sbin", "lib"}
	switch arch {
	case "amd64":
		dirs = append(dirs, "lib32", "lib64", "libx32")
	case "i386":
		dirs = append(dirs, "lib64", "libx32")
	case "ppc64el":
		dirs = append(dirs, "lib64")
	case "s390x":
		dirs = append(dirs, "lib32")
	case "mips64el":
		dirs = append(dirs, "lib32", "lib64", "libo32")
	}
	return dirs
}

// debsSetupTree prepares an empty tree for dpkg, as mmdebstrap's setup does.
func debsSetupTree(tree, arch string) error {
	if arch == "" {
		return errors.New("no architecture")
	}
	for _, d := range []string{"etc/apt/apt.conf.d", "etc/apt/sources.list.d", "etc/apt/preferences.d",
		"etc/dpkg/dpkg.cfg.d", "var/cache/apt/archives/partial", "var/lib/apt/lists/partial", "var/log/apt",
		"var/lib/dpkg/triggers", "var/lib/dpkg/info", "var/lib/dpkg/alternatives", "var/lib/dpkg/updates",
		"usr/sbin", "tmp"} {
		if err := os.MkdirAll(filepath.Join(tree, d), 0o755); err != nil {
			return fmt.Errorf("preparing the tree: %w", err)
		}
	}
	if err := os.Chmod(filepath.Join(tree, "tmp"), 0o1777); err != nil {
		return fmt.Errorf("preparing the tree: %w", err)
	}
	for _, d := range debsMergedUsrDirs(arch) {
		if err := os.MkdirAll(filepath.Join(tree, "usr", d), 0o755); err != nil {
			return fmt.Errorf("preparing the tree: %w", err)
		}
		if err := os.Symlink("usr/"+d, filepath.Join(tree, d)); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("preparing the tree: %w", err)
		}
	}
	for name, content := range map[string]string{
		"var/lib/dpkg/status":    "",
		"var/lib/dpkg/available": "",
		"var/lib/dpkg/arch":      arch + "\n",
	} {
		p := filepath.Join(tree, name)
		if _, err := os.Stat(p); err == nil {
			continue
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return fmt.Errorf("preparing the tree: %w", err)
		}
	}
	return nil
}

// debsExtractAll unpacks the packages' files into the tree in debsParallel, the
// biggest first.
func debsExtractAll(ctx context.Context, tree string, pkgs []*debInfo, filter *deb.Filter) error {
	sorted := append([]*debInfo(nil), pkgs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].size > sorted[j].size })
	return debsParallel(ctx, len(sorted), runtime.GOMAXPROCS(0), func(i int) error {
		p, err := deb.Open(sorted[i].path)
		if err != nil {
			return fmt.Errorf("package %s: %w", sorted[i].ref, err)
		}
		defer p.Close()
		if err := p.Extract(ctx, tree, filter); err != nil {
			return fmt.Errorf("package %s: %w", sorted[i].ref, err)
		}
		return nil
	})
}

// debsPreventServices installs a policy-rc.d that forbids starting services
// and returns the function removing it again.
func debsPreventServices(tree string) (func() error, error) {
	p := filepath.Join(tree, debsPolicyRcD)
	if _, err := os.Lstat(p); err == nil {
		return func() error { return nil }, nil // the tree's own: keep it
	}
	if err := os.WriteFile(p, []byte("#!/bin/sh\n# ibuild: no service starts while building.\nexit 101\n"), 0o755); err != nil {
		return nil, fmt.Errorf("writing %s: %w", debsPolicyRcD, err)
	}
	done := false
	return func() error {
		if done {
			return nil
		}
		done = true
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("removing %s: %w", debsPolicyRcD, err)
		}
		return nil
	}, nil
}

// debsDivertTools replaces start-stop-daemon (services) and update-initramfs
// (built once by the initramfs stage) with no-ops while packages install,
// through local dpkg diversions, so that packages unpacked meanwhile put
// their real files aside too. It returns the undo functions.
func debsDivertTools(ctx context.Context, d *debsDpkg, tree string, pkgs []*debInfo) ([]func() error, error) {
	var undo []func() error
	var targets []string
	if p, err := debsOwnedPath(tree, "dpkg", "start-stop-daemon"); err == nil && p != "" {
		targets = append(targets, p)
	}
	for _, info := range pkgs {
		if info.name != "initramfs-tools-core" && info.name != "initramfs-tools" {
			continue
		}
		pkg, err := deb.Open(info.path)
		if err != nil {
			return nil, fmt.Errorf("package %s: %w", info.ref, err)
		}
		files, err := pkg.Files()
		pkg.Close()
		if err != nil {
			return nil, fmt.Errorf("package %s: %w", info.ref, err)
		}
		for _, f := range files {
			if path.Base(f) == "update-initramfs" && strings.HasSuffix(path.Dir(f), "sbin") {
				targets = append(targets, f)
			}
		}
	}
	for _, target := range targets {
		if diverted, err := debsIsDiverted(tree, target); err != nil {
			return undo, err
		} else if diverted {
			continue // left by an earlier stage or the tree's admin
		}
		if err := d.exec(ctx, []string{"dpkg-divert", "--local", "--rename", "--divert", target + debsDivertSuffix, "--add", target}, io.Discard); err != nil {
			return undo, fmt.Errorf("diverting %s: %w", target, err)
		}
		host, err := treepath.Resolve(tree, target, true)
		if err != nil {
			return undo, err
		}
		script := fmt.Sprintf("#!/bin/sh\n# ibuild: %s does nothing while packages install.\nexit 0\n", path.Base(target))
		if err := os.WriteFile(host, []byte(script), 0o755); err != nil {
			return undo, fmt.Errorf("writing the stand-in for %s: %w", target, err)
		}
		undo = append(undo, func() error {
			if err := os.Remove(host); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("removing the stand-in for %s: %w", target, err)
			}
			if err := d.exec(context.WithoutCancel(ctx), []string{"dpkg-divert", "--local", "--rename", "--remove", target}, io.Discard); err != nil {
				return fmt.Errorf("removing the diversion of %s: %w", target, err)
			}
			return nil
		})
	}
	return undo, nil
}

// debsOwnedPath returns the path package pkg registers for a file named base
// in an sbin directory.
func debsOwnedPath(tree, pkg, base string) (string, error) {
	f, err := os.Open(filepath.Join(tree, "var/lib/dpkg/info", pkg+".list"))
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		if path.Base(l) == base && strings.HasSuffix(path.Dir(l), "sbin") {
			return l, nil
		}
	}
	return "", sc.Err()
}

// debsIsDiverted reads dpkg's diversions database for target.
func debsIsDiverted(tree, target string) (bool, error) {
	data, err := os.ReadFile(filepath.Join(tree, "var/lib/dpkg/diversions"))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	lines := strings.Split(string(data), "\n")
	for i := 0; i+2 < len(lines); i += 3 {
		if lines[i] == target {
			return true, nil
		}
	}
	return false, nil
}

// dpkgState is one package's entry in dpkg's status file.
type dpkgState struct {
	version  string
	status   string
	provides []string
}

// readDpkgStatus reads the tree's /var/lib/dpkg/status by "name:arch".
func readDpkgStatus(tree string) (map[string]dpkgState, error) {
	data, err := os.ReadFile(filepath.Join(tree, "var/lib/dpkg/status"))
	if errors.Is(err, os.ErrNotExist) {
		return map[string]dpkgState{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading dpkg status: %w", err)
	}
	out := map[string]dpkgState{}
	for _, para := range strings.Split(string(data), "\n\n") {
		if strings.TrimSpace(para) == "" {
			continue
		}
		c, err := deb.ParseControl([]byte(strings.Trim(para, "\n")))
		if err != nil {
			return nil, fmt.Errorf("reading dpkg status: %w", err)
		}
		st := dpkgState{version: c["Version"], status: c["Status"]}
		prov, _ := debsParseRelations(c["Provides"])
		for _, alts := range prov {
			st.provides = append(st.provides, alts...)
		}
		out[c["Package"]+":"+c["Architecture"]] = st
	}
	return out, nil
}

// debsVerify checks that dpkg has every package installed and
// nothing half-done.
func debsVerify(ctx context.Context, d *debsDpkg, tree string, pkgs []*debInfo) error {
	status, err := readDpkgStatus(tree)
	if err != nil {
		return err
	}
	var bad []string
	for _, p := range pkgs {
		st, ok := status[p.name+":"+p.arch]
		switch {
		case !ok:
			bad = append(bad, p.ref+" (not installed)")
		case st.version != p.version:
			bad = append(bad, fmt.Sprintf("%s (version %s installed)", p.ref, st.version))
		case st.status != "install ok installed":
			bad = append(bad, fmt.Sprintf("%s (%s)", p.ref, st.status))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("packages not installed: %s", strings.Join(bad, ", "))
	}
	var audit strings.Builder
	if err := d.exec(ctx, []string{"dpkg", "--audit"}, &audit); err != nil {
		return fmt.Errorf("dpkg --audit: %w: %s", err, audit.String())
	}
	if s := strings.TrimSpace(audit.String()); s != "" {
		return fmt.Errorf("dpkg --audit: %s", s)
	}
	return nil
}

// debsParallel runs f(0..n-1) on up to workers goroutines and returns the first
// error; after an error no new calls start.
func debsParallel(ctx context.Context, n, workers int, f func(i int) error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(workers, 1))
	for i := range n {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			return f(i)
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}
