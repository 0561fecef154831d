package stages

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func TestDebVersionLess(t *testing.T) {
	got := []string{"6.1.0-10-amd64", "6.12.1-1-amd64", "6.1.0-9-amd64", "6.1.0-10-cloud-amd64"}
	sort.Slice(got, func(i, j int) bool { return debVersionLess(got[i], got[j]) })
	want := []string{"6.1.0-9-amd64", "6.1.0-10-amd64", "6.1.0-10-cloud-amd64", "6.12.1-1-amd64"}
	if !slices.Equal(got, want) {
		t.Errorf("sorted %v, want %v", got, want)
	}
}

func TestInitramfsHostProgram(t *testing.T) {
	if _, ok := initramfsHostMachines[runtime.GOARCH]; !ok {
		t.Skipf("no native programs in foreign trees on %s hosts", runtime.GOARCH)
	}
	elfOf := func(m elf.Machine) []byte {
		h := make([]byte, 64)
		copy(h, elf.ELFMAG)
		h[elf.EI_CLASS], h[elf.EI_DATA], h[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), 1
		binary.LittleEndian.PutUint16(h[18:], uint16(m))
		return h
	}
	host := elfOf(initramfsHostMachines[runtime.GOARCH])
	target := elfOf(elf.EM_AARCH64)
	// newc writes a cpio archive of files (name, data) in order.
	newc := func(files ...any) []byte {
		var b bytes.Buffer
		add := func(name string, mode int, data []byte) {
			fmt.Fprintf(&b, "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
				1, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
			b.WriteString(name + "\x00")
			b.Write(make([]byte, pad4(int64(110+len(name)+1))))
			b.Write(data)
			b.Write(make([]byte, pad4(int64(len(data)))))
		}
		for i := 0; i < len(files); i += 2 {
			add(files[i].(string), 0o100755, files[i+1].([]byte))
		}
		add("TRAILER!!!", 0, nil)
		return b.Bytes()
	}
	gz := func(p []byte) []byte {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		w.Write(p)
		w.Close()
		return b.Bytes()
	}
	zst := func(p []byte) []byte {
		w, _ := zstd.NewWriter(nil)
		return w.EncodeAll(p, nil)
	}
	early := append(newc("kernel/x86/microcode/a.bin", []byte("microcode")), make([]byte, 300)...)
	clean := newc("usr/bin/kmod", target, "init", []byte("#!/bin/sh\n"), "etc/fstab", []byte{})
	dirty := newc("usr/bin/kmod", target, "usr/bin/sed", host, "x", []byte("tiny"))
	tests := []struct {
		name, want, err string
		data            []byte
	}{
		{name: "zstd, target programs only", data: zst(clean)},
		{name: "gzip, a host program", data: gz(dirty), want: "usr/bin/sed"},
		{name: "early cpio, then zstd with a host program", data: append(append([]byte{}, early...), zst(dirty)...), want: "usr/bin/sed"},
		{name: "plain cpio", data: clean},
		{name: "other compression", data: []byte{0xfd, '7', 'z', 'X', 'Z', 0}, err: "neither cpio"},
		{name: "cut short", data: zst(clean[:200]), err: "cpio"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "initrd.img")
			if err := os.WriteFile(p, tt.data, 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := initramfsHostProgram(p)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one with %q", err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("initramfsHostProgram = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestCopyWithInterp(t *testing.T) {
	host, ok := debsNativeHosts[runtime.GOARCH]
	if !ok {
		t.Skipf("no native programs in foreign trees on %s hosts", runtime.GOARCH)
	}
	loader := filepath.Join(host.loaderDir, host.loader)
	prog, err := exec.LookPath("echo")
	if err != nil {
		t.Skip(err)
	}
	// An interpreter path as short as the one the stage binds.
	dir, err := os.MkdirTemp("/tmp", "ld")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	interp := filepath.Join(dir, "ld.so")
	if err := os.Symlink(loader, interp); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "echo")
	if err := copyWithInterp(prog, dst, interp); err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			p.ReadAt(b, 0)
			if got := string(bytes.TrimRight(b, "\x00")); got != interp {
				t.Errorf("interpreter %q, want %q", got, interp)
			}
		}
	}
	out, err := exec.Command(dst, "hello").Output()
	if err != nil || string(out) != "hello\n" {
		t.Errorf("patched echo: %q, %v", out, err)
	}
	if err := copyWithInterp(prog, dst, "/"+strings.Repeat("x", 200)); err == nil {
		t.Error("an interpreter longer than the field was written")
	}
}
