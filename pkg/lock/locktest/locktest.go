// Package locktest holds helpers for tests that lock against the real
// Debian archive through the host's apt sources.
package locktest

import (
	"net/http"
	"testing"

	"github.com/image-builder-action/image-builder-action/pkg/distro"
	"github.com/image-builder-action/image-builder-action/pkg/lock"
	"github.com/image-builder-action/image-builder-action/pkg/repo"
)

// NeedArchive returns the debian-12 sources mapped from the host's apt
// sources, or skips the test: with -short, when the host has no apt
// sources naming a Debian mirror, or when the mirror does not answer.
func NeedArchive(t testing.TB) []repo.Source {
	t.Helper()
	if testing.Short() {
		t.Skip("network test: skipped with -short")
	}
	host, err := repo.HostSources("/")
	if err != nil || len(host) == 0 {
		t.Skipf("no host apt sources: %v", err)
	}
	defs, err := distro.Load()
	if err != nil {
		t.Fatal(err)
	}
	srcs, err := lock.DistroSources(defs.Distros["debian-12"], host)
	if err != nil {
		t.Skipf("host apt sources name no Debian mirror: %v", err)
	}
	resp, err := http.Get(srcs[0].URI + "/dists/" + srcs[0].Suite + "/InRelease")
	if err != nil {
		t.Skipf("the archive is not reachable: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Skipf("the archive answered %s", resp.Status)
	}
	return srcs
}
