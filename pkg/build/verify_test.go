package build

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestVerify(t *testing.T) {
	srv := newPkgServer(t)
	cache := t.TempDir()
	outDir := t.TempDir()
	lf := testLockfile(t, srv, "verify", "b")
	ctx := context.Background()
	res, err := Build(ctx, lf, "", "", WithCacheDir(cache), WithOutputDir(outDir))
	if err != nil {
		t.Fatal(err)
	}
	built := res.Files[0]
	objects := func() int {
		ents, err := os.ReadDir(filepath.Join(cache, "objects"))
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	storedBefore := objects()

	// A renamed copy, a changed copy, and the output directory itself.
	renamed := filepath.Join(t.TempDir(), "renamed.img")
	data, _ := os.ReadFile(built.Path)
	if err := os.WriteFile(renamed, data, 0o644); err != nil {
		t.Fatal(err)
	}
	changed := filepath.Join(t.TempDir(), "image.raw")
	if err := os.WriteFile(changed, append(data, 'x'), 0o644); err != nil {
		t.Fatal(err)
	}
	emptyDir := t.TempDir()

	tests := []struct {
		name  string
		image string
		opts  []Option
		ok    bool
		path  string // the checked path of the first mismatch or file
	}{
		{"file", built.Path, nil, true, built.Path},
		{"renamed", renamed, nil, true, renamed},
		{"directory", outDir, nil, true, built.Path},
		{"fresh trees", built.Path, []Option{WithFreshTrees()}, true, built.Path},
		{"changed", changed, nil, false, changed},
		{"missing from directory", emptyDir, nil, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			copies := runCount("verify/copy")
			opts := append([]Option{WithCacheDir(cache)}, tc.opts...)
			v, err := Verify(ctx, lf, "", "", tc.image, opts...)
			if err != nil {
				t.Fatal(err)
			}
			if v.Entry != "amd64/test" || len(v.Files) != 1 {
				t.Fatalf("verification: %+v", v)
			}
			c := v.Files[0]
			if v.OK() != tc.ok || c.Match() != tc.ok || c.Path != tc.path || c.Want != built.SHA256 || c.Name != "image.raw" {
				t.Errorf("verification: %+v, want ok=%v path %s want %s", c, tc.ok, tc.path, built.SHA256)
			}
			if tc.ok && v.Mismatch() != nil || !tc.ok && v.Mismatch() != &v.Files[0] {
				t.Errorf("Mismatch() = %v", v.Mismatch())
			}
			if _, err := os.Stat(c.Rebuilt); err == nil {
				t.Errorf("the rebuilt file %s was kept", c.Rebuilt)
			}
			// A cached build runs nothing; fresh trees run every stage and
			// leave the cache's stage trees as they were.
			wantRuns := 0
			if tc.name == "fresh trees" {
				wantRuns = 1
			}
			if n := runCount("verify/copy") - copies; n != wantRuns {
				t.Errorf("the last stage ran %d times, want %d", n, wantRuns)
			}
			if n := objects(); n != storedBefore {
				t.Errorf("%d stage trees in the cache, had %d", n, storedBefore)
			}
		})
	}

	t.Run("kept", func(t *testing.T) {
		keep := filepath.Join(t.TempDir(), "rebuilt")
		v, err := Verify(ctx, lf, "", "", changed, WithCacheDir(cache), WithOutputDir(keep))
		if err != nil {
			t.Fatal(err)
		}
		c := v.Mismatch()
		if c == nil || c.Rebuilt != filepath.Join(keep, "image.raw") {
			t.Fatalf("mismatch %+v", c)
		}
		if got, _ := os.ReadFile(c.Rebuilt); string(got) != string(data) {
			t.Errorf("kept rebuild %q", got)
		}
	})

	for _, tc := range []struct {
		name, image string
		opts        []Option
		err         string
	}{
		{"no image", filepath.Join(emptyDir, "nothing"), nil, "no such file"},
		{"overwrite", built.Path, []Option{WithOutputDir(outDir)}, "would overwrite"},
	} {
		_, err := Verify(ctx, lf, "", "", tc.image, append([]Option{WithCacheDir(cache)}, tc.opts...)...)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.err)
		}
	}
	if _, err := Verify(ctx, lf, "arm64", "", built.Path, WithCacheDir(cache)); err == nil {
		t.Errorf("an entry the lockfile lacks verified")
	}
}
