package repo

import "time"

// Source is one apt source: a repository URI, a suite and its components, as
// written in sources.list or a deb822 .sources file.
type Source struct {
	// URI is the repository's base URL (the part before dists/).
	URI string `json:"uri"`
	// Suite is the distribution name (bookworm, bookworm-updates, …).
	Suite string `json:"suite"`
	// Components are the archive areas (main, contrib, …).
	Components []string `json:"components"`
	// SignedBy is the path of the keyring that signs the suite's InRelease
	// file; empty means the distro's default keyring. As in apt, it may
	// also be several paths separated by commas, or an inline ASCII-armored
	// public key block (pkg/repo reads both).
	SignedBy string `json:"signed_by,omitempty"`
	// Architectures, when set, limits the source to these architectures
	// (apt's arch= option / Architectures field); added by pkg/repo.
	Architectures []string `json:"architectures,omitempty"`
}

// Release is a suite's verified InRelease file: what it was and when.
type Release struct {
	Source Source
	// SHA256 is the digest of the InRelease file as fetched.
	SHA256 string
	// Date and ValidUntil are the Release file's own fields.
	Date       time.Time
	ValidUntil time.Time
	// Keys are the fingerprints of the keys whose signatures on the
	// InRelease file verified, sorted.
	Keys []string
}

// Package is one binary package stanza of a Packages index, with the fields
// resolution and fetching need. Relationship fields are kept raw, as written
// in the index; depsolve parses them.
type Package struct {
	Name         string
	Version      string
	Architecture string // amd64, arm64, all
	MultiArch    string // same, foreign, allowed or empty
	Essential    bool
	Priority     string // required, important, standard, optional, extra
	Section      string

	Depends    string
	PreDepends string
	Provides   string
	Conflicts  string
	Breaks     string
	Replaces   string
	Recommends string

	// Filename is the path below the repository URI; URL is the full URL.
	Filename string
	URL      string
	SHA256   string
	Size     int64
	// InstalledSize is in KiB, as the index says.
	InstalledSize int64

	// Source names the suite the package came from (index into the
	// releases a Fetch returned), so ties between equal versions can be
	// broken the way apt breaks them: first source wins.
	Origin int
}
