package build

import (
	"testing"

	"github.com/image-builder-action/image-builder-action/pkg/manifest"
)

// TestPlanStandIn: a build root locked for x86_64 hosts takes the place of
// an aarch64 entry's own on x86_64, and only there; the os tree runs as
// aarch64 everywhere.
func TestPlanStandIn(t *testing.T) {
	write := func(tag string) manifest.Stage {
		return manifest.Stage{Type: "test-write", Options: opts(t, map[string]any{"tag": tag, "path": "/f", "data": tag})}
	}
	lf := &manifest.Lockfile{
		Version: manifest.FormatVersion, SourceDateEpoch: 1700000000,
		Entries: []manifest.Entry{{Distro: "test", Arch: "aarch64", Type: "raw", Pipelines: []manifest.Pipeline{
			{Name: "build", Stages: []manifest.Stage{write("build")}},
			{Name: "build-x86_64", Host: "x86_64", Replaces: "build", Stages: []manifest.Stage{write("build")}},
			{Name: "os", Stages: []manifest.Stage{write("os")}},
			{Name: "image", Build: "build", Stages: []manifest.Stage{
				{Type: "test-copy", Options: opts(t, map[string]any{"tag": "copy", "source": map[string]string{"pipeline": "os", "path": "/f"}, "filename": "disk.raw"})},
			}},
		}}},
	}
	if err := lf.Validate(); err != nil {
		t.Fatal(err)
	}
	type want struct{ build, native, arch, execArch string }
	osKeys := map[string]string{}
	for _, tc := range []struct {
		host  string
		names []string
		want  map[string]want
	}{
		{"x86_64", []string{"build", "build-x86_64", "os", "image"}, map[string]want{
			"build-x86_64": {"", "", "amd64", "x86_64"},
			"os":           {"", "build-x86_64", "arm64", "aarch64"},
			"image":        {"build-x86_64", "", "arm64", "x86_64"},
		}},
		{"aarch64", []string{"build", "os", "image"}, map[string]want{
			"build": {"", "", "arm64", "aarch64"},
			"os":    {"", "", "arm64", "aarch64"},
			"image": {"build", "", "arm64", "aarch64"},
		}},
	} {
		t.Run(tc.host, func(t *testing.T) {
			plans, err := planEntry(lf, &lf.Entries[0], tc.host)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			keys := map[string]string{}
			for _, pp := range plans {
				names = append(names, pp.p.Name)
				keys[pp.p.Name] = pp.key()
				if w, ok := tc.want[pp.p.Name]; ok && (w != want{pp.build, pp.native, pp.arch, pp.execArch}) {
					t.Errorf("%s: build %q native %q arch %s runs %s, want %+v", pp.p.Name, pp.build, pp.native, pp.arch, pp.execArch, w)
				}
			}
			if len(names) != len(tc.names) {
				t.Fatalf("pipelines %v, want %v", names, tc.names)
			}
			for i := range names {
				if names[i] != tc.names[i] {
					t.Fatalf("pipelines %v, want %v", names, tc.names)
				}
			}
			// Same stages, other architecture: another tree.
			if k, ok := keys["build-x86_64"]; ok && k == keys["build"] {
				t.Errorf("the stand-in build root has the key of the aarch64 one")
			}
			osKeys[tc.host] = keys["os"]
		})
	}
	// Native programs make the os tree faster, not different.
	if osKeys["x86_64"] != osKeys["aarch64"] {
		t.Errorf("the os tree's key depends on the host: %v", osKeys)
	}
}
