# The GitHub Action's image: the static ibuild binary on Debian 12.
#
# The build stage compiles for the target platform from the build
# platform's Go (no emulation for a multi-arch image). The runtime is
# Debian bookworm-slim for what the host side of `ibuild` uses: GNU tar and
# cp (coreutils) for the build cache, the kernel's namespaces and overlayfs,
# and, for `lock`, Debian's apt sources and archive keyring, which this
# image already carries. Everything a stage runs comes from the build root
# pinned in the lockfile, not from this image.

FROM --platform=$BUILDPLATFORM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG TARGETOS=linux
ARG TARGETARCH
ARG VERSION=devel
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X github.com/image-builder-action/image-builder-action/pkg/version.Version=${VERSION}" \
      -o /out/ibuild ./cmd/ibuild

FROM debian:bookworm-slim
# TLS roots for registries (publish); the Debian archive is reached over
# http and verified by its signatures and the lockfile's sha256 sums.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/ibuild /usr/local/bin/ibuild
LABEL org.opencontainers.image.source="https://github.com/image-builder-action/image-builder-action" \
      org.opencontainers.image.description="ibuild: lock, build and publish bootable OS images"
ENTRYPOINT ["/usr/local/bin/ibuild"]
CMD ["action"]
