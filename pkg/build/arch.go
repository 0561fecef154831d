package build

// dpkgArch maps a lockfile entry's architecture (the image definitions'
// name) to the dpkg architecture stages work with.
func dpkgArch(arch string) string {
	switch arch {
	case "x86_64":
		return "amd64"
	case "aarch64":
		return "arm64"
	}
	return arch
}
