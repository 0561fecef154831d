package cmd

import (
	"context"
	"net/http"

	"github.com/image-builder-action/image-builder-action/pkg/auth"
	"github.com/image-builder-action/image-builder-action/pkg/compose"
	"github.com/image-builder-action/image-builder-action/pkg/serve"
	"github.com/image-builder-action/image-builder-action/pkg/webui"
)

func init() { httpMounts = append(httpMounts, mountWebUI) }

// mountWebUI serves the web page at "/": logins with the tokens of
// 'ibuild serve token', and the upload targets the operator configured
// for the cloud API (--upload-…).
func mountWebUI(ctx context.Context, env *serve.Env) (string, http.Handler, error) {
	tokens := auth.Open(env.Dir)
	return webui.Mount(tokens, webUploads())(ctx, env)
}

// webUploads offers each upload target whose settings the server has.
func webUploads() map[string]compose.UploadTarget {
	out := map[string]compose.UploadTarget{}
	o := cloudUpload
	if o.Bucket != "" {
		out["aws.s3"] = compose.UploadTarget{Target: "aws.s3", Options: o}
		out["aws"] = compose.UploadTarget{Target: "aws", Options: o}
		if o.Project != "" {
			out["gcp"] = compose.UploadTarget{Target: "gcp", Options: o}
		}
	}
	if o.StorageAccount != "" && o.Container != "" {
		out["azure"] = compose.UploadTarget{Target: "azure", Options: o}
	}
	return out
}
