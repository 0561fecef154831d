package stages

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"

	"github.com/image-builder-action/image-builder-action/pkg/decompress"
	"github.com/image-builder-action/image-builder-action/pkg/treepath"
)

// initramfsNativeLoader is where the host's dynamic loader is bound in the
// tree while mkinitramfs runs: not under /lib*, which mkinitramfs mirrors
// into the initramfs (a /lib64 link would appear there), and no longer
// than the host programs' own interpreter path, which it replaces in
// their copies.
const initramfsNativeLoader = "/run/ibuild-ld.so"

// initramfsNative returns the binds that run initramfsNativeTools natively
// (nil when none can): copies of the build root's programs whose ELF
// interpreter is initramfsNativeLoader, written under tmp, the loader
// there and the host's libraries at their multiarch path.
func initramfsNative(env *Env, tmp string) ([]Bind, error) {
	binds := nativeBinds(env, initramfsNativeTools, nil)
	if binds == nil {
		return nil, nil
	}
	host := debsNativeHosts[runtime.GOARCH]
	loader, err := treepath.Resolve(env.Native, host.loaderDir+"/"+host.loader, true)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(loader); err != nil {
		return nil, nil
	}
	if _, err := os.Lstat(filepath.Join(env.Tree, initramfsNativeLoader)); !errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	out := []Bind{binds[0], {Src: loader, Dst: initramfsNativeLoader, ReadOnly: true}}
	for _, b := range binds[2:] {
		dst := filepath.Join(tmp, filepath.Base(b.Dst))
		if err := copyWithInterp(b.Src, dst, initramfsNativeLoader); err != nil {
			return nil, err
		}
		out = append(out, Bind{Src: dst, Dst: b.Dst, ReadOnly: true})
	}
	return out, nil
}

// copyWithInterp copies the dynamically linked program src to dst with its
// ELF interpreter (PT_INTERP) replaced by interp.
func copyWithInterp(src, dst, interp string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("reading %s: %w", src, err)
	}
	found := false
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		if uint64(len(interp)) >= p.Filesz || p.Off+p.Filesz > uint64(len(data)) {
			return fmt.Errorf("%s: its interpreter's field is too short for %s", src, interp)
		}
		field := data[p.Off : p.Off+p.Filesz]
		clear(field)
		copy(field, interp)
		found = true
	}
	if !found {
		return fmt.Errorf("%s: no ELF interpreter", src)
	}
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		return fmt.Errorf("writing %s: %w", dst, err)
	}
	return nil
}

// initramfsNativeTools are the programs of a foreign tree that the build
// root's build of the same version stands in for while mkinitramfs runs.
// mkinitramfs is a shell script that starts several programs for every
// file it copies (realpath, readlink, mkdir, cp, ldd's bash, sed), and
// under qemu-user each start costs a fresh translation: the emulated
// initramfs took longer than installing all the packages after the
// essential set. What the initramfs is made of is the tree's: ldd runs
// the tree's own loader, modprobe, depmod, ldconfig and cpio stay the
// tree's, and no stand-in is a program a hook copies into the initramfs
// (initramfsHostProgram checks that of the result). The compressor is
// the build root's when its version is the tree's: zstd and gzip write
// the same bytes on every architecture.
var initramfsNativeTools = []nativeTool{
	{"/usr/bin/dash", "dash"},
	{"/usr/bin/bash", "bash"},
	{"/usr/bin/sed", "sed"},
	{"/usr/bin/grep", "grep"},
	{"/usr/bin/find", "findutils"},
	{"/usr/bin/xargs", "findutils"},
	{"/usr/bin/zstd", "zstd"},
	{"/usr/bin/gzip", "gzip"},
	{"/usr/bin/basename", "coreutils"},
	{"/usr/bin/cat", "coreutils"},
	{"/usr/bin/chmod", "coreutils"},
	{"/usr/bin/cp", "coreutils"},
	{"/usr/bin/cut", "coreutils"},
	{"/usr/bin/date", "coreutils"},
	{"/usr/bin/dirname", "coreutils"},
	{"/usr/bin/env", "coreutils"},
	{"/usr/bin/id", "coreutils"},
	{"/usr/bin/install", "coreutils"},
	{"/usr/bin/ln", "coreutils"},
	{"/usr/bin/ls", "coreutils"},
	{"/usr/bin/mkdir", "coreutils"},
	{"/usr/bin/mktemp", "coreutils"},
	{"/usr/bin/mv", "coreutils"},
	{"/usr/bin/printf", "coreutils"},
	{"/usr/bin/readlink", "coreutils"},
	{"/usr/bin/realpath", "coreutils"},
	{"/usr/bin/rm", "coreutils"},
	{"/usr/bin/rmdir", "coreutils"},
	{"/usr/bin/sort", "coreutils"},
	{"/usr/bin/stat", "coreutils"},
	{"/usr/bin/tail", "coreutils"},
	{"/usr/bin/touch", "coreutils"},
	{"/usr/bin/tr", "coreutils"},
	{"/usr/bin/uniq", "coreutils"},
	{"/usr/bin/wc", "coreutils"},
}

// initramfsHostMachines is the ELF machine of each host architecture's
// programs (GOARCH), as far as native stand-ins exist (debsNativeHosts).
var initramfsHostMachines = map[string]elf.Machine{"amd64": elf.EM_X86_64}

// initramfsHostProgram returns the first file of the initramfs at path
// that is a program or library of this host's architecture, or "" when
// there is none: a hook that copied a stand-in would have put the host's
// program into the target's initramfs. It reads the uncompressed cpio
// archives (early microcode) and the gzip or zstd compressed one after
// them; another compression is an error.
func initramfsHostProgram(path string) (string, error) {
	machine, ok := initramfsHostMachines[runtime.GOARCH]
	if !ok {
		return "", fmt.Errorf("no ELF machine known for %s", runtime.GOARCH)
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<16)
	compressed := false
	for {
		// Archives are padded with zeros (to 512 bytes in early cpios).
		for {
			b, err := r.Peek(1)
			if errors.Is(err, io.EOF) {
				return "", nil
			}
			if err != nil {
				return "", err
			}
			if b[0] != 0 {
				break
			}
			r.Discard(1)
		}
		magic, err := r.Peek(4)
		if err != nil {
			return "", fmt.Errorf("reading %s: %w", path, err)
		}
		var cr io.Reader = r
		switch {
		case bytes.HasPrefix(magic, []byte("0707")):
		case compressed:
			return "", fmt.Errorf("reading %s: data after the compressed archive", path)
		case bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
			zr, err := decompress.Zstd(r)
			if err != nil {
				return "", fmt.Errorf("reading %s: %w", path, err)
			}
			defer zr.Close()
			cr, compressed = zr, true
		case magic[0] == 0x1f && magic[1] == 0x8b:
			zr, err := gzip.NewReader(r)
			if err != nil {
				return "", fmt.Errorf("reading %s: %w", path, err)
			}
			cr, compressed = zr, true
		default:
			return "", fmt.Errorf("reading %s: neither cpio, gzip nor zstd (% x)", path, magic)
		}
		br, ok := cr.(*bufio.Reader)
		if !ok {
			br = bufio.NewReaderSize(cr, 1<<16)
		}
		name, err := cpioHostProgram(br, machine)
		if err != nil || name != "" {
			if err != nil {
				err = fmt.Errorf("reading %s: %w", path, err)
			}
			return name, err
		}
		if compressed {
			return "", nil
		}
	}
}

// cpioHostProgram reads one cpio archive (newc) up to its trailer and
// returns the first regular file that is an ELF file of machine.
func cpioHostProgram(r *bufio.Reader, machine elf.Machine) (string, error) {
	var hdr [110]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return "", fmt.Errorf("cpio header: %w", err)
		}
		if m := string(hdr[:6]); m != "070701" && m != "070702" {
			return "", fmt.Errorf("cpio header: magic %q", m)
		}
		field := func(i int) (int64, error) {
			return strconv.ParseInt(string(hdr[6+8*i:14+8*i]), 16, 64)
		}
		mode, err1 := field(1)
		size, err2 := field(6)
		nameSize, err3 := field(11)
		if err := errors.Join(err1, err2, err3); err != nil || nameSize < 1 || size < 0 {
			return "", fmt.Errorf("cpio header: bad fields")
		}
		name := make([]byte, nameSize+pad4(110+nameSize))
		if _, err := io.ReadFull(r, name); err != nil {
			return "", fmt.Errorf("cpio name: %w", err)
		}
		n := string(bytes.TrimRight(name[:nameSize], "\x00"))
		if n == "TRAILER!!!" {
			return "", nil
		}
		data := io.LimitReader(r, size)
		if mode&0o170000 == 0o100000 && size >= 20 {
			head := make([]byte, 20)
			if _, err := io.ReadFull(data, head); err != nil {
				return "", fmt.Errorf("cpio %s: %w", n, err)
			}
			if bytes.HasPrefix(head, []byte(elf.ELFMAG)) {
				var m uint16
				if elf.Data(head[elf.EI_DATA]) == elf.ELFDATA2MSB {
					m = binary.BigEndian.Uint16(head[18:])
				} else {
					m = binary.LittleEndian.Uint16(head[18:])
				}
				if elf.Machine(m) == machine {
					return n, nil
				}
			}
		}
		if _, err := io.Copy(io.Discard, data); err != nil {
			return "", fmt.Errorf("cpio %s: %w", n, err)
		}
		if _, err := r.Discard(int(pad4(size))); err != nil {
			return "", fmt.Errorf("cpio %s: %w", n, err)
		}
	}
}

// pad4 is how many bytes align n to 4.
func pad4(n int64) int64 { return (4 - n%4) % 4 }
