package nsrun

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for namespaces and mounts")
	}
}

// mountinfo returns the host's mount table without the fields that change
// on their own (none do: the whole line is compared).
func mountinfo(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkNoLeak fails the test if the host's mounts changed while it ran.
func checkNoLeak(t *testing.T) {
	before := mountinfo(t)
	t.Cleanup(func() {
		if after := mountinfo(t); after != before {
			t.Errorf("host mounts changed:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
}

// smallTree makes a root with the host's dash as /bin/sh and its libraries.
func smallTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	sh, err := filepath.EvalSymlinks("/bin/dash")
	if err != nil {
		t.Skipf("no dash on the host: %v", err)
	}
	copyFile(t, sh, filepath.Join(root, "bin/sh"))
	out, err := exec.Command("ldd", sh).Output()
	if err != nil {
		t.Skipf("ldd %s: %v", sh, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		for _, f := range strings.Fields(line) {
			if strings.HasPrefix(f, "/") {
				real, err := filepath.EvalSymlinks(f)
				if err != nil {
					t.Fatal(err)
				}
				copyFile(t, real, filepath.Join(root, f))
			}
		}
	}
	return root
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

func run(t *testing.T, c *Cmd) (string, error) {
	t.Helper()
	var out bytes.Buffer
	c.Stdout = &out
	err := Run(context.Background(), c)
	return out.String(), err
}

func TestRunSmallTree(t *testing.T) {
	needRoot(t)
	checkNoLeak(t)
	root := smallTree(t)
	rw := t.TempDir()
	ro := t.TempDir()
	if err := os.WriteFile(filepath.Join(ro, "in"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := `
echo pid=$$
read line < /in/in; echo in=$line
echo written > /out/file && echo rw=ok
(echo x > /in/new) 2>/dev/null && echo ro=writable || echo ro=refused
echo pwd=$(pwd)
[ -c /dev/null ] && echo devnull=ok
echo tmp > /tmp/t && echo tmp=ok
read h < /proc/sys/kernel/hostname; echo host=$h
n=0; while read l; do n=$((n+1)); done < /proc/net/dev; echo netdevlines=$n
read a b c < /proc/net/dev; echo x; 
`
	out, err := run(t, &Cmd{
		Root:  root,
		Args:  []string{"sh", "-c", script},
		Binds: []Bind{{Src: ro, Dst: "/in", ReadOnly: true}, {Src: rw, Dst: "/out"}},
		Dir:   "/bin",
	})
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	for _, want := range []string{"in=hello\n", "rw=ok\n", "ro=refused\n", "pwd=/bin\n",
		"devnull=ok\n", "tmp=ok\n", "host=" + Hostname + "\n", "netdevlines=3\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// The shell is not pid 1 (the namespace's init is) but a small pid:
	// the init's threads take the first ones.
	if i := strings.Index(out, "pid="); i < 0 || len(strings.SplitN(out[i+4:], "\n", 2)[0]) > 1 {
		t.Errorf("shell's pid is not small: %s", out)
	}
	if b, err := os.ReadFile(filepath.Join(rw, "file")); err != nil || string(b) != "written\n" {
		t.Errorf("rw bind: %q, %v", b, err)
	}
	// The mount points made for the run are gone; the tree is as it was.
	entries, _ := os.ReadDir(root)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, " "); got != "bin lib lib64" && got != "bin lib" && got != "bin lib64 usr" {
		t.Errorf("tree has %q after the run, want only what was copied", got)
	}
	if h, _ := os.Hostname(); h == Hostname {
		t.Errorf("host name leaked to the host: %s", h)
	}
}

func TestRunHostRootOverlay(t *testing.T) {
	needRoot(t)
	checkNoLeak(t)
	marker := "/etc/ibuild-nsrun-test-" + filepath.Base(t.TempDir())
	out, err := run(t, &Cmd{
		Root:    "/",
		Overlay: true,
		Args:    []string{"/bin/sh", "-c", "touch " + marker + " && ls /proc | grep -c '^[0-9]' && cat /proc/1/cmdline | tr '\\0' ' ' && ip -o link 2>/dev/null || cat /proc/net/dev"},
	})
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	if _, err := os.Stat(marker); err == nil {
		os.Remove(marker)
		t.Errorf("a write in an overlay root reached the host: %s", marker)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	// ls, grep, and the shell and init: few processes.
	if len(lines) < 2 || len(lines[0]) > 1 {
		t.Errorf("processes visible in the pid namespace: %q", out)
	}
	if !strings.HasPrefix(lines[1], "ibuild-nsrun") {
		t.Errorf("pid 1 is %q, want the namespace init", lines[1])
	}
	if strings.Contains(out, "eth") || strings.Contains(out, "ens") || strings.Contains(out, "veth") {
		t.Errorf("network interfaces other than lo visible:\n%s", out)
	}
}

func TestRunNoNetwork(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("no ip command on the host")
	}
	out, err := run(t, &Cmd{Root: "/", Overlay: true, Args: []string{"ip", "-o", "link"}})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], ": lo:") || strings.Contains(lines[0], "UP") && !strings.Contains(lines[0], "state DOWN") {
		t.Errorf("want only lo, down; got:\n%s", out)
	}
}

func TestRunFailureReportsStatusAndStderr(t *testing.T) {
	needRoot(t)
	checkNoLeak(t)
	root := smallTree(t)
	var stderr bytes.Buffer
	err := Run(context.Background(), &Cmd{
		Root:   root,
		Args:   []string{"sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25; do echo line$i >&2; done; exit 7"},
		Stderr: &stderr,
	})
	var ee *ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("want ExitError, got %v", err)
	}
	if ee.Code != 7 {
		t.Errorf("code %d, want 7", ee.Code)
	}
	if !strings.HasSuffix(ee.Stderr, "line25") || strings.Contains(ee.Stderr, "line5\n") || !strings.Contains(ee.Stderr, "line6\n") {
		t.Errorf("stderr tail: %q", ee.Stderr)
	}
	if !strings.Contains(err.Error(), "exit status 7") || !strings.Contains(err.Error(), "line25") {
		t.Errorf("error message: %v", err)
	}
	if !strings.Contains(stderr.String(), "line1\n") {
		t.Errorf("stderr not passed through: %q", stderr.String())
	}
}

func TestRunSetupErrors(t *testing.T) {
	needRoot(t)
	checkNoLeak(t)
	root := smallTree(t)
	for _, tc := range []struct {
		name string
		cmd  Cmd
		want string
	}{
		{"missing command", Cmd{Root: root, Args: []string{"nosuch"}}, `command "nosuch" not found`},
		{"relative command", Cmd{Root: root, Args: []string{"bin/sh"}}, "relative paths"},
		{"root not absolute", Cmd{Root: "tree", Args: []string{"sh"}}, "not an absolute path"},
		{"missing bind source", Cmd{Root: root, Args: []string{"sh"}, Binds: []Bind{{Src: "/nonexistent-src", Dst: "/x"}}}, "bind source"},
		{"no args", Cmd{Root: root}, "no arguments"},
		{"bad dir", Cmd{Root: root, Args: []string{"sh", "-c", "true"}, Dir: "/nonexistent"}, "setting up namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Run(context.Background(), &tc.cmd)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestRunCancelKillsTree(t *testing.T) {
	needRoot(t)
	checkNoLeak(t)
	tag := "1000." + strings.TrimPrefix(filepath.Base(t.TempDir()), "TestRunCancelKillsTree")
	tag = strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' || r == '.' {
			return r
		}
		return -1
	}, tag)
	if strings.Count(tag, ".") != 1 || strings.HasSuffix(tag, ".") {
		tag = "1000.4242"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := Run(ctx, &Cmd{Root: "/", Overlay: true, Args: []string{"/bin/sh", "-c", "sleep " + tag + " & sleep " + tag + "; wait"}})
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want a deadline error, got %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cancellation took %s", d)
	}
	// Every process of the namespace is gone, the background sleep too.
	time.Sleep(100 * time.Millisecond)
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		if strings.Contains(string(b), tag) {
			t.Errorf("process %s survived: %q", p, b)
		}
	}
}
