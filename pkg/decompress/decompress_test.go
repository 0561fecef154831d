package decompress_test

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"io"
	"math/rand"
	"os/exec"
	"strings"
	"testing"

	"github.com/ulikunitz/xz"

	"github.com/image-builder-action/image-builder-action/pkg/decompress"
)

// input is compressible data larger than one xz block of the tests.
func input() []byte {
	r := rand.New(rand.NewSource(1))
	var b bytes.Buffer
	for b.Len() < 1<<20 {
		b.WriteString(strings.Repeat(string(rune('a'+r.Intn(26))), r.Intn(40)))
		b.WriteByte(byte(r.Intn(256)))
	}
	return b.Bytes()
}

// TestXZReadsRealStreams decodes what xz(1) writes: every check type,
// several blocks (threads), several streams and stream padding.
func TestXZReadsRealStreams(t *testing.T) {
	in := input()
	xzc := func(args ...string) []byte {
		cmd := exec.Command("xz", append([]string{"-c", "-q"}, args...)...)
		cmd.Stdin = bytes.NewReader(in)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("xz %v: %v", args, err)
		}
		return out
	}
	one := xzc("-0", "--check=crc32")
	cases := map[string]struct {
		data []byte
		want []byte
	}{
		"crc64 -6":           {xzc("-6"), in},
		"none":               {xzc("-1", "--check=none"), in},
		"sha256":             {xzc("-1", "--check=sha256"), in},
		"blocks":             {xzc("-1", "-T2", "--block-size=200000"), in},
		"two streams padded": {append(append(append([]byte{}, one...), 0, 0, 0, 0), one...), append(append([]byte{}, in...), in...)},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			r, err := decompress.XZ(bytes.NewReader(c.data))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, c.want) {
				t.Fatalf("decoded %d bytes, want %d", len(got), len(c.want))
			}
		})
	}
}

// withDict rewrites the dictionary code of an xz stream's first block
// header (written by ulikunitz/xz, one LZMA2 filter) and its CRC32.
func withDict(t *testing.T, code byte) []byte {
	var b bytes.Buffer
	w, err := xz.WriterConfig{DictCap: 1 << 16}.NewWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("hello hello hello"))
	w.Close()
	data := b.Bytes()
	hs := (int(data[12]) + 1) * 4
	h := data[12 : 12+hs]
	i := bytes.Index(h, []byte{0x21, 0x01})
	if i < 0 {
		t.Fatalf("no LZMA2 filter in block header % x", h)
	}
	h[i+2] = code
	binary.LittleEndian.PutUint32(h[hs-4:], crc32.ChecksumIEEE(h[:hs-4]))
	return data
}

// TestXZRefusesHugeDictionary: a block header asking for a dictionary
// above MaxWindow is refused before the decoder allocates it.
func TestXZRefusesHugeDictionary(t *testing.T) {
	ok := withDict(t, 30) // 128 MiB: the cap itself
	r, err := decompress.XZ(bytes.NewReader(ok))
	if err == nil {
		var got []byte
		got, err = io.ReadAll(r)
		if err == nil && string(got) != "hello hello hello" {
			t.Fatalf("decoded %q", got)
		}
	}
	if err != nil {
		t.Fatalf("128 MiB dictionary: %v", err)
	}
	for _, code := range []byte{31, 40} { // 192 MiB, 4 GiB
		r, err := decompress.XZ(bytes.NewReader(withDict(t, code)))
		if err == nil {
			_, err = io.ReadAll(r)
		}
		if err == nil || !strings.Contains(err.Error(), "dictionary of") || !strings.Contains(err.Error(), "more than the 128 MiB allowed") {
			t.Fatalf("code %d: err = %v, want a refused dictionary", code, err)
		}
	}
}

// zstdFrame is one zstd frame with a window descriptor for 1<<(10+exp)
// bytes and one raw block holding data.
func zstdFrame(exp byte, data string) []byte {
	f := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, exp << 3}
	h := uint32(1) | uint32(len(data))<<3 // last block, raw
	f = append(f, byte(h), byte(h>>8), byte(h>>16))
	return append(f, data...)
}

// TestZstdRefusesHugeWindow: a frame asking for a window above MaxWindow
// fails to decode; one at the cap decodes.
func TestZstdRefusesHugeWindow(t *testing.T) {
	for _, c := range []struct {
		exp  byte
		fail bool
	}{{13, false}, {17, false}, {18, true}, {31, true}} {
		d, err := decompress.Zstd(bytes.NewReader(zstdFrame(c.exp, "hello")))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(d)
		d.Close()
		if c.fail {
			if err == nil || !strings.Contains(err.Error(), "window size exceeded") {
				t.Errorf("window 2^%d: err = %v, want window size exceeded", 10+c.exp, err)
			}
			continue
		}
		if err != nil || string(got) != "hello" {
			t.Errorf("window 2^%d: %q, %v", 10+c.exp, got, err)
		}
	}
}
