// Package blueprint reads osbuild-composer blueprints, the user's
// description of an image, from TOML or JSON (same field names), strictly:
// unknown keys and wrongly typed values are errors that name the file, the
// line and the field. A blueprint that composer accepts decodes here;
// Validate then checks the values (paths, names, modes, sizes, ports, …),
// and what a distro cannot honour it refuses by name using SetFields.
//
// Extensions to composer's format are few and documented on the field:
// repositories' suites and components (Debian archives need them).
package blueprint

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// MaxSize is the largest blueprint file Load reads.
const MaxSize = 32 << 20

// Blueprint is a high-level description of an image, as in osbuild-composer.
type Blueprint struct {
	// Name is required; composer turns spaces into dashes on import.
	Name        string `json:"name" toml:"name"`
	Description string `json:"description,omitempty" toml:"description,omitempty"`
	// Version is a semantic version ("0.0.1") when set.
	Version string `json:"version,omitempty" toml:"version,omitempty"`
	// Distro selects the distribution, such as "debian-12".
	Distro string `json:"distro,omitempty" toml:"distro,omitempty"`
	// Architecture is composer's optional target architecture.
	Architecture string `json:"architecture,omitempty" toml:"architecture,omitempty"`

	Packages []Package `json:"packages,omitempty" toml:"packages,omitempty"`
	// Modules are treated like packages by composer.
	Modules []Package `json:"modules,omitempty" toml:"modules,omitempty"`
	// EnabledModules are RPM modularity streams.
	EnabledModules []EnabledModule `json:"enabled_modules,omitempty" toml:"enabled_modules,omitempty"`
	// Groups are package groups from the repository metadata.
	Groups []Group `json:"groups,omitempty" toml:"groups,omitempty"`
	// Containers are container images to embed.
	Containers []Container `json:"containers,omitempty" toml:"containers,omitempty"`

	Customizations *Customizations `json:"customizations,omitempty" toml:"customizations,omitempty"`

	// Minimal is composer's experimental "minimal" flag.
	Minimal bool `json:"minimal,omitempty" toml:"minimal,omitempty"`

	// Source says where the blueprint was read from; nil when built in
	// code. It is not part of the blueprint's content.
	Source *Source `json:"-" toml:"-"`
}

// Package is a package to install. Version is empty, "*", an exact version
// or a glob using * and ? ("1.22.*").
type Package struct {
	Name    string `json:"name" toml:"name"`
	Version string `json:"version,omitempty" toml:"version,omitempty"`
}

// Group is a package group.
type Group struct {
	Name string `json:"name" toml:"name"`
}

// EnabledModule is an RPM modularity stream to enable.
type EnabledModule struct {
	Name   string `json:"name" toml:"name"`
	Stream string `json:"stream,omitempty" toml:"stream,omitempty"`
}

// Container is a container image to embed into the image.
type Container struct {
	Source       string `json:"source" toml:"source"`
	Name         string `json:"name,omitempty" toml:"name,omitempty"`
	TLSVerify    *bool  `json:"tls-verify,omitempty" toml:"tls-verify,omitempty"`
	LocalStorage bool   `json:"local-storage,omitempty" toml:"local-storage,omitempty"`
}

// Parse decodes and validates a blueprint. The format comes from the
// extension of filename (.toml or .json); filename is also used in error
// messages. Errors are *Error values (joined when there are several) that
// carry the file, line and field.
func Parse(filename string, data []byte) (*Blueprint, error) {
	var format string
	switch strings.ToLower(filepath.Ext(filename)) {
	case ".toml":
		format = formatTOML
	case ".json":
		format = formatJSON
	default:
		return nil, &Error{File: filename, Msg: "unknown blueprint format: the file name must end in .toml or .json"}
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if !utf8.Valid(data) {
		off := firstInvalidUTF8(data)
		pos := newLineIndex(data).position(off)
		return nil, &Error{File: filename, Line: pos.Line, Column: pos.Column, Msg: "invalid UTF-8"}
	}

	var (
		tree map[string]any
		src  *Source
		err  *Error
	)
	if format == formatTOML {
		tree, src, err = parseTOML(filename, data)
	} else {
		tree, src, err = parseJSON(filename, data)
	}
	if err != nil {
		return nil, err
	}

	var b Blueprint
	if errs := decodeTree(tree, &b, format, src); len(errs) > 0 {
		return nil, locate(errs, src)
	}
	b.Source = src
	b.normalize()
	if errs := b.validate(); len(errs) > 0 {
		return nil, locate(errs, src)
	}
	return &b, nil
}

// Load reads and parses the blueprint at path; see Parse.
func Load(path string) (*Blueprint, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading blueprint: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading blueprint %s: %w", path, err)
	}
	if len(data) > MaxSize {
		return nil, &Error{File: path, Msg: fmt.Sprintf("file is larger than %d bytes", MaxSize)}
	}
	return Parse(path, data)
}

// Validate checks the values of a blueprint: names, paths, modes, sizes,
// ports, duplicates and the like. Parse calls it; call it on blueprints
// built in code. It returns *Error values joined with errors.Join, located
// in the file when the blueprint was parsed.
func (b *Blueprint) Validate() error {
	return locate(b.validate(), b.Source)
}

// normalize applies composer's own clean-ups of decoded values.
func (b *Blueprint) normalize() {
	if b.Customizations == nil {
		return
	}
	for i := range b.Customizations.User {
		if h := b.Customizations.User[i].Home; h != nil && len(*h) > 1 {
			// Composer trims trailing slashes from home directories.
			trimmed := strings.TrimRight(*h, "/")
			if trimmed == "" {
				trimmed = "/"
			}
			b.Customizations.User[i].Home = &trimmed
		}
	}
}

func firstInvalidUTF8(data []byte) int {
	for i := 0; i < len(data); {
		r, n := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(data)
}
