// Package version names this build of the tool.
package version

import "runtime/debug"

// Version is set at link time (-ldflags "-X …/pkg/version.Version=v1.2.3");
// otherwise the module version from the build info, or "devel".
var Version = ""

// String returns the tool's version.
func String() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// Tool is how lockfiles name the tool that wrote them.
func Tool() string { return "ibuild " + String() }
