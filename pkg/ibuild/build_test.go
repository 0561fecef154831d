package ibuild

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/image-builder-action/image-builder-action/pkg/lock"
	"github.com/image-builder-action/image-builder-action/pkg/manifest"
)

func TestSelect(t *testing.T) {
	lf := &manifest.Lockfile{Entries: []manifest.Entry{
		{Arch: "x86_64", Type: "qcow2"}, {Arch: "x86_64", Type: "container"}, {Arch: "aarch64", Type: "qcow2"},
	}}
	for _, tc := range []struct {
		name          string
		arches, types []string
		want          []string
		none          bool
	}{
		{name: "everything", want: []string{"x86_64/qcow2", "x86_64/container", "aarch64/qcow2"}},
		{name: "one arch", arches: []string{"x86_64"}, want: []string{"x86_64/qcow2", "x86_64/container"}},
		{name: "one type", types: []string{"qcow2"}, want: []string{"x86_64/qcow2", "aarch64/qcow2"}},
		{name: "both", arches: []string{"aarch64"}, types: []string{"qcow2", "vmdk"}, want: []string{"aarch64/qcow2"}},
		{name: "none", arches: []string{"riscv64"}, none: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Select(lf, tc.arches, tc.types)
			if tc.none {
				var ne *NoEntryError
				if !errors.As(err, &ne) || len(ne.Have) != 3 || !strings.Contains(err.Error(), "aarch64/qcow2") {
					t.Fatalf("got %v, want a *NoEntryError naming the entries", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range got {
				names = append(names, e.Name())
			}
			if d := cmp.Diff(tc.want, names); d != "" {
				t.Errorf("selected (-want +got):\n%s", d)
			}
		})
	}
}

// Build and Verify refuse before any work what a build must not start
// from; nothing is written.
func TestBuildRefusals(t *testing.T) {
	gold := golden(t)
	edited := bytes.Replace(gold, []byte(`"tool": "ibuild test"`), []byte(`"tool": "ibuild edited"`), 1)
	for _, tc := range []struct {
		name string
		lock []byte
		req  func(lf, out string) BuildRequest
		want string
	}{
		{"missing lockfile", nil, func(lf, out string) BuildRequest { return BuildRequest{Lockfile: lf, OutputDir: out} }, "no such file"},
		{"edited by hand", edited, func(lf, out string) BuildRequest {
			return BuildRequest{Lockfile: lf, OutputDir: out, Types: []string{"qcow2"}, AllowStale: true}
		}, "content_sha256"},
		// The fixture was locked with other image definitions.
		{"stale", gold, func(lf, out string) BuildRequest { return BuildRequest{Lockfile: lf, OutputDir: out} }, "the image definitions of this ibuild differ"},
		{"no such entry", gold, func(lf, out string) BuildRequest {
			return BuildRequest{Lockfile: lf, OutputDir: out, Arches: []string{"aarch64"}}
		}, "no entry of the lockfile matches"},
		{"one of several", gold, func(lf, out string) BuildRequest { return BuildRequest{Lockfile: lf, OutputDir: out, One: true} }, "several entries match"},
		{"one, two arches", gold, func(lf, out string) BuildRequest {
			return BuildRequest{Lockfile: lf, OutputDir: out, One: true, Arches: []string{"x86_64", "aarch64"}}
		}, "several arches or types"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, lf := workspace(t, nil, tc.lock)
			out := filepath.Join(filepath.Dir(lf), "out")
			_, err := Build(context.Background(), tc.req(lf, out))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if _, err := os.Stat(out); err == nil {
				t.Error("a refused build made the output directory")
			}
			vreq := VerifyRequest{Lockfile: lf, Image: filepath.Join(out, "disk.qcow2"), Type: "qcow2", OutputDir: out}
			if _, err := Verify(context.Background(), vreq); err == nil {
				t.Error("verify accepted what build refused")
			}
		})
	}
}

// A stale lockfile let through is a warning in the context's logger and
// in the result, before any work.
func TestAllowStaleWarns(t *testing.T) {
	_, lf := workspace(t, nil, golden(t))
	l, err := ReadLockfile(lf)
	if err != nil {
		t.Fatal(err)
	}
	for _, allow := range []bool{false, true} {
		var buf bytes.Buffer
		ctx := WithLogger(context.Background(), slog.New(slog.NewTextHandler(&buf, nil)))
		se, err := verifyForBuild(ctx, l, allow)
		var want *lock.StaleError
		if !allow {
			if !errors.As(err, &want) || se != nil {
				t.Errorf("without AllowStale: %v, %v; want a *lock.StaleError", se, err)
			}
			continue
		}
		if err != nil || se == nil {
			t.Fatalf("with AllowStale: %v, %v", se, err)
		}
		if !strings.Contains(buf.String(), "level=WARN") || !strings.Contains(buf.String(), "is stale") {
			t.Errorf("log: %q", buf.String())
		}
	}
	// Without a logger, nothing is printed and nothing fails.
	if _, err := verifyForBuild(context.Background(), l, true); err != nil {
		t.Fatal(err)
	}
}
