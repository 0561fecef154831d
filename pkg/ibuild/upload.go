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

// UploadTarget is a cloud target and its options, for Build (upload each
// image as soon as it is built) and Publish (upload beside the registry).
type UploadTarget struct {
	Target  string
	Options upload.Options
	// NewTarget and Events as in UploadRequest.
	NewTarget func(name string, o upload.Options) (upload.Target, error)
	Events    func(upload.Event)
}

// uploadTo uploads the entries arches × types of lockfile found in from to
// each target, in order, through the Upload use case.
func uploadTo(ctx context.Context, lockfile, from string, arches, types []string, targets []UploadTarget) ([]upload.Result, error) {
	var all []upload.Result
	for _, t := range targets {
		res, err := Upload(ctx, UploadRequest{
			Lockfile: lockfile, From: from, Arches: arches, Types: types,
			Target: t.Target, Options: t.Options, NewTarget: t.NewTarget, Events: t.Events,
		})
		if res != nil {
			all = append(all, res.Uploads...)
		}
		if err != nil {
			return all, err
		}
	}
	return all, nil
}
