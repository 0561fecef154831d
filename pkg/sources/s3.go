package sources

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/pkg/s3ref"
)

// S3 is a store in an S3 bucket: PREFIX/sha256/HEX.
type S3 struct {
	client *s3.Client
	bucket string
	prefix string
	ref    string
}

var _ Store = (*S3)(nil)

// openS3 opens s3://BUCKET[/PREFIX][?endpoint=URL&region=R] (see
// package s3ref for what the query means).
func openS3(ctx context.Context, ref string) (*S3, error) {
	r, err := s3ref.Open(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("opening S3 store %w", err)
	}
	return &S3{client: r.Client, bucket: r.Bucket, prefix: r.Prefix, ref: r.Name}, nil
}

func (s *S3) String() string { return s.ref }

func (s *S3) key(sha string) string { return path.Join(s.prefix, "sha256", sha) }

func (s *S3) Locate(p *manifest.Package) string { return "s3://" + s.bucket + "/" + s.key(p.SHA256) }

func (s *S3) Open(ctx context.Context, p *manifest.Package) (io.ReadCloser, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: aws.String(s.key(p.SHA256))})
	if err != nil {
		if s3NotFound(err) {
			return nil, notFound(s.ref + "/sha256/" + p.SHA256)
		}
		return nil, err
	}
	return out.Body, nil
}

func (s *S3) Has(ctx context.Context, sha string) (bool, error) {
	_, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: aws.String(s.key(sha))})
	if err == nil {
		return true, nil
	}
	if s3NotFound(err) {
		return false, nil
	}
	return false, fmt.Errorf("looking for %s in %s: %w", sha, s.ref, err)
}

func (s *S3) Put(ctx context.Context, p *manifest.Package, r io.ReadSeeker) error {
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return err
	}
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        &s.bucket,
		Key:           aws.String(s.key(p.SHA256)),
		Body:          r,
		ContentLength: aws.Int64(p.Size),
		ContentType:   aws.String(PackageMediaType),
	})
	if err != nil {
		return fmt.Errorf("uploading %s to %s: %w", p.Ref(), s.ref, err)
	}
	return nil
}

func s3NotFound(err error) bool {
	var nk *types.NoSuchKey
	var nf *types.NotFound
	if errors.As(err, &nk) || errors.As(err, &nf) {
		return true
	}
	var ae smithy.APIError
	return errors.As(err, &ae) && (ae.ErrorCode() == "NotFound" || ae.ErrorCode() == "NoSuchKey")
}
