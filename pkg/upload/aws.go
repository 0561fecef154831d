package upload

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// AWS makes an AMI of a raw disk (composer's aws target): S3 staging
// object → ImportSnapshot (RAW) → wait → RegisterImage → tags → sharing;
// the staging object is deleted whatever happens.
type AWS struct {
	Region string
	// Bucket holds the staging object while the snapshot is imported.
	Bucket string
	// ShareWithAccounts get launch permission on the AMI and
	// create-volume permission on its snapshot.
	ShareWithAccounts []string
	// BootMode is uefi-preferred by default: our disks boot both ways.
	BootMode string
	// ImageName and SnapshotName, when set, name the AMI and its snapshot
	// (composer's image_name and snapshot_name; the snapshot's name is its
	// Name tag, the AMI's by default) instead of the name derived from the
	// digests. An AMI of that name tagged with the image's sha256 is
	// reused; one made from another image fails with ErrNameTaken.
	ImageName, SnapshotName string
	// S3Endpoint and EC2Endpoint replace the services' endpoints.
	S3Endpoint, EC2Endpoint string
	// Poll is how often the import task is asked about (default 15 s).
	Poll time.Duration
	// Config replaces the SDK's default configuration.
	Config *aws.Config
}

var _ Target = (*AWS)(nil)

func (t *AWS) Name() string { return "aws" }

// Accepts raw disks: ImportSnapshot's RAW format is the only one read as is.
func (t *AWS) Accepts(typ string) bool { return typ == "raw" || typ == "ami" }

func (t *AWS) fail(step string, err error) error { return cloudError(t.Name(), step, err) }

// amiArch maps an entry's architecture to EC2's.
func amiArch(arch string) (ec2types.ArchitectureValues, error) {
	switch arch {
	case "x86_64", "amd64":
		return ec2types.ArchitectureValuesX8664, nil
	case "aarch64", "arm64":
		return ec2types.ArchitectureValuesArm64, nil
	}
	return "", fmt.Errorf("architecture %q has no AMI equivalent", arch)
}

func (t *AWS) Upload(ctx context.Context, img *Image) (*Result, error) {
	start := time.Now()
	if t.Bucket == "" {
		return nil, &Error{Target: t.Name(), Step: "configuring", Err: errors.New("no staging bucket given")}
	}
	arch, err := amiArch(img.Arch)
	if err != nil {
		return nil, &Error{Target: t.Name(), Step: "configuring", Err: err}
	}
	bootMode := ec2types.BootModeValuesUefiPreferred
	if t.BootMode != "" {
		bootMode = ec2types.BootModeValues(t.BootMode)
	}
	cfg, err := loadAWSConfig(ctx, t.Config, t.Region)
	if err != nil {
		return nil, t.fail("loading credentials", err)
	}
	ec := ec2.NewFromConfig(cfg, func(o *ec2.Options) {
		if t.EC2Endpoint != "" {
			o.BaseEndpoint = aws.String(t.EC2Endpoint)
		}
	})
	name := img.Name()
	if t.ImageName != "" {
		name = t.ImageName
	}
	snapName := name
	if t.SnapshotName != "" {
		snapName = t.SnapshotName
	}
	res := &Result{Target: t.Name(), Arch: img.Arch, Type: img.Type, Region: cfg.Region}

	// 1. The image, when a previous upload made it.
	found, err := ec.DescribeImages(ctx, &ec2.DescribeImagesInput{
		Owners:  []string{"self"},
		Filters: []ec2types.Filter{{Name: aws.String("name"), Values: []string{name}}},
	})
	if err != nil {
		return nil, t.fail("looking for image "+name, err)
	}
	for _, im := range found.Images {
		if t.ImageName != "" && ec2Tag(im.Tags, TagImage) != img.SHA256 {
			// A name the user chose may be taken by another image; one
			// derived from the digests cannot (its tags may be missing
			// when an earlier run stopped before tagging).
			return nil, t.fail("looking for image "+name, fmt.Errorf("%w: AMI %s (%s) was made from another image (sha256 %q)",
				ErrNameTaken, aws.ToString(im.ImageId), name, ec2Tag(im.Tags, TagImage)))
		}
		if im.State == ec2types.ImageStateAvailable || im.State == ec2types.ImageStatePending {
			res.ID, res.Reused = aws.ToString(im.ImageId), true
			snap := ""
			for _, bd := range im.BlockDeviceMappings {
				if bd.Ebs != nil && snap == "" {
					snap = aws.ToString(bd.Ebs.SnapshotId)
				}
			}
			if err := t.share(ctx, ec, res.ID, snap); err != nil {
				return nil, err
			}
			res.Duration = time.Since(start)
			return res, nil
		}
	}

	// 2. The staging object, deleted whatever happens next.
	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if t.S3Endpoint != "" {
			o.BaseEndpoint = aws.String(t.S3Endpoint)
			o.UsePathStyle = true
		}
	})
	// Staged, and imported, under the derived name: two images given the
	// same name never share a staging object or an import task.
	key := "ibuild-staging/" + img.Name() + ".raw"
	sent, _, serr := putObject(ctx, s3c, t.Bucket, key, img, false, 0, 0, false)
	res.BytesSent = sent
	defer func() {
		// The staging object goes even when ctx was cancelled.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		s3c.DeleteObject(dctx, &s3.DeleteObjectInput{Bucket: &t.Bucket, Key: &key})
		abortStale(dctx, s3c, t.Bucket, key)
	}()
	if serr != nil {
		return nil, t.fail(serr.step, serr.err)
	}

	// 3. The snapshot. The client token makes a retried call (or a rerun
	// while the task still runs) return the same task.
	tagsNamed := func(n string) []ec2types.Tag {
		return []ec2types.Tag{
			{Key: aws.String("Name"), Value: aws.String(n)},
			{Key: aws.String(TagLockfile), Value: aws.String(img.LockDigest)},
			{Key: aws.String(TagImage), Value: aws.String(img.SHA256)},
		}
	}
	tags := tagsNamed(snapName)
	imp, err := ec.ImportSnapshot(ctx, &ec2.ImportSnapshotInput{
		ClientToken: aws.String(importToken(img, t.Bucket, key, snapName)),
		Description: aws.String(snapName),
		DiskContainer: &ec2types.SnapshotDiskContainer{
			Format:     aws.String("RAW"),
			UserBucket: &ec2types.UserBucket{S3Bucket: &t.Bucket, S3Key: &key},
		},
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeImportSnapshotTask, Tags: tags}},
	})
	if err != nil {
		return nil, t.fail("importing snapshot", err)
	}
	snap, err := t.waitImport(ctx, ec, aws.ToString(imp.ImportTaskId))
	if err != nil {
		return nil, err
	}

	// 4. The AMI; without it the snapshot is removed: nothing is left
	// half-registered.
	root := "/dev/xvda"
	reg, err := ec.RegisterImage(ctx, &ec2.RegisterImageInput{
		Name:               aws.String(name),
		Description:        aws.String(fmt.Sprintf("%s %s %s built by ibuild", img.Distro, img.Arch, img.Type)),
		Architecture:       arch,
		BootMode:           bootMode,
		EnaSupport:         aws.Bool(true),
		VirtualizationType: aws.String("hvm"),
		RootDeviceName:     aws.String(root),
		BlockDeviceMappings: []ec2types.BlockDeviceMapping{{
			DeviceName: aws.String(root),
			Ebs: &ec2types.EbsBlockDevice{
				SnapshotId:          aws.String(snap),
				DeleteOnTermination: aws.Bool(true),
				VolumeType:          ec2types.VolumeTypeGp3,
			},
		}},
	})
	if err != nil {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		ec.DeleteSnapshot(dctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(snap)})
		return nil, t.fail("registering image", err)
	}
	res.ID = aws.ToString(reg.ImageId)
	if snapName == name {
		if _, err := ec.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{res.ID, snap}, Tags: tags}); err != nil {
			return nil, t.fail("tagging "+res.ID, err)
		}
	} else {
		if _, err := ec.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{res.ID}, Tags: tagsNamed(name)}); err != nil {
			return nil, t.fail("tagging "+res.ID, err)
		}
		if _, err := ec.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{snap}, Tags: tags}); err != nil {
			return nil, t.fail("tagging "+snap, err)
		}
	}
	if err := t.share(ctx, ec, res.ID, snap); err != nil {
		return nil, err
	}
	res.Duration = time.Since(start)
	return res, nil
}

// importToken is ImportSnapshot's client token. EC2 answers a token sent
// again with other parameters with IdempotentParameterMismatch, so the
// token is a function of every parameter that can differ: the image, where
// it is staged and the snapshot's name (its Description and Name tag).
// The same image uploaded under another snapshot name is another import,
// so each snapshot carries the name it was asked for.
func importToken(img *Image, bucket, key, snapName string) string {
	sum := sha256.Sum256([]byte(strings.Join([]string{img.Name(), img.SHA256, img.LockDigest, bucket, key, snapName}, "\x00")))
	return hex.EncodeToString(sum[:]) // 64 characters, EC2's limit
}

// waitImport polls the import task until its snapshot is made.
func (t *AWS) waitImport(ctx context.Context, ec *ec2.Client, task string) (string, error) {
	poll := t.Poll
	if poll == 0 {
		poll = 15 * time.Second
	}
	for {
		out, err := ec.DescribeImportSnapshotTasks(ctx, &ec2.DescribeImportSnapshotTasksInput{ImportTaskIds: []string{task}})
		if err != nil {
			return "", t.fail("waiting for import task "+task, err)
		}
		if len(out.ImportSnapshotTasks) != 1 || out.ImportSnapshotTasks[0].SnapshotTaskDetail == nil {
			return "", &Error{Target: t.Name(), Step: "waiting for import task " + task, Err: errors.New("the task is not listed")}
		}
		d := out.ImportSnapshotTasks[0].SnapshotTaskDetail
		switch aws.ToString(d.Status) {
		case "completed":
			return aws.ToString(d.SnapshotId), nil
		case "deleted", "deleting", "error":
			// EC2 puts the reason's code first: "ClientError: Disk
			// validation failed ...".
			msg := aws.ToString(d.StatusMessage)
			code, _, ok := strings.Cut(msg, ":")
			if !ok || strings.Contains(code, " ") {
				code = ""
			}
			return "", &Error{Target: t.Name(), Step: "importing snapshot (task " + task + ")", Code: code,
				Err: fmt.Errorf("task %s: %s", aws.ToString(d.Status), msg)}
		}
		select {
		case <-ctx.Done():
			// The task goes on in the cloud; stop it, or it makes an
			// orphan snapshot.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			ec.CancelImportTask(dctx, &ec2.CancelImportTaskInput{ImportTaskId: aws.String(task)})
			return "", t.fail("waiting for import task "+task, ctx.Err())
		case <-time.After(poll):
		}
	}
}

func (t *AWS) share(ctx context.Context, ec *ec2.Client, ami, snap string) error {
	if len(t.ShareWithAccounts) == 0 {
		return nil
	}
	var perms []ec2types.LaunchPermission
	var vperms []ec2types.CreateVolumePermission
	for _, a := range t.ShareWithAccounts {
		perms = append(perms, ec2types.LaunchPermission{UserId: aws.String(a)})
		vperms = append(vperms, ec2types.CreateVolumePermission{UserId: aws.String(a)})
	}
	if snap != "" {
		if _, err := ec.ModifySnapshotAttribute(ctx, &ec2.ModifySnapshotAttributeInput{
			SnapshotId:             aws.String(snap),
			Attribute:              ec2types.SnapshotAttributeNameCreateVolumePermission,
			CreateVolumePermission: &ec2types.CreateVolumePermissionModifications{Add: vperms},
		}); err != nil {
			return t.fail("sharing snapshot "+snap, err)
		}
	}
	if _, err := ec.ModifyImageAttribute(ctx, &ec2.ModifyImageAttributeInput{
		ImageId:          aws.String(ami),
		LaunchPermission: &ec2types.LaunchPermissionModifications{Add: perms},
	}); err != nil {
		return t.fail("sharing image "+ami, err)
	}
	return nil
}

// ec2Tag is the value of the tag key in tags, "" when absent.
func ec2Tag(tags []ec2types.Tag, key string) string {
	for _, t := range tags {
		if aws.ToString(t.Key) == key {
			return aws.ToString(t.Value)
		}
	}
	return ""
}
