# syntax=docker/dockerfile:1
# Images for users with Docker (our CI machines have no Docker engine: hack/e2e.sh builds
# the same images from release binaries with hack/images.sh instead).
#
#   docker build --target raft-node     -t raftkv/raft-node:dev .
#   docker build --target raft-operator -t raftkv/raft-operator:dev .
#   kind load docker-image raftkv/raft-node:dev raftkv/raft-operator:dev --name raftkv
#
# Both run as uid/gid 65532 (distroless "nonroot") and write nothing outside their data
# volume (raft-node) or /tmp, so `readOnlyRootFilesystem: true` works.

ARG RUST_VERSION=1.89

FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
# The proto crate compiles .proto files with protox (pure Rust): no protoc needed.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p raftkv-node -p raftctl -p raft-operator \
 && mkdir -p /out \
 && cp target/release/raft-node target/release/raftctl target/release/raft-operator /out/

# distroless/cc: glibc, libgcc, CA certificates, /etc/passwd with nonroot (65532); no shell.
FROM gcr.io/distroless/cc-debian12:nonroot AS raft-node
COPY --from=builder /out/raft-node /out/raftctl /usr/local/bin/
USER 65532:65532
# 7000: clients (KV, Cluster, gRPC health); 7001: Raft peers; 9100: metrics (the operator
# sets the actual addresses and the data directory on the command line).
EXPOSE 7000 7001 9100
ENTRYPOINT ["/usr/local/bin/raft-node"]

FROM gcr.io/distroless/cc-debian12:nonroot AS raft-operator
COPY --from=builder /out/raft-operator /usr/local/bin/raft-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/raft-operator"]
CMD ["run"]
