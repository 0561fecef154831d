// Package publishtest holds test helpers for publishing: the real tools
// (oras, cosign, docker-registry) found or skipped, and Debian's
// docker-registry started on a free loopback port.
package publishtest

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// RequireTools finds each tool on PATH or in ~/go/bin, skipping the test
// with the install hint when one is missing.
func RequireTools(t testing.TB, tools ...string) map[string]string {
	t.Helper()
	home, _ := os.UserHomeDir()
	out := map[string]string{}
	for _, tool := range tools {
		p, err := exec.LookPath(tool)
		if err != nil {
			if c := filepath.Join(home, "go", "bin", tool); isExec(c) {
				p = c
			} else {
				t.Skipf("%s is not installed: run .ci/deps (apt-get install docker-registry; go install oras.land/oras/cmd/oras@v1.3.6 github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5)", tool)
			}
		}
		out[tool] = p
	}
	return out
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// DockerRegistry starts Debian's docker-registry (distribution 2.8) on a
// free 127.0.0.1 port with storage in a temp dir and returns host:port. It
// is killed by PID when the test ends.
func DockerRegistry(t testing.TB) string {
	t.Helper()
	bin := RequireTools(t, "docker-registry")["docker-registry"]
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "storage"), addr)), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting docker-registry: %v", err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		if p, err := os.FindProcess(pid); err == nil {
			p.Kill()
		}
		cmd.Wait()
		logf.Close()
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "registry.log"))
			t.Fatalf("docker-registry on %s did not come up: %v\n%s", addr, err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
