// Package manifest holds the lockfile: the pinned, reviewable description of
// every image a blueprint produces. A build reads nothing else.
package manifest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/image-builder-action/image-builder-action/pkg/atomicfile"
)

// FormatVersion is the lockfile format this tool writes and reads.
const FormatVersion = 1

// The pipelines lock writes, by name (an export pipeline takes its image
// type's name). Image definitions name them in stage options too.
const (
	// PipelineBuild is the build root: the tools the stages run.
	PipelineBuild = "build"
	// PipelineOS is the operating system's tree.
	PipelineOS = "os"
	// PipelineImage is the raw disk made from the os tree.
	PipelineImage = "image"
)

// Lockfile is the whole lockfile document.
type Lockfile struct {
	// Version is the lockfile format version (FormatVersion).
	Version int `json:"version"`
	// Tool names the tool and version that wrote the file.
	Tool string `json:"tool"`
	// Blueprint is the blueprint the file was locked from (path relative to
	// the lockfile's directory) and its digest.
	Blueprint Input `json:"blueprint"`
	// ImageDefs is the digest of the image definitions used.
	ImageDefs Input `json:"imagedefs"`
	// IDSeed seeds the images' identifiers (partition and file system
	// UUIDs, volume ids, hash seeds), each derived from it and what it
	// names. Locking again keeps it, so the identifiers change only when
	// asked (ibuild lock --new-ids), not with every edit of the blueprint.
	IDSeed string `json:"id_seed,omitempty"`
	// ContentSHA256 is the digest of the rest of the file in canonical
	// form: a hand edit that did not go through ibuild lock shows.
	ContentSHA256 string `json:"content_sha256"`
	// SourceDateEpoch clamps every timestamp in the built images.
	SourceDateEpoch int64 `json:"source_date_epoch"`
	// Repositories are the suites resolved against, as they were.
	Repositories []Repository `json:"repositories"`
	// Entries are the images, one per (distro, arch, image type).
	Entries []Entry `json:"entries"`
	// Packages are every package any pipeline installs, pinned. Stages
	// refer to them as "name:arch=version".
	Packages []Package `json:"packages"`
}

// Input identifies a file or data set by digest.
type Input struct {
	Path   string `json:"path,omitempty"`
	SHA256 string `json:"sha256"`
}

// Repository is one suite of one repository as it was when locked.
type Repository struct {
	URI             string   `json:"uri"`
	Suite           string   `json:"suite"`
	Components      []string `json:"components"`
	Arches          []string `json:"arches"`
	InReleaseSHA256 string   `json:"inrelease_sha256"`
	Date            string   `json:"date"`
	// Keys are the fingerprints of the keys that signed the InRelease
	// file (a change of key is a fact a reviewer wants to see).
	Keys []string `json:"keys,omitempty"`
}

// Entry is one image: its pipelines, in the order they run.
type Entry struct {
	Distro    string     `json:"distro"`
	Arch      string     `json:"arch"`
	Type      string     `json:"type"`
	Filename  string     `json:"filename"`
	Pipelines []Pipeline `json:"pipelines"`
}

// Name is the entry's short name, "arch/type".
func (e *Entry) Name() string { return e.Arch + "/" + e.Type }

// Pipeline is a named sequence of stages producing one tree.
type Pipeline struct {
	Name string `json:"name"`
	// Build names the pipeline whose tree provides the tools this
	// pipeline's stages run; empty for the build root itself.
	Build string `json:"build,omitempty"`
	// Host and Replaces make this pipeline a stand-in: on a host of
	// architecture Host, it takes the place of pipeline Replaces (a build
	// root of the entry's architecture) wherever that is named, and
	// elsewhere it is not built. It is how an entry for another
	// architecture runs its image tools natively.
	Host     string  `json:"host,omitempty"`
	Replaces string  `json:"replaces,omitempty"`
	Stages   []Stage `json:"stages"`
}

// Stage is one step of a pipeline: its type and its options, which the
// stage with that type decodes strictly.
type Stage struct {
	Type    string          `json:"type"`
	Options json.RawMessage `json:"options,omitempty"`
}

// Package is one pinned package: where to get it and what it must hash to.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Arch    string `json:"arch"`
	URL     string `json:"url"`
	SHA256  string `json:"sha256"`
	Size    int64  `json:"size"`
}

// Ref is how stages name a package: "name:arch=version".
func (p *Package) Ref() string { return p.Name + ":" + p.Arch + "=" + p.Version }

// Entry returns the entry for arch and type. Empty arch or type match when
// only one entry fits.
func (l *Lockfile) Entry(arch, typ string) (*Entry, error) {
	var found []*Entry
	for i := range l.Entries {
		e := &l.Entries[i]
		if (arch == "" || e.Arch == arch) && (typ == "" || e.Type == typ) {
			found = append(found, e)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return nil, fmt.Errorf("no entry for arch %q type %q in the lockfile (has %s)", arch, typ, l.entryNames())
	default:
		return nil, fmt.Errorf("several entries match arch %q type %q (%s): name --arch and --type", arch, typ, l.entryNames())
	}
}

func (l *Lockfile) entryNames() string {
	var names []string
	for i := range l.Entries {
		names = append(names, l.Entries[i].Name())
	}
	return strings.Join(names, ", ")
}

// PackageIndex maps each package's Ref to the package.
func (l *Lockfile) PackageIndex() map[string]*Package {
	m := make(map[string]*Package, len(l.Packages))
	for i := range l.Packages {
		m[l.Packages[i].Ref()] = &l.Packages[i]
	}
	return m
}

// Normalize sorts what has no meaningful order, so equal content serialises
// to equal bytes.
func (l *Lockfile) Normalize() {
	sort.Slice(l.Packages, func(i, j int) bool {
		a, b := l.Packages[i], l.Packages[j]
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		if a.Arch != b.Arch {
			return a.Arch < b.Arch
		}
		return a.Version < b.Version
	})
	sort.SliceStable(l.Entries, func(i, j int) bool {
		a, b := l.Entries[i], l.Entries[j]
		if a.Distro != b.Distro {
			return a.Distro < b.Distro
		}
		if a.Arch != b.Arch {
			return a.Arch < b.Arch
		}
		return a.Type < b.Type
	})
}

// Marshal returns the canonical serialisation: normalised, stage options
// with sorted keys, two-space indentation and a trailing newline, with
// content_sha256 set to the digest of the rest.
func (l *Lockfile) Marshal() ([]byte, error) {
	d, err := l.ComputeDigest()
	if err != nil {
		return nil, err
	}
	c := *l
	c.ContentSHA256 = d
	return c.marshal()
}

// ComputeDigest is the sha256 of the canonical serialisation without
// content_sha256.
func (l *Lockfile) ComputeDigest() (string, error) {
	c := *l
	c.ContentSHA256 = ""
	b, err := c.marshal()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// VerifyDigest checks content_sha256 against the content: a lockfile
// edited by hand, or merged badly, is refused before it is built.
func (l *Lockfile) VerifyDigest() error {
	d, err := l.ComputeDigest()
	if err != nil {
		return err
	}
	if l.ContentSHA256 != d {
		return fmt.Errorf("its content does not match its content_sha256 (%s, content %s): it was changed by hand or merged badly; run `ibuild lock` to write it again", orNone(l.ContentSHA256), d)
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func (l *Lockfile) marshal() ([]byte, error) {
	c := *l
	c.Entries = append([]Entry(nil), l.Entries...)
	c.Packages = append([]Package(nil), l.Packages...)
	for i := range c.Entries {
		e := &c.Entries[i]
		e.Pipelines = append([]Pipeline(nil), e.Pipelines...)
		for j := range e.Pipelines {
			p := &e.Pipelines[j]
			p.Stages = append([]Stage(nil), p.Stages...)
			for k := range p.Stages {
				s := &p.Stages[k]
				opts, err := CanonicalJSON(s.Options)
				if err != nil {
					return nil, fmt.Errorf("entry %s pipeline %s stage %d (%s): %w", e.Name(), p.Name, k, s.Type, err)
				}
				s.Options = opts
			}
		}
	}
	c.Normalize()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(&c); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// CanonicalJSON re-encodes raw with object keys sorted, numbers kept as
// written and no HTML escaping, on one line: options built from maps or
// structs serialise alike, in the lockfile and in object keys. Empty raw
// stays empty.
func CanonicalJSON(raw json.RawMessage) (json.RawMessage, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("stage options: %w", err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// Parse decodes a lockfile strictly: unknown fields and a format version
// other than FormatVersion are errors.
func Parse(name string, data []byte) (*Lockfile, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var l Lockfile
	if err := dec.Decode(&l); err != nil {
		return nil, fmt.Errorf("reading lockfile %s: %w", name, jsonErrorWithLine(data, err))
	}
	if dec.More() {
		return nil, fmt.Errorf("reading lockfile %s: trailing data after the document", name)
	}
	if l.Version != FormatVersion {
		return nil, fmt.Errorf("reading lockfile %s: format version %d, this tool reads version %d", name, l.Version, FormatVersion)
	}
	if err := l.Validate(); err != nil {
		return nil, fmt.Errorf("reading lockfile %s: %w", name, err)
	}
	return &l, nil
}

// MaxSize is the largest lockfile read: a lockfile may come from a pull
// request, and a real one is far smaller (every image type of a blueprint
// with a few hundred packages each: about a megabyte).
const MaxSize = 64 << 20

// ReadFile reads the lockfile at path, refusing one larger than MaxSize
// before reading it. A missing file is an error that errors.Is(err,
// fs.ErrNotExist) recognises.
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading lockfile: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading lockfile %s: %w", path, err)
	}
	if len(data) > MaxSize {
		return nil, fmt.Errorf("reading lockfile %s: larger than the %d MiB a lockfile may be", path, MaxSize>>20)
	}
	return data, nil
}

// Load reads and parses the lockfile at path.
func Load(path string) (*Lockfile, error) {
	data, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Write writes the canonical lockfile to path atomically: a temp file in the
// same directory, then a rename, so a failure never leaves half a file.
func (l *Lockfile) Write(path string) error {
	data, err := l.Marshal()
	if err != nil {
		return fmt.Errorf("writing lockfile %s: %w", path, err)
	}
	return WriteFileAtomic(path, data, 0o644)
}

// WriteFileAtomic writes data to a temp file beside path and renames it.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	return atomicfile.Write(path, data, mode)
}

// Validate checks the references inside the lockfile: every stage's
// packages exist, digests look like digests, pipelines' build roots exist.
func (l *Lockfile) Validate() error {
	if l.IDSeed != "" && !isHexSeed(l.IDSeed) {
		return fmt.Errorf("id_seed %q: want 32 to 128 lower-case hex digits", l.IDSeed)
	}
	seen := map[string]bool{}
	for i := range l.Packages {
		p := &l.Packages[i]
		if p.Name == "" || p.Version == "" || p.Arch == "" || p.URL == "" {
			return fmt.Errorf("packages[%d]: name, version, arch and url are required", i)
		}
		if !isHexDigest(p.SHA256) {
			return fmt.Errorf("packages[%d] (%s): sha256 %q is not a sha256 digest", i, p.Ref(), p.SHA256)
		}
		if seen[p.Ref()] {
			return fmt.Errorf("packages[%d]: %s listed twice", i, p.Ref())
		}
		seen[p.Ref()] = true
	}
	for i := range l.Entries {
		e := &l.Entries[i]
		names := map[string]bool{}
		for j := range e.Pipelines {
			p := &e.Pipelines[j]
			if p.Name == "" {
				return fmt.Errorf("entries[%d] (%s): pipelines[%d] has no name", i, e.Name(), j)
			}
			if names[p.Name] {
				return fmt.Errorf("entries[%d] (%s): pipeline %q defined twice", i, e.Name(), p.Name)
			}
			if p.Build != "" && !names[p.Build] {
				return fmt.Errorf("entries[%d] (%s): pipeline %q builds with %q, which is not defined before it", i, e.Name(), p.Name, p.Build)
			}
			if (p.Host == "") != (p.Replaces == "") {
				return fmt.Errorf("entries[%d] (%s): pipeline %q: host and replaces go together", i, e.Name(), p.Name)
			}
			if p.Replaces != "" && !names[p.Replaces] {
				return fmt.Errorf("entries[%d] (%s): pipeline %q replaces %q, which is not defined before it", i, e.Name(), p.Name, p.Replaces)
			}
			names[p.Name] = true
			for k := range p.Stages {
				if p.Stages[k].Type == "" {
					return fmt.Errorf("entries[%d] (%s): pipeline %q stages[%d] has no type", i, e.Name(), p.Name, k)
				}
			}
		}
	}
	return nil
}

func isHexSeed(s string) bool {
	return len(s) >= 32 && len(s) <= 128 && isHex(s)
}

func isHex(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func isHexDigest(s string) bool {
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

// jsonErrorWithLine adds the line number to JSON syntax and type errors.
func jsonErrorWithLine(data []byte, err error) error {
	var off int64 = -1
	switch e := err.(type) {
	case *json.SyntaxError:
		off = e.Offset
	case *json.UnmarshalTypeError:
		off = e.Offset
		if e.Field != "" {
			return fmt.Errorf("line %d: field %s: %w", lineOf(data, off), e.Field, err)
		}
	}
	if off >= 0 {
		return fmt.Errorf("line %d: %w", lineOf(data, off), err)
	}
	// DisallowUnknownFields gives no offset: find the key's first use.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if i := bytes.Index(data, []byte(name)); i >= 0 {
			return fmt.Errorf("line %d: %w", lineOf(data, int64(i)), err)
		}
	}
	return err
}

func lineOf(data []byte, off int64) int {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	return bytes.Count(data[:off], []byte("\n")) + 1
}

// MatrixEntry is one job of a CI matrix: one entry of the lockfile.
type MatrixEntry struct {
	Distro string `json:"distro"`
	Arch   string `json:"arch"`
	Type   string `json:"type"`
}

// Matrix lists the entries as a CI matrix's include list, the shape
// GitHub's strategy.matrix takes: {"include":[{…},…]}.
func (l *Lockfile) Matrix() map[string][]MatrixEntry {
	inc := []MatrixEntry{}
	for _, e := range l.Entries {
		inc = append(inc, MatrixEntry{Distro: e.Distro, Arch: e.Arch, Type: e.Type})
	}
	return map[string][]MatrixEntry{"include": inc}
}

// PackageRefs lists the package references of the pipeline's stages, in
// stage order.
func (p *Pipeline) PackageRefs() []string {
	var out []string
	for _, s := range p.Stages {
		out = append(out, stagePackageRefs(s)...)
	}
	return out
}
