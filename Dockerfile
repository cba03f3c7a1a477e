# syntax=docker/dockerfile:1
# ferry's container image: a static binary on distroless, running as the
# unprivileged "nonroot" user. Build: docker build -t ferry .
# deploy/deploy_test.go runs this file's `go build` and checks its stages.

# The builder runs on the build machine's platform and cross-compiles for
# the target's (docker buildx build --platform linux/amd64,linux/arm64).
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
WORKDIR /src
# Modules first: this layer is cached until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w -X github.com/ferry-dev/ferry/cmd/ferry/cli.Version=${VERSION}" -o /out/ferry ./cmd/ferry

# CA certificates and time zone data (window time zones) are in the image;
# no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ferry /ferry
USER 65532:65532
ENTRYPOINT ["/ferry"]
