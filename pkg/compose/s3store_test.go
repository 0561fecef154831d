package compose

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"

	"github.com/image-builder-action/image-builder-action/pkg/sources/sourcestest"
)

// The S3 artifact store against versitygw: whole puts, reads from any
// offset (what HTTP range requests do), a missing key as fs.ErrNotExist,
// deletes by compose, keys that would leave the prefix refused.
func TestS3Store(t *testing.T) {
	ref := sourcestest.S3(t, "artifacts", "node-a")
	ctx := context.Background()
	if _, err := OpenArtifactStore(ctx, ref+"&colour=blue"); err == nil || !strings.Contains(err.Error(), `unknown parameter "colour"`) {
		t.Fatalf("unknown parameter: %v", err)
	}
	if _, err := OpenArtifactStore(ctx, strings.Replace(ref, "s3://artifacts", "s3://no-such-bucket", 1)); err == nil {
		t.Fatal("a missing bucket opened")
	}
	st, err := OpenArtifactStore(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	// Bigger than the uploader's 5 MiB part: a multipart put.
	big := bytes.Repeat([]byte("0123456789abcdef"), 400<<10)
	for key, data := range map[string][]byte{"c1/0/disk.qcow2": big, "c1/0/build.log": []byte("log\n"), "c10/0/build.log": []byte("other\n")} {
		if err := st.Put(ctx, key, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	}
	r, size, err := st.Open(ctx, "c1/0/disk.qcow2")
	if err != nil {
		t.Fatal(err)
	}
	if size != int64(len(big)) {
		t.Fatalf("size %d, want %d", size, len(big))
	}
	if _, err := r.Seek(int64(len(big))-100, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	tail, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(tail, big[len(big)-100:]) {
		t.Fatalf("read from an offset: %v (%d bytes)", err, len(tail))
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	all, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(all, big) {
		t.Fatalf("read whole: %v (%d bytes)", err, len(all))
	}
	r.Close()
	if _, _, err := st.Open(ctx, "c1/0/nothing"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing key: %v", err)
	}
	if err := st.Put(ctx, "../escape", strings.NewReader("x")); err == nil {
		t.Fatal("a key outside the prefix was stored")
	}
	if err := st.DeletePrefix(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Open(ctx, "c1/0/build.log"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("after delete: %v", err)
	}
	if r, _, err := st.Open(ctx, "c10/0/build.log"); err != nil {
		t.Fatalf("another compose's artifact deleted: %v", err)
	} else {
		r.Close()
	}
}
