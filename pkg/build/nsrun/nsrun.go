// Package nsrun runs a command with a directory as "/" in fresh mount, pid,
// ipc, uts and network namespaces, the way a build root runs its tools.
//
// Go cannot run code between clone and exec, so Run re-executes the current
// binary (/proc/self/exe) with a marker in its environment; this package's
// init function recognises the marker, sets up the mounts inside the new
// namespaces, starts the command chrooted and reaps it as the namespace's
// pid 1. Any binary (and test binary) that imports this package, directly
// or through pkg/build, gets that hook: callers need do nothing else.
//
// Every mount happens inside the child's private mount namespace, so
// nothing stays mounted on the host after the command ends, whether it
// succeeds, fails or is killed.
package nsrun

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/treepath"
)

// childEnv marks the re-executed process; its value is unused.
const childEnv = "_IBUILD_NSRUN_CHILD"

// DefaultPath is the PATH a command gets when its environment has none.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Hostname is the host name inside the namespace.
const Hostname = "ibuild"

// Cmd is a command to run isolated.
type Cmd struct {
	// Root becomes "/" for the command.
	Root string
	// Overlay keeps Root unchanged: the command sees Root through an
	// overlay whose writable layer is a tmpfs thrown away at the end. Use
	// it for shared trees such as a cached build root.
	Overlay bool
	// Args is the command and its arguments; Args[0] is looked up in the
	// PATH of Env inside Root when it has no slash.
	Args []string
	// Env is the command's environment; PATH, LC_ALL, HOME and (when
	// SourceDateEpoch is set) SOURCE_DATE_EPOCH are added when missing.
	Env []string
	// SourceDateEpoch, when not nil, is added to Env as SOURCE_DATE_EPOCH
	// unless Env has it.
	SourceDateEpoch *int64
	// Binds are mounted into Root before the command runs.
	Binds []Bind
	// Dir is the working directory inside Root ("/" when empty).
	Dir string
	// Stdin, Stdout and Stderr are the command's; nil means nothing.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// TempDir is where an overlay's staging directory is made (empty:
	// the system's temp directory).
	TempDir string
}

// Bind mounts the host path Src at Dst inside Root.
type Bind struct {
	Src, Dst string
	ReadOnly bool
}

// ExitError is returned when the command ran and failed.
type ExitError struct {
	Args []string
	// Code is the exit status; 128+n for a command killed by signal n.
	Code int
	// Stderr holds the last lines the command wrote to stderr.
	Stderr string
}

func (e *ExitError) Error() string {
	msg := fmt.Sprintf("%s: exit status %d", strings.Join(e.Args, " "), e.Code)
	if e.Code > 128 && e.Code < 128+65 {
		msg = fmt.Sprintf("%s: killed by signal %d (%s)", strings.Join(e.Args, " "), e.Code-128, syscall.Signal(e.Code-128))
	}
	if e.Stderr != "" {
		msg += ": " + e.Stderr
	}
	return msg
}

// config is what the parent sends the child on fd 3.
type config struct {
	Root    string
	Overlay bool
	Staging string // an empty host directory for the overlay's tmpfs
	Path    string // the command's path inside Root
	Args    []string
	Env     []string
	Dir     string
	Binds   []bindConfig
}

type bindConfig struct {
	Src, Dst string
	ReadOnly bool
	Dir      bool
}

// stderrTailLines is how many lines of stderr an ExitError keeps.
const stderrTailLines = 20

// Run runs c and waits for it. When ctx is done, the whole process tree is
// killed (SIGKILL to the namespace's init kills every process in it).
func Run(ctx context.Context, c *Cmd) error {
	if len(c.Args) == 0 {
		return errors.New("running command: no arguments")
	}
	if c.Root == "" || !filepath.IsAbs(c.Root) {
		return fmt.Errorf("running %s: root %q is not an absolute path", c.Args[0], c.Root)
	}
	root := filepath.Clean(c.Root)
	fi, err := os.Stat(root)
	if err != nil {
		return fmt.Errorf("running %s: %w", c.Args[0], err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("running %s: root %s is not a directory", c.Args[0], root)
	}
	env := withDefaults(c.Env, c.SourceDateEpoch)
	path, err := lookPath(root, c.Args[0], env)
	if err != nil {
		return fmt.Errorf("running %s in %s: %w", c.Args[0], root, err)
	}
	cfg := config{Root: root, Overlay: c.Overlay, Path: path, Args: c.Args, Env: env, Dir: c.Dir}
	if cfg.Dir == "" {
		cfg.Dir = "/"
	}
	for _, b := range c.Binds {
		if !filepath.IsAbs(b.Src) || !filepath.IsAbs(b.Dst) {
			return fmt.Errorf("running %s: bind %s -> %s: paths must be absolute", c.Args[0], b.Src, b.Dst)
		}
		st, err := os.Stat(b.Src)
		if err != nil {
			return fmt.Errorf("running %s: bind source: %w", c.Args[0], err)
		}
		cfg.Binds = append(cfg.Binds, bindConfig{Src: filepath.Clean(b.Src), Dst: filepath.Clean(b.Dst), ReadOnly: b.ReadOnly, Dir: st.IsDir()})
	}

	if c.Overlay {
		staging, err := os.MkdirTemp(c.TempDir, "ibuild-nsrun-")
		if err != nil {
			return fmt.Errorf("running %s: %w", c.Args[0], err)
		}
		defer os.Remove(staging)
		cfg.Staging = staging
	} else {
		// Mount points missing from a writable tree are made here, not in
		// the child, so they are removed even if the child is killed.
		created, err := makeMountPoints(root, cfg.Binds)
		defer removeAll(created)
		if err != nil {
			return fmt.Errorf("running %s: %w", c.Args[0], err)
		}
	}

	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("running %s: %w", c.Args[0], err)
	}
	defer cfgR.Close()
	defer cfgW.Close()
	statusR, statusW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("running %s: %w", c.Args[0], err)
	}
	defer statusR.Close()
	defer statusW.Close()

	tail := &tailWriter{max: stderrTailLines}
	var stderr io.Writer = tail
	if c.Stderr != nil {
		stderr = io.MultiWriter(c.Stderr, tail)
	}
	cmd := exec.CommandContext(ctx, "/proc/self/exe")
	cmd.Args = []string{"ibuild-nsrun"}
	cmd.Env = []string{childEnv + "=1"}
	cmd.Stdin = c.Stdin
	cmd.Stdout = c.Stdout
	cmd.Stderr = stderr
	cmd.ExtraFiles = []*os.File{cfgR, statusW}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC |
			syscall.CLONE_NEWUTS | syscall.CLONE_NEWNET,
		Pdeathsig: syscall.SIGKILL,
	}
	// The default Cancel sends SIGKILL to the child, the pid namespace's
	// init, which takes every process in the namespace with it. WaitDelay
	// bounds waiting for output pipes afterwards.
	cmd.WaitDelay = 5 * time.Second

	data, err := json.Marshal(&cfg)
	if err != nil {
		return fmt.Errorf("running %s: %w", c.Args[0], err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("running %s: starting namespace: %w", c.Args[0], err)
	}
	cfgR.Close()
	statusW.Close()
	go func() {
		cfgW.Write(data)
		cfgW.Close()
	}()
	status, _ := io.ReadAll(statusR)
	werr := cmd.Wait()
	if len(status) > 0 {
		return fmt.Errorf("running %s in %s: setting up namespace: %s", c.Args[0], root, bytes.TrimSpace(status))
	}
	if ctx.Err() != nil {
		return fmt.Errorf("running %s in %s: %w", c.Args[0], root, context.Cause(ctx))
	}
	if werr != nil {
		var ee *exec.ExitError
		if errors.As(werr, &ee) {
			code := ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				code = 128 + int(ws.Signal())
			}
			return &ExitError{Args: c.Args, Code: code, Stderr: tail.String()}
		}
		return fmt.Errorf("running %s in %s: %w", c.Args[0], root, werr)
	}
	return nil
}

// withDefaults adds the variables every command gets unless it sets them.
func withDefaults(env []string, epoch *int64) []string {
	out := append([]string(nil), env...)
	has := func(k string) bool {
		for _, kv := range env {
			if strings.HasPrefix(kv, k+"=") {
				return true
			}
		}
		return false
	}
	if !has("PATH") {
		out = append(out, "PATH="+DefaultPath)
	}
	if !has("LC_ALL") {
		out = append(out, "LC_ALL=C.UTF-8")
	}
	if !has("HOME") {
		out = append(out, "HOME=/root")
	}
	if epoch != nil && !has("SOURCE_DATE_EPOCH") {
		out = append(out, fmt.Sprintf("SOURCE_DATE_EPOCH=%d", *epoch))
	}
	return out
}

// lookPath finds name in env's PATH inside root and returns its path as
// the command will see it.
func lookPath(root, name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		if !filepath.IsAbs(name) {
			return "", fmt.Errorf("command %q: relative paths are not allowed", name)
		}
		return name, nil
	}
	pathVar := DefaultPath
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathVar = v
		}
	}
	for _, dir := range filepath.SplitList(pathVar) {
		if !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, name)
		hp, err := resolve(root, p)
		if err != nil {
			continue
		}
		fi, err := os.Stat(hp)
		if err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("command %q not found in PATH %s inside the root", name, pathVar)
}

// resolve returns the host path of p inside root, following symlinks as
// if root were "/"; a path leading out of root is an error. p is taken
// from "/" when relative.
func resolve(root, p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	return treepath.Resolve(filepath.Clean(root), p, true)
}

// tmpfsDirs are mounted fresh in the child; mount points under them are
// made there, in the tmpfs.
var tmpfsDirs = []string{"dev", "proc", "tmp", "run"}

func underTmpfs(root, hostPath string) bool {
	for _, d := range tmpfsDirs {
		base := filepath.Join(root, d)
		if hostPath == base || strings.HasPrefix(hostPath, base+"/") {
			return true
		}
	}
	return false
}

// makeMountPoints creates the missing mount points of a writable root and
// returns what it created, deepest last.
func makeMountPoints(root string, binds []bindConfig) ([]string, error) {
	var created []string
	for _, d := range tmpfsDirs {
		c, err := ensureMountPoint(root, "/"+d, true)
		created = append(created, c...)
		if err != nil {
			return created, err
		}
	}
	for _, b := range binds {
		hp, err := resolve(root, b.Dst)
		if err != nil {
			return created, err
		}
		if underTmpfs(root, hp) {
			continue
		}
		c, err := ensureMountPoint(root, b.Dst, b.Dir)
		created = append(created, c...)
		if err != nil {
			return created, err
		}
	}
	return created, nil
}

// ensureMountPoint makes dst (inside root) exist as a directory, or an
// empty file when dir is false, and returns the host paths it created.
func ensureMountPoint(root, dst string, dir bool) ([]string, error) {
	hp, err := resolve(root, dst)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(hp); err == nil {
		return nil, nil
	}
	var created []string
	// Create the parents one at a time to know which ones were missing.
	var missing []string
	for p := filepath.Dir(hp); len(p) > len(root); p = filepath.Dir(p) {
		if _, err := os.Lstat(p); err == nil {
			break
		}
		missing = append(missing, p)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], 0o755); err != nil {
			return created, fmt.Errorf("making mount point %s: %w", dst, err)
		}
		created = append(created, missing[i])
	}
	if dir {
		err = os.Mkdir(hp, 0o755)
	} else {
		var f *os.File
		f, err = os.OpenFile(hp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err == nil {
			f.Close()
		}
	}
	if err != nil {
		return created, fmt.Errorf("making mount point %s: %w", dst, err)
	}
	return append(created, hp), nil
}

// removeAll removes what ensureMountPoint created, deepest first; it only
// removes empty directories and empty files.
func removeAll(created []string) {
	for i := len(created) - 1; i >= 0; i-- {
		p := created[i]
		if fi, err := os.Lstat(p); err == nil && !fi.IsDir() && fi.Size() != 0 {
			continue
		}
		os.Remove(p)
	}
}

// tailWriter keeps the last max lines written to it.
type tailWriter struct {
	mu    sync.Mutex
	max   int
	lines []string
	part  []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.part = append(t.part, p...)
	for {
		i := bytes.IndexByte(t.part, '\n')
		if i < 0 {
			break
		}
		t.push(string(t.part[:i]))
		t.part = t.part[i+1:]
	}
	if len(t.part) > 4096 {
		t.push(string(t.part))
		t.part = nil
	}
	return len(p), nil
}

func (t *tailWriter) push(line string) {
	if len(line) > 1024 {
		line = line[:1024] + "…"
	}
	t.lines = append(t.lines, line)
	if len(t.lines) > t.max {
		t.lines = t.lines[len(t.lines)-t.max:]
	}
}

// String returns the kept lines, joined with newlines.
func (t *tailWriter) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := t.lines
	if len(t.part) > 0 {
		lines = append(append([]string(nil), lines...), string(t.part))
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}
