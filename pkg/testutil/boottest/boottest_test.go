package boottest

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestArgs(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		want []string // in this order, among the arguments
		err  string
	}{
		{name: "uefi qcow2", o: Options{Disks: []Disk{{Path: "/i/disk.qcow2", Snapshot: true}}},
			want: []string{"-machine q35", "file=" + OVMFCode, "file=/v.fd", "file=/i/disk.qcow2,if=none,id=disk0,format=qcow2,snapshot=on", "virtio-blk-pci,drive=disk0,bootindex=0"}},
		{name: "bios sata vmdk", o: Options{Firmware: "bios", Disks: []Disk{{Path: "/i/d.vmdk", Format: "vmdk", Bus: "sata"}}},
			want: []string{"file=/i/d.vmdk,if=none,id=disk0,format=vmdk", "ide-hd,drive=disk0,bus=ide.1,bootindex=0"}},
		{name: "cdrom then disk", o: Options{CDROM: "/i/x.iso", Disks: []Disk{{Path: "/i/t.raw"}}},
			want: []string{"media=cdrom", "ide-cd,drive=cd0,bus=ide.0,bootindex=0", "file=/i/t.raw,if=none,id=disk0,format=raw,discard=unmap", "virtio-blk-pci,drive=disk0,bootindex=1"}},
		{name: "read-only disk", o: Options{Disks: []Disk{{Path: "/i/seed.raw", ReadOnly: true}}},
			want: []string{"file=/i/seed.raw,if=none,id=disk0,format=raw,readonly=on -device"}},
		{name: "4kn", o: Options{Disks: []Disk{{Path: "/i/t.raw", SectorSize: 4096}}},
			want: []string{"virtio-blk-pci,drive=disk0,logical_block_size=4096,physical_block_size=4096,bootindex=0"}},
		{name: "aarch64", o: Options{Arch: "aarch64", CDROM: "/i/x.iso", Disks: []Disk{{Path: "/i/t.raw"}}},
			want: []string{"-machine virt -cpu cortex-a72", "file=" + AAVMFCode, "scsi-cd,drive=cd0,bus=scsi0.0,bootindex=0"}},
		{name: "aarch64 bios", o: Options{Arch: "aarch64", Firmware: "bios"}, err: "UEFI only"},
		{name: "aarch64 sata", o: Options{Arch: "aarch64", Disks: []Disk{{Path: "/d", Bus: "sata"}}}, err: "x86_64 only"},
		{name: "bad bus", o: Options{Disks: []Disk{{Path: "/d", Bus: "scsi"}}}, err: `unknown bus "scsi"`},
		{name: "bad arch", o: Options{Arch: "riscv64"}, err: "unknown architecture"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args, err := Args(tc.o, "/v.fd")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			joined := strings.Join(args, " ")
			at := 0
			for _, w := range tc.want {
				i := strings.Index(joined[at:], w)
				if i < 0 {
					t.Fatalf("%q not found (in order) in %q", w, joined)
				}
				at += i + len(w)
			}
			if tc.o.Firmware == "bios" && strings.Contains(joined, "pflash") {
				t.Errorf("BIOS boot with UEFI firmware: %q", joined)
			}
		})
	}
}

// TestConsoleLines: a login prompt without a newline at the end of the
// console output is seen, however the output is cut into reads.
func TestConsoleLines(t *testing.T) {
	const console = "[  OK  ] Started ssh.service\r\nIBUILD-MARKER-OK firmware=bios\n\r\nDebian GNU/Linux 12 ibuild-boot ttyS0\n\nibuild-boot login: "
	want := []string{"[  OK  ] Started ssh.service", "IBUILD-MARKER-OK firmware=bios", "", "Debian GNU/Linux 12 ibuild-boot ttyS0", ""}
	for _, chunk := range []int{1, 7, len(console)} {
		pr, pw := io.Pipe()
		go func() {
			for i := 0; i < len(console); i += chunk {
				pw.Write([]byte(console[i:min(i+chunk, len(console))]))
			}
			// The pipe stays open, as QEMU's does: the prompt must come
			// out before EOF.
		}()
		got := make(chan []string, 1)
		go func() {
			sc := bufio.NewScanner(pr)
			sc.Split(ConsoleLines)
			var lines []string
			for sc.Scan() {
				lines = append(lines, sc.Text())
				if strings.Contains(sc.Text(), "ibuild-boot login:") {
					break
				}
			}
			got <- lines
		}()
		select {
		case lines := <-got:
			if n := len(lines); n == 0 || strings.Join(lines[:n-1], "|") != strings.Join(want, "|") || lines[n-1] != "ibuild-boot login:" && lines[n-1] != "ibuild-boot login: " {
				t.Errorf("reads of %d bytes: %q, want %q and the prompt", chunk, lines, want)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("reads of %d bytes: the prompt never came out", chunk)
		}
		pw.Close()
	}
}

// TestSSHBanner: what QEMU's forwarded port does while the guest does not
// listen (accept, then close) is not an SSH server; a banner is.
func TestSSHBanner(t *testing.T) {
	serve := func(reply string) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Write([]byte(reply))
				c.Close()
			}
		}()
		return l.Addr().String()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := SSHBanner(ctx, serve("")); err == nil || !strings.Contains(err.Error(), "no SSH server answered") {
		t.Errorf("closed at once: %v, want no SSH server", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := SSHBanner(ctx, serve("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u5\r\n")); err != nil {
		t.Errorf("banner: %v", err)
	}
}
