#!/usr/bin/env bash
# The project's test command (see README "Testing").
#
#   hack/test.sh          # everything: lint, unit + multi-process tests, end-to-end on a local Kubernetes
#   hack/test.sh lint     # rustfmt + clippy (-D warnings)
#   hack/test.sh rust     # cargo test --workspace (unit, property, storage, multi-process, CRD freshness)
#   hack/test.sh e2e      # local Kubernetes from source + Helm + the e2e suite (tears the cluster down)
#
# Build caches live outside the clone: CARGO_TARGET_DIR defaults to
# ~/.cache/raftkv/target; Kubernetes builds to ~/.cache/raftkv/k8s.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/raftkv/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# A fresh clone (CI) gains nothing from incremental caches, which grow by gigabytes a run.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step() { printf '\n=== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

need_rust() {
  command -v cargo >/dev/null || { echo "error: cargo not found; install Rust (https://rustup.rs)" >&2; exit 1; }
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy
}

lint() {
  need_rust
  step "rustfmt"
  cargo fmt --all -- --check
  step "clippy"
  cargo clippy --workspace --all-targets --locked -- -D warnings
}

rust_tests() {
  need_rust
  step "cargo test (unit, property, storage, multi-process)"
  cargo test --workspace --locked
}

e2e() {
  step "end-to-end on a local Kubernetes"
  hack/e2e.sh
}

case "${1:-all}" in
  lint) lint ;;
  rust) rust_tests ;;
  e2e) e2e ;;
  all)
    start=$(date +%s)
    lint
    rust_tests
    if [ -x hack/e2e.sh ]; then e2e; else echo "hack/e2e.sh missing" >&2; exit 1; fi
    echo "all tests passed in $(( $(date +%s) - start ))s"
    ;;
  *) echo "usage: hack/test.sh [all|lint|rust|e2e]" >&2; exit 2 ;;
esac
