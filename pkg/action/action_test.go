package action

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/image-builder-action/image-builder-action/pkg/lock"
	"github.com/image-builder-action/image-builder-action/pkg/lock/locktest"
	"github.com/image-builder-action/image-builder-action/pkg/manifest"
)

// ghEnv is a simulated GitHub Actions step: a workspace, RUNNER_TEMP, the
// environment files the runner creates, INPUT_* variables, and the log.
type ghEnv struct {
	t         *testing.T
	workspace string
	vars      map[string]string
	stdout    bytes.Buffer
}

func newGHEnv(t *testing.T) *ghEnv {
	t.Helper()
	root := t.TempDir()
	e := &ghEnv{t: t, workspace: filepath.Join(root, "work", "repo"), vars: map[string]string{}}
	cmds := filepath.Join(root, "_temp", "_runner_file_commands")
	for _, d := range []string{e.workspace, cmds} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e.vars["GITHUB_ACTIONS"] = "true"
	e.vars["GITHUB_WORKSPACE"] = e.workspace
	e.vars["RUNNER_TEMP"] = filepath.Join(root, "_temp")
	for v, name := range map[string]string{"GITHUB_OUTPUT": "set_output_1", "GITHUB_ENV": "set_env_1", "GITHUB_STEP_SUMMARY": "step_summary_1"} {
		p := filepath.Join(cmds, name)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		e.vars[v] = p
	}
	return e
}

// run runs the action with these inputs (named as in action.yml) and
// fresh output and summary files.
func (e *ghEnv) run(inputs map[string]string, opts ...Option) error {
	e.t.Helper()
	for k := range e.vars {
		if strings.HasPrefix(k, "INPUT_") {
			delete(e.vars, k)
		}
	}
	for k, v := range inputs {
		// As the runner names them for Docker and JavaScript actions.
		e.vars["INPUT_"+strings.ToUpper(k)] = v
	}
	for _, v := range []string{"GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_ENV"} {
		if err := os.WriteFile(e.vars[v], nil, 0o644); err != nil {
			e.t.Fatal(err)
		}
	}
	e.stdout.Reset()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	return Run(ctx, func(k string) string { return e.vars[k] }, &e.stdout, opts...)
}

func (e *ghEnv) outputs() map[string]string {
	e.t.Helper()
	data, err := os.ReadFile(e.vars["GITHUB_OUTPUT"])
	if err != nil {
		e.t.Fatal(err)
	}
	kv, err := parseFileCommands(data)
	if err != nil {
		e.t.Fatalf("the runner would refuse GITHUB_OUTPUT: %v\n%s", err, data)
	}
	return kv
}

func (e *ghEnv) summary() string {
	e.t.Helper()
	data, err := os.ReadFile(e.vars["GITHUB_STEP_SUMMARY"])
	if err != nil {
		e.t.Fatal(err)
	}
	return string(data)
}

// commands returns the workflow commands the runner would act on in the
// log, honouring ::stop-commands::.
func (e *ghEnv) commands() []string {
	return logCommands(e.stdout.String())
}

// logCommands reads a step's log as the runner does: a line starting with
// "::" is a command unless commands are stopped; "::TOKEN::" resumes them.
func logCommands(log string) []string {
	var out []string
	stopped := ""
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "::") {
			continue
		}
		if stopped != "" {
			if line == "::"+stopped+"::" {
				stopped = ""
			}
			continue
		}
		if tok, ok := strings.CutPrefix(line, "::stop-commands::"); ok {
			stopped = tok
			continue
		}
		out = append(out, line)
	}
	return out
}

// parseFileCommands reads GITHUB_OUTPUT or GITHUB_ENV as the runner does
// on Linux (actions/runner FileCommandManager): lines end at "\n" only;
// "name=value", or "name<<DELIMITER" up to a line that is exactly
// DELIMITER. On a bad line it returns what was set before it, as the
// runner has set those by then.
func parseFileCommands(data []byte) (map[string]string, error) {
	out := map[string]string{}
	lines := strings.Split(string(data), "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if line == "" {
			continue
		}
		eq, hd := strings.Index(line, "="), strings.Index(line, "<<")
		switch {
		case eq >= 0 && (hd < 0 || eq < hd):
			out[line[:eq]] = line[eq+1:]
		case hd >= 0 && (eq < 0 || hd < eq):
			name, delim := line[:hd], line[hd+2:]
			var val []string
			found := false
			for i++; i < len(lines); i++ {
				if lines[i] == delim {
					found = true
					break
				}
				val = append(val, lines[i])
			}
			if !found {
				return out, fmt.Errorf("%s: delimiter %q not found", name, delim)
			}
			out[name] = strings.Join(val, "\n")
		default:
			// The runner has set the variables before this line already.
			return out, fmt.Errorf("invalid line %q", line)
		}
	}
	return out, nil
}

// fixtureOptions lock against testdata/lock offline and fast, as
// pkg/lock's tests do.
func fixtureOptions(t *testing.T) Option {
	t.Helper()
	return WithLockOptions(locktest.FixtureOptions(t, "../../testdata/lock")...)
}

// writeBlueprint puts the fixture blueprint, edited, at
// WORKSPACE/images/fixture.toml.
func (e *ghEnv) writeBlueprint(edit func(string) string) string {
	e.t.Helper()
	src, err := os.ReadFile("../../testdata/lock/blueprint.toml")
	if err != nil {
		e.t.Fatal(err)
	}
	p := filepath.Join(e.workspace, "images", "fixture.toml")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		e.t.Fatal(err)
	}
	body := string(src)
	if edit != nil {
		body = edit(body)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// staleEdit renames the host and drops a package.
func staleEdit(s string) string {
	s = strings.Replace(s, `hostname = "fixture"`, `hostname = "renamed"`, 1)
	return strings.Replace(s, "[[packages]]\nname = \"curl\"\nversion = \"7.88.*\"\n", "", 1)
}

var lockInputs = map[string]string{"command": "lock", "blueprint": "images/fixture.toml", "arches": "x86_64", "types": "qcow2, container"}

func TestLock(t *testing.T) {
	e := newGHEnv(t)
	e.writeBlueprint(nil)
	opt := fixtureOptions(t)

	// First lock: a new lockfile.
	if err := e.run(lockInputs, opt); err != nil {
		t.Fatalf("lock: %v\n%s", err, e.stdout.String())
	}
	out := e.outputs()
	if out["lockfile"] != "images/fixture.lock.json" || out["changed"] != "true" {
		t.Errorf("outputs: %v", out)
	}
	wantMatrix := `{"include":[{"distro":"testdist","arch":"x86_64","type":"container"},{"distro":"testdist","arch":"x86_64","type":"qcow2"}]}`
	if out["matrix"] != wantMatrix {
		t.Errorf("matrix output:\n got %s\nwant %s", out["matrix"], wantMatrix)
	}
	lockPath := filepath.Join(e.workspace, "images", "fixture.lock.json")
	lf, err := manifest.Load(lockPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(lf.Entries) != 2 || lf.Blueprint.Path != "fixture.toml" {
		t.Errorf("lockfile: %d entries, blueprint %q", len(lf.Entries), lf.Blueprint.Path)
	}
	if s := e.summary(); !strings.Contains(s, "New lockfile `images/fixture.lock.json`: 2 entries") {
		t.Errorf("summary:\n%s", s)
	}
	cmds := e.commands()
	if !slices.Contains(cmds, "::group::lock images/fixture.toml") || !slices.Contains(cmds, "::endgroup::") {
		t.Errorf("log groups: %q", cmds)
	}

	// Locking again changes nothing.
	before, _ := os.ReadFile(lockPath)
	if err := e.run(lockInputs, opt); err != nil {
		t.Fatal(err)
	}
	if out := e.outputs(); out["changed"] != "false" {
		t.Errorf("second lock: changed=%q", out["changed"])
	}
	if s := e.summary(); !strings.Contains(s, "is up to date") {
		t.Errorf("summary:\n%s", s)
	}
	after, _ := os.ReadFile(lockPath)
	if !bytes.Equal(before, after) {
		t.Error("an unchanged lock rewrote the lockfile")
	}

	// An edited blueprint: the lockfile is rewritten and the summary and
	// the diff output show the change as tables.
	e.writeBlueprint(staleEdit)
	if err := e.run(lockInputs, opt); err != nil {
		t.Fatal(err)
	}
	out = e.outputs()
	if out["changed"] != "true" {
		t.Errorf("changed=%q after an edit", out["changed"])
	}
	s := e.summary()
	for _, want := range []string{
		"`images/fixture.lock.json` changed:",
		"| Package | Arch | Change | Old | New | Pipelines |",
		"| curl | amd64 | removed | 7.88.1-10+deb12u14 | – | os |",
		"- `os/hostname`: `hostname` ",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
		if !strings.Contains(out["diff"], want) {
			t.Errorf("diff output lacks %q", want)
		}
	}
	if !strings.Contains(e.stdout.String(), "- curl:amd64") {
		t.Errorf("log lacks the text diff:\n%s", e.stdout.String())
	}
}

func TestCheck(t *testing.T) {
	e := newGHEnv(t)
	e.writeBlueprint(nil)
	opt := fixtureOptions(t)
	if err := e.run(lockInputs, opt); err != nil {
		t.Fatal(err)
	}
	checkInputs := map[string]string{"command": "check", "blueprint": "images/fixture.toml"}

	// Fresh: success, changed=false.
	if err := e.run(checkInputs, opt); err != nil {
		t.Fatalf("check of a fresh lockfile: %v\n%s", err, e.stdout.String())
	}
	if out := e.outputs(); out["changed"] != "false" || out["lockfile"] != "images/fixture.lock.json" {
		t.Errorf("outputs: %v", out)
	}
	if s := e.summary(); !strings.Contains(s, "`images/fixture.lock.json` is up to date with `images/fixture.toml`") {
		t.Errorf("summary:\n%s", s)
	}

	// Stale: an error (the process exits non-zero), an annotation on the
	// lockfile, a summary and outputs saying what changed.
	lockPath := filepath.Join(e.workspace, "images", "fixture.lock.json")
	before, _ := os.ReadFile(lockPath)
	e.writeBlueprint(staleEdit)
	err := e.run(checkInputs, opt)
	var se *lock.StaleError
	if !errors.As(err, &se) {
		t.Fatalf("check of a stale lockfile: %v, want a *lock.StaleError", err)
	}
	var ann []string
	for _, c := range e.commands() {
		if strings.HasPrefix(c, "::error") {
			ann = append(ann, c)
		}
	}
	if len(ann) != 1 {
		t.Fatalf("%d error annotations, want 1: %q", len(ann), ann)
	}
	for _, want := range []string{
		"::error file=images/fixture.lock.json,line=1,title=stale lockfile::images/fixture.lock.json is stale: the blueprint images/fixture.toml changed",
		"- curl:amd64",
		`os/hostname: hostname "fixture" → "renamed"`,
	} {
		if !strings.Contains(ann[0], want) {
			t.Errorf("annotation lacks %q:\n%s", want, ann[0])
		}
	}
	s := e.summary()
	for _, want := range []string{
		"## ibuild check: `images/fixture.lock.json` is stale",
		"- the blueprint images/fixture.toml changed",
		"| curl | amd64 | removed | 7.88.1-10+deb12u14 | – | os |",
		"→ `\"renamed\"`",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
	out := e.outputs()
	if out["changed"] != "true" || !strings.Contains(out["diff"], "| curl | amd64 | removed | 7.88.1-10+deb12u14 | – | os |") {
		t.Errorf("outputs: changed=%q diff=%q", out["changed"], out["diff"])
	}
	after, _ := os.ReadFile(lockPath)
	if !bytes.Equal(before, after) {
		t.Error("check changed the lockfile")
	}
}

// A lockfile edited by hand fails the check even when the blueprint still
// matches it.
func TestCheckEditedLockfile(t *testing.T) {
	e := newGHEnv(t)
	e.writeBlueprint(nil)
	opt := fixtureOptions(t)
	if err := e.run(lockInputs, opt); err != nil {
		t.Fatal(err)
	}
	lockPath := filepath.Join(e.workspace, "images", "fixture.lock.json")
	data, err := os.ReadFile(lockPath)
	if err != nil {
		t.Fatal(err)
	}
	edited := bytes.Replace(data, []byte(`"hostname": "fixture"`), []byte(`"hostname": "evil"`), 1)
	if bytes.Equal(edited, data) {
		t.Fatal("the fixture lockfile has no hostname stage to edit")
	}
	if err := os.WriteFile(lockPath, edited, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := e.run(map[string]string{"command": "check", "blueprint": "images/fixture.toml"}, opt); err == nil {
		t.Fatal("check of an edited lockfile succeeded")
	}
	want := "::error file=images/fixture.lock.json,line=1,title=lockfile changed by hand::images/fixture.lock.json: its content does not match its content_sha256"
	if cmds := e.commands(); len(cmds) != 1 || !strings.HasPrefix(cmds[0], want) {
		t.Errorf("commands %q, want one starting %q", cmds, want)
	}
	if out := e.outputs(); out["changed"] != "true" {
		t.Errorf("outputs: %v", out)
	}
}

// A blueprint edited into one the distro refuses: the check says the
// lockfile is stale and points at the refused line.
func TestCheckRefusedBlueprint(t *testing.T) {
	e := newGHEnv(t)
	e.writeBlueprint(nil)
	opt := fixtureOptions(t)
	if err := e.run(lockInputs, opt); err != nil {
		t.Fatal(err)
	}
	e.writeBlueprint(func(s string) string { return s + "\n[[groups]]\nname = \"rpm-development-tools\"\n" })
	if err := e.run(map[string]string{"command": "check", "blueprint": "images/fixture.toml"}, opt); err == nil {
		t.Fatal("check succeeded")
	}
	var errs []string
	for _, c := range e.commands() {
		if strings.HasPrefix(c, "::error") {
			errs = append(errs, c)
		}
	}
	if len(errs) != 2 ||
		!strings.HasPrefix(errs[0], "::error file=images/fixture.lock.json,line=1,title=stale lockfile::") ||
		!strings.HasPrefix(errs[1], "::error col=1,file=images/fixture.toml,line=33,title=blueprint::groups[0].name: testdist cannot honour this") {
		t.Errorf("annotations: %q", errs)
	}
	if s := e.summary(); !strings.Contains(s, "Locking again to show the changes failed") {
		t.Errorf("summary:\n%s", s)
	}
}

func TestCheckWithoutLockfile(t *testing.T) {
	e := newGHEnv(t)
	e.writeBlueprint(nil)
	err := e.run(map[string]string{"command": "check", "blueprint": "images/fixture.toml"}, fixtureOptions(t))
	if err == nil {
		t.Fatal("check without a lockfile succeeded")
	}
	want := "::error file=images/fixture.toml,line=1,title=no lockfile::images/fixture.lock.json does not exist"
	if cmds := e.commands(); len(cmds) != 1 || !strings.HasPrefix(cmds[0], want) {
		t.Errorf("commands %q, want one starting %q", cmds, want)
	}
}

// Blueprint problems become annotations at their file, line and column,
// relative to the workspace, from decoding (lock) and from the distro's
// refusals (which come out of the lock call).
func TestBlueprintAnnotations(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(string) string
		want []string
	}{
		{"unknown field", func(s string) string {
			return strings.Replace(s, `hostname = "fixture"`, `hostnme = "fixture"`, 1)
		}, []string{`::error col=1,file=images/fixture.toml,line=12,title=blueprint::customizations: unknown field "hostnme"`}},
		{"two problems", func(s string) string {
			s = strings.Replace(s, `hostname = "fixture"`, `hostnme = "fixture"`, 1)
			return strings.Replace(s, `name = "curl"`, `nam = "curl"`, 1)
		}, []string{
			`::error col=1,file=images/fixture.toml,line=8,title=blueprint::packages[1]: unknown field "nam"`,
			`::error col=1,file=images/fixture.toml,line=12,title=blueprint::customizations: unknown field "hostnme"`,
		}},
		{"refused by the distro", func(s string) string {
			return s + "\n[[groups]]\nname = \"rpm-development-tools\"\n"
		}, []string{`::error col=1,file=images/fixture.toml,line=33,title=blueprint::groups[0].name: testdist cannot honour this`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newGHEnv(t)
			e.writeBlueprint(tc.edit)
			if err := e.run(lockInputs, fixtureOptions(t)); err == nil {
				t.Fatal("lock succeeded")
			}
			var got []string
			for _, c := range e.commands() {
				if strings.HasPrefix(c, "::error") {
					// The distro's message goes on after the field name.
					for _, w := range tc.want {
						if strings.HasPrefix(c, w) {
							c = w
						}
					}
					got = append(got, c)
				}
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("annotations (-want +got):\n%s\nlog:\n%s", d, e.stdout.String())
			}
		})
	}
}

func TestMatrix(t *testing.T) {
	e := newGHEnv(t)
	golden, err := os.ReadFile("../../testdata/lock/blueprint.lock.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.workspace, "bp.lock.json"), golden, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := e.run(map[string]string{"command": "matrix", "lockfile": "bp.lock.json"}); err != nil {
		t.Fatal(err)
	}
	out := e.outputs()
	var m struct {
		Include []map[string]string `json:"include"`
	}
	if err := json.Unmarshal([]byte(out["matrix"]), &m); err != nil {
		t.Fatalf("matrix output %q: %v", out["matrix"], err)
	}
	want := []map[string]string{
		{"distro": "testdist", "arch": "x86_64", "type": "container"},
		{"distro": "testdist", "arch": "x86_64", "type": "qcow2"},
	}
	if d := cmp.Diff(want, m.Include); d != "" {
		t.Errorf("matrix (-want +got):\n%s", d)
	}
	if strings.Contains(out["matrix"], "\n") {
		t.Error("the matrix output is not one line")
	}
	if s := e.summary(); !strings.Contains(s, "| testdist | x86_64 | qcow2 |") {
		t.Errorf("summary:\n%s", s)
	}

	// A missing lockfile is an error annotation naming it.
	if err := e.run(map[string]string{"command": "matrix", "blueprint": "nope.toml"}); err == nil {
		t.Fatal("matrix of a missing lockfile succeeded")
	}
	if cmds := e.commands(); len(cmds) != 1 || !strings.Contains(cmds[0], "nope.lock.json") {
		t.Errorf("commands: %q", cmds)
	}
}

// The build command refuses what the library refuses before any work
// (the fixture was locked with other image definitions), and selects
// entries by the arches and types inputs.
func TestBuildRefusals(t *testing.T) {
	golden, err := os.ReadFile("../../testdata/lock/blueprint.lock.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		inputs map[string]string
		want   string
	}{
		{"image definitions differ", map[string]string{"arches": "x86_64", "types": "qcow2"}, "the image definitions of this ibuild differ"},
		{"no such arch", map[string]string{"arches": "aarch64"}, `input arches "aarch64", types "": no such entry in the lockfile (it has x86_64/container, x86_64/qcow2)`},
		{"no such type", map[string]string{"arches": "x86_64", "types": "vmdk"}, `no such entry in the lockfile`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newGHEnv(t)
			if err := os.WriteFile(filepath.Join(e.workspace, "bp.lock.json"), golden, 0o644); err != nil {
				t.Fatal(err)
			}
			in := map[string]string{"command": "build", "lockfile": "bp.lock.json", "output-dir": "out"}
			for k, v := range tc.inputs {
				in[k] = v
			}
			err := e.run(in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			want := "::error title=ibuild build::"
			if tc.name == "image definitions differ" {
				want = "::error file=bp.lock.json,line=1,title=stale lockfile::"
			}
			cmds := e.commands()
			if len(cmds) != 1 || !strings.HasPrefix(cmds[0], want) {
				t.Errorf("commands %q, want one starting %q", cmds, want)
			}
			if _, err := os.Stat(filepath.Join(e.workspace, "out")); err == nil {
				t.Error("a refused build made the output directory")
			}
		})
	}
}

func TestReadInputs(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want *Inputs
		err  string
	}{
		{"defaults", map[string]string{"INPUT_COMMAND": "lock"}, &Inputs{Command: "lock", OutputDir: "out"}, ""},
		{"hyphenated names, lists, booleans", map[string]string{
			"INPUT_COMMAND": " publish ", "INPUT_OUTPUT-DIR": "images", "INPUT_CACHE-DIR": "/c",
			"INPUT_ARCHES": "x86_64, aarch64", "INPUT_TYPES": "qcow2\nraw\n", "INPUT_TAGS": "latest,,v1",
			"INPUT_SIGN": "true", "INPUT_COSIGN-KEY": "  -----BEGIN KEY-----\nabc\n", "INPUT_REF": "ghcr.io/o/r",
		}, &Inputs{Command: "publish", OutputDir: "images", CacheDir: "/c", Arches: []string{"x86_64", "aarch64"},
			Types: []string{"qcow2", "raw"}, Tags: []string{"latest", "v1"}, Sign: true,
			CosignKey: "-----BEGIN KEY-----\nabc", Ref: "ghcr.io/o/r"}, ""},
		{"underscored names (composite)", map[string]string{"INPUT_COMMAND": "build", "INPUT_OUTPUT_DIR": "o", "INPUT_GITHUB_TOKEN": "t", "INPUT_COSIGN_PASSWORD": "p"},
			&Inputs{Command: "build", OutputDir: "o", GitHubToken: "t", CosignPassword: "p"}, ""},
		{"no command", map[string]string{}, nil, "input command: required"},
		{"unknown command", map[string]string{"INPUT_COMMAND": "deploy"}, nil, `input command: "deploy" is not one of lock, check, matrix, build, publish`},
		{"bad boolean", map[string]string{"INPUT_COMMAND": "publish", "INPUT_SIGN": "yes"}, nil, `input sign: "yes" is not true or false`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadInputs(func(k string) string { return tc.env[k] })
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, want an error containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("inputs (-want +got):\n%s", d)
			}
		})
	}
}

// Secrets are masked before anything else is written, a PEM key line by
// line; a key given by path is not masked.
func TestMaskSecrets(t *testing.T) {
	e := newGHEnv(t)
	key := "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----"
	e.run(map[string]string{"command": "deploy", "cosign-password": "hunter2hunter2", "github-token": "ghs_abc123", "cosign-key": key})
	cmds := e.commands()
	want := []string{
		"::add-mask::hunter2hunter2",
		"::add-mask::ghs_abc123",
		"::add-mask::" + escapeData(key),
		"::add-mask::-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----",
		"::add-mask::c2VjcmV0LWtleS1tYXRlcmlhbA==",
		"::add-mask::-----END ENCRYPTED SIGSTORE PRIVATE KEY-----",
	}
	if len(cmds) < len(want) {
		t.Fatalf("commands: %q", cmds)
	}
	if d := cmp.Diff(want, cmds[:len(want)]); d != "" {
		t.Errorf("masks (-want +got):\n%s", d)
	}
	if !strings.HasPrefix(cmds[len(want)], "::error title=ibuild action::input command") {
		t.Errorf("after the masks: %q", cmds[len(want):])
	}

	e.run(map[string]string{"command": "deploy", "cosign-key": "cosign.key"})
	for _, c := range e.commands() {
		if strings.HasPrefix(c, "::add-mask::") {
			t.Errorf("masked a key path: %s", c)
		}
	}
}

// Files the privileged build writes as root go to the workspace's owner.
func TestAdoptOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	e := newGHEnv(t)
	e.writeBlueprint(nil)
	if err := os.Chown(e.workspace, 4242, 4243); err != nil {
		t.Fatal(err)
	}
	if err := e.run(lockInputs, fixtureOptions(t)); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(e.workspace, "images", "fixture.lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	if uid, gid, _ := owner(fi); uid != 4242 || gid != 4243 {
		t.Errorf("lockfile owned by %d:%d, want 4242:4243", uid, gid)
	}
}

var sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// needArchive skips unless the host's apt sources name a Debian mirror
// that answers.
func needArchive(t *testing.T) { locktest.NeedArchive(t) }

// lock, check, matrix and build of a real blueprint against the real
// archive, as the action runs them in a job: the image is built, the
// outputs name it by its sha256, and each stage is a log group.
func TestLockAndBuildReal(t *testing.T) {
	needArchive(t)
	if os.Geteuid() != 0 {
		t.Skip("building needs root")
	}
	cache := os.Getenv("IBUILD_TEST_CACHE")
	if cache == "" {
		cache = filepath.Join(os.TempDir(), "ibuild-test-cache")
	}
	cache = filepath.Join(cache, "action")
	e := newGHEnv(t)
	src, err := os.ReadFile("../../testdata/blueprints/minimal.toml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.workspace, "minimal.toml"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	steps := []map[string]string{
		{"command": "lock", "blueprint": "minimal.toml", "types": "qcow2", "arches": "x86_64", "cache-dir": cache},
		{"command": "check", "blueprint": "minimal.toml", "cache-dir": cache},
		{"command": "matrix", "lockfile": "minimal.lock.json"},
		{"command": "build", "lockfile": "minimal.lock.json", "output-dir": "out", "cache-dir": cache},
	}
	for _, in := range steps {
		if err := e.run(in); err != nil {
			t.Fatalf("%s: %v\n%s", in["command"], err, e.stdout.String())
		}
	}
	out := e.outputs()
	var images []Image
	if err := json.Unmarshal([]byte(out["images"]), &images); err != nil || len(images) != 1 {
		t.Fatalf("images output %q: %v", out["images"], err)
	}
	im := images[0]
	if im.Arch != "x86_64" || im.Type != "qcow2" || im.Path != "out/disk.qcow2" {
		t.Errorf("image %+v", im)
	}
	data, err := os.ReadFile(filepath.Join(e.workspace, im.Path))
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprintf("%x", sha256.Sum256(data)); got != im.SHA256 || int64(len(data)) != im.Size {
		t.Errorf("file: sha256 %s, %d bytes; output: %s, %d", got, len(data), im.SHA256, im.Size)
	}
	if !bytes.HasPrefix(data, []byte("QFI\xfb")) {
		t.Error("the image is not a qcow2")
	}
	if s := e.summary(); !strings.Contains(s, "| x86_64 | qcow2 | `out/disk.qcow2` |") {
		t.Errorf("summary:\n%s", s)
	}
	// One group per stage that ran or came from the cache (with a warm
	// cache, only the last stage is looked at), each closed.
	groups, ends := 0, 0
	for _, c := range e.commands() {
		switch {
		case strings.HasPrefix(c, "::group::"):
			groups++
		case c == "::endgroup::":
			ends++
		}
	}
	if groups == 0 || groups != ends {
		t.Errorf("%d log groups, %d ends:\n%q", groups, ends, e.commands())
	}
}

func TestLockWarnsPlaintextPassword(t *testing.T) {
	e := newGHEnv(t)
	e.writeBlueprint(func(s string) string {
		return s + "\n[[customizations.user]]\nname = \"john.doe\"\npassword = \"hunter2\"\n"
	})
	if err := e.run(lockInputs, fixtureOptions(t)); err != nil {
		t.Fatalf("lock: %v\n%s", err, e.stdout.String())
	}
	found := false
	for _, c := range e.commands() {
		if strings.HasPrefix(c, "::warning title=blueprint::") && strings.Contains(c, "customizations.user[") &&
			strings.Contains(c, "a plaintext password") && !strings.Contains(c, "hunter2") {
			found = true
		}
	}
	if !found {
		t.Errorf("no warning annotation for the plaintext password:\n%s", e.stdout.String())
	}
}
