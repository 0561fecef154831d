package stages_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/image-builder-action/image-builder-action/pkg/build"
	"github.com/image-builder-action/image-builder-action/stages"
)

func TestInitramfsValidate(t *testing.T) {
	for _, tc := range []struct{ name, opts, want string }{
		{"ok", `{"modules":["virtio_blk","nvme","hv_vmbus","dm-mod"],"compress":"zstd","fstype":"ext4"}`, ""},
		{"empty", `{}`, ""},
		{"bad module", `{"modules":["virtio blk"]}`, `modules[0]: "virtio blk" is not a module name`},
		{"path as module", `{"modules":["../x"]}`, "is not a module name"},
		{"duplicate", `{"modules":["ext4","ext4"]}`, `modules[1]: "ext4" listed twice`},
		{"compressor", `{"compress":"brotli"}`, `compress: "brotli" is not one of bzip2, gzip, lz4, lzma, lzop, xz, zstd`},
		{"fstype", `{"fstype":"ext4;rm"}`, `fstype: "ext4;rm" is not a file system type`},
		{"unknown", `{"most":true}`, `unknown field "most"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := stages.New("initramfs", json.RawMessage(tc.opts))
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// TestInitramfsTreeErrors checks the errors a tree without what the stage
// needs gives, before anything runs.
func TestInitramfsTreeErrors(t *testing.T) {
	exe := func(tree, p string) {
		os.MkdirAll(filepath.Dir(filepath.Join(tree, p)), 0o755)
		os.WriteFile(filepath.Join(tree, p), []byte("#!/bin/sh\n"), 0o755)
	}
	for _, tc := range []struct {
		name  string
		opts  string
		setup func(tree string)
		want  string
	}{
		{"no initramfs-tools", `{}`, func(string) {}, "install initramfs-tools"},
		{"no zstd", `{"compress":"zstd"}`, func(tree string) { exe(tree, "usr/sbin/update-initramfs") }, "compress zstd: the tree has no zstd: install zstd"},
		{"no kernel", `{"compress":"zstd"}`, func(tree string) {
			exe(tree, "usr/sbin/update-initramfs")
			exe(tree, "usr/bin/zstd")
			os.MkdirAll(filepath.Join(tree, "boot"), 0o755)
			os.WriteFile(filepath.Join(tree, "boot/vmlinuz-6.1.0-1-amd64"), nil, 0o644) // no modules
		}, "the tree has no kernel"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tree := t.TempDir()
			tc.setup(tree)
			st, err := stages.New("initramfs", json.RawMessage(tc.opts))
			if err != nil {
				t.Fatal(err)
			}
			err = st.Run(context.Background(), &stages.Env{Tree: tree, Runner: build.NewRunner()})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if _, err := os.Stat(filepath.Join(tree, "etc/initramfs-tools/conf.d/ibuild.conf")); err == nil {
				t.Errorf("configuration written before the checks passed")
			}
		})
	}
}
