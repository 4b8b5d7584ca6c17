# syntax=docker/dockerfile:1
#
# The hubbub container image: `hubbub-server` (the default command) and
# `hubbub-operator`, both release builds, on a distroless runtime with glibc,
# libgcc and the CA certificates, running as the numeric non-root user 65532.
#
#   docker build -t ghcr.io/hubbub-chat/hubbub:0.1.0 .
#   docker run --rm -p 8080:8080 ghcr.io/hubbub-chat/hubbub:0.1.0
#
# Stages:
#   chef     Rust toolchain + cargo-chef (pinned), shared by the next two
#   planner  reduces the sources to a dependency recipe (recipe.json)
#   builder  builds the dependencies from the recipe alone (a layer that stays
#            cached until Cargo.toml or Cargo.lock change), then the project
#   runtime  the two binaries and nothing else
#
# Checked without a Docker engine by tests/helm/test_dockerfile.py.

ARG RUST_VERSION=1.95
ARG CARGO_CHEF_VERSION=0.1.78

FROM rust:${RUST_VERSION}-bookworm AS chef
ARG CARGO_CHEF_VERSION
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
WORKDIR /build

FROM chef AS planner
# The whole context (.dockerignore keeps target/, node_modules/, charts/ ... out).
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /build/recipe.json recipe.json
# Dependency-only layer: rebuilt only when the recipe (manifests, lockfile) changes.
RUN cargo chef cook --release --locked --recipe-path recipe.json \
        --bin hubbub-server --bin hubbub-operator
# The project itself: the workspace crates/ (web/ is embedded with include_str!) ...
COPY . .
RUN cargo build --release --locked -p hubbub-server -p hubbub-operator \
    && mkdir -p /out \
    && cp target/release/hubbub-server target/release/hubbub-operator /out/

# distroless/cc: glibc, libgcc, CA certificates, tzdata, /etc/passwd with
# nonroot = 65532; no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="hubbub" \
      org.opencontainers.image.description="A real-time chat service for Kubernetes speaking the Socket.IO protocol, with a Redis scale-out and an operator" \
      org.opencontainers.image.source="https://github.com/hubbub-chat/hubbub" \
      org.opencontainers.image.url="https://github.com/hubbub-chat/hubbub" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/hubbub-server /out/hubbub-operator /usr/local/bin/
USER 65532:65532
EXPOSE 8080
CMD ["/usr/local/bin/hubbub-server"]
