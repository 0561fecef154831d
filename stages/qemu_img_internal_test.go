package stages

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// TestPatchVMDKShortCID: qemu-img writes the CID without leading zeros;
// the patched descriptor gets eight digits and keeps the rest.
func TestPatchVMDKShortCID(t *testing.T) {
	const desc = "# Disk DescriptorFile\nversion=1\nCID=abc\nparentCID=ffffffff\ncreateType=\"streamOptimized\"\n"
	mk := func(grain byte) string {
		b := make([]byte, 40*512)
		copy(b, "KDMV")
		binary.LittleEndian.PutUint64(b[12:], 80)
		binary.LittleEndian.PutUint64(b[28:], 1)  // descriptor at sector 1
		binary.LittleEndian.PutUint64(b[36:], 20) // 20 sectors long
		copy(b[512:], desc)
		b[30*512] = grain
		p := filepath.Join(t.TempDir(), "d.vmdk")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := patchVMDK(p); err != nil {
			t.Fatal(err)
		}
		out, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(out[512 : 21*512])
	}
	a, b, c := mk(1), mk(1), mk(2)
	re := regexp.MustCompile(`(?m)^CID=[0-9a-f]{8}$`)
	if !re.MatchString(a) {
		t.Fatalf("descriptor:\n%s", a)
	}
	if got := re.ReplaceAllString(a, "CID=abc"); got[:len(desc)] != desc || bytes.ContainsFunc([]byte(got[len(desc):]), func(r rune) bool { return r != 0 }) {
		t.Errorf("descriptor changed beyond the CID:\n%q", got)
	}
	if a != b {
		t.Errorf("same contents, different CIDs")
	}
	if a == c {
		t.Errorf("other contents, same CID")
	}
}
