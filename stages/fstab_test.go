package stages_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/image-builder-action/image-builder-action/stages"
)

func TestFstabValidate(t *testing.T) {
	const root = `{"uuid":"6e3f1a2b-1c2d-4e5f-8a9b-0c1d2e3f4a5b","vfs_type":"ext4","path":"/"}`
	tests := []struct{ options, err string }{
		{`{"filesystems":[` + root + `]}`, ""},
		{`{"filesystems":[{"uuid":"ABCD-1234","vfs_type":"vfat","path":"/boot/efi","options":"umask=0077,shortname=winnt","passno":2}]}`, ""},
		{`{"filesystems":[{"uuid":"6e3f1a2b-1c2d-4e5f-8a9b-0c1d2e3f4a5c","vfs_type":"swap","path":"none","options":"sw"}]}`, ""},
		{`{"filesystems":[]}`, "filesystems: empty"},
		{`{"filesystems":[{"uuid":"6E3F1A2B-1C2D-4E5F-8A9B-0C1D2E3F4A5B","vfs_type":"ext4","path":"/"}]}`, `filesystems[0].uuid: "6E3F1A2B-1C2D-4E5F-8A9B-0C1D2E3F4A5B" is not a lower-case 8-4-4-4-12 UUID`},
		{`{"filesystems":[{"uuid":"6e3f1a2b1c2d4e5f8a9b0c1d2e3f4a5b","vfs_type":"ext4","path":"/"}]}`, `is not a lower-case 8-4-4-4-12 UUID`},
		{`{"filesystems":[` + root + `,{"uuid":"abcd-1234","vfs_type":"vfat","path":"/boot/efi"}]}`, `filesystems[1].uuid: "abcd-1234" is not a vfat volume id`},
		{`{"filesystems":[{"uuid":"ABCD1234","vfs_type":"vfat","path":"/boot/efi"}]}`, `is not a vfat volume id`},
		{`{"filesystems":[{"uuid":"ABCD-1234","vfs_type":"ntfs","path":"/win"}]}`, `filesystems[0].vfs_type: "ntfs" is not one of`},
		{`{"filesystems":[{"uuid":"6e3f1a2b-1c2d-4e5f-8a9b-0c1d2e3f4a5b","vfs_type":"ext4","path":"boot"}]}`, `filesystems[0].path: "boot" is not absolute`},
		{`{"filesystems":[{"uuid":"6e3f1a2b-1c2d-4e5f-8a9b-0c1d2e3f4a5b","vfs_type":"swap","path":"/swap"}]}`, `filesystems[0].path: a swap entry's path is "none"`},
		{`{"filesystems":[` + root + `,{"uuid":"6e3f1a2b-1c2d-4e5f-8a9b-0c1d2e3f4a5c","vfs_type":"ext4","path":"/"}]}`, `filesystems[1].path: / is already mounted by filesystems[0]`},
		{`{"filesystems":[` + root + `,{"uuid":"6e3f1a2b-1c2d-4e5f-8a9b-0c1d2e3f4a5b","vfs_type":"ext4","path":"/home"}]}`, `filesystems[1].uuid: 6e3f1a2b-1c2d-4e5f-8a9b-0c1d2e3f4a5b is already used`},
		// Subvolumes of one btrfs volume share its UUID; another type may not.
		{`{"filesystems":[{"uuid":"6e3f1a2b-1c2d-4e5f-8a9b-0c1d2e3f4a5b","vfs_type":"btrfs","path":"/","options":"subvol=root"},{"uuid":"6e3f1a2b-1c2d-4e5f-8a9b-0c1d2e3f4a5b","vfs_type":"btrfs","path":"/home","options":"subvol=home"}]}`, ""},
		{`{"filesystems":[{"uuid":"6e3f1a2b-1c2d-4e5f-8a9b-0c1d2e3f4a5b","vfs_type":"btrfs","path":"/","options":"subvol=root"},{"uuid":"6e3f1a2b-1c2d-4e5f-8a9b-0c1d2e3f4a5b","vfs_type":"ext4","path":"/home"}]}`, `filesystems[1].uuid: 6e3f1a2b-1c2d-4e5f-8a9b-0c1d2e3f4a5b is already used`},
		{`{"filesystems":[{"uuid":"6e3f1a2b-1c2d-4e5f-8a9b-0c1d2e3f4a5b","vfs_type":"ext4","path":"/","options":"defaults x"}]}`, `filesystems[0].options: "defaults x" is not`},
		{`{"filesystems":[{"uuid":"6e3f1a2b-1c2d-4e5f-8a9b-0c1d2e3f4a5b","vfs_type":"ext4","path":"/","freq":2}]}`, `filesystems[0].freq: 2 is not 0 or 1`},
		{`{"filesystems":[{"uuid":"6e3f1a2b-1c2d-4e5f-8a9b-0c1d2e3f4a5b","vfs_type":"ext4","path":"/","passno":3}]}`, `filesystems[0].passno: 3 is not 0, 1 or 2`},
		{`{"filesystems":[{"uuid":"6e3f1a2b-1c2d-4e5f-8a9b-0c1d2e3f4a5b","vfs_type":"ext4","path":"/","label":"root"}]}`, `unknown field "label"`},
	}
	for _, tc := range tests {
		_, err := stages.New("fstab", json.RawMessage(tc.options))
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("New(fstab, %s) = %v, want error %q", tc.options, err, tc.err)
		}
	}
}

func TestFstabRun(t *testing.T) {
	root := tcEmptyTree(t)
	tcWrite(t, root, "/etc/fstab", "# UNCONFIGURED FSTAB FOR BASE SYSTEM\n")
	tcRun(t, tcEnv(t, root), "fstab", `{"filesystems":[
		{"uuid":"6e3f1a2b-1c2d-4e5f-8a9b-0c1d2e3f4a5b","vfs_type":"ext4","path":"/","options":"defaults","freq":1,"passno":1},
		{"uuid":"ABCD-1234","vfs_type":"vfat","path":"/boot/efi","options":"umask=0077","passno":2},
		{"uuid":"0b9c1a7e-1111-4222-8333-444455556666","vfs_type":"swap","path":"none","options":"sw"}]}`)
	want := "UUID=6e3f1a2b-1c2d-4e5f-8a9b-0c1d2e3f4a5b\t/\text4\tdefaults\t1\t1\n" +
		"UUID=ABCD-1234\t/boot/efi\tvfat\tumask=0077\t0\t2\n" +
		"UUID=0b9c1a7e-1111-4222-8333-444455556666\tnone\tswap\tsw\t0\t0\n"
	if got := tcRead(t, root, "/etc/fstab"); got != want {
		t.Errorf("/etc/fstab = %q, want %q", got, want)
	}
	if mode, uid, _ := tcStat(t, root, "/boot/efi"); !mode.IsDir() || mode.Perm() != 0o755 || uid != 0 {
		t.Errorf("/boot/efi mount point: %v uid %d", mode, uid)
	}
	if mode, _, _ := tcStat(t, root, "/etc/fstab"); mode.Perm() != 0o644 {
		t.Errorf("/etc/fstab mode %v", mode)
	}
}
