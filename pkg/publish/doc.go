// Package publish pushes built images to an OCI registry: one artifact per
// (arch, image type), an index per image type across architectures, a
// cosign signature, an SPDX SBOM and SLSA v1 provenance as signed
// attestations, and on request a KubeVirt containerDisk.
//
// # Artifacts
//
// Each built file becomes an OCI 1.1 artifact: an image manifest with the
// empty config (application/vnd.oci.empty.v1+json), an artifactType naming
// the image type, and the file as its only layer, annotated with
// org.opencontainers.image.title so `oras pull` writes it back under its
// name. Manifest annotations: org.opencontainers.image.created (the
// lockfile's SOURCE_DATE_EPOCH), .source, .revision and .version when known,
// and dev.ibuild.lockfile.digest, dev.ibuild.distro, dev.ibuild.arch,
// dev.ibuild.type. The media types:
//
//	type       artifactType                          layer mediaType
//	qcow2      application/vnd.ibuild.disk.qcow2     application/vnd.ibuild.disk.qcow2
//	raw        application/vnd.ibuild.disk.raw       application/vnd.ibuild.disk.raw
//	ami        application/vnd.ibuild.disk.ami       application/vnd.ibuild.disk.raw
//	vmdk       application/vnd.ibuild.disk.vmdk      application/vnd.ibuild.disk.vmdk
//	vhd        application/vnd.ibuild.disk.vhd       application/vnd.ibuild.disk.vhd
//	ova        application/vnd.ibuild.disk.ova       application/vnd.ibuild.disk.ova+tar
//	gce        application/vnd.ibuild.disk.gce       application/vnd.ibuild.disk.raw+tar+gzip
//	tar        application/vnd.ibuild.rootfs.tar     application/vnd.ibuild.rootfs.tar+xz
//	wsl        application/vnd.ibuild.rootfs.wsl     application/vnd.ibuild.rootfs.tar+gzip
//	container  application/vnd.ibuild.rootfs.container  application/vnd.oci.image.layout.v1+tar
//
// Any other type T gets application/vnd.ibuild.T for both. The index of a
// type (application/vnd.oci.image.index.v1+json) carries the same
// artifactType and one descriptor per architecture with its platform
// (linux/amd64 for x86_64, linux/arm64 for aarch64).
//
// Big files are never held in memory: a file's digest is computed in one
// streaming pass and the upload streams it again, checking that the bytes
// still hash to that digest. Blobs go first, manifests after, signatures
// and attestations next, and tags last, so a failure never moves a tag to an
// incomplete or unsigned artifact.
//
// # Signatures and attestations
//
// Every manifest and index is signed by digest. The SBOM (predicate
// https://spdx.dev/Document, cosign's "spdxjson") and the provenance
// (https://slsa.dev/provenance/v1, "slsaprovenance1") of an entry are
// in-toto statements whose subjects are the entry's manifest, its index and
// the image file; each is attached, signed, to the manifest and to the
// index. Where the registry has the OCI 1.1 referrers API they are
// referrers, each a Sigstore bundle v0.3 (DSSE) with artifactType
// application/vnd.dev.sigstore.bundle.v0.3+json, as `cosign sign
// --new-bundle-format --registry-referrers-mode=oci-1-1` writes them (the
// signature is a statement with predicate https://sigstore.dev/cosign/sign/v1).
// Elsewhere they use cosign's tag scheme: sha256-HEX.sig and sha256-HEX.att
// (WithMode forces one or the other; referrers forced onto a registry
// without the API fall back to the OCI referrers tag schema, an index
// tagged sha256-HEX, which go-containerregistry maintains).
//
// Verifying, offline, with the public key:
//
//	cosign verify --key cosign.pub --insecure-ignore-tlog=true REF
//	cosign verify-attestation --type spdxjson --key cosign.pub --insecure-ignore-tlog=true REF
//	cosign verify-attestation --type slsaprovenance1 --key cosign.pub --insecure-ignore-tlog=true REF
//
// (plus --allow-http-registry --allow-insecure-registry for a plain-HTTP
// registry). For referrers, cosign wants a trusted root even with a key:
// online it fetches Sigstore's; offline pass --trusted-root with a file
// holding {"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}.
//
// # containerDisk
//
// WithContainerDisk also pushes each qcow2 entry as a KubeVirt
// containerDisk: a regular OCI image (config with the platform, created at
// the epoch) whose one uncompressed layer holds disk/ and disk/NAME.qcow2,
// owned 107:107, mode 0444, mtime the epoch; an index across architectures;
// signed and attested like the artifacts.
package publish
