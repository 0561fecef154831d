package binfmt

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// What the kernel shows for Debian's qemu-user-static rule
// (/usr/lib/binfmt.d/qemu-aarch64.conf) once registered.
const debianAarch64 = `enabled
interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P
flags: POF
offset 0
magic 7f454c460201010000000000000000000200b700
mask ffffffffffffff00fffffffffffffffffeffffff
`

// fakeDir is a binfmt_misc directory with the given entries.
func fakeDir(t *testing.T, entries map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range map[string]string{"register": "", "status": "enabled\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range entries {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestFind(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries map[string]string
		arch    string
		want    string // handler name, or a part of the error
	}{
		{"debian", map[string]string{"qemu-aarch64": debianAarch64}, "aarch64", "qemu-aarch64"},
		{"other name", map[string]string{"aarch64-by-binfmt": debianAarch64}, "aarch64", "aarch64-by-binfmt"},
		{"none", map[string]string{}, "aarch64", "no binfmt_misc handler is registered"},
		{"x86 only", map[string]string{"qemu-x86_64": strings.Replace(debianAarch64, "0200b700", "02003e00", 1)}, "aarch64", "no binfmt_misc handler is registered"},
		{"no F", map[string]string{"qemu-aarch64": strings.Replace(debianAarch64, "flags: POF", "flags: P", 1)}, "aarch64", `has no F flag (flags "P")`},
		{"disabled", map[string]string{"qemu-aarch64": strings.Replace(debianAarch64, "enabled", "disabled", 1)}, "aarch64", "is disabled"},
		{"python", map[string]string{"python3.11": "enabled\ninterpreter /usr/bin/python3.11\nflags: \noffset 0\nmagic a70d0d0a\n"}, "aarch64", "no binfmt_misc handler"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := find(fakeDir(t, tc.entries), tc.arch)
			if err != nil {
				var nr *NotRegisteredError
				if !errors.As(err, &nr) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("got %v, want a NotRegisteredError with %q", err, tc.want)
				}
				// The error says how to get a handler.
				for _, hint := range []string{"--register-binfmt", "qemu-aarch64.conf", "docker/setup-qemu-action"} {
					if !strings.Contains(err.Error(), hint) {
						t.Errorf("error does not mention %s: %v", hint, err)
					}
				}
				return
			}
			if h.Name != tc.want {
				t.Errorf("handler %s, want %s", h.Name, tc.want)
			}
		})
	}
}

func TestNotMounted(t *testing.T) {
	_, err := find(t.TempDir(), "aarch64")
	if err == nil || !strings.Contains(err.Error(), "binfmt_misc is not mounted") {
		t.Errorf("got %v", err)
	}
}

func TestUnknownArch(t *testing.T) {
	if _, err := find(fakeDir(t, nil), "riscv64"); err == nil || !strings.Contains(err.Error(), "unknown") {
		t.Errorf("got %v", err)
	}
}

func TestCheckNative(t *testing.T) {
	if err := Check(HostArch()); err != nil {
		t.Errorf("the host's own architecture: %v", err)
	}
}

func TestCheckUnknownOrDpkgNames(t *testing.T) {
	for _, arch := range []string{"amd64", "test", "riscv64"} {
		if err := Check(arch); err != nil {
			t.Errorf("Check(%s): %v", arch, err)
		}
	}
}
