package decompress_test

import (
	"bytes"
	"io"
	"testing"

	"github.com/ulikunitz/xz"

	"github.com/image-builder-action/image-builder-action/pkg/decompress"
)

// FuzzXZ: the guard never panics, and what it lets through decodes to
// the same bytes as ulikunitz/xz alone.
func FuzzXZ(f *testing.F) {
	var b bytes.Buffer
	w, _ := xz.WriterConfig{DictCap: 1 << 16}.NewWriter(&b)
	w.Write(bytes.Repeat([]byte("hello xz "), 100))
	w.Close()
	f.Add(b.Bytes())
	f.Add(append(append(append([]byte{}, b.Bytes()...), 0, 0, 0, 0), b.Bytes()...))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decompress.XZ(bytes.NewReader(data))
		if err != nil {
			return
		}
		got, err := io.ReadAll(io.LimitReader(r, 1<<20))
		if err != nil {
			return
		}
		pr, err := xz.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("guard decoded, xz refused: %v", err)
		}
		want, err := io.ReadAll(io.LimitReader(pr, 1<<20))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("guard and xz differ: %d vs %d bytes, %v", len(got), len(want), err)
		}
	})
}
