# shellcheck shell=bash disable=SC2034
# Pinned versions of everything hack/local-cluster.sh builds from source.
# Every build is cached under ${RAFTKV_CACHE_DIR}/bin/<name>-<version>, so changing a
# version here triggers exactly one rebuild of that component.

# Kubernetes 1.34: the newest minor that still supports Debian bookworm's
# containerd 1.6.20 without caveats (1.35 is the last one that supports containerd 1.x
# at all) and only *warns* on this VM's cgroup v1. v1.34.4 is the newest 1.34 patch the
# Go module proxy serves for k8s.io/kubernetes. The staging modules (k8s.io/api, ...)
# are pinned to the matching v0.34.4 tags.
KUBE_VERSION=v1.34.4
KUBE_STAGING_VERSION=v0.34.4

# etcd 3.6 is what Kubernetes 1.34 is tested with (kubeadm ships 3.6.4); .16 is the
# newest 3.6 patch on the proxy. Its main package go.etcd.io/etcd/server/v3 is reachable
# through the proxy; only `go install pkg@version` refuses it (replace directives).
ETCD_VERSION=v3.6.16

# CoreDNS 1.12.x is the line kubeadm 1.34 deploys; 1.12.4 is built against client-go 0.34.
COREDNS_VERSION=v1.12.4

# Helm 3.19 is the Helm release whose version-skew policy covers Kubernetes 1.34.
HELM_VERSION=v3.19.5

# crictl for debugging and for a clean CNI teardown in `down` (not packaged in bookworm).
CRI_TOOLS_VERSION=v1.34.0

# Storage: the same dynamic provisioner kind uses (StorageClass "standard",
# rancher.io/local-path), so manifests behave the same here and on kind.
LOCAL_PATH_VERSION=v0.0.30

# Trace backend for the e2e's tracing step (step 11): Jaeger v2, an
# OpenTelemetry Collector distribution with an OTLP receiver, in-memory storage and the
# query API. The Go module's v1.76.0 tag is the v2.13.0 release (same commit); the
# module proxy has no UI assets (a git submodule built with npm), so the local build
# serves the HTTP APIs and `raftctl trace`, not the web UI.
JAEGER_VERSION=v1.76.0
JAEGER_RELEASE=2.13.0

# S3-compatible object store of the backup e2e step (13) and hack/backup/s3-smoke.sh:
# the s3s-fs server (a Rust crate on crates.io, built with `cargo install --locked`).
# 0.14.1 is the newest release whose rust-version (1.92) the toolchain here meets
# (0.17 needs 1.96).
S3S_FS_VERSION=0.14.1
