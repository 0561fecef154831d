// Package uploadtest starts the storage servers the upload tests run
// against, on 127.0.0.1, and stops them when the test ends: versitygw (S3),
// Azurite (Azure Blob) and fake-gcs-server (GCS). .ci/deps installs them.
package uploadtest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Tool finds an installed tool (on PATH or in ~/go/bin). Without it the
// test is skipped, except in CI, where .ci/deps must have installed it.
func Tool(t testing.TB, name, install string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	home, _ := os.UserHomeDir()
	p := filepath.Join(home, "go", "bin", name)
	if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
		return p
	}
	msg := fmt.Sprintf("%s is not installed: run .ci/deps (%s)", name, install)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// FreePort returns a free TCP port on 127.0.0.1.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Server is a started server process.
type Server struct {
	URL  string
	Port int
	Dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

// Kill stops the server at once (SIGKILL), as a crash would.
func (s *Server) Kill() {
	if s.cmd.Process != nil {
		s.cmd.Process.Kill()
		<-s.done
	}
}

// start runs a server and waits until its port answers HTTP.
func start(t testing.TB, dir string, port int, readyPath string, name string, args ...string) *Server {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	log, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	s := &Server{URL: "http://127.0.0.1:" + strconv.Itoa(port), Port: port, Dir: dir, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); log.Close(); close(s.done) }()
	t.Cleanup(s.Kill)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		select {
		case <-s.done:
			b, _ := os.ReadFile(filepath.Join(dir, "server.log"))
			t.Fatalf("%s exited: %s", filepath.Base(name), b)
		case <-ctx.Done():
			b, _ := os.ReadFile(filepath.Join(dir, "server.log"))
			t.Fatalf("%s did not answer on port %d in 60s: %s", filepath.Base(name), port, b)
		case <-time.After(100 * time.Millisecond):
		}
		if resp, err := http.Get(s.URL + readyPath); err == nil {
			resp.Body.Close()
			return s
		}
	}
}

// S3 credentials of the test server.
const (
	S3Access = "ibuildtestaccess"
	S3Secret = "ibuildtestsecretkey0123456789"
	S3Region = "us-east-1"
)

// Versitygw starts versitygw's S3 gateway with its posix backend in dir
// (t.TempDir() when ""), on port (a free one when 0).
func Versitygw(t testing.TB, dir string, port int) *Server {
	t.Helper()
	bin := Tool(t, "versitygw", "go install github.com/versity/versitygw/cmd/versitygw@v1.8.0")
	if dir == "" {
		dir = t.TempDir()
	}
	if port == 0 {
		port = FreePort(t)
	}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	return start(t, dir, port, "/", bin,
		"--access", S3Access, "--secret", S3Secret, "--region", S3Region,
		"--port", "127.0.0.1:"+strconv.Itoa(port), "posix", data)
}

// Azurite's well-known development account.
const (
	AzureAccount = "devstoreaccount1"
	AzureKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// Azurite starts Azurite's blob service in a temp dir and returns it; its
// URL is the account's blob endpoint (http://127.0.0.1:PORT/devstoreaccount1).
func Azurite(t testing.TB) *Server {
	t.Helper()
	bin := Tool(t, "azurite-blob", "npm install -g azurite@3.35.0")
	dir := t.TempDir()
	port := FreePort(t)
	s := start(t, dir, port, "/", bin, "--silent", "--skipApiVersionCheck", "--loose",
		"--blobHost", "127.0.0.1", "--blobPort", strconv.Itoa(port), "--location", dir)
	s.URL += "/" + AzureAccount
	return s
}

// FakeGCS starts fake-gcs-server (filesystem backend in a temp dir) with
// the buckets given; its URL is the server's root (the JSON API is under
// /storage/v1/).
func FakeGCS(t testing.TB, buckets ...string) *Server {
	t.Helper()
	bin := Tool(t, "fake-gcs-server", "go install github.com/fsouza/fake-gcs-server@v1.56.1")
	dir := t.TempDir()
	data := filepath.Join(dir, "seed")
	for _, b := range buckets {
		if err := os.MkdirAll(filepath.Join(data, b), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	port := FreePort(t)
	host := "127.0.0.1:" + strconv.Itoa(port)
	return start(t, dir, port, "/storage/v1/b", bin, "-scheme", "http", "-host", "127.0.0.1", "-port", strconv.Itoa(port),
		"-backend", "filesystem", "-filesystem-root", filepath.Join(dir, "store"), "-data", data,
		"-public-host", host, "-external-url", "http://"+host, "-log-level", "error")
}
