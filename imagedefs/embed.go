// Package imagedefs holds the image definitions as data: one file a
// distribution under distros/, one file an image type under types/.
// Adding a distro or an image type is a data change here.
package imagedefs

import "embed"

// FS holds distros/*.toml and types/*.toml.
//
//go:embed distros/*.toml types/*.toml
var FS embed.FS
