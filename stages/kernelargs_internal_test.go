package stages

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGrubCfgQuotedKernelArgs checks the linux line GRUB reads: each
// argument a word whose value is what the kernel should get, so GRUB's
// own quoting for the kernel (a word with a space in double quotes) is
// the only one. grub-script-check, where installed, parses the file.
func TestGrubCfgQuotedKernelArgs(t *testing.T) {
	s := &Grub2{RootFSUUID: "6e3f1a2b-1c2d-4e5f-8a9b-0c1d2e3f4a5b", UEFI: &Grub2UEFI{Vendor: "debian"},
		KernelOpts: `quiet console="ttyS0,115200" "dyndbg=module nvme +p" dyndbg="file drivers/usb/* +p" a=""`}
	if err := s.validate(); err != nil {
		t.Fatal(err)
	}
	cfg := string(s.grubCfg("6.1.0-28-amd64", "Debian"))
	want := "\tlinux /boot/vmlinuz-6.1.0-28-amd64 root=UUID=6e3f1a2b-1c2d-4e5f-8a9b-0c1d2e3f4a5b ro quiet console=ttyS0,115200 'dyndbg=module nvme +p' 'dyndbg=file drivers/usb/* +p' a=\n"
	if !strings.Contains(cfg, want) {
		t.Errorf("grub.cfg:\n%s\nwant the line:\n%s", cfg, want)
	}
	check, err := exec.LookPath("grub-script-check")
	if err != nil {
		t.Skip("no grub-script-check to parse the file")
	}
	f := filepath.Join(t.TempDir(), "grub.cfg")
	if err := os.WriteFile(f, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(check, f).CombinedOutput(); err != nil {
		t.Errorf("grub-script-check: %v\n%s", err, out)
	}
}
