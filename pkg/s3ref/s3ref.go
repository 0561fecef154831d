// Package s3ref opens the S3 references the stores take:
// s3://BUCKET[/PREFIX][?endpoint=URL&region=R]. Package sources and the
// compose service's artifact store both keep data in a bucket under a
// prefix; they share one reading of the reference and one client setup so
// that a reference means the same thing to both.
package s3ref

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Ref is an opened reference: a client and where in the bucket to keep
// things.
type Ref struct {
	Client *s3.Client
	Bucket string
	// Prefix has no leading or trailing slash; it may be empty.
	Prefix string
	// Name is the reference without its query, for messages.
	Name string
}

// Parse checks ref's shape without reaching the network: the s3 scheme,
// a bucket, and no query parameter but endpoint and region.
func Parse(ref string) (*url.URL, error) {
	u, err := url.Parse(ref)
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		return nil, fmt.Errorf("%q: want s3://BUCKET[/PREFIX][?endpoint=URL&region=R]", ref)
	}
	for k := range u.Query() {
		if k != "endpoint" && k != "region" {
			return nil, fmt.Errorf("%q: unknown parameter %q (endpoint, region)", ref, k)
		}
	}
	return u, nil
}

// Open parses ref and makes its client. Credentials, region and endpoint
// come from the AWS SDK's default chain (environment, shared config,
// instance roles); the query overrides endpoint and region, for
// S3-compatible servers. With an endpoint, buckets are addressed by path,
// which every S3-compatible server understands. The SDK's own checksums
// are used only where the API requires them: what the stores keep is
// checked against sha256 digests of their own, and not every
// S3-compatible server has the newer checksums.
func Open(ctx context.Context, ref string) (*Ref, error) {
	u, err := Parse(ref)
	if err != nil {
		return nil, err
	}
	q := u.Query()
	var lopts []func(*config.LoadOptions) error
	if r := q.Get("region"); r != "" {
		lopts = append(lopts, config.WithRegion(r))
	}
	cfg, err := config.LoadDefaultConfig(ctx, lopts...)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", ref, err)
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
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	return &Ref{
		Client: client,
		Bucket: u.Host,
		Prefix: strings.Trim(u.Path, "/"),
		Name:   "s3://" + u.Host + strings.TrimRight(u.Path, "/"),
	}, nil
}
