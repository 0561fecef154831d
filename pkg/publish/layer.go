package publish

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// copyBuffer is the one buffer size every streaming pass uses.
const copyBuffer = 1 << 20

// fileLayer is a v1.Layer backed by a file, never read into memory. Its
// digest comes from one hashing pass (hashFile); every read for an upload
// is checked against it at EOF, so a file changed after hashing fails the
// upload instead of publishing bytes that do not match the manifest.
type fileLayer struct {
	path      string
	size      int64
	digest    v1.Hash
	mediaType types.MediaType
}

var _ v1.Layer = (*fileLayer)(nil)

// newFileLayer hashes the file at p in one streaming pass; the bytes also
// go to also (the containerDisk's tar digest is computed in the same pass).
func newFileLayer(ctx context.Context, p string, mt types.MediaType, also ...io.Writer) (*fileLayer, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", p, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", p, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("reading %s: not a regular file", p)
	}
	h := sha256.New()
	var w io.Writer = h
	if len(also) > 0 {
		w = io.MultiWriter(append([]io.Writer{h}, also...)...)
	}
	n, err := copyCtx(ctx, w, f)
	if err != nil {
		return nil, fmt.Errorf("hashing %s: %w", p, err)
	}
	if n != fi.Size() {
		return nil, fmt.Errorf("hashing %s: read %d bytes, the file has %d (changed while reading?)", p, n, fi.Size())
	}
	return &fileLayer{
		path:      p,
		size:      n,
		digest:    v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))},
		mediaType: mt,
	}, nil
}

func (l *fileLayer) Digest() (v1.Hash, error)             { return l.digest, nil }
func (l *fileLayer) DiffID() (v1.Hash, error)             { return l.digest, nil }
func (l *fileLayer) Size() (int64, error)                 { return l.size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error)  { return l.mediaType, nil }
func (l *fileLayer) Uncompressed() (io.ReadCloser, error) { return l.Compressed() }

func (l *fileLayer) Compressed() (io.ReadCloser, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", l.path, err)
	}
	return &verifiedReader{r: f, c: f, h: sha256.New(), want: l.digest, size: l.size, name: l.path}, nil
}

// verifiedReader hashes what it passes on and fails at EOF when the bytes
// do not match the expected digest and size.
type verifiedReader struct {
	r    io.Reader
	c    io.Closer
	h    hash.Hash
	n    int64
	want v1.Hash
	size int64
	name string
}

func (v *verifiedReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if v.n > v.size {
		return n, fmt.Errorf("reading %s: more than the %d bytes hashed (the file changed)", v.name, v.size)
	}
	if err == io.EOF {
		got := hex.EncodeToString(v.h.Sum(nil))
		if v.n != v.size || got != v.want.Hex {
			return n, fmt.Errorf("reading %s: %d bytes with sha256 %s, hashed as %d bytes with %s (the file changed)", v.name, v.n, got, v.size, v.want.Hex)
		}
	}
	return n, err
}

func (v *verifiedReader) Close() error { return v.c.Close() }

// copyCtx copies with a large buffer and stops when ctx is done.
func copyCtx(ctx context.Context, w io.Writer, r io.Reader) (int64, error) {
	buf := make([]byte, copyBuffer)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		m, err := r.Read(buf)
		if m > 0 {
			if _, werr := w.Write(buf[:m]); werr != nil {
				return n, werr
			}
			n += int64(m)
		}
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// diskTarLayer is a KubeVirt containerDisk layer: an uncompressed tar
// holding disk/ and disk/NAME, owned 107:107 (qemu in KubeVirt's
// launcher), with mtimes from the lockfile's epoch. The tar is generated
// while it streams: its headers are built once, the file follows, then
// padding and the end-of-archive blocks. Its digest is computed while the
// disk itself is hashed (diskTar.hasher), so it costs no extra pass.
type diskTarLayer struct {
	disk   *fileLayer
	header []byte
	size   int64
	digest v1.Hash
}

var _ v1.Layer = (*diskTarLayer)(nil)

// containerDiskUID is the qemu user in KubeVirt's virt-launcher.
const containerDiskUID = 107

// diskTar prepares a containerDisk tar for a file of fileSize bytes.
type diskTar struct {
	header   []byte
	fileSize int64
	h        hash.Hash
}

func newDiskTar(name string, fileSize int64, mtime time.Time) (*diskTar, error) {
	var hdr bytes.Buffer
	tw := tar.NewWriter(&hdr)
	if err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeDir, Name: "disk/", Mode: 0o555,
		Uid: containerDiskUID, Gid: containerDiskUID, ModTime: mtime,
	}); err != nil {
		return nil, err
	}
	if err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg, Name: path.Join("disk", name), Mode: 0o444, Size: fileSize,
		Uid: containerDiskUID, Gid: containerDiskUID, ModTime: mtime,
	}); err != nil {
		return nil, err
	}
	// tw is left unflushed on purpose: the header blocks are complete in
	// hdr; the content and trailer are streamed by Compressed.
	d := &diskTar{header: hdr.Bytes(), fileSize: fileSize, h: sha256.New()}
	d.h.Write(d.header)
	return d, nil
}

// hasher receives the file's bytes during its hashing pass.
func (d *diskTar) hasher() io.Writer { return d.h }

// layer finishes the digest once disk has been hashed through hasher.
func (d *diskTar) layer(disk *fileLayer) (*diskTarLayer, error) {
	if disk.size != d.fileSize {
		return nil, fmt.Errorf("hashing %s: %d bytes, %d when the containerDisk was planned (the file changed)", disk.path, disk.size, d.fileSize)
	}
	d.h.Write(make([]byte, padding(disk.size)+1024))
	return &diskTarLayer{
		disk:   disk,
		header: d.header,
		size:   int64(len(d.header)) + disk.size + padding(disk.size) + 1024,
		digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(d.h.Sum(nil))},
	}, nil
}

func padding(n int64) int64 {
	if r := n % 512; r != 0 {
		return 512 - r
	}
	return 0
}

func (l *diskTarLayer) Digest() (v1.Hash, error) { return l.digest, nil }
func (l *diskTarLayer) DiffID() (v1.Hash, error) { return l.digest, nil }
func (l *diskTarLayer) Size() (int64, error)     { return l.size, nil }
func (l *diskTarLayer) MediaType() (types.MediaType, error) {
	return ContainerDiskLayerMediaType, nil
}
func (l *diskTarLayer) Uncompressed() (io.ReadCloser, error) { return l.Compressed() }

func (l *diskTarLayer) Compressed() (io.ReadCloser, error) {
	f, err := l.disk.Compressed()
	if err != nil {
		return nil, err
	}
	trailer := make([]byte, padding(l.disk.size)+1024)
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(l.header), f, bytes.NewReader(trailer)), f}, nil
}
