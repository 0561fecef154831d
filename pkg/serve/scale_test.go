package serve

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/compose"
	"github.com/image-builder-action/image-builder-action/pkg/lock/locktest"
	"github.com/image-builder-action/image-builder-action/pkg/sources/sourcestest"
	"github.com/image-builder-action/image-builder-action/pkg/weldr"
)

// The scale-out test runs the service as separate processes, as
// `ibuild serve` and `ibuild worker` do: this test binary re-executed
// with a role, calling Run or RunWorker (what the commands call) — not a
// binary of its own to build.
const roleEnv = "IBUILD_SERVE_TEST_ROLE"

type role struct {
	Role     string `json:"role"`
	Socket   string `json:"socket"`
	Artifact string `json:"artifacts"`
	// The compose.Config fields the test sets (Config itself holds
	// functions, which JSON cannot carry).
	Dir, Database, CacheDir string
	Workers                 int
	JobTimeout, RescueAfter time.Duration
	PollInterval            time.Duration
	LiveLogInterval         time.Duration
}

func (r role) config() compose.Config {
	return compose.Config{Dir: r.Dir, Database: r.Database, CacheDir: r.CacheDir, Workers: r.Workers, Artifacts: r.Artifact,
		JobTimeout: r.JobTimeout, RescueAfter: r.RescueAfter, PollInterval: r.PollInterval, LiveLogInterval: r.LiveLogInterval}
}

func TestMain(m *testing.M) {
	if v := os.Getenv(roleEnv); v != "" {
		os.Exit(runRole(v))
	}
	os.Exit(m.Run())
}

func runRole(v string) int {
	var r role
	if err := json.Unmarshal([]byte(v), &r); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg := r.config()
	cfg.Logger = log
	var err error
	switch r.Role {
	case "serve":
		err = Run(ctx, Options{Compose: cfg, Socket: r.Socket, Listen: "127.0.0.1:0", Logger: log, Drain: 20 * time.Second,
			Ready: func(a Addresses) { fmt.Printf("READY %s\n", a.HTTP) }})
	case "worker":
		err = RunWorker(ctx, WorkerOptions{Compose: cfg, Logger: log, Drain: 20 * time.Second,
			Ready: func(string) { fmt.Printf("READY %d\n", os.Getpid()) }})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "role", r.Role, "failed:", err)
		return 1
	}
	return 0
}

// proc is a role process, in a process group of its own so that a
// SIGKILL reaches the build tools it runs too.
type proc struct {
	cmd  *exec.Cmd
	done chan error
}

func start(t *testing.T, name string, r role) *proc {
	t.Helper()
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"="+string(data))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logf, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logf
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan error, 1)}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if l, ok := strings.CutPrefix(sc.Text(), "READY "); ok {
				ready <- l
			}
		}
	}()
	go func() { p.done <- cmd.Wait(); logf.Close() }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			data, _ := os.ReadFile(logf.Name())
			t.Logf("%s log (tail):\n%s", name, tailText(string(data), 4000))
		}
	})
	select {
	case <-ready:
	case err := <-p.done:
		data, _ := os.ReadFile(logf.Name())
		t.Fatalf("%s exited before it was ready: %v\n%s", name, err, data)
	case <-time.After(60 * time.Second):
		t.Fatalf("%s not ready after 60 s", name)
	}
	return p
}

func tailText(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// kill ends the process group at once.
func (p *proc) kill() {
	if p.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}

// stop asks the process to shut down and waits for it.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("process %d: %v", p.cmd.Process.Pid, err)
		}
	case <-time.After(60 * time.Second):
		t.Errorf("process %d did not stop in 60 s", p.cmd.Process.Pid)
		p.kill()
	}
}

// postgres starts Debian's PostgreSQL 15 in dir, on a unix socket only,
// as the postgres user (it refuses to run as root), and returns the URL.
func postgres(t *testing.T, dir string) string {
	t.Helper()
	bin := "/usr/lib/postgresql/15/bin"
	if _, err := os.Stat(filepath.Join(bin, "postgres")); err != nil {
		t.Skip("PostgreSQL 15 is not installed (.ci/deps installs it)")
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Skip("no postgres user")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	as := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, Setpgid: true}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
	initdb.SysProcAttr, initdb.Dir = as, dir
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	pg := exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-k", dir, "-c", "listen_addresses=", "-p", "5439",
		"-c", "fsync=off", "-c", "max_connections=200")
	pg.SysProcAttr, pg.Dir = as, dir
	logf, _ := os.Create(filepath.Join(dir, "postgres.log"))
	pg.Stdout, pg.Stderr = logf, logf
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// SIGINT is PostgreSQL's fast shutdown.
		_ = pg.Process.Signal(syscall.SIGINT)
		done := make(chan struct{})
		go func() { pg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-pg.Process.Pid, syscall.SIGKILL)
		}
		logf.Close()
	})
	sock := filepath.Join(dir, ".s.PGSQL.5439")
	for i := 0; ; i++ {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		if i > 300 {
			t.Fatal("PostgreSQL did not start in 30 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "postgres://postgres@/postgres?host=" + dir + "&port=5439&sslmode=disable"
}

const tarBlueprint = `name = "scale-test"
version = "0.0.1"
distro = "debian-12"
[customizations]
hostname = "scale-test"
`

// One serve (no workers of its own) and two worker processes on one
// PostgreSQL: ten composes are spread over both workers, one worker is
// killed mid-build and its compose still finishes elsewhere, and a
// restarted server has lost nothing.
func TestScaleOut(t *testing.T) {
	if testing.Short() {
		t.Skip("builds: skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("building needs root")
	}
	locktest.NeedArchive(t)
	pgdir, err := os.MkdirTemp("", "ibuild-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(pgdir) })
	db := postgres(t, pgdir)
	dir := t.TempDir()
	// Artifacts in an S3 bucket (versitygw): no file system shared
	// between the nodes. The roles inherit its credentials from the
	// environment.
	artifacts := sourcestest.S3(t, "artifacts", "scale")
	cache := os.Getenv("IBUILD_TEST_CACHE")
	if cache == "" {
		cache = filepath.Join(os.TempDir(), "ibuild-test-cache")
	}
	sock := filepath.Join(dir, "api.socket")
	// A dead worker's build is retried RescueAfter after it started.
	cfg := func(r, name string, workers int) role {
		return role{Role: r, Socket: sock, Artifact: artifacts, Dir: filepath.Join(dir, name), Database: db, CacheDir: cache,
			Workers: workers, JobTimeout: 75 * time.Second, RescueAfter: 80 * time.Second, PollInterval: 200 * time.Millisecond,
			LiveLogInterval: 300 * time.Millisecond}
	}
	srv := start(t, "serve", cfg("serve", "serve", 0))
	w1 := start(t, "worker1", cfg("worker", "worker1", 1))
	w2 := start(t, "worker2", cfg("worker", "worker2", 1))
	pids := map[int]string{w1.cmd.Process.Pid: "worker1", w2.cmd.Process.Pid: "worker2"}

	c := weldr.NewClient(sock)
	ctx := context.Background()
	if err := c.PushTOML(ctx, []byte(tarBlueprint)); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range 10 {
		id, err := c.StartCompose(ctx, "scale-test", "tar", 0)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}

	// Watch from this process through the same database (an API node
	// without workers); kill worker1 once while it builds.
	svc := readOnly(t, db, filepath.Join(dir, "observer"))
	begin := time.Now()
	killed := false
	seen := map[string]bool{}
	// The log of a build running on a worker, read on this node, which
	// shares only the database with it.
	liveLog := ""
	for {
		done := 0
		for _, id := range ids {
			cmp, err := svc.Get(ctx, "weldr", id)
			if err != nil {
				t.Fatal(err)
			}
			if cmp.Status.Final() {
				done++
			}
			im := cmp.Images[0]
			if im.Status != compose.StatusBuilding || im.Worker == "" {
				continue
			}
			pid, _ := strconv.Atoi(im.Worker[strings.LastIndex(im.Worker, ":")+1:])
			seen[pids[pid]] = true
			if liveLog == "" {
				r, err := svc.Log(ctx, "weldr", id, 0)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(r)
				r.Close()
				if again, _ := svc.Get(ctx, "weldr", id); again.Images[0].Status == compose.StatusBuilding && strings.Contains(string(b), "compose "+id) {
					liveLog = string(b)
					t.Logf("live log of compose %s on %s:\n%s", id, im.Worker, b)
				}
			}
			if !killed && pid == w1.cmd.Process.Pid {
				t.Logf("killing worker1 (pid %d) while it builds compose %s (stage %d of %d)", pid, id, im.Progress.Done, im.Progress.Total)
				w1.kill()
				killed = true
			}
		}
		if done == len(ids) {
			break
		}
		if time.Since(begin) > 15*time.Minute {
			t.Fatalf("composes not finished after 15 minutes (%d done)", done)
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Logf("10 composes finished in %s; workers seen building: %v", time.Since(begin).Round(time.Second), seen)
	if !killed {
		t.Fatal("worker1 never built anything to be killed")
	}
	if !seen["worker1"] || !seen["worker2"] {
		t.Fatalf("builds ran on %v, want both workers", seen)
	}
	if liveLog == "" {
		t.Fatal("no build's log was seen while it ran")
	}
	retried := 0
	for _, id := range ids {
		cmp, err := svc.Get(ctx, "weldr", id)
		if err != nil {
			t.Fatal(err)
		}
		if cmp.Status != compose.StatusSuccess {
			t.Fatalf("compose %s: %s %s", id, cmp.Status, cmp.Error)
		}
		if im := cmp.Images[0]; im.Attempt > 1 {
			retried++
			if !strings.HasSuffix(im.Worker, ":"+strconv.Itoa(w2.cmd.Process.Pid)) {
				t.Fatalf("compose %s retried on %s, want worker2", id, im.Worker)
			}
		}
	}
	if retried != 1 {
		t.Fatalf("%d builds retried, want the killed one", retried)
	}

	// A server restart loses nothing.
	srv.stop(t)
	srv = start(t, "serve2", cfg("serve", "serve", 0))
	list, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	finished := 0
	for _, s := range list {
		if s.Status == "FINISHED" {
			finished++
		}
	}
	if finished != 10 {
		t.Fatalf("after restart: %d of 10 composes finished: %+v", finished, list)
	}
	img := filepath.Join(t.TempDir(), "root.tar.zst")
	if name, err := c.GetFile(ctx, "/compose/image/"+ids[0], img); err != nil || name != ids[0]+"-root.tar.zst" {
		t.Fatalf("image after restart: %q %v", name, err)
	}
	srv.stop(t)
	w2.stop(t)
}

// readOnly opens the service on the shared database without workers.
func readOnly(t *testing.T, db, dir string) *compose.Service {
	t.Helper()
	svc, err := compose.Open(context.Background(), compose.Config{Dir: dir, Database: db})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close(context.Background()) })
	return svc
}
