package main

// TestInterrupt stops real builds of testdata/blueprints/minimal.toml (the
// tar type) midway and checks what they leave: SIGINT while a debs stage
// runs its tools in namespaces (sent to ibuild, as `kill -INT` or a CI
// runner's cancel does, and to its process group, as Ctrl-C does) must
// end the build promptly with a message, and SIGKILL while a stage tree is
// being committed to the cache (to the process group, as a runner's kill
// does, and to ibuild alone, as the OOM killer does) must leave no corrupt
// cache entry. After each: no process, namespace or mount of the build is
// left, and the object store holds only complete entries. Then a rerun
// with the same cache succeeds, removes what the killed builds left in the
// work area and the cache's temp area, and `ibuild verify` (every stage
// again) proves its output.

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// interruptEnv is what the builds of TestInterrupt share.
type interruptEnv struct {
	bin, lock string
	dir       string // the test's directory: builds run in it
	cache     string // --cache: private, so the stages run
	work      string // --work-dir, on /dev/shm when it is a tmpfs
	tmp       string // TMPDIR of the builds
	out       string // --output
}

// buildProc is a running `ibuild build --json`.
type buildProc struct {
	cmd   *exec.Cmd
	start time.Time

	mu     sync.Mutex
	stderr bytes.Buffer
	events []map[string]any

	done   chan struct{} // closed once the process has been waited for
	err    error
	exited time.Time
}

// startBuild starts ibuild build in a process group of its own.
func (e *interruptEnv) startBuild(t *testing.T) *buildProc {
	t.Helper()
	cmd := exec.Command(e.bin, "build", e.lock, "--type", "tar", "--arch", "x86_64", "-o", e.out,
		"--cache", e.cache, "--work-dir", e.work, "--json")
	cmd.Dir = e.dir
	cmd.Env = append(os.Environ(), "TMPDIR="+e.tmp)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &buildProc{cmd: cmd, done: make(chan struct{})}
	p.start = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			var ev map[string]any
			p.mu.Lock()
			p.stderr.Write(line)
			p.stderr.WriteByte('\n')
			if json.Unmarshal(line, &ev) == nil {
				p.events = append(p.events, ev)
			}
			p.mu.Unlock()
		}
		p.err = cmd.Wait()
		p.exited = time.Now()
		close(p.done)
	}()
	t.Cleanup(func() {
		unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
		<-p.done
	})
	return p
}

// saw reports whether an event of this kind ("commit") came.
func (p *buildProc) saw(kind string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ev := range p.events {
		if ev["event"] == kind {
			return true
		}
	}
	return false
}

// cacheHits lists the stages taken from the cache, as pipeline/index.
func (p *buildProc) cacheHits() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var hits []string
	for _, ev := range p.events {
		if ev["event"] == "stage-start" && ev["cache_hit"] == true {
			hits = append(hits, fmt.Sprintf("%v/%v", ev["pipeline"], ev["index"]))
		}
	}
	return hits
}

// stageStarted reports whether a stage of type typ has started.
func (p *buildProc) stageStarted(typ string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ev := range p.events {
		if ev["event"] == "stage-start" && ev["type"] == typ && ev["cache_hit"] == false {
			return true
		}
	}
	return false
}

func (p *buildProc) stderrText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// wait waits for the process to end, at most d.
func (p *buildProc) wait(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("ibuild still runs %s after it was stopped; stderr:\n%s", d, p.stderrText())
	}
}

// waitFor polls cond until it holds, failing the test after d or when
// the build ends first.
func (p *buildProc) waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		select {
		case <-p.done:
			t.Fatalf("the build ended (%v) before %s; stderr:\n%s", p.err, what, p.stderrText())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s; stderr:\n%s", what, d, p.stderrText())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// freezeWriting stops a commit's tar once its archive (the compressed
// file ibuild writes tar's output to, matched by archiveGlob) exists, and
// reports whether it did (false: the tar ended first). The kill then
// lands during the commit however loaded the machine is: under CI load a
// commit once ended before the kill came. The tar runs in slices of a few
// milliseconds until the archive is there. SIGKILL ends a stopped
// process as any other.
func freezeWriting(q procInfo, archiveGlob string) bool {
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		if unix.Kill(q.pid, unix.SIGSTOP) != nil {
			return false
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", q.pid))
		if err != nil || bytes.Contains(stat[bytes.LastIndexByte(stat, ')')+1:], []byte(" Z ")) {
			return false // ended
		}
		if m, _ := filepath.Glob(archiveGlob); len(m) > 0 {
			return true
		}
		unix.Kill(q.pid, unix.SIGCONT)
		time.Sleep(2 * time.Millisecond)
	}
	unix.Kill(q.pid, unix.SIGCONT)
	return false
}

// procInfo is what /proc says about a process.
type procInfo struct {
	pid, pgid          int
	state              string
	exe, cwd, root     string
	cmdline            string
	pidNS, mntNS       string
	unreadable, zombie bool
}

// listProcs reads every process of the host (the test's pid namespace).
func listProcs() []procInfo {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var out []procInfo
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil || pid == os.Getpid() {
			continue
		}
		stat, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue // gone
		}
		// pid (comm) state ppid pgrp …; comm may hold spaces and parens.
		rest := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(rest) < 3 {
			continue
		}
		p := procInfo{pid: pid, state: rest[0]}
		p.pgid, _ = strconv.Atoi(rest[2])
		p.zombie = p.state == "Z"
		cmdline, _ := os.ReadFile(d + "/cmdline")
		p.cmdline = strings.ReplaceAll(string(bytes.TrimRight(cmdline, "\x00")), "\x00", " ")
		p.exe, _ = os.Readlink(d + "/exe")
		p.exe = strings.TrimSuffix(p.exe, " (deleted)")
		p.cwd, _ = os.Readlink(d + "/cwd")
		p.root, _ = os.Readlink(d + "/root")
		p.pidNS, _ = os.Readlink(d + "/ns/pid")
		p.mntNS, _ = os.Readlink(d + "/ns/mnt")
		out = append(out, p)
	}
	return out
}

// tracker recognises a build's processes: the binary, the process group,
// paths into the build's directories, and the namespaces its runs made.
type tracker struct {
	e    *interruptEnv
	pgid int
	ns   map[string]bool // pid and mnt namespaces seen in the build
	self string          // this test's pid namespace
}

func newTracker(e *interruptEnv, p *buildProc) *tracker {
	self, _ := os.Readlink("/proc/self/ns/pid")
	return &tracker{e: e, pgid: p.cmd.Process.Pid, ns: map[string]bool{}, self: self}
}

func (tr *tracker) under(path string) bool {
	for _, d := range []string{tr.e.dir, tr.e.work} {
		if path == d || strings.HasPrefix(path, d+"/") {
			return true
		}
	}
	return false
}

// ours reports whether p belongs to the build.
func (tr *tracker) ours(p procInfo) bool {
	return p.exe == tr.e.bin || p.pgid == tr.pgid || tr.under(p.cwd) || tr.under(p.root) ||
		strings.Contains(p.cmdline, tr.e.dir) || strings.Contains(p.cmdline, tr.e.work) ||
		tr.ns[p.pidNS] || tr.ns[p.mntNS]
}

// namespaced returns the build's processes running in namespaces of its
// own (nsrun's init and what it runs), remembering the namespaces.
func (tr *tracker) namespaced() []procInfo {
	var out []procInfo
	for _, p := range listProcs() {
		if p.zombie || !tr.ours(p) || p.pidNS == "" || p.pidNS == tr.self {
			continue
		}
		tr.ns[p.pidNS] = true
		if p.mntNS != "" {
			tr.ns[p.mntNS] = true
		}
		out = append(out, p)
	}
	return out
}

// leftovers returns the build's live processes (zombies waiting for the
// host's init to reap them hold no namespace, mount or file).
func (tr *tracker) leftovers() []procInfo {
	var out []procInfo
	for _, p := range listProcs() {
		if !p.zombie && tr.ours(p) {
			out = append(out, p)
		}
	}
	return out
}

// checkGone fails the test if a process of the build outlives it by more
// than a moment (the kernel tearing down a pid namespace), and kills it.
func (tr *tracker) checkGone(t *testing.T) {
	t.Helper()
	var left []procInfo
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if left = tr.leftovers(); len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, p := range left {
		t.Errorf("process %d (%s, state %s, cwd %s, root %s, pid ns %s) outlived the build", p.pid, p.cmdline, p.state, p.cwd, p.root, p.pidNS)
		unix.Kill(p.pid, unix.SIGKILL)
	}
}

// checkNoMounts fails the test if anything is mounted under the build's
// directories.
func (e *interruptEnv) checkNoMounts(t *testing.T) {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) < 5 {
			continue
		}
		for _, d := range []string{e.dir, e.work} {
			if f[4] == d || strings.HasPrefix(f[4], d+"/") {
				t.Errorf("left mounted: %s", l)
			}
		}
	}
}

// entries lists what is in each directory (a missing one is empty).
func entries(dirs ...string) []string {
	var out []string
	for _, d := range dirs {
		es, _ := os.ReadDir(d)
		for _, e := range es {
			out = append(out, filepath.Join(d, e.Name()))
		}
	}
	return out
}

// tempAreas are where a build keeps work it removes at the end.
func (e *interruptEnv) tempAreas() []string {
	return []string{filepath.Join(e.work, "ibuild-work"), filepath.Join(e.cache, "build", "tmp"),
		filepath.Join(e.cache, "build", "sources", "tmp"), e.tmp}
}

// checkClean fails the test if a temp area holds anything.
func (e *interruptEnv) checkClean(t *testing.T, when string) {
	t.Helper()
	if left := entries(e.tempAreas()...); len(left) > 0 {
		t.Errorf("%s, left behind:\n%s", when, strings.Join(left, "\n"))
	}
}

// checkStore fails the test unless every object of the cache is complete
// (its meta.json names it and its tree reads back) and every package file
// has the digest it is stored under.
func (e *interruptEnv) checkStore(t *testing.T) (objects, packages int) {
	t.Helper()
	store := filepath.Join(e.cache, "build")
	for _, d := range entries(filepath.Join(store, "objects")) {
		var meta struct {
			Key, Format string
			Size        int64
		}
		data, err := os.ReadFile(filepath.Join(d, "meta.json"))
		if err == nil {
			err = json.Unmarshal(data, &meta)
		}
		if err != nil || meta.Key != filepath.Base(d) {
			t.Errorf("object %s: meta.json %q: %v", d, data, err)
			continue
		}
		switch meta.Format {
		case "tar.zst":
			fi, err := os.Stat(filepath.Join(d, "tree.tar.zst"))
			if err != nil || fi.Size() != meta.Size {
				t.Errorf("object %s: tree.tar.zst: %v, size %v, meta.json says %d", d, err, fi, meta.Size)
				continue
			}
			if out, err := exec.Command("tar", "--zstd", "-tf", filepath.Join(d, "tree.tar.zst")).CombinedOutput(); err != nil {
				t.Errorf("object %s: tar -tf: %v: %s", d, err, lastLines(string(out), 5))
			}
		case "dir":
			if fi, err := os.Stat(filepath.Join(d, "tree")); err != nil || !fi.IsDir() {
				t.Errorf("object %s: tree: %v", d, err)
			}
		default:
			t.Errorf("object %s: format %q", d, meta.Format)
		}
		objects++
	}
	for _, f := range entries(filepath.Join(store, "sources", "sha256")) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Error(err)
			continue
		}
		if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != filepath.Base(f) {
			t.Errorf("package %s has sha256 %x", f, sum)
		}
		packages++
	}
	return objects, packages
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func TestInterrupt(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("building needs root")
	}
	need(t, "tar")
	needArchive(t)
	testStart := time.Now()
	dir := t.TempDir()
	e := &interruptEnv{dir: dir, bin: filepath.Join(dir, "ibuild"), lock: filepath.Join(dir, "minimal.lock.json"),
		cache: filepath.Join(dir, "cache"), tmp: filepath.Join(dir, "tmp"), out: filepath.Join(dir, "out")}
	// Trees are built on /dev/shm by default: so here, in a directory of
	// the test's own (other builds may use the default one).
	var st unix.Statfs_t
	workRoot := dir
	if unix.Statfs("/dev/shm", &st) == nil && st.Type == unix.TMPFS_MAGIC {
		workRoot = "/dev/shm"
	}
	work, err := os.MkdirTemp(workRoot, "ibuild-interrupt-")
	if err != nil {
		t.Fatal(err)
	}
	e.work = work
	t.Cleanup(func() { os.RemoveAll(work) })
	if err := os.Mkdir(e.tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "go", "build", "-o", e.bin, ".")
	run(t, e.bin, "lock", "../../testdata/blueprints/minimal.toml", "--type", "tar", "--arch", "x86_64", "-o", e.lock, "--cache", testCache(t))

	// SIGINT while a debs stage runs a tool in a namespace.
	for _, tc := range []struct {
		name  string
		group bool
	}{
		{"SIGINT to ibuild", false},
		{"SIGINT to the process group", true},
	} {
		ok := t.Run(tc.name, func(t *testing.T) {
			p := e.startBuild(t)
			tr := newTracker(e, p)
			p.waitFor(t, 10*time.Minute, "debs stage running a tool in a namespace", func() bool {
				return p.stageStarted("debs") && len(tr.namespaced()) > 0
			})
			inNS := tr.namespaced()
			target := p.cmd.Process.Pid
			if tc.group {
				target = -target
			}
			sent := time.Now()
			if err := unix.Kill(target, unix.SIGINT); err != nil {
				t.Fatal(err)
			}
			p.wait(t, 60*time.Second)
			took := p.exited.Sub(sent)
			t.Logf("SIGINT %.1f s into the build, %d processes in namespaces (%s); exited after %s with %v",
				sent.Sub(p.start).Seconds(), len(inNS), inNS[0].cmdline, took.Round(time.Millisecond), p.err)
			var ee *exec.ExitError
			if !errors.As(p.err, &ee) || ee.ExitCode() != 130 {
				t.Errorf("exit %v, want status 130", p.err)
			}
			if msg := lastLines(p.stderrText(), 1); !strings.Contains(msg, "ibuild: build interrupted") {
				t.Errorf("last line of stderr %q does not say the build was interrupted", msg)
			}
			if took > 20*time.Second {
				t.Errorf("exit took %s after SIGINT", took)
			}
			tr.checkGone(t)
			e.checkNoMounts(t)
			e.checkClean(t, "after SIGINT")
			if left := entries(e.out); len(left) > 0 {
				t.Errorf("outputs of an interrupted build: %v", left)
			}
			objects, packages := e.checkStore(t)
			t.Logf("cache: %d complete objects, %d verified packages", objects, packages)
		})
		if !ok {
			return
		}
	}

	// SIGKILL while a stage's tree is written into the cache: the first
	// commit, then, once a commit is done, the next (the rerun takes the
	// tree the killed build stored).
	for _, tc := range []struct {
		name        string
		group       bool
		afterCommit bool
	}{
		{"SIGKILL to the process group while committing", true, false},
		{"SIGKILL to ibuild alone while committing", false, true},
	} {
		ok := t.Run(tc.name, func(t *testing.T) {
			p := e.startBuild(t)
			tr := newTracker(e, p)
			storeTmp := filepath.Join(e.cache, "build", "tmp") + "/"
			var committer procInfo
			p.waitFor(t, 10*time.Minute, "commit of a stage tree (tar --create into the cache)", func() bool {
				if tc.afterCommit && !p.saw("commit") {
					return false
				}
				for _, q := range listProcs() {
					// The store's commits are the only tar --create ibuild
					// runs; it writes to ibuild, which compresses. Other
					// builds (pkg/disk's tests, at the same time) run the
					// same command: only this ibuild's process group counts.
					if !q.zombie && q.pgid == p.cmd.Process.Pid && strings.HasPrefix(q.cmdline, "tar ") &&
						strings.Contains(q.cmdline, "--create --file - ") {
						if freezeWriting(q, filepath.Join(storeTmp, "build-*", "commit-*", "tree.tar.zst")) {
							committer = q
							return true
						}
					}
				}
				return false
			})
			tr.namespaced()
			target := p.cmd.Process.Pid
			if tc.group {
				target = -target
			}
			sent := time.Now()
			if err := unix.Kill(target, unix.SIGKILL); err != nil {
				t.Fatal(err)
			}
			p.wait(t, 60*time.Second)
			t.Logf("SIGKILL %.1f s into the build, during %q", sent.Sub(p.start).Seconds(), committer.cmdline)
			if !tc.group {
				// The tools ibuild runs on the host die with it, rather than
				// run on as orphans writing into the cache and the work
				// area (a commit takes seconds; the kernel's parent-death
				// signal takes a moment).
				alive := func() bool {
					for _, q := range listProcs() {
						if q.pid == committer.pid && !q.zombie && q.cmdline == committer.cmdline {
							return true
						}
					}
					return false
				}
				deadline := time.Now().Add(500 * time.Millisecond)
				for alive() && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				if alive() {
					t.Errorf("the commit's tar (pid %d) runs on %s after ibuild was killed", committer.pid, time.Since(sent).Round(time.Millisecond))
				}
			}
			tr.checkGone(t)
			e.checkNoMounts(t)
			// The half-written tree stays in the temp area, not in objects/.
			partial, _ := filepath.Glob(filepath.Join(storeTmp, "build-*", "commit-*", "tree.tar.zst"))
			if len(partial) == 0 {
				t.Errorf("no half-written commit in %s: the kill did not land during the commit", storeTmp)
			}
			t.Logf("left by the killed build (removed by the next):\n%s", strings.Join(entries(e.tempAreas()...), "\n"))
			objects, packages := e.checkStore(t)
			t.Logf("cache: %d complete objects, %d verified packages", objects, packages)
		})
		if !ok {
			return
		}
	}

	t.Run("rerun", func(t *testing.T) {
		p := e.startBuild(t)
		p.wait(t, 20*time.Minute)
		if p.err != nil {
			t.Fatalf("rerun with the cache of the interrupted builds: %v\n%s", p.err, p.stderrText())
		}
		hits := p.cacheHits()
		t.Logf("rerun: %s, stages from the cache: %v", p.exited.Sub(p.start).Round(100*time.Millisecond), hits)
		if len(hits) == 0 {
			t.Errorf("the rerun took nothing from the cache: the killed build's commit did not count")
		}
		e.checkClean(t, "after the rerun")
		objects, packages := e.checkStore(t)
		t.Logf("cache: %d complete objects, %d verified packages", objects, packages)

		// Every stage again, packages from the cache: the same bytes.
		tarball := filepath.Join(e.out, "root.tar.zst")
		cmd := exec.Command(e.bin, "verify", e.lock, tarball, "--type", "tar", "--arch", "x86_64", "--cache", e.cache)
		cmd.Env = append(os.Environ(), "TMPDIR="+e.tmp)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		err := cmd.Run()
		if want := tarball + " is what " + e.lock + " produces"; err != nil || !strings.HasPrefix(stdout.String(), want) {
			t.Errorf("verify: %v, stdout %q, want %q; stderr:\n%s", err, stdout.String(), want, stderr.String())
		}
		if strings.Contains(stderr.String(), "cached") {
			t.Errorf("verify without --reuse-trees took stage trees from the cache:\n%s", stderr.String())
		}
		t.Logf("verify (every stage again): %s: %s", time.Since(start).Round(100*time.Millisecond), strings.TrimSpace(stdout.String()))
		e.checkClean(t, "after verify")
	})
	t.Logf("TestInterrupt took %s", time.Since(testStart).Round(time.Second))
}
