// Package buildtest gives tests real Debian packages: it resolves package
// sets with apt in a throw-away apt root made from the host's apt sources
// (never touching the host's apt state), downloads them with pkg/build's
// verified store, and caches both across runs in $IBUILD_TEST_CACHE
// (default: <tmp>/ibuild-test-cache). Tests calling it are skipped when not
// root, when the host has no apt sources or apt-get, or when the archive
// cannot be reached.
package buildtest

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/image-builder-action/image-builder-action/pkg/build"
	"github.com/image-builder-action/image-builder-action/pkg/manifest"
)

// CacheDir is the directory kept across test runs.
func CacheDir(t testing.TB) string {
	t.Helper()
	d := os.Getenv("IBUILD_TEST_CACHE")
	if d == "" {
		d = filepath.Join(os.TempDir(), "ibuild-test-cache")
	}
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// Skip skips t unless packages can be resolved and fetched here.
func Skip(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (namespaces, dpkg in a chroot)")
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Skip("needs apt-get on the host to resolve test package sets")
	}
	if len(hostSources()) == 0 {
		t.Skip("the host has no readable apt sources")
	}
}

func hostSources() []string {
	var out []string
	if _, err := os.Stat("/etc/apt/sources.list"); err == nil {
		out = append(out, "/etc/apt/sources.list")
	}
	for _, pat := range []string{"/etc/apt/sources.list.d/*.list", "/etc/apt/sources.list.d/*.sources"} {
		m, _ := filepath.Glob(pat)
		out = append(out, m...)
	}
	return out
}

// lock takes an exclusive flock on path; test binaries of several packages
// share the cache.
func lock(t testing.TB, path string) func() {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	return func() { f.Close() }
}

// aptRoot prepares (or reuses, when updated in the last 12 hours) the
// throw-away apt root for arch and returns apt-get's options for it.
func aptRoot(t testing.TB, arch string) []string {
	t.Helper()
	root := filepath.Join(CacheDir(t), "apt-"+arch)
	opts := []string{
		"-o", "Dir=" + root,
		"-o", "Dir::State::status=" + filepath.Join(root, "var/lib/dpkg/status"),
		"-o", "APT::Architecture=" + arch,
		"-o", "APT::Architectures=" + arch,
		"-o", "Dir::Etc::Trusted=/etc/apt/trusted.gpg",
		"-o", "Dir::Etc::TrustedParts=/etc/apt/trusted.gpg.d",
		"-o", "Debug::NoLocking=1",
		"-o", "pkgCacheGen::ForceEssential=,",
		"-o", "APT::Install-Recommends=false",
		"-o", "Acquire::Languages=none",
	}
	stamp := filepath.Join(root, "updated")
	if fi, err := os.Stat(stamp); err == nil && time.Since(fi.ModTime()) < 12*time.Hour {
		return opts
	}
	for _, d := range []string{"etc/apt/sources.list.d", "etc/apt/apt.conf.d", "etc/apt/preferences.d",
		"var/lib/dpkg", "var/lib/apt/lists/partial", "var/cache/apt/archives/partial"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, src := range hostSources() {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Skipf("reading host apt sources: %v", err)
		}
		dst := filepath.Join(root, "etc/apt/sources.list.d", filepath.Base(src))
		if filepath.Base(src) == "sources.list" {
			dst = filepath.Join(root, "etc/apt/sources.list")
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("apt-get", append(opts, "update", "-qq")...).CombinedOutput()
	if err != nil {
		t.Skipf("apt-get update in a throw-away root failed (no network?): %v\n%s", err, out)
	}
	if strings.Contains(string(out), "Failed to fetch") || strings.Contains(string(out), "Could not resolve") {
		t.Skipf("apt-get update could not reach the archive:\n%s", out)
	}
	if err := os.WriteFile(stamp, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return opts
}

var (
	instRE = regexp.MustCompile(`^Inst (\S+) \((\S+) .*\[([^\]]+)\]\)`)
	uriRE  = regexp.MustCompile(`^'([^']+)' (\S+) (\d+) SHA256:([0-9a-f]{64})$`)
)

// Resolve returns the packages apt installs for the request (names or apt
// patterns such as ?essential) on an empty system, pinned with their URL,
// size and sha256, sorted by name.
func Resolve(t testing.TB, arch string, request ...string) []manifest.Package {
	t.Helper()
	Skip(t)
	unlock := lock(t, filepath.Join(CacheDir(t), "apt-"+arch+".lock"))
	defer unlock()
	opts := aptRoot(t, arch)

	// Reuse the resolution while the lists are unchanged.
	fi, _ := os.Stat(filepath.Join(CacheDir(t), "apt-"+arch, "updated"))
	h := sha256.Sum256([]byte(strings.Join(request, "\n") + "\n" + fi.ModTime().String()))
	memo := filepath.Join(CacheDir(t), "apt-"+arch, "resolved-"+hex.EncodeToString(h[:8])+".json")
	if data, err := os.ReadFile(memo); err == nil {
		var pkgs []manifest.Package
		if json.Unmarshal(data, &pkgs) == nil && len(pkgs) > 0 {
			return pkgs
		}
	}

	args := append(append([]string{}, opts...), "install", "-s", "-qq")
	sim, err := exec.Command("apt-get", append(args, request...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("apt-get install -s %v: %v\n%s", request, err, sim)
	}
	versions := map[string]string{} // name:arch -> version
	sc := bufio.NewScanner(strings.NewReader(string(sim)))
	for sc.Scan() {
		if m := instRE.FindStringSubmatch(sc.Text()); m != nil {
			versions[m[1]+":"+m[3]] = m[2]
		}
	}
	args = append(append([]string{}, opts...), "-o", "Acquire::ForceHash=SHA256", "install", "--print-uris", "-qq")
	uris, err := exec.Command("apt-get", append(args, request...)...).Output()
	if err != nil {
		t.Fatalf("apt-get install --print-uris %v: %v", request, err)
	}
	var pkgs []manifest.Package
	sc = bufio.NewScanner(strings.NewReader(string(uris)))
	for sc.Scan() {
		m := uriRE.FindStringSubmatch(sc.Text())
		if m == nil {
			t.Fatalf("unexpected apt-get --print-uris line %q", sc.Text())
		}
		parts := strings.Split(strings.TrimSuffix(m[2], ".deb"), "_")
		if len(parts) != 3 {
			t.Fatalf("unexpected package file name %q", m[2])
		}
		name, parch := parts[0], parts[2]
		ver, ok := versions[name+":"+parch]
		if !ok {
			t.Fatalf("%s: no version in apt-get's simulation", m[2])
		}
		size, _ := strconv.ParseInt(m[3], 10, 64)
		pkgs = append(pkgs, manifest.Package{Name: name, Version: ver, Arch: parch, URL: m[1], SHA256: m[4], Size: size})
	}
	if len(pkgs) != len(versions) {
		t.Fatalf("apt-get printed %d URIs for %d packages", len(pkgs), len(versions))
	}
	sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].Name < pkgs[j].Name })
	data, _ := json.MarshalIndent(pkgs, "", " ")
	os.WriteFile(memo, data, 0o644)
	return pkgs
}

// Refs returns the packages' refs.
func Refs(pkgs []manifest.Package) []string {
	var out []string
	for i := range pkgs {
		out = append(out, pkgs[i].Ref())
	}
	return out
}

// Sources downloads pkgs into the test cache's package store and returns it.
func Sources(t testing.TB, pkgs []manifest.Package) *build.Sources {
	t.Helper()
	dir := filepath.Join(CacheDir(t), "sources")
	s := build.NewSources(dir, pkgs, nil, 8, nil)
	if err := s.Fetch(context.Background(), Refs(pkgs)); err != nil {
		t.Skipf("downloading test packages: %v", err)
	}
	return s
}

// Merge returns the union of package lists (by ref), sorted by name.
func Merge(lists ...[]manifest.Package) []manifest.Package {
	seen := map[string]bool{}
	var out []manifest.Package
	for _, l := range lists {
		for _, p := range l {
			if !seen[p.Ref()] {
				seen[p.Ref()] = true
				out = append(out, p)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref() < out[j].Ref() })
	return out
}

// Describe is a one-line summary for logs.
func Describe(pkgs []manifest.Package) string {
	var n int64
	for _, p := range pkgs {
		n += p.Size
	}
	return fmt.Sprintf("%d packages, %.1f MB", len(pkgs), float64(n)/1e6)
}

// TempDir is t.TempDir on a tmpfs when /dev/shm is one: trees of many small
// files build much faster there than on some disks.
func TempDir(t testing.TB) string {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs("/dev/shm", &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		return t.TempDir()
	}
	d, err := os.MkdirTemp("/dev/shm", "ibuild-test-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}
