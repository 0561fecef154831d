package cmd

import (
	"context"
	"net/http"
	"time"

	"github.com/spf13/pflag"

	"github.com/image-builder-action/image-builder-action/pkg/auth"
	"github.com/image-builder-action/image-builder-action/pkg/cloudapi"
	"github.com/image-builder-action/image-builder-action/pkg/serve"
	"github.com/image-builder-action/image-builder-action/pkg/upload"
)

// cloudUpload holds the operator's upload settings for composes that ask
// for an upload through the cloud API: the bucket, endpoints and the like
// are the server's; a request adds its region (credentials come from the
// SDKs' default chains of the process that uploads).
var cloudUpload upload.Options

func init() { httpMounts = append(httpMounts, mountCloudAPI) }

// mountCloudAPI serves composer's cloud API and the hosted image
// builder's compose paths under /api/, with the bearer tokens of
// 'ibuild serve token' (kept in the state directory).
func mountCloudAPI(_ context.Context, env *serve.Env) (string, http.Handler, error) {
	h, err := cloudapi.New(cloudapi.Config{
		Composes: env.Compose, Auth: auth.Open(env.Dir), Defs: env.Compose.Defs(),
		Upload: cloudUpload, AllowSchemes: env.Compose.Config().AllowSchemes, Logger: env.Logger,
	})
	return "/api/", h, err
}

// addCloudAPIFlags adds serve's flags for the cloud API's uploads.
func addCloudAPIFlags(fl *pflag.FlagSet) {
	fl.StringVar(&cloudUpload.Bucket, "upload-bucket", "", "S3 (aws.s3, aws) or GCS (gcp) bucket that cloud API uploads go to")
	fl.StringVar(&cloudUpload.Prefix, "upload-prefix", "", "key prefix of aws.s3 uploads")
	fl.StringVar(&cloudUpload.Region, "upload-region", "", "default region of uploads")
	fl.StringVar(&cloudUpload.Endpoint, "upload-s3-endpoint", "", "S3-compatible endpoint for aws.s3 and aws uploads")
	fl.DurationVar(&cloudUpload.Expires, "upload-expires", 7*24*time.Hour, "lifetime of aws.s3 presigned URLs")
	fl.StringVar(&cloudUpload.Project, "upload-gcp-project", "", "GCP project of gcp uploads")
	fl.StringVar(&cloudUpload.StorageAccount, "upload-azure-storage-account", "", "Azure storage account of azure uploads")
	fl.StringVar(&cloudUpload.Container, "upload-azure-container", "", "Azure blob container of azure uploads")
}
