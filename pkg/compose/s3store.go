package compose

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/image-builder-action/image-builder-action/pkg/s3ref"
)

// OpenArtifactStore opens the store ref names: s3://BUCKET[/PREFIX]
// [?endpoint=URL&region=R] (the shape pkg/sources' stores use), or a
// directory.
func OpenArtifactStore(ctx context.Context, ref string) (ArtifactStore, error) {
	if strings.HasPrefix(ref, "s3://") {
		return OpenS3Store(ctx, ref)
	}
	if strings.Contains(ref, "://") {
		return nil, fmt.Errorf("opening artifact store %q: want a directory or s3://BUCKET[/PREFIX]", ref)
	}
	return DirStore{Dir: ref}, nil
}

// S3Store is an ArtifactStore in an S3 bucket, so API nodes and workers
// on different machines share artifacts without a shared file system.
// Credentials come from the AWS SDK's default chain (environment, shared
// config, instance roles), as pkg/upload's targets' do.
type S3Store struct {
	client         *s3.Client
	bucket, prefix string
	ref            string
}

var _ ArtifactStore = (*S3Store)(nil)

// OpenS3Store opens s3://BUCKET[/PREFIX][?endpoint=URL&region=R] (see
// package s3ref for what the query means).
func OpenS3Store(ctx context.Context, ref string) (*S3Store, error) {
	r, err := s3ref.Open(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("opening artifact store %w", err)
	}
	s := &S3Store{client: r.Client, bucket: r.Bucket, prefix: r.Prefix, ref: r.Name}
	// Fail at start, not at the first build's end, when the bucket is
	// not there or the credentials do not reach it.
	if _, err := s.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: aws.String(s.prefix), MaxKeys: aws.Int32(1)}); err != nil {
		return nil, fmt.Errorf("opening artifact store %s: %w", s.ref, err)
	}
	return s, nil
}

func (s *S3Store) String() string { return s.ref }

func (s *S3Store) key(key string) (string, error) {
	if err := checkKey(key); err != nil {
		return "", err
	}
	return path.Join(s.prefix, key), nil
}

// Put uploads r in parts; S3 shows an object only once it is whole.
func (s *S3Store) Put(ctx context.Context, key string, r io.Reader) error {
	k, err := s.key(key)
	if err != nil {
		return err
	}
	up := manager.NewUploader(s.client)
	if _, err := up.Upload(ctx, &s3.PutObjectInput{Bucket: &s.bucket, Key: &k, Body: r, ContentType: aws.String("application/octet-stream")}); err != nil {
		return fmt.Errorf("storing artifact %s in %s: %w", key, s.ref, err)
	}
	return nil
}

// Open returns a reader that fetches the object by ranges from where it
// is positioned, so an HTTP range request (http.ServeContent seeks)
// reads only what it sends.
func (s *S3Store) Open(ctx context.Context, key string) (io.ReadSeekCloser, int64, error) {
	k, err := s.key(key)
	if err != nil {
		return nil, 0, err
	}
	head, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &k})
	if err != nil {
		if s3Missing(err) {
			return nil, 0, fmt.Errorf("opening artifact %s in %s: %w", key, s.ref, fs.ErrNotExist)
		}
		return nil, 0, fmt.Errorf("opening artifact %s in %s: %w", key, s.ref, err)
	}
	size := aws.ToInt64(head.ContentLength)
	return &s3Object{ctx: ctx, s: s, key: k, size: size}, size, nil
}

// DeletePrefix removes the objects under prefix + "/".
func (s *S3Store) DeletePrefix(ctx context.Context, prefix string) error {
	k, err := s.key(prefix)
	if err != nil {
		return err
	}
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: aws.String(k + "/")})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("deleting artifacts %s in %s: %w", prefix, s.ref, err)
		}
		// One at a time: a compose has a few objects, and not every
		// S3-compatible server has the batch call.
		for _, o := range page.Contents {
			if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: o.Key}); err != nil && !s3Missing(err) {
				return fmt.Errorf("deleting artifact %s in %s: %w", aws.ToString(o.Key), s.ref, err)
			}
		}
	}
	return nil
}

// s3Object reads an object from off, opening a ranged GET on the first
// Read after a Seek.
type s3Object struct {
	ctx       context.Context
	s         *S3Store
	key       string
	size, off int64
	body      io.ReadCloser
}

func (o *s3Object) Read(p []byte) (int, error) {
	if o.off >= o.size {
		return 0, io.EOF
	}
	if o.body == nil {
		out, err := o.s.client.GetObject(o.ctx, &s3.GetObjectInput{Bucket: &o.s.bucket, Key: &o.key, Range: aws.String(fmt.Sprintf("bytes=%d-", o.off))})
		if err != nil {
			return 0, fmt.Errorf("reading artifact %s in %s: %w", o.key, o.s.ref, err)
		}
		o.body = out.Body
	}
	n, err := o.body.Read(p)
	o.off += int64(n)
	if errors.Is(err, io.EOF) && o.off < o.size {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (o *s3Object) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += o.off
	case io.SeekEnd:
		off += o.size
	default:
		return 0, errors.New("seek: bad whence")
	}
	if off < 0 {
		return 0, errors.New("seek before the start")
	}
	if off != o.off && o.body != nil {
		o.body.Close()
		o.body = nil
	}
	o.off = off
	return off, nil
}

func (o *s3Object) Close() error {
	if o.body != nil {
		return o.body.Close()
	}
	return nil
}

func s3Missing(err error) bool {
	var nk *s3types.NoSuchKey
	var nf *s3types.NotFound
	if errors.As(err, &nk) || errors.As(err, &nf) {
		return true
	}
	var ae smithy.APIError
	return errors.As(err, &ae) && (ae.ErrorCode() == "NotFound" || ae.ErrorCode() == "NoSuchKey")
}
