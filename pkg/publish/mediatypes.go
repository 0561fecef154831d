package publish

import "strings"

// Media types and annotations of the artifacts (see the package doc).
const (
	// EmptyConfigMediaType is the config of every artifact.
	EmptyConfigMediaType = "application/vnd.oci.empty.v1+json"
	// ContainerDiskLayerMediaType is the containerDisk's uncompressed layer.
	ContainerDiskLayerMediaType = "application/vnd.oci.image.layer.v1.tar"

	AnnotationLockfileDigest = "dev.ibuild.lockfile.digest"
	AnnotationDistro         = "dev.ibuild.distro"
	AnnotationArch           = "dev.ibuild.arch"
	AnnotationType           = "dev.ibuild.type"
)

type typeMedia struct{ artifact, layer string }

var mediaTypes = map[string]typeMedia{
	"qcow2":     {"application/vnd.ibuild.disk.qcow2", "application/vnd.ibuild.disk.qcow2"},
	"raw":       {"application/vnd.ibuild.disk.raw", "application/vnd.ibuild.disk.raw"},
	"ami":       {"application/vnd.ibuild.disk.ami", "application/vnd.ibuild.disk.raw"},
	"vmdk":      {"application/vnd.ibuild.disk.vmdk", "application/vnd.ibuild.disk.vmdk"},
	"vhd":       {"application/vnd.ibuild.disk.vhd", "application/vnd.ibuild.disk.vhd"},
	"ova":       {"application/vnd.ibuild.disk.ova", "application/vnd.ibuild.disk.ova+tar"},
	"gce":       {"application/vnd.ibuild.disk.gce", "application/vnd.ibuild.disk.raw+tar+gzip"},
	"tar":       {"application/vnd.ibuild.rootfs.tar", "application/vnd.ibuild.rootfs.tar+xz"},
	"wsl":       {"application/vnd.ibuild.rootfs.wsl", "application/vnd.ibuild.rootfs.tar+gzip"},
	"container": {"application/vnd.ibuild.rootfs.container", "application/vnd.oci.image.layout.v1+tar"},
	// Hybrid ISO 9660 images (CD, DVD or USB stick).
	"live-iso":        {"application/vnd.ibuild.iso.live", "application/vnd.ibuild.iso9660"},
	"image-installer": {"application/vnd.ibuild.iso.installer", "application/vnd.ibuild.iso9660"},
}

// ArtifactType is the artifactType of an image type's artifacts and index.
func ArtifactType(imageType string) string {
	if m, ok := mediaTypes[imageType]; ok {
		return m.artifact
	}
	return "application/vnd.ibuild." + sanitizeMediaSubtype(imageType)
}

// LayerMediaType is the media type of the layer holding an image type's file.
func LayerMediaType(imageType string) string {
	if m, ok := mediaTypes[imageType]; ok {
		return m.layer
	}
	return "application/vnd.ibuild." + sanitizeMediaSubtype(imageType)
}

func sanitizeMediaSubtype(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return '-'
	}, s)
}

// Platform maps a lockfile architecture to an OCI platform architecture.
func Platform(arch string) string {
	switch arch {
	case "x86_64":
		return "amd64"
	case "aarch64":
		return "arm64"
	case "i686", "i386":
		return "386"
	case "armv7l", "armhf":
		return "arm"
	}
	return arch
}
