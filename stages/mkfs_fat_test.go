package stages_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMkfsFATValidate(t *testing.T) {
	const src = `"source":{"pipeline":"os","path":"/boot/efi"}`
	tests := []struct{ options, err string }{
		{`{"filename":"disk.raw","partition":2,"fat":32,"volume_id":"ABCD1234","label":"ESP",` + src + `}`, ""},
		{`{"filename":"disk.raw","partition":2,"fat":0,"volume_id":"abcd1234",` + src + `}`, ""},
		{`{"filename":"disk.raw","partition":2,"fat":16,"volume_id":"00000000","label":"EFI SYSTEM",` + src + `}`, ""},
		{`{"filename":"a/disk.raw","partition":2,"volume_id":"ABCD1234",` + src + `}`, "filename:"},
		{`{"filename":"disk.raw","partition":0,"volume_id":"ABCD1234",` + src + `}`, "partition: 0 is not a partition number"},
		{`{"filename":"disk.raw","partition":129,"volume_id":"ABCD1234",` + src + `}`, "partition: 129"},
		{`{"filename":"disk.raw","partition":2,"fat":24,"volume_id":"ABCD1234",` + src + `}`, "fat: 24 is not"},
		{`{"filename":"disk.raw","partition":2,"volume_id":"ABCD-1234",` + src + `}`, `volume_id: "ABCD-1234" is not 8 hex digits`},
		{`{"filename":"disk.raw","partition":2,"volume_id":"ABCD123G",` + src + `}`, `volume_id: "ABCD123G"`},
		{`{"filename":"disk.raw","partition":2,"volume_id":"",` + src + `}`, `volume_id: ""`},
		{`{"filename":"disk.raw","partition":2,"volume_id":"ABCD1234","label":"TWELVE CHARS",` + src + `}`, "label: \"TWELVE CHARS\" is longer than 11"},
		{`{"filename":"disk.raw","partition":2,"volume_id":"ABCD1234","label":"esp",` + src + `}`, "label: \"esp\": lower-case"},
		{`{"filename":"disk.raw","partition":2,"volume_id":"ABCD1234","label":"A/B",` + src + `}`, "label: \"A/B\": '/' is not allowed"},
		{`{"filename":"disk.raw","partition":2,"volume_id":"ABCD1234","label":"ESP "` + `,` + src + `}`, "trailing spaces"},
		{`{"filename":"disk.raw","partition":2,"volume_id":"ABCD1234"}`, "source.pipeline: empty"},
		{`{"filename":"disk.raw","partition":2,"volume_id":"ABCD1234","source":{"pipeline":"os","path":"boot"}}`, "source.path: \"boot\" is not absolute"},
		{`{"filename":"disk.raw","partition":2,"volume_id":"ABCD1234","source":{"pipeline":"os","path":"/boot/../etc"}}`, "source.path: \"/boot/../etc\" is not clean"},
		{`{"filename":"disk.raw","partition":2,"volume_id":"ABCD1234","size":1,` + src + `}`, `unknown field "size"`},
	}
	imgValidate(t, "mkfs-fat", tests)
}

// imgESPTree is an ESP-like tree; one file has a time after the epoch.
func imgESPTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	esp := filepath.Join(root, "boot", "efi")
	files := map[string]string{
		"EFI/BOOT/BOOTX64.EFI":            strings.Repeat("boot loader\n", 5000),
		"EFI/debian/grubx64.efi":          "grub",
		"EFI/debian/a long file name.cfg": "set timeout=1\n",
		"EFI/debian/Ümlaut.txt":           "non-ASCII name\n",
	}
	for name, data := range files {
		p := filepath.Join(esp, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(esp, "EFI/empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	if err := os.Chtimes(filepath.Join(esp, "EFI/debian/grubx64.efi"), old, old); err != nil {
		t.Fatal(err)
	}
	future := time.Unix(imgEpoch+86400*400, 0)
	if err := os.Chtimes(filepath.Join(esp, "EFI/BOOT/BOOTX64.EFI"), future, future); err != nil {
		t.Fatal(err)
	}
	return root
}

const imgFATOptions = `{"filename":"disk.raw","partition":2,"fat":32,"volume_id":"ABCD1234","label":"ESP","source":{"pipeline":"os","path":"/boot/efi"}}`

func TestMkfsFATRun(t *testing.T) {
	imgNeedRoot(t)
	imgNeedTools(t, "mkfs.fat", "mcopy", "fsck.fat", "mdir")
	osTree := imgESPTree(t)
	env := imgEnv(t, map[string]string{"os": osTree})
	img := imgNewDisk(t, env)
	start := time.Now()
	imgRun(t, env, "mkfs-fat", imgFATOptions)
	t.Logf("mkfs-fat on a 34 MiB ESP: %v", time.Since(start).Round(time.Millisecond))
	imgLeftovers(t, env.Tree, "disk.raw")

	part := imgExtract(t, img, imgESPStart, imgESPSize)
	out := imgCmd(t, "fsck.fat", "-n", "-v", part)
	t.Logf("fsck.fat -n -v:\n%s", out)
	for _, want := range []string{"4096 hidden sectors", "69632 sectors total", "Checking free cluster summary", "32 bit entries"} {
		if !strings.Contains(out, want) {
			t.Errorf("fsck.fat output lacks %q", want)
		}
	}
	if strings.Contains(out, "FAT32 according to fat_length") || strings.Contains(out, "Free cluster summary wrong") {
		t.Errorf("fsck.fat complains:\n%s", out)
	}
	if !bytes.Contains(imgReadRange(t, img, imgESPStart+82, 8), []byte("FAT32")) {
		t.Errorf("boot sector does not say FAT32")
	}

	// Contents read back with mtools.
	for _, name := range []string{"EFI/BOOT/BOOTX64.EFI", "EFI/debian/grubx64.efi", "EFI/debian/a long file name.cfg", "EFI/debian/Ümlaut.txt"} {
		want, err := os.ReadFile(filepath.Join(osTree, "boot/efi", name))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("mtype", "-i", part, "::/"+name)
		got, err := cmd.Output()
		if err != nil {
			t.Errorf("mtype %s: %v", name, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: read back %d bytes, want %d", name, len(got), len(want))
		}
	}
	cmd := exec.Command("mdir", "-/", "-i", part, "::/")
	cmd.Env = append(os.Environ(), "TZ=UTC")
	listing, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("mdir:\n%s", listing)
	for _, want := range []string{"empty        <DIR>", "grubx64  efi         4 2001-02-03   4:05", "BOOTX64  EFI     60000 2023-11-14  22:13", "Volume Serial Number is ABCD-1234", "Volume in drive : is ESP"} {
		if !bytes.Contains(listing, []byte(want)) {
			t.Errorf("mdir listing lacks %q", want)
		}
	}
	if bytes.Contains(listing, []byte(time.Now().Format("2006-01-02"))) && time.Now().Unix() > imgEpoch+86400 {
		t.Errorf("a time after the epoch leaked into the FAT")
	}

	// Another run from a copy of the tree (other ctimes, other inode
	// order) makes the same bytes.
	osTree2 := imgESPTree(t)
	env2 := imgEnv(t, map[string]string{"os": osTree2})
	img2 := imgNewDisk(t, env2)
	imgRun(t, env2, "mkfs-fat", imgFATOptions)
	if a, b := imgSHA256(t, img), imgSHA256(t, img2); a != b {
		t.Errorf("two runs differ: %s %s", a, b)
	}
}

func TestMkfsFATRunErrors(t *testing.T) {
	imgNeedRoot(t)
	imgNeedTools(t, "mkfs.fat", "mcopy")
	tests := []struct {
		name, options string
		tree          func(root string) error
		err           string
	}{
		{"symlink", imgFATOptions, func(root string) error {
			return os.Symlink("grubx64.efi", filepath.Join(root, "boot/efi/EFI/debian/link"))
		}, "/EFI/debian/link to FAT: a symlink cannot be stored"},
		{"case", imgFATOptions, func(root string) error {
			return os.WriteFile(filepath.Join(root, "boot/efi/EFI/debian/GRUBX64.EFI"), nil, 0o644)
		}, "/EFI/debian/GRUBX64.EFI has the same name in FAT's case-insensitive directories"},
		{"colon", imgFATOptions, func(root string) error {
			return os.WriteFile(filepath.Join(root, "boot/efi/a:b"), nil, 0o644)
		}, "':' is not allowed"},
		{"no partition", strings.Replace(imgFATOptions, `"partition":2`, `"partition":9`, 1), nil, "disk.raw has no partition 9"},
		{"too small for FAT32", strings.Replace(imgFATOptions, `"partition":2`, `"partition":1`, 1), nil, "partition 1: 2048 sectors are too few for FAT32"},
		{"missing source", strings.Replace(imgFATOptions, `/boot/efi`, `/boot/nothing`, 1), nil, "source os:/boot/nothing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			osTree := imgESPTree(t)
			if tc.tree != nil {
				if err := tc.tree(osTree); err != nil {
					t.Fatal(err)
				}
			}
			env := imgEnv(t, map[string]string{"os": osTree})
			img := imgNewDisk(t, env)
			before := imgSHA256(t, img)
			err := imgRunErr(t, env, "mkfs-fat", tc.options)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error = %v, want %q", err, tc.err)
			}
			if imgSHA256(t, img) != before {
				t.Errorf("a failed run changed the image")
			}
			imgLeftovers(t, env.Tree, "disk.raw")
		})
	}
}

// imgReadRange reads n bytes at off of a file.
func imgReadRange(t *testing.T, p string, off int64, n int) []byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}
