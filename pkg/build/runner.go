package build

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"sync"

	"github.com/image-builder-action/image-builder-action/pkg/build/nsrun"
	"github.com/image-builder-action/image-builder-action/stages"
)

// Runner runs stage commands in fresh mount, pid, ipc, uts and network
// namespaces (see package nsrun). Importing this package installs the
// re-exec hook nsrun needs; programs and tests need do nothing else.
type Runner struct {
	log      io.Writer
	epoch    *int64
	readOnly []string
	tempDir  string
}

var _ stages.Runner = (*Runner)(nil)

// RunnerOption configures a Runner.
type RunnerOption func(*Runner)

// WithRunnerLog sends the output of commands whose Cmd leaves Stdout or
// Stderr nil to w (by default it is discarded).
func WithRunnerLog(w io.Writer) RunnerOption {
	return func(r *Runner) { r.log = &syncWriter{w: w} }
}

// syncWriter serialises writes: stdout and stderr are copied to the log by
// two goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// WithSourceDateEpoch adds SOURCE_DATE_EPOCH to every command's
// environment unless the command sets it.
func WithSourceDateEpoch(epoch int64) RunnerOption {
	return func(r *Runner) { r.epoch = &epoch }
}

// WithReadOnlyTrees protects trees that must not change (a cached build
// root, finished input trees): a command whose Root is one of them sees it
// through an overlay whose writes are thrown away, and binds from inside
// them are mounted read-only.
func WithReadOnlyTrees(dirs ...string) RunnerOption {
	return func(r *Runner) {
		for _, d := range dirs {
			r.readOnly = append(r.readOnly, filepath.Clean(d))
		}
	}
}

// WithRunnerTempDir sets where the runner makes its temporary directories
// (default: the system's).
func WithRunnerTempDir(dir string) RunnerOption {
	return func(r *Runner) { r.tempDir = dir }
}

// NewRunner returns a Runner.
func NewRunner(opts ...RunnerOption) *Runner {
	r := &Runner{}
	for _, o := range opts {
		o(r)
	}
	return r
}

func (r *Runner) protected(p string) bool {
	p = filepath.Clean(p)
	for _, d := range r.readOnly {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

// Run runs cmd with cmd.Root as "/". A failing command's error is an
// *nsrun.ExitError with its exit status and the last lines of its stderr.
func (r *Runner) Run(ctx context.Context, cmd *stages.Cmd) error {
	c := &nsrun.Cmd{
		Root:            cmd.Root,
		Overlay:         r.protected(cmd.Root),
		Args:            cmd.Args,
		Env:             cmd.Env,
		SourceDateEpoch: r.epoch,
		Dir:             cmd.Dir,
		Stdin:           cmd.Stdin,
		Stdout:          cmd.Stdout,
		Stderr:          cmd.Stderr,
		TempDir:         r.tempDir,
	}
	if c.Stdout == nil {
		c.Stdout = r.log
	}
	if c.Stderr == nil {
		c.Stderr = r.log
	}
	for _, b := range cmd.Binds {
		c.Binds = append(c.Binds, nsrun.Bind{Src: b.Src, Dst: b.Dst, ReadOnly: b.ReadOnly || r.protected(b.Src)})
	}
	return nsrun.Run(ctx, c)
}
