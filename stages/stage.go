// Package stages holds the build steps a lockfile's pipelines name: one file
// a stage, each with typed options decoded strictly and validated before
// anything runs.
package stages

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
)

// Stage is one validated step, ready to run.
type Stage interface {
	// Run applies the stage to env.Tree.
	Run(ctx context.Context, env *Env) error
}

// Env is what a running stage may use.
type Env struct {
	// Tree is the directory the pipeline builds: a root file system for
	// tree pipelines, an output directory for image and export pipelines.
	Tree string
	// Inputs are the finished trees of earlier pipelines of the same entry,
	// by pipeline name (read-only by convention).
	Inputs map[string]string
	// BuildRoot is the build pipeline's tree whose tools stages run; empty
	// while the build pipeline itself is being made.
	BuildRoot string
	// Native is, for a tree of another architecture than the host's, a
	// tree of the host's (the build root standing in for the entry's)
	// whose programs a stage may run in place of the tree's own where the
	// result is the same, to emulate less; empty otherwise. Read-only.
	Native string
	// Packages opens pinned packages (already downloaded and verified).
	Packages PackageSource
	// Runner runs commands isolated in namespaces.
	Runner Runner
	// Arch is the entry's dpkg architecture (amd64, arm64).
	Arch string
	// SourceDateEpoch clamps timestamps written by the stage.
	SourceDateEpoch int64
	// Log receives the output of the tools a stage runs.
	Log io.Writer
	// TempDir is where a stage puts temporary files: the build's own,
	// removed with its work area, also by the next build after a kill.
	// Empty means the system's.
	TempDir string
}

// PackageSource gives the local path of a pinned package's verified file.
type PackageSource interface {
	// Path returns the path of the .deb for ref ("name:arch=version").
	Path(ref string) (string, error)
}

// Runner runs a command in fresh mount, pid, ipc, uts and network
// namespaces.
type Runner interface {
	Run(ctx context.Context, cmd *Cmd) error
}

// Cmd is a command for a Runner.
type Cmd struct {
	// Root is the directory that becomes "/" for the command: the build
	// root to run build tools, or a target tree to run its own tools
	// (dpkg, systemctl, useradd) the way a chroot would.
	Root string
	// Args is the command and its arguments, resolved inside Root.
	Args []string
	// Env is the environment; a minimal PATH, LC_ALL=C.UTF-8 and
	// SOURCE_DATE_EPOCH are added when missing.
	Env []string
	// Binds are mounted into Root before the command runs.
	Binds []Bind
	// Stdin, Stdout and Stderr default to nothing, Env's Log and Env's Log.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Dir is the working directory inside Root ("/" when empty).
	Dir string
}

// Bind mounts Src (a host path) at Dst (a path inside Root).
type Bind struct {
	Src, Dst string
	ReadOnly bool
}

// Factory decodes and validates a stage's options.
type Factory func(options json.RawMessage) (Stage, error)

type registration struct {
	version int
	factory Factory
}

var registry = map[string]registration{}

// Register makes a stage type known, at version (from 1). The version is
// part of the object key of every stage of the type: raise it whenever
// what the stage writes changes for the same options, so a warm cache
// never serves the output of older code. TestStageVersions pins each
// stage's output and fails until the version is raised.
func Register(typ string, version int, f Factory) {
	if _, dup := registry[typ]; dup {
		panic("stages: " + typ + " registered twice")
	}
	if version < 1 {
		panic("stages: " + typ + " registered without a version")
	}
	registry[typ] = registration{version, f}
}

// register registers the stage type typ, at version, whose options decode
// strictly into T and are then checked by T's validate. Each stage file
// calls it from init, the version beside the stage's code.
func register[T any, P interface {
	*T
	Stage
	validate() error
}](typ string, version int) {
	Register(typ, version, func(o json.RawMessage) (Stage, error) {
		s := P(new(T))
		if err := Decode(o, s); err != nil {
			return nil, err
		}
		return s, s.validate()
	})
}

// New decodes options for a stage of type typ, strictly, and validates them.
func New(typ string, options json.RawMessage) (Stage, error) {
	r, ok := registry[typ]
	if !ok {
		return nil, fmt.Errorf("unknown stage type %q", typ)
	}
	s, err := r.factory(options)
	if err != nil {
		return nil, &Error{Index: -1, Type: typ, Err: err}
	}
	return s, nil
}

// Version is the registered version of stage type typ, 0 for an unknown
// type.
func Version(typ string) int { return registry[typ].version }

// Types lists the registered stage types, sorted.
func Types() []string {
	var ts []string
	for t := range registry {
		ts = append(ts, t)
	}
	sort.Strings(ts)
	return ts
}

// Decode decodes options into v strictly: unknown fields and trailing data
// are errors. Stage factories use it, then validate v.
func Decode(options json.RawMessage, v any) error {
	if len(options) == 0 {
		options = json.RawMessage("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(options))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decoding options: %w", err)
	}
	if dec.More() {
		return fmt.Errorf("decoding options: trailing data")
	}
	return nil
}
