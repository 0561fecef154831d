package build

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/image-builder-action/image-builder-action/stages"
)

func TestRunnerProtectsReadOnlyTrees(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for namespaces and mounts")
	}
	input := t.TempDir()
	out := t.TempDir()
	if err := os.WriteFile(filepath.Join(input, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	r := NewRunner(WithReadOnlyTrees(input), WithSourceDateEpoch(1700000000), WithRunnerLog(&log))
	// The host root is not protected, so it is used as-is; the input is
	// bound from a protected tree, so read-only even though asked rw.
	err := r.Run(context.Background(), &stages.Cmd{
		Root:  "/",
		Args:  []string{"/bin/sh", "-c", `echo epoch=$SOURCE_DATE_EPOCH; touch /mnt/in/g 2>/dev/null && echo in=rw || echo in=ro; echo ok > /mnt/out/o; echo to-stderr >&2`},
		Binds: []stages.Bind{{Src: input, Dst: "/mnt/in"}, {Src: out, Dst: "/mnt/out"}},
	})
	if err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	for _, want := range []string{"epoch=1700000000\n", "in=ro\n", "to-stderr\n"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q: %q", want, log.String())
		}
	}
	if _, err := os.Stat(filepath.Join(out, "o")); err != nil {
		t.Errorf("rw bind: %v", err)
	}
	// A protected root: writes go to a throw-away layer.
	marker := filepath.Join("/etc", "ibuild-runner-test-"+filepath.Base(out))
	r = NewRunner(WithReadOnlyTrees("/"))
	if err := r.Run(context.Background(), &stages.Cmd{Root: "/", Args: []string{"touch", marker}}); err != nil {
		t.Fatalf("run: %v", err)
	}
	if _, err := os.Stat(marker); err == nil {
		os.Remove(marker)
		t.Errorf("a write in a protected root reached the host: %s", marker)
	}
}
