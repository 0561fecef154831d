package action

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/image-builder-action/image-builder-action/pkg/ibuild"
	"github.com/image-builder-action/image-builder-action/pkg/upload"
)

// upload uploads the built images found in output-dir to the cloud that
// input target names, as `ibuild upload` does, and reports each as the
// "uploads" output and a step-summary table.
func (r *runner) upload(ctx context.Context) error {
	if r.in.Target == "" {
		return fmt.Errorf("input target: required (one of %s)", strings.Join(upload.Targets, ", "))
	}
	lockPath, err := r.lockPath()
	if err != nil {
		return err
	}
	req := ibuild.UploadRequest{
		Lockfile: lockPath, From: r.path(r.in.OutputDir),
		Arches: r.in.Arches, Types: r.in.Types,
		Target: r.in.Target, Options: r.in.Upload, NewTarget: r.opts.upload,
		Events: r.uploadEvent,
	}
	var out *ibuild.UploadResult
	err = r.log.group("upload to "+r.in.Target, func() error {
		var err error
		out, err = ibuild.Upload(ctx, req)
		return err
	})
	if err != nil {
		return uploadFailure(err)
	}
	data, err := json.Marshal(out.Uploads)
	if err != nil {
		return err
	}
	if err := r.setOutputs("lockfile", r.rel(lockPath), "uploads", string(data)); err != nil {
		return err
	}
	return r.files.AddStepSummary("## ibuild upload\n\n" + uploadsTable(out.Uploads))
}

func (r *runner) uploadEvent(e upload.Event) {
	switch e.Kind {
	case "verified":
		fmt.Fprintf(r.log, "verified %s/%s: %s sha256:%s\n", e.Image.Arch, e.Image.Type, r.rel(e.Image.Path), e.Image.SHA256)
	case "uploaded":
		fmt.Fprintf(r.log, "uploaded %s/%s to %s: %s (%s sent)\n", e.Image.Arch, e.Image.Type, e.Result.Target, e.Result.ID, humanSize(e.Result.BytesSent))
	case "reused":
		fmt.Fprintf(r.log, "found %s/%s in %s: %s (nothing sent)\n", e.Image.Arch, e.Image.Type, e.Result.Target, e.Result.ID)
	}
}

// uploadFailure names the step an upload failed at.
func uploadFailure(err error) error {
	var ue *upload.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("upload failed at step %q: %w", ue.Step, err)
	}
	return err
}

func uploadsTable(res []upload.Result) string {
	var b strings.Builder
	b.WriteString("| Target | Arch | Type | Image | Where | Sent |\n|---|---|---|---|---|---:|\n")
	for _, u := range res {
		where := u.Region
		if u.Project != "" {
			where = u.Project
		}
		id := "`" + mdCell(u.ID) + "`"
		if u.URL != "" && u.URL != u.ID {
			// A presigned URL is long: link it rather than print it.
			id += fmt.Sprintf(" ([download](%s))", strings.ReplaceAll(u.URL, ")", "%29"))
		}
		sent := humanSize(u.BytesSent)
		if u.Reused {
			sent = "found, nothing sent"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", mdCell(u.Target), mdCell(u.Arch), mdCell(u.Type), id, mdCell(where), sent)
	}
	return b.String()
}
