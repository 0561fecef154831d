package action

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/sethvargo/go-githubactions"

	"github.com/image-builder-action/image-builder-action/pkg/build"
)

// fileEnv is a getenv with GITHUB_OUTPUT and GITHUB_ENV files in a temp
// dir.
func fileEnv(t *testing.T) (func(string) string, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	vars := map[string]string{
		"GITHUB_OUTPUT":       filepath.Join(dir, "set_output"),
		"GITHUB_ENV":          filepath.Join(dir, "set_env"),
		"GITHUB_STEP_SUMMARY": filepath.Join(dir, "step_summary"),
	}
	for _, p := range vars {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return func(k string) string { return vars[k] }, vars
}

func readVars(t *testing.T, path string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := parseFileCommands(data)
	if err != nil {
		t.Fatalf("the runner would refuse %s: %v\n%q", path, err, data)
	}
	return kv
}

// The attack: outside data (a package's description, a version) in an
// output value ends the heredoc and sets LD_PRELOAD for later steps.
var attacks = []struct {
	name  string
	value string
	// vulnerable: go-githubactions v1.3.0 lets this one set LD_PRELOAD.
	vulnerable bool
}{
	// The runner sets LD_PRELOAD, then fails on the library's stray
	// closing line: later steps that run always() get it.
	{"library's fixed delimiter", "1.0\n_GitHubActionsFileCommandDelimeter_\nLD_PRELOAD=/tmp/evil.so", true},
	// A clean file: the library's own closing line ends the attacker's
	// heredoc.
	{"fixed delimiter, then a heredoc", "1.0\n_GitHubActionsFileCommandDelimeter_\nLD_PRELOAD<<_GitHubActionsFileCommandDelimeter_\n/tmp/evil.so", true},
	{"a newline and an assignment", "1.0\nLD_PRELOAD=/tmp/evil.so", false},
	{"a toolkit-style delimiter", "x\nghadelimiter_00000000-0000-0000-0000-000000000000\nLD_PRELOAD=/tmp/evil.so", false},
	{"carriage returns", "x\r_GitHubActionsFileCommandDelimeter_\rLD_PRELOAD=/tmp/evil.so\r\n", false},
}

func TestFileCommandsInjection(t *testing.T) {
	for _, tc := range attacks {
		t.Run(tc.name, func(t *testing.T) {
			// The library, as it is: shows the test sees the attack.
			getenv, vars := fileEnv(t)
			gh := githubactions.New(githubactions.WithGetenv(getenv), githubactions.WithWriter(&bytes.Buffer{}))
			gh.SetEnv("VERSION", tc.value)
			data, err := os.ReadFile(vars["GITHUB_ENV"])
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := parseFileCommands(data); tc.vulnerable != (got["LD_PRELOAD"] == "/tmp/evil.so") {
				t.Errorf("go-githubactions SetEnv: vulnerable=%v, got variables %q", tc.vulnerable, got)
			}

			// FileCommands: exactly one variable, holding the whole value.
			getenv, vars = fileEnv(t)
			f := FileCommands{Getenv: getenv}
			if err := f.SetEnv("VERSION", tc.value); err != nil {
				t.Fatal(err)
			}
			if err := f.SetOutput("version", tc.value); err != nil {
				t.Fatal(err)
			}
			want := tc.value
			for file, name := range map[string]string{"GITHUB_ENV": "VERSION", "GITHUB_OUTPUT": "version"} {
				got := readVars(t, vars[file])
				if d := cmp.Diff(map[string]string{name: want}, got); d != "" {
					t.Errorf("%s (-want +got):\n%s", file, d)
				}
			}
		})
	}
}

// Values round-trip exactly, several variables in one file.
func TestFileCommandsRoundTrip(t *testing.T) {
	getenv, vars := fileEnv(t)
	f := FileCommands{Getenv: getenv}
	want := map[string]string{
		"empty":     "",
		"line":      "one line",
		"multiline": "a\nb\n\nc\n",
		"json":      `{"include":[{"arch":"x86_64","type":"qcow2"}]}`,
		"equals":    "a=b<<c",
	}
	for _, k := range []string{"empty", "line", "multiline", "json", "equals"} {
		if err := f.SetOutput(k, want[k]); err != nil {
			t.Fatal(err)
		}
	}
	if d := cmp.Diff(want, readVars(t, vars["GITHUB_OUTPUT"])); d != "" {
		t.Errorf("outputs (-want +got):\n%s", d)
	}
}

func TestFileCommandsRefusals(t *testing.T) {
	getenv, vars := fileEnv(t)
	f := FileCommands{Getenv: getenv}
	for _, name := range []string{"", "a=b", "a<<EOF", "a\nb", "LD PRELOAD", "1x"} {
		if err := f.SetOutput(name, "v"); err == nil {
			t.Errorf("name %q accepted", name)
		}
	}
	if data, _ := os.ReadFile(vars["GITHUB_OUTPUT"]); len(data) != 0 {
		t.Errorf("refused names wrote %q", data)
	}

	// A value that holds the delimiter is refused (forced here: a real
	// one is random).
	saved := newDelimiter
	newDelimiter = func() (string, error) { return "ghadelimiter_fixed", nil }
	err := f.SetOutput("v", "x\nghadelimiter_fixed\nLD_PRELOAD=/tmp/evil.so")
	newDelimiter = saved
	if err == nil || !strings.Contains(err.Error(), "contains the delimiter") {
		t.Errorf("a value holding the delimiter: %v", err)
	}

	// Outside a step: an error, where go-githubactions panics.
	none := FileCommands{Getenv: func(string) string { return "" }}
	if err := none.SetOutput("v", "x"); !errors.Is(err, ErrNoFile) {
		t.Errorf("without GITHUB_OUTPUT: %v", err)
	}
	if err := none.AddStepSummary("x"); !errors.Is(err, ErrNoFile) {
		t.Errorf("without GITHUB_STEP_SUMMARY: %v", err)
	}
}

// A build's tool output is logged with workflow commands stopped: a
// package's maintainer script printing "::set-output" or "::add-mask"
// sets nothing, while the action's own groups and annotations still work,
// even after a tool's unfinished line.
func TestBuildLogStopsCommands(t *testing.T) {
	var buf bytes.Buffer
	log := &logWriter{w: &buf}
	gh := githubactions.New(githubactions.WithWriter(log))
	bl := &buildLog{log: log}

	bl.event(build.SourceWarning{Source: "dir /srv/pkgs", Ref: "a:amd64=1", Err: errors.New("sha256 mismatch\n::set-output name=x::y")})
	bl.event(build.Download{Ref: "a:amd64=1", Bytes: 1 << 20})
	bl.event(build.StageStart{Pipeline: "os", Index: 0, Type: "debs"})
	io := func(s string) { log.Write([]byte(s)) }
	io("Setting up evil (1.0) ...\n::set-output name=digest::sha256:evil\n::add-mask::Setting\n")
	io("::stop-commands::guess\n::endgroup::\nno newline at the end")
	bl.event(build.StageDone{Pipeline: "os", Index: 0, Type: "debs"})
	bl.event(build.StageStart{Pipeline: "os", Index: 1, Type: "hostname", CacheHit: true})
	bl.event(build.StageDone{Pipeline: "os", Index: 1, Type: "hostname", CacheHit: true})
	bl.event(build.StageStart{Pipeline: "image", Index: 0, Type: "disk"})
	io("half a line ::error::x")
	bl.close() // the stage failed: no StageDone
	gh.Errorf("building x86_64/qcow2: failed")

	want := []string{
		"::warning title=package source::dir /srv/pkgs served a wrong file for a:amd64=1 (sha256 mismatch%0A::set-output name=x::y); the next source was asked",
		"::group::os 0 debs",
		"::endgroup::",
		"::group::os 1 hostname (cached)",
		"::endgroup::",
		"::group::image 0 disk",
		"::endgroup::",
		"::error::building x86_64/qcow2: failed",
	}
	if d := cmp.Diff(want, logCommands(buf.String())); d != "" {
		t.Errorf("commands the runner reads (-want +got):\n%s\nlog:\n%s", d, buf.String())
	}
	for _, s := range []string{"downloaded 1 packages (1.0 MiB)", "os 0 debs: ran in", "os 1 hostname: from the cache", "::set-output name=digest::sha256:evil"} {
		if !strings.Contains(buf.String(), s) {
			t.Errorf("log lacks %q:\n%s", s, buf.String())
		}
	}
	if bl.ran != 1 || bl.hits != 1 {
		t.Errorf("ran %d, cache hits %d", bl.ran, bl.hits)
	}
}
