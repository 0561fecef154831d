// Package isotest holds the end-to-end tests of the ISO image types: it
// locks and builds live-iso and image-installer from blueprints, boots
// them under QEMU by UEFI and BIOS, lets the installer write a disk, and
// boots that disk. The package has no code of its own: the types are
// image definitions (imagedefs/types) and the iso stage (stages/iso.go).
package isotest
