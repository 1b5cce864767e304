# syntax=docker/dockerfile:1
# mcpgate container image: the static binary on an empty base.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) \
#     --build-arg COMMIT=$(git rev-parse HEAD) --build-arg CREATED=$(date -u +%FT%TZ) -t mcpgate .
#   buildah --storage-driver vfs bud --isolation chroot ... (what `make test` does, e2e/container_test.go)
#
# The final image holds the binary, CA certificates and two empty
# directories, nothing else: no shell, no package manager, no libc. It runs
# as 65532:65532 and writes only to
#   /tmp              (temporary files; mount an emptyDir/tmpfs there)
#   /var/lib/mcpgate  (MCPGATE_CONFIG_DIR: the built-in authorization
#                      server's bbolt store when no PostgreSQL DSN is set)
# so it runs with a read-only root file system (docs/deployment.md).
# A HEALTHCHECK would need a shell or a second binary: probe /healthz and
# /readyz from the orchestrator instead.

# GO_IMAGE is any image with the Go toolchain of go.mod at /usr/local/go
# (the official golang image by default). Modules come from GOPROXY, passed
# through as a build argument like the host's (`go env GOPROXY`).
ARG GO_IMAGE=golang:1.26.8-bookworm

FROM ${GO_IMAGE} AS build
ARG GOPROXY
ARG GOFLAGS
ARG GONOSUMDB
ARG GOPRIVATE
ARG VERSION=dev
ARG COMMIT=
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOPATH=/go GOMODCACHE=/go/pkg/mod GOCACHE=/root/.cache/go-build \
    PATH=/usr/local/go/bin:/go/bin:$PATH
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY cmd ./cmd
COPY internal ./internal
# The same flags as `make release`: static, reproducible paths, stamped so
# `mcpgate version` names the release and the commit.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/mcpgate ./cmd/mcpgate
# The directories the image may write to, owned by the runtime user in the
# final stage (a scratch image cannot mkdir). WORKDIR makes them without
# needing anything but the toolchain in the build image.
WORKDIR /out/skel/var/lib
WORKDIR /out/var/lib/mcpgate
WORKDIR /out/tmp

FROM scratch
ARG VERSION=dev
ARG COMMIT=
ARG CREATED=
# The repository carries no licence file yet: SPDX NOASSERTION until it does.
ARG LICENSES=NOASSERTION
LABEL org.opencontainers.image.title="mcpgate" \
      org.opencontainers.image.description="OAuth 2.1 gateway, bridge and broker for the Model Context Protocol" \
      org.opencontainers.image.source="https://github.com/mcpgate/mcpgate" \
      org.opencontainers.image.licenses="${LICENSES}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}" \
      org.opencontainers.image.created="${CREATED}"
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# /var and /var/lib stay root's: only the leaves belong to the runtime user.
COPY --from=build /out/skel/ /
COPY --from=build --chown=65532:65532 /out/tmp /tmp
COPY --from=build --chown=65532:65532 /out/var/lib/mcpgate /var/lib/mcpgate
COPY --from=build /out/mcpgate /usr/local/bin/mcpgate
ENV MCPGATE_CONFIG_DIR=/var/lib/mcpgate HOME=/var/lib/mcpgate TMPDIR=/tmp
USER 65532:65532
WORKDIR /var/lib/mcpgate
VOLUME ["/tmp", "/var/lib/mcpgate"]
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/mcpgate"]
CMD ["serve", "--config", "/etc/mcpgate/config.yaml"]
