package lock

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
	"github.com/image-builder-action/image-builder-action/pkg/distro"
	"github.com/image-builder-action/image-builder-action/pkg/repo"
)

// BenchmarkLockBookworm locks the example blueprint (qcow2, x86_64)
// against the host's Debian mirror with a warm metadata cache: every
// iteration verifies InRelease files from the cache, reads all of bookworm,
// bookworm-updates and bookworm-security main, and resolves the build root
// and the os tree. It reports, beside ns/op, apt-get's time for the same
// request in a throw-away apt root (apt-ns/op) and the process's peak RSS.
func BenchmarkLockBookworm(b *testing.B) {
	host, err := repo.HostSources("/")
	if err != nil || len(host) == 0 {
		b.Skipf("no host apt sources: %v", err)
	}
	defs, err := distro.Load()
	if err != nil {
		b.Fatal(err)
	}
	d := defs.Distros["debian-12"]
	srcs, err := DistroSources(d, host)
	if err != nil {
		b.Skip(err)
	}
	cache := os.Getenv("IBUILD_TEST_CACHE")
	if cache == "" {
		cache = filepath.Join(os.TempDir(), "ibuild-test-cache")
	}
	client := &repo.Client{CacheDir: filepath.Join(cache, "bench-metadata")}
	bpPath := "../../testdata/blueprints/example.toml"
	bp, err := blueprint.Load(bpPath)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	opts := []Option{WithFetcher(client), WithSources(srcs...), WithArches("x86_64"), WithTypes("qcow2")}
	if _, err := Lock(ctx, bp, bpPath, opts...); err != nil { // warms the cache
		b.Skipf("the archive is not reachable: %v", err)
	}
	client.Offline = true

	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Lock(ctx, bp, bpPath, opts...); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		b.ReportMetric(float64(ru.Maxrss)/1024, "peak-RSS-MiB")
	}

	// apt-get for the same request: the os tree's package names.
	cust, extra, err := customizationsFor(bp, d)
	if err != nil {
		b.Fatal(err)
	}
	plan := newPlan(d, d.Arches["x86_64"], defs.Types["qcow2"], cust, extra, "")
	apt, err := newBenchAptRoot(b.TempDir(), srcs)
	if err != nil {
		b.Logf("no apt baseline: %v", err)
		return
	}
	var total time.Duration
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if out, err := apt.run("install", "-s", "-qq", "--no-install-recommends", strings.Join(plan.osPackages, " ")); err != nil {
			b.Fatalf("apt-get -s: %v\n%s", err, out)
		}
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "apt-ns/op")
}

// benchAptRoot is a throw-away apt configuration: the host's apt state is
// never touched.
type benchAptRoot struct{ dir string }

func newBenchAptRoot(dir string, srcs []repo.Source) (*benchAptRoot, error) {
	if _, err := exec.LookPath("apt-get"); err != nil {
		return nil, err
	}
	for _, d := range []string{"etc/apt/sources.list.d", "etc/apt/preferences.d", "etc/apt/apt.conf.d", "var/lib/apt/lists/partial", "var/cache/apt/archives/partial", "var/lib/dpkg"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	var list strings.Builder
	for _, s := range srcs {
		list.WriteString("deb [signed-by=" + repo.DefaultKeyring + "] " + s.URI + " " + s.Suite + " " + strings.Join(s.Components, " ") + "\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "etc/apt/sources.list"), []byte(list.String()), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "var/lib/dpkg/status"), nil, 0o644); err != nil {
		return nil, err
	}
	r := &benchAptRoot{dir: dir}
	if out, err := r.run("update", "-qq"); err != nil {
		return nil, &exec.ExitError{Stderr: out}
	}
	return r, nil
}

func (r *benchAptRoot) run(args ...string) ([]byte, error) {
	base := []string{"-o", "Dir=" + r.dir, "-o", "Dir::State::status=" + filepath.Join(r.dir, "var/lib/dpkg/status"),
		"-o", "APT::Architecture=amd64", "-o", "Debug::NoLocking=1", "-o", "Dir::Etc::Trusted=/nonexistent",
		"-o", "APT::Get::List-Cleanup=0"}
	// The package list is one argument: split it back.
	var rest []string
	for _, a := range args {
		rest = append(rest, strings.Fields(a)...)
	}
	return exec.Command("apt-get", append(base, rest...)...).CombinedOutput()
}
