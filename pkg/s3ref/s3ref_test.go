package s3ref

import (
	"context"
	"strings"
	"testing"
)

func TestOpen(t *testing.T) {
	for _, tc := range []struct {
		ref, bucket, prefix, name, err string
	}{
		{ref: "s3://b", bucket: "b", name: "s3://b"},
		{ref: "s3://b/", bucket: "b", name: "s3://b"},
		{ref: "s3://b/p/q/?endpoint=http://127.0.0.1:9000&region=eu-west-1", bucket: "b", prefix: "p/q", name: "s3://b/p/q"},
		{ref: "s3:///p", err: "want s3://BUCKET"},
		{ref: "gs://b", err: "want s3://BUCKET"},
		{ref: "s3://b?acl=public", err: `unknown parameter "acl"`},
	} {
		t.Run(tc.ref, func(t *testing.T) {
			t.Setenv("AWS_CONFIG_FILE", "/dev/null")
			t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
			r, err := Open(context.Background(), tc.ref)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Open(%q) = %v, want an error with %q", tc.ref, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Bucket != tc.bucket || r.Prefix != tc.prefix || r.Name != tc.name {
				t.Errorf("Open(%q) = bucket %q prefix %q name %q, want %q %q %q", tc.ref, r.Bucket, r.Prefix, r.Name, tc.bucket, tc.prefix, tc.name)
			}
		})
	}
}
