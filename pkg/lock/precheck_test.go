package lock

import (
	"context"
	"strings"
	"testing"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
)

func TestPrecheck(t *testing.T) {
	for _, tc := range []struct {
		name, toml, want string
	}{
		{"accepted", "name = \"a\"\ndistro = \"testdist\"\n[customizations]\nhostname = \"h\"\n", ""},
		{"no distro", "name = \"a\"\n", ""},
		{"unknown distro", "name = \"a\"\ndistro = \"nodist-1\"\n", "blueprint.toml:2:1: distro: "},
		{"refused", "name = \"a\"\ndistro = \"testdist\"\n\n[[enabled_modules]]\nname = \"nodejs\"\n", "blueprint.toml:4:"},
		// Files named by URI are not read: a missing one is lock's to find.
		{"uri not read", "name = \"a\"\ndistro = \"testdist\"\n[[customizations.files]]\npath = \"/etc/x\"\nuri = \"/nonexistent/file\"\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bp, err := blueprint.Parse("blueprint.toml", []byte(tc.toml))
			if err != nil {
				t.Fatal(err)
			}
			err = Precheck(context.Background(), bp, WithDefs(fixtureDefs(t)))
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
}
