package action

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// compositeScript returns the shell script of action.yml's one step and
// the env names the step sets.
func compositeScript(t *testing.T) (string, []string) {
	t.Helper()
	data, err := os.ReadFile("../../action.yml")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	var script []string
	var envs []string
	inRun, inEnv := false, false
	for _, l := range lines {
		switch {
		case strings.TrimSpace(l) == "env:" && strings.HasPrefix(l, "      env:"):
			inEnv = true
			continue
		case strings.HasPrefix(l, "      run: |"):
			inRun, inEnv = true, false
			continue
		}
		if inEnv {
			if k, _, ok := strings.Cut(strings.TrimSpace(l), ":"); ok && !strings.HasPrefix(k, "#") && strings.HasPrefix(l, "        ") {
				envs = append(envs, k)
			}
		}
		if inRun {
			if l != "" && !strings.HasPrefix(l, "        ") {
				break
			}
			script = append(script, strings.TrimPrefix(l, "        "))
		}
	}
	if len(script) < 10 {
		t.Fatalf("no run script found in action.yml (%d lines)", len(script))
	}
	return strings.Join(script, "\n"), envs
}

// The composite step's docker command line, with a recording docker on
// PATH (no Docker engine runs here; GitHub's runners run the real one):
// privileged for build only, the runner's user otherwise, the workspace
// and RUNNER_TEMP mounted once at their own paths, inputs passed by name.
func TestCompositeDockerRun(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	script, envNames := compositeScript(t)
	for _, want := range []string{"INPUT_COMMAND", "INPUT_OUTPUT_DIR", "INPUT_COSIGN_KEY", "INPUT_GITHUB_TOKEN", "IBUILD_IMAGE"} {
		if !slices.Contains(envNames, want) {
			t.Errorf("the step's env lacks %s: %q", want, envNames)
		}
	}
	for _, tc := range []struct {
		command, image string
		want, not      []string
	}{
		{"build", "", []string{"--privileged", "docker pull ghcr.io/image-builder-action/image-builder-action:v1.0.0"}, []string{"--user"}},
		{"lock", "local:ci", []string{"--user", "--env HOME=/tmp"}, []string{"--privileged", "docker pull"}},
	} {
		t.Run(tc.command, func(t *testing.T) {
			dir := t.TempDir()
			bin := filepath.Join(dir, "bin")
			os.MkdirAll(bin, 0o755)
			record := filepath.Join(dir, "docker.log")
			fake := `#!/bin/bash
if [ "$1 $2" = "image inspect" ]; then [ "$3" = local:ci ]; exit; fi
{ printf 'docker'; printf ' %s' "$@"; printf '\n'; printf 'key=%s\n' "$INPUT_COSIGN_KEY"; } >> "` + record + `"
`
			if err := os.WriteFile(filepath.Join(bin, "docker"), []byte(fake), 0o755); err != nil {
				t.Fatal(err)
			}
			ws := filepath.Join(dir, "work", "repo")
			tmp := filepath.Join(dir, "work", "_temp")
			cmds := filepath.Join(tmp, "_runner_file_commands")
			os.MkdirAll(ws, 0o755)
			os.MkdirAll(cmds, 0o755)
			cmd := exec.Command(bash, "-c", script)
			cmd.Env = []string{
				"PATH=" + bin + ":/usr/bin:/bin",
				"GITHUB_WORKSPACE=" + ws, "RUNNER_TEMP=" + tmp,
				"GITHUB_OUTPUT=" + filepath.Join(cmds, "set_output_1"),
				"GITHUB_STEP_SUMMARY=" + filepath.Join(cmds, "step_summary_1"),
				"GITHUB_ENV=" + filepath.Join(cmds, "set_env_1"),
				"INPUT_COMMAND=" + tc.command, "INPUT_CACHE_DIR=",
				"INPUT_COSIGN_KEY=line one\nline two",
				"IBUILD_IMAGE=" + tc.image,
				"IBUILD_RELEASED_IMAGE=ghcr.io/image-builder-action/image-builder-action:v1.0.0",
			}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("script: %v\n%s", err, out)
			}
			data, err := os.ReadFile(record)
			if err != nil {
				t.Fatal(err)
			}
			log := string(data)
			image := tc.image
			if image == "" {
				image = "ghcr.io/image-builder-action/image-builder-action:v1.0.0"
			}
			want := append([]string{
				"docker run --rm --network host --workdir " + ws + " --volume " + ws + ":" + ws + " --volume " + tmp + ":" + tmp + " ",
				"--env INPUT_COMMAND ", "--env INPUT_COSIGN_KEY ", "--env GITHUB_OUTPUT ", "--env RUNNER_TEMP ",
				" " + image + " action\n",
				"key=line one\nline two\n",
			}, tc.want...)
			for _, w := range want {
				if !strings.Contains(log, w) {
					t.Errorf("docker calls lack %q:\n%s", w, log)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(log, n) {
					t.Errorf("docker calls have %q:\n%s", n, log)
				}
			}
			if strings.Count(log, "--volume") != 2 {
				t.Errorf("want 2 mounts (file commands live in RUNNER_TEMP):\n%s", log)
			}
		})
	}
}
