package lock

import (
	"context"
	"strings"
	"testing"
)

func TestAvailable(t *testing.T) {
	f := &fixtureFetcher{packages: "../../testdata/lock/Packages"}
	opts := []Option{WithDefs(fixtureDefs(t)), WithFetcher(f), WithSources(fixtureSources...)}
	idx, err := Available(context.Background(), "testdist", "x86_64", opts...)
	if err != nil {
		t.Fatal(err)
	}
	if len(idx.Packages) != 27 || len(idx.Releases) != 2 || f.calls != 1 {
		t.Errorf("got %d packages, %d releases, %d fetches; want 27, 2, 1", len(idx.Packages), len(idx.Releases), f.calls)
	}
	for _, c := range []struct{ distro, arch, want string }{
		{"nodist", "x86_64", "nodist"},
		{"testdist", "sparc", "sparc"},
	} {
		if _, err := Available(context.Background(), c.distro, c.arch, opts...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Available(%s, %s): %v, want an error naming %q", c.distro, c.arch, err, c.want)
		}
	}
}
