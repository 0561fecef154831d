package cmd

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/image-builder-action/image-builder-action/pkg/ibuild"
	"github.com/image-builder-action/image-builder-action/pkg/upload"
)

type uploadFlags struct {
	from          string
	to            string
	arches, types []string
	json          bool
	opts          upload.Options
}

func newUpload() *cobra.Command {
	var f uploadFlags
	c := &cobra.Command{
		Use:   "upload LOCKFILE --from DIR --to TARGET",
		Short: "Upload built images to a cloud: aws (AMI), aws.s3, gcp, azure",
		Long: `Upload verifies each built image of LOCKFILE in DIR against the sha256 its
build recorded (FILE.sha256), then uploads it to TARGET:

  aws     raw disk → S3 staging object → snapshot import → AMI (--region, --bucket)
  aws.s3  the image file → S3 object; prints a presigned URL (--bucket)
  gcp     the gce tarball → GCS object → image (--project, --bucket)
  azure   the fixed VHD → page blob → managed image (--subscription-id,
          --resource-group, --location, --storage-account)

Credentials come from each cloud SDK's default chain (environment, shared
config, workload identity), never from flags. Names and tags derive from
the lockfile's and the image's digests: uploading the same image again
finds what the first upload made.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			res, err := ibuild.Upload(c.Context(), ibuild.UploadRequest{
				Lockfile: args[0], From: f.from, Arches: f.arches, Types: f.types,
				Target: f.to, Options: f.opts, Events: uploadPrinter(c.ErrOrStderr(), f.json),
			})
			if err != nil {
				return err
			}
			return printUploads(c.OutOrStdout(), res.Uploads, f.json)
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.from, "from", "out", "directory holding the built images (ibuild build -o DIR)")
	fl.StringVar(&f.to, "to", "", "target: aws, aws.s3, gcp or azure")
	c.MarkFlagRequired("to")
	fl.StringSliceVar(&f.arches, "arch", nil, "upload only these architectures (their files must exist)")
	fl.StringSliceVar(&f.types, "type", nil, "upload only these image types (their files must exist)")
	fl.BoolVar(&f.json, "json", false, "print the result as JSON")
	addUploadFlags(fl, &f.opts)
	return c
}

// addUploadFlags binds the targets' options, composer's names in
// kebab-case.
func addUploadFlags(fl *pflag.FlagSet, o *upload.Options) {
	fl.StringVar(&o.Region, "region", "", "aws, aws.s3: region (default: the SDK's, e.g. AWS_REGION); gcp: the image's storage location")
	fl.StringVar(&o.Bucket, "bucket", "", "aws: staging bucket; aws.s3: the bucket; gcp: staging bucket")
	fl.StringVar(&o.Prefix, "prefix", "", "aws.s3: key prefix")
	fl.StringVar(&o.Endpoint, "endpoint", "", "aws, aws.s3: S3-compatible endpoint URL (path-style addressing)")
	fl.StringVar(&o.EC2Endpoint, "ec2-endpoint", "", "aws: EC2 endpoint URL")
	fl.BoolVar(&o.Public, "public", false, "aws.s3: make the object public-read and print its URL instead of a presigned one")
	fl.DurationVar(&o.Expires, "expires", 0, "aws.s3: presigned URL lifetime (default and maximum 168h)")
	fl.StringSliceVar(&o.ShareWithAccounts, "share-with-accounts", nil, "aws: account ids to share the AMI and its snapshot with")
	fl.StringVar(&o.BootMode, "boot-mode", "", "aws: uefi-preferred (default), uefi or legacy-bios")
	fl.StringVar(&o.Project, "project", "", "gcp: project id")
	fl.StringVar(&o.Family, "family", "", "gcp: image family")
	fl.StringVar(&o.StorageEndpoint, "storage-endpoint", "", "gcp: Cloud Storage endpoint URL")
	fl.StringVar(&o.ComputeEndpoint, "compute-endpoint", "", "gcp: Compute Engine endpoint URL")
	fl.StringVar(&o.SubscriptionID, "subscription-id", "", "azure: subscription id")
	fl.StringVar(&o.ResourceGroup, "resource-group", "", "azure: resource group of the image")
	fl.StringVar(&o.Location, "location", "", "azure: the image's location")
	fl.StringVar(&o.StorageAccount, "storage-account", "", "azure: storage account for the page blob")
	fl.StringVar(&o.Container, "container", "", "azure: blob container (default: ibuild)")
	fl.StringVar(&o.HyperVGeneration, "hyper-v-generation", "", "azure: V2 (UEFI, default) or V1")
	fl.StringVar(&o.BlobEndpoint, "blob-endpoint", "", "azure: blob service endpoint URL")
	fl.StringVar(&o.ARMEndpoint, "arm-endpoint", "", "azure: Resource Manager endpoint URL")
}

func uploadPrinter(w io.Writer, quiet bool) func(upload.Event) {
	return func(e upload.Event) {
		if quiet {
			return
		}
		switch e.Kind {
		case "verified":
			fmt.Fprintf(w, "verified %s/%s: %s sha256:%s\n", e.Image.Arch, e.Image.Type, e.Image.Path, e.Image.SHA256)
		case "uploaded":
			fmt.Fprintf(w, "uploaded %s/%s to %s: %s (%s sent in %.1fs)\n", e.Image.Arch, e.Image.Type, e.Result.Target, e.Result.ID, size(e.Result.BytesSent), e.Result.Duration.Seconds())
		case "reused":
			fmt.Fprintf(w, "found %s/%s in %s: %s (nothing sent)\n", e.Image.Arch, e.Image.Type, e.Result.Target, e.Result.ID)
		}
	}
}

func printUploads(w io.Writer, res []upload.Result, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, r := range res {
		loc := r.Region
		if r.Project != "" {
			loc = r.Project
		}
		fmt.Fprintf(tw, "%s\t%s/%s\t%s\t%s\n", r.Target, r.Arch, r.Type, loc, r.ID)
		if r.URL != "" {
			fmt.Fprintf(tw, "\t\turl\t%s\n", r.URL)
		}
	}
	return tw.Flush()
}
