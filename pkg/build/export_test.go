package build

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestCopyHashedKeepsHoles(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name   string
		size   int64
		writes map[int64]string // offset → data
	}{
		{"empty", 0, nil},
		{"all hole", 64 << 20, nil},
		{"data only", 3, map[int64]string{0: "abc"}},
		{"data between holes", 64 << 20, map[int64]string{8 << 20: "middle", 40<<20 + 5: "later"}},
		{"data at the end", 16 << 20, map[int64]string{16<<20 - 4: "tail"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := filepath.Join(dir, tc.name+".src")
			f, err := os.Create(src)
			if err != nil {
				t.Fatal(err)
			}
			want := make([]byte, tc.size)
			for off, data := range tc.writes {
				if _, err := f.WriteAt([]byte(data), off); err != nil {
					t.Fatal(err)
				}
				copy(want[off:], data)
			}
			if err := f.Truncate(tc.size); err != nil {
				t.Fatal(err)
			}
			f.Close()

			dst := filepath.Join(dir, tc.name+".dst")
			sum, size, err := copyHashed(src, dst)
			if err != nil {
				t.Fatal(err)
			}
			wantSum := sha256.Sum256(want)
			if sum != hex.EncodeToString(wantSum[:]) || size != tc.size {
				t.Errorf("sha256 %s size %d, want %x %d", sum, size, wantSum, tc.size)
			}
			got, err := os.ReadFile(dst)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Error("copy differs from the source")
			}
			var st syscall.Stat_t
			if err := syscall.Stat(dst, &st); err != nil {
				t.Fatal(err)
			}
			// Holes stay holes: a few MiB at most are allocated.
			if alloc := st.Blocks * 512; alloc > 4<<20 {
				t.Errorf("copy allocates %d bytes: holes were filled", alloc)
			}
			if _, _, err := copyHashed(src, dst); err == nil {
				t.Error("copyHashed overwrote an existing file")
			}
		})
	}
}

func TestExportFilesRemovesStaleTemps(t *testing.T) {
	tree, out := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(tree, "disk.raw"), []byte("disk"), 0o644); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(out, ".disk.raw.tmp-0123abcd")
	other := filepath.Join(out, ".other.tmp-0123abcd")
	for _, p := range []string{stale, other} {
		if err := os.WriteFile(p, []byte("half"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files, err := exportFiles(tree, out)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || files[0].Name != "disk.raw" {
		t.Fatalf("files: %+v", files)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("a killed build's temp file for disk.raw is still there: %v", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("another name's file was removed: %v", err)
	}
}

func TestExportFilesWritesRecord(t *testing.T) {
	tree, out := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(tree, "disk.raw"), []byte("disk"), 0o644); err != nil {
		t.Fatal(err)
	}
	files, err := exportFiles(tree, out)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(out, "disk.raw.sha256"))
	if err != nil {
		t.Fatal(err)
	}
	// sha256sum -c reads this line.
	if want := files[0].SHA256 + "  disk.raw\n"; string(b) != want {
		t.Errorf("record %q, want %q", b, want)
	}
}
