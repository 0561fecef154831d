package isotest_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/action"
	"github.com/image-builder-action/image-builder-action/pkg/build"
	"github.com/image-builder-action/image-builder-action/pkg/build/buildtest"
	"github.com/image-builder-action/image-builder-action/pkg/ibuild"
	"github.com/image-builder-action/image-builder-action/pkg/lock/locktest"
	"github.com/image-builder-action/image-builder-action/pkg/testutil"
	"github.com/image-builder-action/image-builder-action/pkg/testutil/boottest"
)

// built is one image built for the tests.
type built struct {
	path, sha256 string
	size         int64
	seconds      float64
}

// lockAndBuild locks the blueprint for types (x86_64) and builds each
// type, in order, into dir/out-TYPE; it returns the images and the
// lockfile.
func lockAndBuild(t *testing.T, ctx context.Context, dir, cache, blueprint string, types ...string) (map[string]built, string) {
	t.Helper()
	srcs := locktest.NeedArchive(t)
	bp := filepath.Join(dir, filepath.Base(blueprint))
	data, err := os.ReadFile(blueprint)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	lockPath := strings.TrimSuffix(bp, ".toml") + ".lock.json"
	if _, err := ibuild.Lock(ctx, ibuild.LockRequest{Blueprint: bp, Lockfile: lockPath, Arches: []string{"x86_64"}, Types: types,
		Repositories: ibuild.Repositories{Sources: srcs, CacheDir: cache}}); err != nil {
		t.Fatalf("lock %s: %v", blueprint, err)
	}
	out := map[string]built{}
	for _, typ := range types {
		start := time.Now()
		res, err := ibuild.Build(ctx, ibuild.BuildRequest{Lockfile: lockPath, Arches: []string{"x86_64"}, Types: []string{typ}, One: true,
			OutputDir: filepath.Join(dir, "out-"+typ), CacheDir: cache})
		if err != nil {
			t.Fatalf("build %s of %s: %v", typ, blueprint, err)
		}
		f := res.Images[0].Files[0]
		out[typ] = built{path: f.Path, sha256: f.SHA256, size: f.Size, seconds: time.Since(start).Seconds()}
		t.Logf("built %s of %s in %.0f s: %s, %d bytes (%.0f MiB), sha256 %s", typ, filepath.Base(blueprint), out[typ].seconds, f.Name, f.Size, float64(f.Size)/(1<<20), f.SHA256)
	}
	return out, lockPath
}

// rebuild runs the stages of the lockfile's typ entry that make its ISO
// again (the trees they read come from the cache: the ISO's own
// assembly, squashfs, boot images and payload) and wants the same bytes.
func rebuild(t *testing.T, ctx context.Context, dir, cache, lockfile, typ string, want built) {
	t.Helper()
	start := time.Now()
	ran := 0
	res, err := ibuild.Build(ctx, ibuild.BuildRequest{Lockfile: lockfile, Arches: []string{"x86_64"}, Types: []string{typ}, One: true,
		OutputDir: filepath.Join(dir, "again-"+typ), CacheDir: cache,
		Events: func(e ibuild.BuildEvent) {
			if d, ok := e.Event.(build.StageDone); ok && d.Pipeline == typ && !d.CacheHit {
				ran++
			}
		},
		Options: []build.Option{build.WithRerun(typ)}})
	if err != nil {
		t.Fatalf("second build of %s: %v", typ, err)
	}
	f := res.Images[0].Files[0]
	defer os.Remove(f.Path)
	if ran == 0 {
		t.Errorf("the second build of %s ran no stage of pipeline %s", typ, typ)
	}
	if f.SHA256 != want.sha256 || f.Size != want.size {
		t.Errorf("two builds of %s differ: %s (%d bytes), then %s (%d bytes)", typ, want.sha256, want.size, f.SHA256, f.Size)
		return
	}
	t.Logf("%s: its %d ISO stage(s) again in %.0f s: same sha256", typ, ran, time.Since(start).Seconds())
}

// actionBuild locks the blueprint for typ (x86_64) and builds it the way
// a workflow does, through the Action's lock and build commands with a
// runner's environment, and returns the image the build output names and
// the lockfile.
func actionBuild(t *testing.T, ctx context.Context, dir, cache, blueprint, typ string) (built, string) {
	t.Helper()
	locktest.NeedArchive(t)
	root := filepath.Join(dir, "action-"+typ)
	ws := filepath.Join(root, "workspace")
	vars := map[string]string{"GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": ws, "RUNNER_TEMP": filepath.Join(root, "temp")}
	for _, d := range []string{ws, vars["RUNNER_TEMP"]} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(blueprint)
	if err != nil {
		t.Fatal(err)
	}
	bp := filepath.Base(blueprint)
	if err := os.WriteFile(filepath.Join(ws, bp), data, 0o644); err != nil {
		t.Fatal(err)
	}
	lockfile := strings.TrimSuffix(bp, ".toml") + ".lock.json"
	var outputs string
	for _, in := range []map[string]string{
		{"command": "lock", "blueprint": bp, "types": typ, "arches": "x86_64", "cache-dir": cache},
		{"command": "build", "lockfile": lockfile, "output-dir": "out", "cache-dir": cache},
	} {
		env := maps.Clone(vars)
		for k, v := range in {
			env["INPUT_"+strings.ToUpper(k)] = v
		}
		for _, v := range []string{"GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_ENV"} {
			env[v] = filepath.Join(root, in["command"]+"-"+v)
			if err := os.WriteFile(env[v], nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		start := time.Now()
		var log strings.Builder
		if err := action.Run(ctx, func(k string) string { return env[k] }, &log); err != nil {
			t.Fatalf("the action's %s of %s: %v\n%s", in["command"], bp, err, log.String())
		}
		b, err := os.ReadFile(env["GITHUB_OUTPUT"])
		if err != nil {
			t.Fatal(err)
		}
		outputs = string(b)
		t.Logf("the action's %s of %s %s: %.0f s", in["command"], bp, typ, time.Since(start).Seconds())
	}
	var images []action.Image
	if err := json.Unmarshal([]byte(fileCommand(outputs, "images")), &images); err != nil || len(images) != 1 {
		t.Fatalf("the action's images output %q: %v", fileCommand(outputs, "images"), err)
	}
	im := images[0]
	if im.Type != typ || im.Arch != "x86_64" {
		t.Fatalf("the action built %s/%s, want x86_64/%s", im.Arch, im.Type, typ)
	}
	p := filepath.Join(ws, im.Path)
	if got := testutil.FileSHA256(t, p); got != im.SHA256 {
		t.Fatalf("%s: sha256 %s, the action's output says %s", p, got, im.SHA256)
	}
	t.Logf("built %s of %s through the action: %s, %d bytes (%.0f MiB), sha256 %s", typ, bp, im.Path, im.Size, float64(im.Size)/(1<<20), im.SHA256)
	return built{path: p, sha256: im.SHA256, size: im.Size}, filepath.Join(ws, lockfile)
}

// fileCommand is the value of name in a GITHUB_OUTPUT file (NAME=VALUE or
// the NAME<<DELIMITER form).
func fileCommand(data, name string) string {
	lines := strings.Split(data, "\n")
	for i, l := range lines {
		if v, ok := strings.CutPrefix(l, name+"="); ok {
			return v
		}
		delim, ok := strings.CutPrefix(l, name+"<<")
		if !ok {
			continue
		}
		var val []string
		for _, v := range lines[i+1:] {
			if v == delim {
				return strings.Join(val, "\n")
			}
			val = append(val, v)
		}
	}
	return ""
}

func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (.ci/deps installs it)", tool)
		}
	}
}

func skipUnlessBuilds(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and boots images: skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("building needs root")
	}
	boottest.Need(t, "x86_64")
}

// all reports whether every boot runs (IBUILD_TEST_ISO=1), not only
// make check's share.
func all() bool { return os.Getenv("IBUILD_TEST_ISO") != "" }

// isoFile reads a file of an ISO with the host's xorriso.
func isoFile(t *testing.T, iso, name string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(name))
	if out, err := exec.Command("xorriso", "-osirrox", "on", "-indev", iso, "-extract", name, dst).CombinedOutput(); err != nil {
		t.Fatalf("xorriso -extract %s %s: %v\n%s", iso, name, err, out)
	}
	data, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// job is one boot of the pool: it starts once the job at index after (if
// not -1) has passed, and is skipped when that one failed.
type job struct {
	opts  boottest.Options
	after int
	// check looks at the result of a boot that passed.
	check func(boottest.Result) error
	// before runs just before the boot (after its dependency).
	before func() error
}

// runPool boots the jobs two at a time (one vCPU each; the CI machine has
// two cores), each as soon as a slot is free and its dependency passed,
// and fails t for each that fails.
func runPool(t *testing.T, ctx context.Context, jobs []job) {
	t.Helper()
	const slots = 2
	var mu sync.Mutex
	cond := sync.NewCond(&mu)
	state := make([]int, len(jobs)) // 0 waiting, 1 running, 2 passed, 3 failed or skipped
	errs := make([]error, len(jobs))
	res := make([]boottest.Result, len(jobs))
	// next picks a job that may start, -1 when every job has been taken;
	// it waits while only blocked jobs are left.
	next := func() int {
		mu.Lock()
		defer mu.Unlock()
		for {
			left := false
			for i, j := range jobs {
				if state[i] != 0 {
					continue
				}
				left = true
				if j.after >= 0 && state[j.after] == 3 {
					state[i], errs[i] = 3, fmt.Errorf("skipped: %s failed", jobs[j.after].opts.Label)
					cond.Broadcast()
					continue
				}
				if j.after < 0 || state[j.after] == 2 {
					state[i] = 1
					return i
				}
			}
			if !left {
				return -1
			}
			cond.Wait()
		}
	}
	var wg sync.WaitGroup
	for range slots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next(); i >= 0; i = next() {
				j := jobs[i]
				var err error
				if j.before != nil {
					err = j.before()
				}
				if err == nil {
					res[i], err = boottest.Boot(ctx, j.opts)
				}
				if err == nil && j.check != nil {
					err = j.check(res[i])
				}
				mu.Lock()
				errs[i] = err
				state[i] = 2
				if err != nil {
					state[i] = 3
				}
				cond.Broadcast()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("boot %s: %v", jobs[i].opts.Label, err)
		} else {
			t.Logf("boot %s: %.0f s; %s", jobs[i].opts.Label, res[i].Seconds, res[i].Marker)
		}
	}
}

// marker checks the first-boot marker's line.
func marker(fw string) func(boottest.Result) error {
	return func(r boottest.Result) error {
		if want := "IBUILD-MARKER-OK firmware=" + fw; !strings.HasPrefix(r.Marker, want) {
			return fmt.Errorf("marker %q, want %q (console in %s)", r.Marker, want, r.ConsoleLog)
		}
		return nil
	}
}

// installConsole fails on any failure line of the installer's console
// before its install said DONE; after it, while the live system powers
// off, only its medium's unmounting may fail: the root's overlay still
// reads from it ("[FAILED] Failed unmounting run-live-medium.mount").
func installConsole(r boottest.Result) error {
	data, err := os.ReadFile(r.ConsoleLog)
	if err != nil {
		return err
	}
	done := false
	for _, l := range strings.Split(ansiEscape.ReplaceAllString(string(data), ""), "\n") {
		if strings.Contains(l, "IBUILD-INSTALL: DONE") {
			done = true
			continue
		}
		for _, f := range boottest.ConsoleFailures {
			if !strings.Contains(l, f) {
				continue
			}
			if done && f == "[FAILED]" && strings.Contains(l, "Failed unmounting") && strings.Contains(l, "run-live") {
				continue
			}
			return fmt.Errorf("the console shows %q: %s (console in %s)", f, strings.TrimSpace(l), r.ConsoleLog)
		}
	}
	return nil
}

var ansiEscape = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// emptyDisk makes a sparse raw disk of size bytes.
func emptyDisk(t *testing.T, p string, size int64) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestISO builds the installer (with raw, from the end-to-end test's
// blueprint) and the live ISO (from a small blueprint of its own, through
// the Action), once each, builds each ISO's own stages a second time
// (same sha256), then boots, two at a time:
//   - the installer by UEFI and by BIOS, each with an empty virtio disk,
//     until it has written the image and powered off: by UEFI onto a disk
//     of the image's size, which then holds raw's bytes (same sha256); by
//     BIOS onto a larger one, whose root then ends at the disk's end;
//   - the BIOS-installed (grown) disk alone, to the blueprint's login
//     prompt and first-boot marker;
//   - the live ISO by UEFI and by BIOS, to its login prompt and marker.
//
// With IBUILD_TEST_ISO=1 also (over make check's time budget):
//   - the UEFI-installed disk alone to its login prompt and marker (in
//     make check its bytes are raw's, which cmd/ibuild's end-to-end test
//     boots by BIOS, and as qcow2 by UEFI);
//   - the installer with a disk that holds partitions: it refuses, says so,
//     and writes nothing.
func TestISO(t *testing.T) {
	skipUnlessBuilds(t)
	need(t, "xorriso", "sfdisk")
	ctx := context.Background()
	dir := t.TempDir()
	cache := buildtest.CacheDir(t)
	img, lockfile := lockAndBuild(t, ctx, dir, cache, "../../testdata/e2e/boot.toml", "raw", "image-installer")
	raw, installer := img["raw"], img["image-installer"]
	// The live ISO as a workflow builds it: through the Action.
	live, liveLock := actionBuild(t, ctx, dir, cache, "testdata/live.toml", "live-iso")

	// The payload is raw's disk, to the byte.
	sums := isoFile(t, installer.path, "/install/SHA256SUMS")
	if !strings.Contains(sums, raw.sha256+"  disk.raw\n") {
		t.Fatalf("the installer's SHA256SUMS does not name raw's sha256 %s:\n%s", raw.sha256, sums)
	}
	// Reproducible: the same lockfile entry, the same bytes.
	rebuild(t, ctx, dir, cache, lockfile, "image-installer", installer)
	rebuild(t, ctx, dir, cache, liveLock, "live-iso", live)

	// By UEFI onto a disk of the image's size: nothing to grow, so the disk
	// must hold raw's bytes exactly. By BIOS onto a larger disk: the root
	// grows to its end.
	// BIOS first: its installed disk's boot waits for it, and the pool
	// starts jobs in order.
	const bigDisk = 6 << 30
	var jobs []job
	for _, fw := range []string{"bios", "uefi"} {
		disk := filepath.Join(dir, "target-"+fw+".raw")
		size, check := raw.size, func() error { return sameSHA256(disk, raw.sha256) }
		if fw == "bios" {
			size, check = bigDisk, func() error { return checkGrown(disk, bigDisk) }
		}
		emptyDisk(t, disk, size)
		install := len(jobs)
		jobs = append(jobs, job{after: -1, opts: boottest.Options{Firmware: fw, CDROM: installer.path,
			Disks: []boottest.Disk{{Path: disk, Format: "raw"}}, Dir: dir, Label: "install-" + fw, UntilPowerOff: true,
			Want: []string{"IBUILD-INSTALL: written: disk.raw onto /dev/vda", "IBUILD-INSTALL: DONE"},
			// A live system cannot unmount its own medium at power-off:
			// installConsole reads the console once the guest is off.
			Refuse:        []string{"IBUILD-INSTALL: FAILED", "IBUILD-INSTALL: REFUSED", "Failed to start", "Kernel panic"},
			AllowFailures: true, Timeout: 30 * time.Minute},
			check: func(r boottest.Result) error {
				if err := installConsole(r); err != nil {
					return err
				}
				return check()
			}})
		if fw == "uefi" && !all() {
			continue
		}
		jobs = append(jobs, job{after: install,
			opts: boottest.Options{Firmware: fw, Disks: []boottest.Disk{{Path: disk, Format: "raw", Snapshot: true}},
				Dir: dir, Label: "installed-" + fw, Host: "ibuild-boot", Marker: "IBUILD-MARKER-", Timeout: 20 * time.Minute},
			check: marker(fw)})
	}

	// A disk that holds partitions is refused, and nothing is written.
	used := filepath.Join(dir, "used.raw")
	var before string
	if all() {
		emptyDisk(t, used, raw.size)
		sfdisk := exec.Command("sfdisk", "--quiet", used)
		sfdisk.Stdin = strings.NewReader("label: gpt\n,1GiB\n")
		if out, err := sfdisk.CombinedOutput(); err != nil {
			t.Fatalf("sfdisk %s: %v\n%s", used, err, out)
		}
		before = testutil.FileSHA256(t, used)
		jobs = append(jobs, job{after: -1, opts: boottest.Options{CDROM: installer.path, Disks: []boottest.Disk{{Path: used, Format: "raw"}},
			Dir: dir, Label: "refuse", NoLogin: true, AllowFailures: true,
			Want:    []string{"IBUILD-INSTALL: REFUSED: /dev/vda already holds partitions"},
			Refuse:  []string{"IBUILD-INSTALL: writing", "Failed to start", "Kernel panic"},
			Timeout: 20 * time.Minute}})
	}

	for _, fw := range []string{"uefi", "bios"} {
		jobs = append(jobs, job{after: -1, opts: boottest.Options{Firmware: fw, CDROM: live.path, Dir: dir, Label: "live-" + fw,
			Host: "ibuild-live", Marker: "IBUILD-MARKER-", Timeout: 20 * time.Minute}, check: marker(fw)})
	}
	runPool(t, ctx, jobs)
	if all() {
		if after := testutil.FileSHA256(t, used); after != before {
			t.Errorf("the refused disk changed: sha256 %s, was %s", after, before)
		}
	}
}

// sameSHA256 checks that the file at p has sha256 want.
func sameSHA256(p, want string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("%s has sha256 %s, not the raw image's %s", p, got, want)
	}
	return nil
}

// checkGrown checks that the installed disk's last (root) partition ends
// at the end of the disk.
func checkGrown(disk string, size int64) error {
	out, err := exec.Command("sfdisk", "--json", disk).Output()
	if err != nil {
		return fmt.Errorf("sfdisk --json %s: %w", disk, err)
	}
	var pt struct {
		PartitionTable struct {
			LastLBA    int64 `json:"lastlba"`
			Partitions []struct {
				Start, Size int64
			}
		}
	}
	if err := json.Unmarshal(out, &pt); err != nil {
		return err
	}
	parts := pt.PartitionTable.Partitions
	if len(parts) == 0 {
		return fmt.Errorf("%s: no partitions", disk)
	}
	last := parts[len(parts)-1]
	if end := last.Start + last.Size - 1; pt.PartitionTable.LastLBA != size/512-34 || pt.PartitionTable.LastLBA-end > 2048 {
		return fmt.Errorf("%s: root partition ends at sector %d, the disk's last usable sector is %d (want the root grown to the disk)", disk, end, pt.PartitionTable.LastLBA)
	}
	return nil
}
