package lock_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
	"github.com/image-builder-action/image-builder-action/pkg/build"
	"github.com/image-builder-action/image-builder-action/pkg/distro"
	"github.com/image-builder-action/image-builder-action/pkg/lock"
	"github.com/image-builder-action/image-builder-action/pkg/lock/locktest"
	"github.com/image-builder-action/image-builder-action/pkg/repo"
)

// notLocked are the blueprints of testdata/ not meant to lock, with what
// lock must say: a refusal at a line of the blueprint, never a build
// failure later.
var notLocked = map[string]string{
	"blueprints/extra-repo.toml":     "packages.example.com", // a vendor's repository this machine cannot reach
	"blueprints/composer/basic.toml": `unknown distro "rhel-9.4"`,
	"blueprints/composer/basic.json": `unknown distro "rhel-9.4"`,
	"blueprints/composer/files.toml": "customizations.repositories[0].gpgkeys[0]: fetching https://example.com/public-key.asc", // no such host here
	"blueprints/composer/files.json": "customizations.repositories[0].gpgkeys[0]: fetching https://example.com/public-key.asc",
	"blueprints/composer/users.toml": `customizations.kernel.name: kernel package "kernel-debug" is not in the repositories (did you mean "linux-image-amd64"?)`,
	"blueprints/composer/users.json": `customizations.kernel.name: kernel package "kernel-debug" is not in the repositories (did you mean "linux-image-amd64"?)`,
	"blueprints/composer/rhel.toml":  `unknown distro "rhel-9.4"`,
	"blueprints/composer/rhel.json":  `unknown distro "rhel-9.4"`,
}

// TestEveryBlueprintLocksAndPlans locks every blueprint of testdata/ for
// every image type of x86_64 against the Debian archive, and runs each
// entry through the build's planning (every stage decoded and validated,
// every key computed): a lockfile lock writes must build.
func TestEveryBlueprintLocksAndPlans(t *testing.T) {
	srcs := locktest.NeedArchive(t)
	defs, err := distro.Load()
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for name, typ := range defs.Types {
		for _, a := range typ.Arches {
			if a == "x86_64" {
				types = append(types, name)
			}
		}
	}
	var files []string
	for _, g := range []string{"blueprints/*.toml", "blueprints/*.json", "blueprints/composer/*.toml", "blueprints/composer/*.json", "e2e/*.toml"} {
		m, err := filepath.Glob(filepath.Join("../../testdata", g))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 10 {
		t.Fatalf("found only %d blueprints: %v", len(files), files)
	}
	cache := os.Getenv("IBUILD_TEST_CACHE")
	if cache == "" {
		cache = filepath.Join(os.TempDir(), "ibuild-test-cache")
	}
	client := &repo.Client{CacheDir: filepath.Join(cache, "cli", "metadata")}
	seen := map[string]bool{}
	for _, f := range files {
		name, _ := filepath.Rel("../../testdata", f)
		name = filepath.ToSlash(name)
		seen[name] = true
		t.Run(name, func(t *testing.T) {
			bp, err := blueprint.Load(f)
			if err != nil {
				t.Fatal(err)
			}
			opts := []lock.Option{lock.WithFetcher(client), lock.WithArches("x86_64"), lock.WithTypes(types...)}
			if bp.Distro == "" || bp.Distro == "debian-12" {
				opts = append(opts, lock.WithDistro("debian-12"), lock.WithSources(srcs...))
			}
			lf, err := lock.Lock(context.Background(), bp, f, opts...)
			if want, ok := notLocked[name]; ok {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("lock: %v, want an error containing %q", err, want)
				}
				return
			}
			if err != nil {
				t.Fatalf("lock: %v", err)
			}
			if len(lf.Entries) != len(types) {
				t.Errorf("%d entries for %d types", len(lf.Entries), len(types))
			}
			for _, e := range lf.Entries {
				if err := build.Plan(lf, e.Arch, e.Type); err != nil {
					t.Errorf("lock accepted what the build refuses: %v", err)
				}
			}
		})
	}
	for name := range notLocked {
		if !seen[name] {
			t.Errorf("%s is listed as not meant to lock but is not in testdata/", name)
		}
	}
}
