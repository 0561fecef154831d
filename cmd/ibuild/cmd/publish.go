package cmd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/image-builder-action/image-builder-action/pkg/ibuild"
	"github.com/image-builder-action/image-builder-action/pkg/publish"
	"github.com/image-builder-action/image-builder-action/pkg/upload"
)

type publishFlags struct {
	from          string
	tags          []string
	arches, types []string
	sign          string
	key           string
	json          bool
	insecure      bool
	attach        string
	containerDisk string
	source        string
	revision      string
	fulcioURL     string
	rekorURL      string
	targets       []string
	uploadOpts    upload.Options
}

func newPublish() *cobra.Command {
	var f publishFlags
	c := &cobra.Command{
		Use:   "publish LOCKFILE --from DIR [REF] [--target TARGET]...",
		Short: "Push built images as signed OCI artifacts with SBOM and provenance",
		Long: `Publish pushes every built output of LOCKFILE found in DIR to REF (a repository,
optionally with a tag): one OCI artifact per (arch, type), an index per type
across architectures, then a cosign signature, an SPDX SBOM and SLSA v1
provenance, then the tags. It prints the digests.

An entry's file is DIR/ARCH/TYPE/FILE, DIR/ARCH/FILE or DIR/FILE (FILE is the
entry's filename, e.g. disk.qcow2). The key's password is read from
COSIGN_PASSWORD, or asked for without echo on a terminal.

With --target (aws, aws.s3, gcp, azure; repeatable), the same images are
then uploaded to each cloud target as ibuild upload does (its option flags
apply); REF may then be left out.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(c *cobra.Command, args []string) error {
			lockPath, ref := args[0], ""
			if len(args) == 2 {
				ref = args[1]
			} else if len(f.targets) == 0 {
				return errors.New("publish: give a registry reference (REF), an upload --target, or both")
			}
			sign, err := f.signRequest(c)
			if err != nil {
				return err
			}
			req := ibuild.PublishRequest{
				Lockfile: lockPath, From: f.from, Ref: ref,
				Arches: f.arches, Types: f.types, Tags: f.tags,
				Sign:    sign,
				Events:  progressPrinter(c.ErrOrStderr(), f.json),
				Uploads: uploadTargets(f.targets, f.uploadOpts, uploadPrinter(c.ErrOrStderr(), f.json)),
				Options: []publish.Option{
					publish.WithInsecure(f.insecure),
					publish.WithMode(publish.Mode(f.attach)),
				},
			}
			if f.source != "" || f.revision != "" {
				req.Options = append(req.Options, publish.WithSource(f.source, f.revision))
			}
			if f.containerDisk != "" {
				req.Options = append(req.Options, publish.WithContainerDisk(f.containerDisk))
			}
			out, err := ibuild.Publish(c.Context(), req)
			if err != nil {
				return err
			}
			res := out.Result
			if f.json {
				enc := json.NewEncoder(c.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(struct {
					*publish.Result
					Uploads []upload.Result `json:"uploads,omitempty"`
				}{res, out.Uploads})
			}
			if res != nil {
				printResult(c.OutOrStdout(), res)
			}
			if len(out.Uploads) > 0 {
				return printUploads(c.OutOrStdout(), out.Uploads, false)
			}
			return nil
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.from, "from", "out", "directory holding the built images (ibuild build -o DIR)")
	fl.StringArrayVar(&f.tags, "tag", nil, "tag the index of each image type (repeatable; with several types, TAG-TYPE)")
	fl.StringSliceVar(&f.arches, "arch", nil, "publish only these architectures (their files must exist)")
	fl.StringSliceVar(&f.types, "type", nil, "publish only these image types (their files must exist)")
	fl.StringVar(&f.sign, "sign", "", "key, keyless or none (default: key with --key, else none)")
	fl.StringVar(&f.key, "key", "", "cosign private key (cosign generate-key-pair); password from COSIGN_PASSWORD")
	fl.BoolVar(&f.json, "json", false, "print the result as JSON")
	fl.BoolVar(&f.insecure, "insecure", false, "allow plain-HTTP registries (loopback addresses always may)")
	fl.StringVar(&f.attach, "attach", "auto", "attach signatures as OCI 1.1 referrers, cosign tags, or auto (referrers where the registry has the API)")
	fl.StringVar(&f.containerDisk, "containerdisk", "", "also publish the qcow2 image as a KubeVirt containerDisk to this reference")
	fl.StringVar(&f.source, "source", "", "org.opencontainers.image.source (default: the GitHub repository in Actions)")
	fl.StringVar(&f.revision, "revision", "", "org.opencontainers.image.revision (default: GITHUB_SHA in Actions)")
	fl.StringVar(&f.fulcioURL, "fulcio-url", publish.DefaultFulcioURL, "Fulcio for keyless signing")
	fl.StringVar(&f.rekorURL, "rekor-url", publish.DefaultRekorURL, "Rekor for keyless signing")
	fl.StringArrayVar(&f.targets, "target", nil, "also upload the images to this cloud target: aws, aws.s3, gcp or azure (repeatable; options as for ibuild upload)")
	addUploadFlags(fl, &f.uploadOpts)
	return c
}

// uploadTargets is each named target with the shared options.
func uploadTargets(names []string, o upload.Options, events func(upload.Event)) []ibuild.UploadTarget {
	var out []ibuild.UploadTarget
	for _, n := range names {
		out = append(out, ibuild.UploadTarget{Target: n, Options: o, Events: events})
	}
	return out
}

// signRequest maps --sign, --key and the keyless flags.
func (f *publishFlags) signRequest(c *cobra.Command) (ibuild.SignRequest, error) {
	mode := f.sign
	if mode == "" {
		mode = "none"
		if f.key != "" {
			mode = "key"
		}
	}
	switch mode {
	case "none":
		if f.key != "" {
			return ibuild.SignRequest{}, errors.New("--key with --sign none: drop one")
		}
		return ibuild.SignRequest{Mode: ibuild.SignNone}, nil
	case "key":
		if f.key == "" {
			return ibuild.SignRequest{}, errors.New("--sign key needs --key (a cosign private key)")
		}
		return ibuild.SignRequest{Mode: ibuild.SignKey, Key: f.key, Password: keyPassword(c, f.key)}, nil
	case "keyless":
		if f.key != "" {
			return ibuild.SignRequest{}, errors.New("--key with --sign keyless: drop one")
		}
		return ibuild.SignRequest{Mode: ibuild.SignKeyless, Keyless: publish.KeylessOptions{
			CA:  publish.FulcioCA{URL: f.fulcioURL},
			Log: &publish.Rekor{URL: f.rekorURL},
		}}, nil
	}
	return ibuild.SignRequest{}, fmt.Errorf("--sign %q: want key, keyless or none", f.sign)
}

// keyPassword reads COSIGN_PASSWORD (set, even empty, it is used), else
// asks on the terminal without echo.
func keyPassword(c *cobra.Command, key string) publish.PassFunc {
	return func() ([]byte, error) {
		if pw, ok := os.LookupEnv("COSIGN_PASSWORD"); ok {
			return []byte(pw), nil
		}
		fd := int(os.Stdin.Fd())
		if !term.IsTerminal(fd) {
			return nil, errors.New("set COSIGN_PASSWORD (empty for a key without one): there is no terminal to ask on")
		}
		fmt.Fprintf(c.ErrOrStderr(), "Password for %s: ", key)
		pw, err := term.ReadPassword(fd)
		fmt.Fprintln(c.ErrOrStderr())
		return pw, err
	}
}

func progressPrinter(w io.Writer, quiet bool) func(publish.Event) {
	return func(e publish.Event) {
		if quiet {
			return
		}
		switch e.Kind {
		case "hash":
			fmt.Fprintf(w, "hashed %s: %s (%s in %.1fs)\n", e.What, e.Ref, size(e.Bytes), e.Duration.Seconds())
		case "push":
			if e.Bytes > 0 {
				fmt.Fprintf(w, "pushed %s: %s (%s in %.1fs)\n", e.What, e.Ref, size(e.Bytes), e.Duration.Seconds())
			} else {
				fmt.Fprintf(w, "pushed %s: %s\n", e.What, e.Ref)
			}
		case "sign":
			fmt.Fprintf(w, "signed %s: %s\n", e.What, e.Ref)
		case "tag":
			fmt.Fprintf(w, "tagged %s: %s\n", e.What, e.Ref)
		}
	}
}

func size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d bytes", n)
}

func printResult(w io.Writer, res *publish.Result) {
	imgs := res.Images
	if res.ContainerDisk != nil {
		imgs = append(imgs, *res.ContainerDisk)
	}
	for _, img := range imgs {
		fmt.Fprintf(w, "%s\t%s\n", img.Type, img.Ref)
		for _, t := range img.Tags {
			fmt.Fprintf(w, "  tag\t%s\n", t)
		}
		for _, a := range img.Attachments {
			fmt.Fprintf(w, "  %s\t%s\n", a.Kind, a.Ref)
		}
		for _, a := range img.Artifacts {
			fmt.Fprintf(w, "  %s\t%s\t%s\tsha256:%s\n", a.Platform, a.Ref, filepath.Base(a.File), a.SHA256)
			for _, at := range a.Attachments {
				fmt.Fprintf(w, "    %s\t%s\n", at.Kind, at.Ref)
			}
		}
	}
}
