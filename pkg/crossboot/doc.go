// Package crossboot holds the end-to-end test of builds for another
// architecture: an aarch64 image built on an x86_64 machine, its target
// programs run through qemu-user (binfmt_misc), boots under
// qemu-system-aarch64 to a login prompt. It is a package of its own so the
// slow test runs beside cmd/ibuild's, not after them.
package crossboot
