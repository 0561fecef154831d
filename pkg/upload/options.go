package upload

import (
	"errors"
	"fmt"
	"regexp"
	"time"
)

// imageNames are the image names each target takes: for aws.s3 a plain
// file name, no path (the operator's Prefix says where objects go); for
// gcp what GCE allows (RFC 1035 labels of at most 63 characters); for
// azure what Resource Manager allows for an image.
var imageNames = map[string]struct {
	re   *regexp.Regexp
	want string
}{
	"aws.s3": {regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$`), "1-200 letters, digits, '.', '_' or '-', starting with a letter or digit"},
	"gcp":    {regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`), "1-63 lower-case letters, digits or '-', starting with a letter, not ending with '-'"},
	"aws":    {regexp.MustCompile(`^[A-Za-z0-9()\[\] ./'@_-]{3,128}$`), "3-128 letters, digits, spaces or ( ) [ ] . / - ' @ _ (EC2's rule for AMI names)"},
	"azure":  {regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?$`), "1-80 letters, digits, '_', '.' or '-', starting with a letter or digit, ending with a letter, digit or '_'"},
}

// snapshotNameRE is what an AMI's snapshot name (its Name tag) may be.
var snapshotNameRE = regexp.MustCompile(`^[A-Za-z0-9()\[\] ./'@_:+=-]{1,255}$`)

// CheckSnapshotName checks a snapshot name asked for target (composer's
// snapshot_name): only aws makes snapshots.
func CheckSnapshotName(target, name string) error {
	if target != "aws" {
		return fmt.Errorf("%s makes no snapshot to name", target)
	}
	if !snapshotNameRE.MatchString(name) {
		return fmt.Errorf("snapshot name %q: want 1-255 letters, digits, spaces or ( ) [ ] . / - ' @ _ : + =", name)
	}
	return nil
}

// CheckImageName checks an image name asked for target (composer's
// image_name). Targets that do not honour one refuse it.
func CheckImageName(target, name string) error {
	n, ok := imageNames[target]
	if !ok {
		return fmt.Errorf("upload target %q takes no image name", target)
	}
	if !n.re.MatchString(name) {
		return fmt.Errorf("image name %q: want %s", name, n.want)
	}
	return nil
}

// Targets are the targets' names, as composer names them.
var Targets = []string{"aws", "aws.s3", "gcp", "azure"}

// Options are every target's settings, named after composer's upload
// options (the CLI's flags and the Action's inputs are these in
// kebab-case). Credentials are not among them: each SDK's default chain
// finds those.
type Options struct {
	// ImageName names the uploaded image instead of the name derived from
	// the digests (composer's image_name; see CheckImageName);
	// SnapshotName names an aws AMI's snapshot (default: ImageName).
	ImageName    string `json:",omitempty"`
	SnapshotName string `json:",omitempty"`
	// aws, aws.s3
	Region            string
	Bucket            string
	Prefix            string
	Endpoint          string // S3-compatible endpoint (path-style)
	EC2Endpoint       string
	Public            bool
	Expires           time.Duration
	ShareWithAccounts []string
	BootMode          string
	// gcp
	Project         string
	Family          string
	StorageEndpoint string
	ComputeEndpoint string
	// azure
	SubscriptionID   string
	ResourceGroup    string
	Location         string
	StorageAccount   string
	Container        string
	HyperVGeneration string
	BlobEndpoint     string
	ARMEndpoint      string
}

// New makes the target named name from o, checking that o has what the
// target needs; errors name the option as the CLI spells it.
func New(name string, o Options) (Target, error) {
	need := func(pairs ...string) error {
		for i := 0; i < len(pairs); i += 2 {
			if pairs[i+1] == "" {
				return fmt.Errorf("upload to %s: --%s is required", name, pairs[i])
			}
		}
		return nil
	}
	if o.ImageName != "" {
		if err := CheckImageName(name, o.ImageName); err != nil {
			return nil, fmt.Errorf("upload to %s: %w", name, err)
		}
	}
	if o.SnapshotName != "" {
		if err := CheckSnapshotName(name, o.SnapshotName); err != nil {
			return nil, fmt.Errorf("upload to %s: %w", name, err)
		}
	}
	switch name {
	case "aws.s3":
		if err := need("bucket", o.Bucket); err != nil {
			return nil, err
		}
		if o.Expires < 0 || o.Expires > DefaultPresignExpiry {
			return nil, errors.New("upload to aws.s3: --expires must be at most 7 days (168h), S3's limit for presigned URLs")
		}
		return &S3{Bucket: o.Bucket, Prefix: o.Prefix, Region: o.Region, Endpoint: o.Endpoint, Public: o.Public, Expires: o.Expires,
			ImageName: o.ImageName}, nil
	case "aws":
		if err := need("bucket", o.Bucket); err != nil {
			return nil, err
		}
		switch o.BootMode {
		case "", "uefi-preferred", "uefi", "legacy-bios":
		default:
			return nil, fmt.Errorf("upload to aws: --boot-mode %q: want uefi-preferred, uefi or legacy-bios", o.BootMode)
		}
		return &AWS{Region: o.Region, Bucket: o.Bucket, ShareWithAccounts: o.ShareWithAccounts, BootMode: o.BootMode,
			ImageName: o.ImageName, SnapshotName: o.SnapshotName,
			S3Endpoint: o.Endpoint, EC2Endpoint: o.EC2Endpoint}, nil
	case "gcp":
		if err := need("project", o.Project, "bucket", o.Bucket); err != nil {
			return nil, err
		}
		return &GCP{Project: o.Project, Bucket: o.Bucket, Region: o.Region, Family: o.Family, ImageName: o.ImageName,
			StorageEndpoint: o.StorageEndpoint, ComputeEndpoint: o.ComputeEndpoint}, nil
	case "azure":
		if err := need("subscription-id", o.SubscriptionID, "resource-group", o.ResourceGroup, "location", o.Location); err != nil {
			return nil, err
		}
		if o.BlobEndpoint == "" {
			if err := need("storage-account", o.StorageAccount); err != nil {
				return nil, err
			}
		}
		switch o.HyperVGeneration {
		case "", "V1", "V2":
		default:
			return nil, fmt.Errorf("upload to azure: --hyper-v-generation %q: want V2 (UEFI) or V1", o.HyperVGeneration)
		}
		return &Azure{SubscriptionID: o.SubscriptionID, ResourceGroup: o.ResourceGroup, Location: o.Location,
			StorageAccount: o.StorageAccount, Container: o.Container, HyperVGeneration: o.HyperVGeneration,
			BlobEndpoint: o.BlobEndpoint, ARMEndpoint: o.ARMEndpoint, ImageName: o.ImageName}, nil
	}
	return nil, fmt.Errorf("upload target %q: want one of aws, aws.s3, gcp, azure", name)
}
