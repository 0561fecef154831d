// Package decompress opens xz and zstd streams from outside input (.deb
// members, archive indices) with a bound on the memory their headers can
// ask for. Both formats let the writer choose the decoder's window (xz's
// LZMA2 dictionary, up to 4 GiB; zstd's window, up to 3.75 TB), and the
// decoders allocate it before reading any data, so a hostile mirror's
// file could make a build allocate gigabytes.
package decompress

import (
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// MaxWindow is the largest dictionary or window accepted: 128 MiB, twice
// xz's largest preset (-9, 64 MiB) and zstd's largest level's (22,
// 128 MiB). Debian's packages use far less (linux-image-6.12 for arm64:
// an 8 MiB xz dictionary).
const MaxWindow = 128 << 20

// Zstd returns a zstd decoder whose window is at most MaxWindow; a frame
// asking for more fails to decode. Close it when done.
func Zstd(r io.Reader) (*zstd.Decoder, error) {
	return zstd.NewReader(r, zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxWindow(MaxWindow), zstd.WithDecoderMaxMemory(MaxWindow))
}

// XZ returns an xz decoder that refuses a block whose LZMA2 dictionary is
// larger than MaxWindow. ulikunitz/xz takes the dictionary size from each
// block's header as it comes (ReaderConfig.DictCap is a minimum, not a
// cap), so the compressed stream is passed through a reader that follows
// the xz framing (stream header, block headers, LZMA2 chunk headers, index,
// footer: sizes only, no decoding) and checks every block header before
// the decoder sees it.
func XZ(r io.Reader) (io.Reader, error) {
	return xz.NewReader(&xzGuard{src: r})
}

// xzGuard passes an xz stream through, one framing item at a time.
type xzGuard struct {
	src   io.Reader
	out   []byte // bytes read and checked, not yet returned
	state int
	err   error

	check   int   // size of each block's check field
	hdrSize int   // current block's header size
	packed  int64 // current block's compressed bytes so far
	idxSize int64 // index bytes so far
}

const (
	sStream = iota // stream header expected
	sBlock         // block header or index expected
	sChunk         // LZMA2 chunk expected
	sAfter         // stream padding or another stream expected
)

func (g *xzGuard) Read(p []byte) (int, error) {
	for len(g.out) == 0 && g.err == nil {
		g.out = g.out[:0]
		g.err = g.step()
	}
	if len(g.out) > 0 {
		n := copy(p, g.out)
		g.out = g.out[n:]
		return n, nil
	}
	return 0, g.err
}

// read reads exactly n bytes into the output and returns them.
func (g *xzGuard) read(n int) ([]byte, error) {
	start := len(g.out)
	g.out = append(g.out, make([]byte, n)...)
	m, err := io.ReadFull(g.src, g.out[start:])
	g.out = g.out[:start+m]
	if err != nil {
		if err == io.EOF && start > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return g.out[start:], nil
}

// uvarint reads an xz multibyte integer (at most 9 bytes).
func (g *xzGuard) uvarint(count *int64) (uint64, error) {
	var v uint64
	for i := 0; i < 9; i++ {
		b, err := g.read(1)
		if err != nil {
			return 0, err
		}
		*count++
		v |= uint64(b[0]&0x7f) << (7 * i)
		if b[0]&0x80 == 0 {
			return v, nil
		}
	}
	return 0, fmt.Errorf("xz: integer longer than 9 bytes")
}

func (g *xzGuard) step() error {
	switch g.state {
	case sStream:
		h, err := g.read(12)
		if err != nil {
			return err
		}
		return g.streamHeader(h)
	case sBlock:
		b, err := g.read(1)
		if err != nil {
			return err
		}
		if b[0] == 0 {
			return g.index()
		}
		g.hdrSize = (int(b[0]) + 1) * 4
		h, err := g.read(g.hdrSize - 1)
		if err != nil {
			return err
		}
		if err := checkBlockHeader(h); err != nil {
			return err
		}
		g.packed = 0
		g.state = sChunk
		return nil
	case sChunk:
		return g.chunk()
	case sAfter:
		b, err := g.read(4)
		if err != nil {
			return err
		}
		if string(b) == "\x00\x00\x00\x00" {
			return nil
		}
		h := append([]byte(nil), b...)
		rest, err := g.read(8)
		if err != nil {
			return err
		}
		return g.streamHeader(append(h, rest...))
	}
	return fmt.Errorf("xz: bad state")
}

// streamHeader checks a stream header and notes its check's size.
func (g *xzGuard) streamHeader(h []byte) error {
	if string(h[:6]) != "\xfd7zXZ\x00" {
		return fmt.Errorf("xz: no stream header magic")
	}
	if t := h[7] & 0x0f; t == 0 {
		g.check = 0
	} else {
		g.check = 4 << ((t - 1) / 3)
	}
	g.state = sBlock
	return nil
}

// chunk passes one LZMA2 chunk, or the block's end (padding and check).
func (g *xzGuard) chunk() error {
	c, err := g.read(1)
	if err != nil {
		return err
	}
	g.packed++
	ctrl := c[0]
	switch {
	case ctrl == 0:
		pad := int((4 - (int64(g.hdrSize)+g.packed)%4) % 4)
		if _, err := g.read(pad + g.check); err != nil {
			return err
		}
		g.state = sBlock
		return nil
	case ctrl == 1 || ctrl == 2:
		s, err := g.read(2)
		if err != nil {
			return err
		}
		n := (int(s[0])<<8 | int(s[1])) + 1
		g.packed += 2 + int64(n)
		_, err = g.read(n)
		return err
	case ctrl >= 0x80:
		hn := 4
		if ctrl >= 0xc0 {
			hn = 5
		}
		s, err := g.read(hn)
		if err != nil {
			return err
		}
		n := (int(s[2])<<8 | int(s[3])) + 1
		g.packed += int64(hn) + int64(n)
		_, err = g.read(n)
		return err
	}
	return fmt.Errorf("xz: bad LZMA2 chunk control byte %#x", ctrl)
}

// index passes the index (its indicator byte already read) and the footer.
func (g *xzGuard) index() error {
	g.idxSize = 1
	n, err := g.uvarint(&g.idxSize)
	if err != nil {
		return err
	}
	for i := uint64(0); i < 2*n; i++ {
		if _, err := g.uvarint(&g.idxSize); err != nil {
			return err
		}
	}
	pad := int((4 - g.idxSize%4) % 4)
	if _, err := g.read(pad + 4 + 12); err != nil {
		return err
	}
	g.state = sAfter
	return nil
}

// checkBlockHeader checks a block header (without its size byte): the
// last filter must be LZMA2 (the only one xz allows last) and its
// dictionary at most MaxWindow.
func checkBlockHeader(h []byte) error {
	flags := h[0]
	p := 1
	uv := func() (uint64, error) {
		var v uint64
		for i := 0; i < 9 && p < len(h); i++ {
			b := h[p]
			p++
			v |= uint64(b&0x7f) << (7 * i)
			if b&0x80 == 0 {
				return v, nil
			}
		}
		return 0, fmt.Errorf("xz: bad block header")
	}
	if flags&0x40 != 0 {
		if _, err := uv(); err != nil {
			return err
		}
	}
	if flags&0x80 != 0 {
		if _, err := uv(); err != nil {
			return err
		}
	}
	nf := int(flags&3) + 1
	for i := 0; i < nf; i++ {
		id, err := uv()
		if err != nil {
			return err
		}
		ps, err := uv()
		if err != nil {
			return err
		}
		if ps > uint64(len(h)-p) {
			return fmt.Errorf("xz: bad block header")
		}
		props := h[p : p+int(ps)]
		p += int(ps)
		if i < nf-1 {
			if id == 0x21 {
				return fmt.Errorf("xz: LZMA2 filter not last")
			}
			continue
		}
		if id != 0x21 || len(props) != 1 {
			return fmt.Errorf("xz: last filter %#x is not LZMA2", id)
		}
		code := props[0] & 0x3f
		if code > 40 {
			return fmt.Errorf("xz: bad LZMA2 dictionary size code %d", code)
		}
		dict := uint64(1<<32 - 1)
		if code < 40 {
			dict = uint64(2|code&1) << (code/2 + 11)
		}
		if dict > MaxWindow {
			return fmt.Errorf("xz: block dictionary of %d MiB is more than the %d MiB allowed", dict>>20, MaxWindow>>20)
		}
	}
	return nil
}
