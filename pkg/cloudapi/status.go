package cloudapi

import (
	"fmt"

	"github.com/image-builder-action/image-builder-action/pkg/compose"
	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/pkg/upload"
)

// composeStatus reports a compose as composer does: the compose is
// pending until it ends in success or failure; each image says where it
// is (pending, building, uploading, success, failure), how far its build
// got, and its upload's result.
func composeStatus(c *compose.Compose) ComposeStatus {
	out := ComposeStatus{Id: c.ID, Kind: "ComposeStatus", Href: href(PrefixV2, c.ID, ""), Status: "pending"}
	switch c.Status {
	case compose.StatusSuccess:
		out.Status = "success"
	case compose.StatusFailure:
		out.Status = "failure"
	}
	var images []ImageStatus
	for i, im := range c.Images {
		var up *compose.UploadTarget
		if i < len(c.Request.Images) {
			up = c.Request.Images[i].Upload
		}
		images = append(images, imageStatus(c, im, up))
	}
	if len(images) == 0 {
		images = []ImageStatus{{Status: ImageStatusValue(out.Status)}}
	}
	out.ImageStatus = images[0]
	out.ImageStatuses = &images
	return out
}

func imageStatus(c *compose.Compose, im compose.ImageStatus, up *compose.UploadTarget) ImageStatus {
	arch, typ := im.Arch, im.Type
	out := ImageStatus{Status: ImageStatusValue(im.Status), Architecture: &arch, ImageType: &typ,
		Progress: &Progress{Done: im.Progress.Done, Total: im.Progress.Total}}
	switch im.Status {
	case compose.StatusPending, compose.StatusBuilding, compose.StatusUploading, compose.StatusSuccess, compose.StatusFailure:
	default:
		out.Status = "pending"
	}
	msg := im.Error
	if msg == "" && im.Status == compose.StatusFailure {
		msg = c.Error
	}
	if msg != "" {
		out.Error = &ComposeStatusError{Id: codeInternal, Reason: msg}
	}
	if up != nil {
		us := UploadStatus{Type: UploadTypes(up.Target), Status: "pending"}
		switch {
		case im.Status == compose.StatusUploading:
			us.Status = "running"
		case im.Status == compose.StatusSuccess && im.Upload != nil:
			us.Status = "success"
			us.Options = uploadResult(im.Upload)
		case im.Status == compose.StatusFailure:
			us.Status = "failure"
		}
		out.UploadStatus = &us
		out.UploadStatuses = &[]UploadStatus{us}
	}
	return out
}

// uploadResult names what the target made the way composer does.
func uploadResult(r *upload.Result) UploadStatusOptions {
	str := func(s string) *string {
		if s == "" {
			return nil
		}
		return &s
	}
	switch r.Target {
	case "aws.s3":
		return UploadStatusOptions{Url: str(r.URL)}
	case "aws":
		return UploadStatusOptions{Ami: str(r.ID), Region: str(r.Region)}
	case "gcp":
		return UploadStatusOptions{ProjectId: str(r.Project), ImageName: str(r.ID)}
	case "azure":
		return UploadStatusOptions{ImageName: str(r.ID)}
	}
	return UploadStatusOptions{Url: str(r.URL)}
}

// lockfilePackages lists every package the lockfile pins.
func lockfilePackages(data []byte) ([]PackageMetadata, error) {
	lf, err := manifest.Parse("lockfile", data)
	if err != nil {
		return nil, fmt.Errorf("reading the compose's lockfile: %w", err)
	}
	out := []PackageMetadata{}
	for _, p := range lf.Packages {
		sum := "sha256:" + p.SHA256
		out = append(out, PackageMetadata{Type: "deb", Name: p.Name, Version: p.Version, Arch: p.Arch, Checksum: &sum})
	}
	return out, nil
}
