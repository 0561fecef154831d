package ibuild

import (
	"context"

	"github.com/image-builder-action/image-builder-action/pkg/upload"
)

// UploadRequest asks for the built images of a lockfile to be uploaded to
// a cloud target (aws, aws.s3, gcp, azure).
type UploadRequest struct {
	Lockfile string
	// From is the output directory the images were built into.
	From          string
	Arches, Types []string
	Target        string
	Options       upload.Options
	Events        func(upload.Event)
	// NewTarget, when set, makes the target instead of upload.New (tests
	// inject endpoints and credentials this way).
	NewTarget func(name string, o upload.Options) (upload.Target, error)
}

// UploadResult is what each image became in the cloud.
type UploadResult struct {
	Lockfile *Lockfile
	Uploads  []upload.Result
}

// Upload verifies each built image of the lockfile against its build
// record, then uploads it: names and tags come from the lockfile's digest
// and the image's sha256, so a repeat upload finds what the first made.
func Upload(ctx context.Context, req UploadRequest) (*UploadResult, error) {
	l, err := ReadLockfile(req.Lockfile)
	if err != nil {
		return nil, err
	}
	mk := req.NewTarget
	if mk == nil {
		mk = upload.New
	}
	t, err := mk(req.Target, req.Options)
	if err != nil {
		return nil, err
	}
	res, err := upload.Upload(ctx, upload.Request{
		Lockfile: l.File, LockDigest: l.SHA256, Dir: req.From,
		Arches: req.Arches, Types: req.Types, Target: t, Events: req.Events,
	})
	out := &UploadResult{Lockfile: l, Uploads: res}
	if err != nil {
		return out, err
	}
	return out, nil
}
