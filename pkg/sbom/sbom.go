// Package sbom turns a lockfile entry into an SPDX 2.3 JSON document: every
// package the entry's os pipeline installs, pinned as the lockfile pins it.
// The document depends on the lockfile alone, so equal lockfiles give
// byte-identical SBOMs.
package sbom

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

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
const OSPipeline = "os"

// Document is an SPDX 2.3 document, the subset this package writes.
type Document struct {
	SPDXVersion       string         `json:"spdxVersion"`
	DataLicense       string         `json:"dataLicense"`
	SPDXID            string         `json:"SPDXID"`
	Name              string         `json:"name"`
	DocumentNamespace string         `json:"documentNamespace"`
	CreationInfo      CreationInfo   `json:"creationInfo"`
	Packages          []Package      `json:"packages"`
	Relationships     []Relationship `json:"relationships"`
}

// CreationInfo says when and by what the document was made.
type CreationInfo struct {
	Created  string   `json:"created"`
	Creators []string `json:"creators"`
}

// Package is one SPDX package.
type Package struct {
	Name                  string        `json:"name"`
	SPDXID                string        `json:"SPDXID"`
	VersionInfo           string        `json:"versionInfo,omitempty"`
	Supplier              string        `json:"supplier,omitempty"`
	DownloadLocation      string        `json:"downloadLocation"`
	FilesAnalyzed         bool          `json:"filesAnalyzed"`
	Checksums             []Checksum    `json:"checksums,omitempty"`
	LicenseConcluded      string        `json:"licenseConcluded"`
	LicenseDeclared       string        `json:"licenseDeclared"`
	CopyrightText         string        `json:"copyrightText"`
	PrimaryPackagePurpose string        `json:"primaryPackagePurpose,omitempty"`
	ExternalRefs          []ExternalRef `json:"externalRefs,omitempty"`
}

// Checksum is a package checksum.
type Checksum struct {
	Algorithm     string `json:"algorithm"`
	ChecksumValue string `json:"checksumValue"`
}

// ExternalRef is a package's external reference (here: its purl).
type ExternalRef struct {
	ReferenceCategory string `json:"referenceCategory"`
	ReferenceType     string `json:"referenceType"`
	ReferenceLocator  string `json:"referenceLocator"`
}

// Relationship relates two SPDX elements.
type Relationship struct {
	SPDXElementID      string `json:"spdxElementId"`
	RelationshipType   string `json:"relationshipType"`
	RelatedSPDXElement string `json:"relatedSpdxElement"`
}

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
	imageID := "SPDXRef-Image"
	image := Package{
		Name:                  o.name,
		SPDXID:                imageID,
		VersionInfo:           e.Distro + "-" + e.Arch + "-" + e.Type,
		DownloadLocation:      "NOASSERTION",
		LicenseConcluded:      "NOASSERTION",
		LicenseDeclared:       "NOASSERTION",
		CopyrightText:         "NOASSERTION",
		PrimaryPackagePurpose: "OPERATING-SYSTEM",
	}
	if o.file != "" {
		image.Name = o.name + "/" + o.file
		image.Checksums = []Checksum{{Algorithm: "SHA256", ChecksumValue: o.fileSHA256}}
	}
	doc := &Document{
		SPDXVersion:       "SPDX-2.3",
		DataLicense:       "CC0-1.0",
		SPDXID:            "SPDXRef-DOCUMENT",
		Name:              docName,
		DocumentNamespace: NamespaceBase + o.lockDigest + "/" + url.PathEscape(e.Distro) + "/" + url.PathEscape(e.Arch) + "/" + url.PathEscape(e.Type),
		CreationInfo: CreationInfo{
			Created:  time.Unix(lf.SourceDateEpoch, 0).UTC().Format(time.RFC3339),
			Creators: []string{"Tool: " + o.tool},
		},
		Packages:      []Package{image},
		Relationships: []Relationship{{SPDXElementID: "SPDXRef-DOCUMENT", RelationshipType: "DESCRIBES", RelatedSPDXElement: imageID}},
	}
	for _, p := range pkgs {
		id := PackageID(p)
		doc.Packages = append(doc.Packages, Package{
			Name:             p.Name,
			SPDXID:           id,
			VersionInfo:      p.Version,
			Supplier:         "Organization: Debian",
			DownloadLocation: p.URL,
			Checksums:        []Checksum{{Algorithm: "SHA256", ChecksumValue: p.SHA256}},
			LicenseConcluded: "NOASSERTION",
			LicenseDeclared:  "NOASSERTION",
			CopyrightText:    "NOASSERTION",
			ExternalRefs: []ExternalRef{{
				ReferenceCategory: "PACKAGE-MANAGER",
				ReferenceType:     "purl",
				ReferenceLocator:  PURL(p, e.Distro),
			}},
		})
		doc.Relationships = append(doc.Relationships, Relationship{SPDXElementID: imageID, RelationshipType: "CONTAINS", RelatedSPDXElement: id})
	}
	return doc, nil
}

// Marshal returns the document as indented JSON with a trailing newline.
func (d *Document) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		return nil, fmt.Errorf("encoding SBOM: %w", err)
	}
	return buf.Bytes(), nil
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
func PackageID(p *manifest.Package) string {
	sum := sha256.Sum256([]byte(p.Ref()))
	var b strings.Builder
	b.WriteString("SPDXRef-Package-deb-")
	for _, c := range p.Name + "-" + p.Arch {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' {
			b.WriteRune(c)
		} else {
			b.WriteByte('-')
		}
	}
	b.WriteString("-" + hex.EncodeToString(sum[:6]))
	return b.String()
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
