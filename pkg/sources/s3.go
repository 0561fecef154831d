package sources

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/image-builder-action/image-builder-action/pkg/manifest"
)

// S3 is a store in an S3 bucket: PREFIX/sha256/HEX.
type S3 struct {
	client *s3.Client
	bucket string
	prefix string
	ref    string
}

var _ Store = (*S3)(nil)

// openS3 opens s3://BUCKET[/PREFIX][?endpoint=URL&region=R]. Credentials,
// region and endpoint come from the AWS SDK's default chain (environment,
// shared config, instance roles); the query overrides endpoint and region,
// for S3-compatible servers. With an endpoint, buckets are addressed by
// path, which every S3-compatible server understands.
func openS3(ctx context.Context, ref string) (*S3, error) {
	u, err := url.Parse(ref)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("opening S3 store %q: want s3://BUCKET[/PREFIX]", ref)
	}
	q := u.Query()
	for k := range q {
		if k != "endpoint" && k != "region" {
			return nil, fmt.Errorf("opening S3 store %q: unknown parameter %q (endpoint, region)", ref, k)
		}
	}
	var lopts []func(*config.LoadOptions) error
	if r := q.Get("region"); r != "" {
		lopts = append(lopts, config.WithRegion(r))
	}
	cfg, err := config.LoadDefaultConfig(ctx, lopts...)
	if err != nil {
		return nil, fmt.Errorf("opening S3 store %q: %w", ref, err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	endpoint := q.Get("endpoint")
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
		if o.BaseEndpoint != nil {
			o.UsePathStyle = true
		}
		// The files are checked against the lockfile's sha256; the SDK's
		// own checksums add nothing and not every server has them.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	name := "s3://" + u.Host + u.Path
	return &S3{client: client, bucket: u.Host, prefix: strings.Trim(u.Path, "/"), ref: strings.TrimRight(name, "/")}, nil
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
