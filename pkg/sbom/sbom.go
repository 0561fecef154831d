// Package sbom turns a lockfile entry into an SPDX 2.3 JSON document: every
// package the entry's os pipeline installs, pinned as the lockfile pins it.
// The document is built with the SPDX project's Go library
// (github.com/spdx/tools-golang) and written by its JSON writer.
// The document depends on the lockfile alone, so equal lockfiles give
// byte-identical SBOMs.
package sbom

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx"
	"github.com/spdx/tools-golang/spdx/v2/common"
	"github.com/spdx/tools-golang/spdxlib"

	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/pkg/version"
)

// PredicateType is the in-toto predicate type of an SPDX document (what
// cosign calls "spdxjson").
const PredicateType = "https://spdx.dev/Document"

// MediaType is the media type of an SPDX JSON document.
const MediaType = "application/spdx+json"

// NamespaceBase prefixes every document namespace; the rest of the namespace
// is derived from the lockfile's digest and the entry.
const NamespaceBase = "https://github.com/image-builder-action/image-builder-action/spdx/"

// OSPipeline is the pipeline whose packages make up the image.
const OSPipeline = manifest.PipelineOS

// Document is an SPDX 2.3 document: the SPDX project's own Go type
// (github.com/spdx/tools-golang), whose JSON encoding follows the spec.
type Document = spdx.Document

// Option configures New.
type Option func(*options) error

type options struct {
	lockDigest string
	name       string
	file       string
	fileSHA256 string
	tool       string
}

// WithLockfileDigest sets the sha256 (hex) of the lockfile file the entry
// comes from; the document namespace is derived from it. Default: the
// digest of the lockfile's canonical serialisation.
func WithLockfileDigest(hexDigest string) Option {
	return func(o *options) error {
		if !isHex64(hexDigest) {
			return fmt.Errorf("lockfile digest %q is not a sha256 hex digest", hexDigest)
		}
		o.lockDigest = hexDigest
		return nil
	}
}

// WithName sets the name of the document and of its image package
// (default "image").
func WithName(name string) Option {
	return func(o *options) error {
		if name == "" {
			return fmt.Errorf("empty SBOM name")
		}
		o.name = name
		return nil
	}
}

// WithImageFile records the built image file (its name and sha256) as the
// image package's file name and checksum.
func WithImageFile(name, sha256Hex string) Option {
	return func(o *options) error {
		if !isHex64(sha256Hex) {
			return fmt.Errorf("image file %s: %q is not a sha256 hex digest", name, sha256Hex)
		}
		o.file, o.fileSHA256 = name, sha256Hex
		return nil
	}
}

// WithTool overrides the creator tool (default "ibuild-<version>").
func WithTool(tool string) Option {
	return func(o *options) error { o.tool = tool; return nil }
}

// New builds the SBOM of entry e of lf: the image as the described package,
// containing every package of e's os pipeline.
func New(lf *manifest.Lockfile, e *manifest.Entry, opts ...Option) (*Document, error) {
	o := options{name: "image", tool: "ibuild-" + version.String()}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("sbom of %s: %w", e.Name(), err)
		}
	}
	if o.lockDigest == "" {
		b, err := lf.Marshal()
		if err != nil {
			return nil, fmt.Errorf("sbom of %s: %w", e.Name(), err)
		}
		sum := sha256.Sum256(b)
		o.lockDigest = hex.EncodeToString(sum[:])
	}
	var osp *manifest.Pipeline
	for i := range e.Pipelines {
		if e.Pipelines[i].Name == OSPipeline {
			osp = &e.Pipelines[i]
		}
	}
	if osp == nil {
		return nil, fmt.Errorf("sbom of %s: the entry has no %q pipeline", e.Name(), OSPipeline)
	}
	index := lf.PackageIndex()
	seen := map[string]bool{}
	var pkgs []*manifest.Package
	for _, ref := range osp.PackageRefs() {
		if seen[ref] {
			continue
		}
		seen[ref] = true
		p := index[ref]
		if p == nil {
			return nil, fmt.Errorf("sbom of %s: pipeline %q installs %s, which the lockfile's packages do not list", e.Name(), OSPipeline, ref)
		}
		pkgs = append(pkgs, p)
	}
	sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].Ref() < pkgs[j].Ref() })

	docName := o.name + "-" + e.Distro + "-" + e.Arch + "-" + e.Type
	const imageID = spdx.ElementID("Image")
	noAssertion := "NOASSERTION"
	image := &spdx.Package{
		PackageName:             o.name,
		PackageSPDXIdentifier:   imageID,
		PackageVersion:          e.Distro + "-" + e.Arch + "-" + e.Type,
		PackageDownloadLocation: noAssertion,
		// Files are not listed: the packages are.
		FilesAnalyzed:             false,
		IsFilesAnalyzedTagPresent: true,
		PackageLicenseConcluded:   noAssertion,
		PackageLicenseDeclared:    noAssertion,
		PackageCopyrightText:      noAssertion,
		PrimaryPackagePurpose:     "OPERATING-SYSTEM",
	}
	if o.file != "" {
		image.PackageName = o.name + "/" + o.file
		image.PackageChecksums = []spdx.Checksum{{Algorithm: spdx.SHA256, Value: o.fileSHA256}}
	}
	doc := &Document{
		SPDXVersion:       spdx.Version,
		DataLicense:       spdx.DataLicense,
		SPDXIdentifier:    "DOCUMENT",
		DocumentName:      docName,
		DocumentNamespace: NamespaceBase + o.lockDigest + "/" + url.PathEscape(e.Distro) + "/" + url.PathEscape(e.Arch) + "/" + url.PathEscape(e.Type),
		CreationInfo: &spdx.CreationInfo{
			Created:  time.Unix(lf.SourceDateEpoch, 0).UTC().Format(time.RFC3339),
			Creators: []spdx.Creator{{CreatorType: "Tool", Creator: o.tool}},
		},
		Packages:      []*spdx.Package{image},
		Relationships: []*spdx.Relationship{relationship("DOCUMENT", "DESCRIBES", imageID)},
	}
	for _, p := range pkgs {
		id := packageElementID(p)
		doc.Packages = append(doc.Packages, &spdx.Package{
			PackageName:               p.Name,
			PackageSPDXIdentifier:     id,
			PackageVersion:            p.Version,
			PackageSupplier:           &spdx.Supplier{SupplierType: "Organization", Supplier: "Debian"},
			PackageDownloadLocation:   p.URL,
			FilesAnalyzed:             false,
			IsFilesAnalyzedTagPresent: true,
			PackageChecksums:          []spdx.Checksum{{Algorithm: spdx.SHA256, Value: p.SHA256}},
			PackageLicenseConcluded:   noAssertion,
			PackageLicenseDeclared:    noAssertion,
			PackageCopyrightText:      noAssertion,
			PackageExternalReferences: []*spdx.PackageExternalReference{{
				Category: "PACKAGE-MANAGER",
				RefType:  "purl",
				Locator:  PURL(p, e.Distro),
			}},
		})
		doc.Relationships = append(doc.Relationships, relationship(imageID, "CONTAINS", id))
	}
	// What the library can check, checked before anything is signed.
	if err := spdxlib.ValidateDocument(doc); err != nil {
		return nil, fmt.Errorf("sbom of %s: %w", e.Name(), err)
	}
	return doc, nil
}

func relationship(a spdx.ElementID, typ string, b spdx.ElementID) *spdx.Relationship {
	return &spdx.Relationship{RefA: common.MakeDocElementID("", string(a)), Relationship: typ, RefB: common.MakeDocElementID("", string(b))}
}

// Marshal returns the document as indented JSON with a trailing newline,
// through the SPDX library's JSON writer.
func Marshal(d *Document) ([]byte, error) {
	var buf bytes.Buffer
	if err := spdxjson.Write(d, &buf, spdxjson.Indent("  "), spdxjson.EscapeHTML(false)); err != nil {
		return nil, fmt.Errorf("encoding SBOM: %w", err)
	}
	return buf.Bytes(), nil
}

// Parse reads an SPDX JSON document with the SPDX library and validates
// it: what a consumer of the published SBOM does.
func Parse(data []byte) (*Document, error) {
	doc, err := spdxjson.Read(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("reading SBOM: %w", err)
	}
	if err := spdxlib.ValidateDocument(doc); err != nil {
		return nil, fmt.Errorf("validating SBOM: %w", err)
	}
	return doc, nil
}

// PURL is the package URL of a Debian package:
// pkg:deb/debian/NAME@VERSION?arch=ARCH&distro=DISTRO, the form syft and
// grype use (distro like "debian-12").
func PURL(p *manifest.Package, distro string) string {
	q := "arch=" + url.QueryEscape(p.Arch)
	if distro != "" {
		q += "&distro=" + url.QueryEscape(distro)
	}
	return "pkg:deb/debian/" + purlEscape(p.Name) + "@" + purlEscape(p.Version) + "?" + q
}

// purlEscape percent-encodes what a purl segment cannot hold as is; ':' (an
// epoch) and '+' stay, as in the purl specification's examples.
func purlEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '.', c == '-', c == '_', c == '~', c == '+', c == ':':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// PackageID is a package's SPDX identifier: readable, and unique through a
// short digest of its reference (versions hold characters SPDX ids cannot).
func PackageID(p *manifest.Package) string { return "SPDXRef-" + string(packageElementID(p)) }

// packageElementID is PackageID without the "SPDXRef-" the library adds.
func packageElementID(p *manifest.Package) spdx.ElementID {
	sum := sha256.Sum256([]byte(p.Ref()))
	var b strings.Builder
	b.WriteString("Package-deb-")
	for _, c := range p.Name + "-" + p.Arch {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' {
			b.WriteRune(c)
		} else {
			b.WriteByte('-')
		}
	}
	b.WriteString("-" + hex.EncodeToString(sum[:6]))
	return spdx.ElementID(b.String())
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
