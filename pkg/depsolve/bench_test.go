package depsolve

import (
	"context"
	"testing"
)

// benchSet is a realistic image's package set.
var benchSet = []string{"openssh-server", "linux-image-amd64", "systemd"}

// BenchmarkSolve resolves benchSet, with the base, over everything the
// host's apt sources hold for amd64 (bookworm, -updates, -security main:
// ~64,000 stanzas). "solve" reuses one Universe; "lock" also parses the
// Packages lists and builds the Universe each time, which is what a lock
// run costs with the lists already downloaded.
func BenchmarkSolve(b *testing.B) {
	if testing.Short() {
		b.Skip("needs the archive; skipped with -short")
	}
	r := sharedAptRoot(b, "amd64")
	req := Request{Arch: "amd64", Install: benchSet}
	ctx := context.Background()

	b.Run("solve", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.u.Solve(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("lock", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			pkgs, err := r.load()
			if err != nil {
				b.Fatal(err)
			}
			sol, err := Solve(ctx, pkgs, req)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(len(sol.Packages)), "pkgs")
		}
	})
}
