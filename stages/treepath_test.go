package stages_test

// Test helpers of the tree customization stages (names prefixed "tc" so
// they do not collide with other stages' helpers in this package), and
// the tests of what those helpers rely on.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/build"
	"github.com/image-builder-action/image-builder-action/stages"
)

// tcEpoch is the SOURCE_DATE_EPOCH of the tests: 2023-11-14, day 19675.
const tcEpoch = 1700000000

// tcHostSources is the host's apt sources file, handed to mmdebstrap as
// its mirror so the tests use whatever archive the host uses.
const tcHostSources = "/etc/apt/sources.list.d/debian.sources"

// tcTreePackages is what the Debian test tree holds beyond minbase.
var tcTreePackages = []string{
	"systemd", "systemd-sysv", "openssh-server", "locales", "tzdata", "passwd",
	"firewalld", "grub-efi-amd64-bin", "grub-pc-bin", "grub2-common",
	// firewalld refuses to work without /etc/protocols.
	"netbase",
}

// tcStage makes a stage through the registry, as the executor does.
func tcStage(t *testing.T, typ, options string) stages.Stage {
	t.Helper()
	s, err := stages.New(typ, json.RawMessage(options))
	if err != nil {
		t.Fatalf("stages.New(%s, %s): %v", typ, options, err)
	}
	return s
}

// tcLog sends tool output to the test log.
type tcLog struct{ t *testing.T }

func (l tcLog) Write(p []byte) (int, error) {
	l.t.Helper()
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// tcEnv is the environment a stage runs in for tree, with the real runner.
// The runner does not add SOURCE_DATE_EPOCH itself, so the tests see that
// stages pass it where it matters.
func tcEnv(t *testing.T, tree string) *stages.Env {
	return &stages.Env{
		Tree:            tree,
		Runner:          build.NewRunner(build.WithRunnerLog(tcLog{t})),
		Arch:            "amd64",
		SourceDateEpoch: tcEpoch,
		Log:             tcLog{t},
	}
}

// tcRun runs a stage made from options on env.
func tcRun(t *testing.T, env *stages.Env, typ, options string) {
	t.Helper()
	start := time.Now()
	if err := tcStage(t, typ, options).Run(context.Background(), env); err != nil {
		t.Fatalf("running %s %s: %v", typ, options, err)
	}
	t.Logf("%s ran in %v", typ, time.Since(start).Round(time.Millisecond))
}

// tcEmptyTree is a tree with an empty /etc, for the file-only parts.
func tcEmptyTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

// tcWrite writes a file into a tree, creating its parents.
func tcWrite(t *testing.T, root, p, data string) {
	t.Helper()
	host := filepath.Join(root, p)
	if err := os.MkdirAll(filepath.Dir(host), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(host, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// tcRead reads a file of a tree.
func tcRead(t *testing.T, root, p string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, p))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var tcTreeOnce struct {
	sync.Mutex
	tarball string
}

// tcDebianTree returns a fresh copy of a real Debian bookworm tree
// (minbase plus tcTreePackages), made once with mmdebstrap from the host's
// apt sources and cached as a tarball under $IBUILD_TEST_CACHE. It skips
// the test when that cannot be done here.
func tcDebianTree(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("short mode: no Debian tree")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to make and use a Debian tree")
	}
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		t.Skip("mmdebstrap is not installed")
	}
	sources, err := os.ReadFile(tcHostSources)
	if err != nil {
		t.Skipf("no host apt sources for the network tests: %v", err)
	}
	tarball := tcTarball(t, sources)
	root := t.TempDir()
	start := time.Now()
	out, err := exec.Command("tar", "-C", root, "--xattrs", "--xattrs-include=*", "--numeric-owner",
		"-xpf", tarball).CombinedOutput()
	if err != nil {
		t.Fatalf("unpacking %s: %v\n%s", tarball, err, out)
	}
	t.Logf("unpacked the Debian tree in %v", time.Since(start).Round(time.Millisecond))
	return root
}

// tcTarball makes (once, across processes too) the cached tarball.
func tcTarball(t *testing.T, sources []byte) string {
	tcTreeOnce.Lock()
	defer tcTreeOnce.Unlock()
	if tcTreeOnce.tarball != "" {
		return tcTreeOnce.tarball
	}
	cache := os.Getenv("IBUILD_TEST_CACHE")
	if cache == "" {
		cache = filepath.Join(os.TempDir(), "ibuild-test-cache")
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"--variant=minbase", "--include=" + strings.Join(tcTreePackages, ","), "bookworm"}
	h := sha256.New()
	h.Write([]byte(strings.Join(args, "\x00")))
	h.Write(sources)
	tarball := filepath.Join(cache, "stages-tree-"+hex.EncodeToString(h.Sum(nil))[:16]+".tar")

	lock, err := os.OpenFile(tarball+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tarball); err != nil {
		start := time.Now()
		tmp := tarball + ".tmp.tar"
		var log bytes.Buffer
		cmd := exec.Command("mmdebstrap", append(args, tmp, tcHostSources)...)
		cmd.Stdout, cmd.Stderr = &log, &log
		if err := cmd.Run(); err != nil {
			os.Remove(tmp)
			t.Fatalf("mmdebstrap: %v\n%s", err, log.String())
		}
		if err := os.Rename(tmp, tarball); err != nil {
			t.Fatal(err)
		}
		t.Logf("made the Debian tree tarball %s in %v", tarball, time.Since(start).Round(time.Second))
	}
	tcTreeOnce.tarball = tarball
	return tarball
}

// tcStat returns the mode and owner of a path in a tree (not following a
// last symlink).
func tcStat(t *testing.T, root, p string) (os.FileMode, int, int) {
	t.Helper()
	fi, err := os.Lstat(filepath.Join(root, p))
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fi.Mode(), int(st.Uid), int(st.Gid)
}

// tcNeedRoot skips tests that chown.
func tcNeedRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to set owners")
	}
}
