package action

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// actionlintPath finds actionlint (.ci/deps installs it into ~/go/bin).
func actionlintPath(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("actionlint"); err == nil {
		return p
	}
	for _, dir := range []string{os.Getenv("GOBIN"), filepath.Join(os.Getenv("HOME"), "go", "bin")} {
		if dir == "" {
			continue
		}
		if p := filepath.Join(dir, "actionlint"); isExecutable(p) {
			return p
		}
	}
	t.Skip("actionlint not installed (go install github.com/rhysd/actionlint/cmd/actionlint@v1.7.12)")
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

func runActionlint(t *testing.T, bin, dir string, files []string) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"-no-color"}, files...)...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("actionlint: %v\n%s", err, out)
	}
}

// This repository's workflows, with `uses: ./` checked against action.yml.
func TestActionlintWorkflows(t *testing.T) {
	bin := actionlintPath(t)
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(root, ".github", "workflows", "*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no workflows in .github/workflows")
	}
	runActionlint(t, bin, root, files)
}

var yamlBlock = regexp.MustCompile("(?s)```yaml\n(.*?)```")

// The README's copy-paste workflows. Each goes into a scratch repository
// beside a copy of action.yml, with the action's `uses:` pointed at it, so
// actionlint checks their inputs and outputs against the action too.
func TestActionlintREADME(t *testing.T) {
	bin := actionlintPath(t)
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	actionYML, err := os.ReadFile("../../action.yml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	wf := filepath.Join(dir, ".github", "workflows")
	for _, d := range []string{wf, filepath.Join(dir, ".git")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "action.yml"), actionYML, 0o644); err != nil {
		t.Fatal(err)
	}
	uses := regexp.MustCompile(`image-builder-action/image-builder-action@[^\s]+`)
	var files []string
	for i, m := range yamlBlock.FindAllStringSubmatch(string(readme), -1) {
		if !strings.Contains(m[1], "\njobs:") {
			continue // a snippet, not a workflow
		}
		if !uses.MatchString(m[1]) {
			t.Errorf("README workflow %d does not use the action", i)
		}
		p := filepath.Join(wf, "readme-"+string(rune('a'+len(files)))+".yml")
		if err := os.WriteFile(p, []byte(uses.ReplaceAllString(m[1], "./")), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	if len(files) != 4 {
		t.Fatalf("%d workflows in the README, want 4", len(files))
	}
	runActionlint(t, bin, dir, files)
}
