#!/usr/bin/env bash
# The project's test command (see README "Tests" and docs/testing.md).
#
#   hack/test.sh          # everything: lint, unit + multi-process tests, end-to-end on a local Kubernetes
#   hack/test.sh lint     # rustfmt, clippy (-D warnings), import circles, Markdown links
#   hack/test.sh rust     # cargo test --workspace (unit, property, storage, multi-process, CRD freshness)
#   hack/test.sh faults   # the fault suite, bounded: every nemesis once, seeded (root: network namespaces)
#   hack/test.sh guide    # the guide's experiments, short (docs/raft-through-traces.md; needs Jaeger, jq, curl)
#   hack/test.sh monitoring # the chart's alerts (promtool unit tests), dashboard queries, metric names
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
  step "layout: no import circles, layering rules (hack/check-imports.py)"
  python3 hack/check-imports.py --self-test
  python3 hack/check-imports.py
  step "docs: docs/crates.svg is what the Cargo.toml files say (hack/crates-svg.py --check)"
  python3 hack/crates-svg.py --check
  step "docs: every relative Markdown link resolves inside the repository (hack/check-links.sh)"
  hack/check-links.sh --self-test
  hack/check-links.sh
}

rust_tests() {
  need_rust
  step "cargo test (unit, property, storage, multi-process)"
  cargo test --workspace --locked
}

faults() {
  step "fault suite: every nemesis, seeded, histories checked (hack/faults.sh)"
  if ((EUID != 0)); then
    echo "error: the fault suite needs root (network namespaces, veth pairs, iptables): run hack/test.sh as root" >&2
    exit 1
  fi
  # iproute2 and iptables, from the same package list as the local cluster.
  hack/local-cluster.sh packages
  hack/faults.sh
}

guide() {
  step "the guide's experiments, short: every claim of docs/raft-through-traces.md checked (hack/guide.sh --short)"
  local jaeger missing=()
  jaeger="${GUIDE_JAEGER:-${RAFTKV_CACHE_DIR:-$HOME/.cache/raftkv}/bin/jaeger-$(source hack/local-cluster/versions.sh && echo "$JAEGER_VERSION")/jaeger}"
  if [[ ! -x $jaeger ]]; then
    echo "error: the guide tier needs a Jaeger v2 binary at ${jaeger}: build it with hack/local-cluster.sh build (from source), or set GUIDE_JAEGER to one" >&2
    exit 1
  fi
  for t in jq curl; do command -v "$t" >/dev/null || missing+=("$t"); done
  if ((${#missing[@]})); then
    echo "error: the guide tier needs ${missing[*]}: install them (apt-get install ${missing[*]})" >&2
    exit 1
  fi
  need_rust
  cargo build --locked -p raftkv-node -p raftctl --bin raft-node --bin raftctl
  GUIDE_JAEGER="$jaeger" hack/guide.sh --short
}

monitoring() {
  step "monitoring kit: promtool check/test rules, dashboard queries, metric names, chart (hack/monitoring/check.sh)"
  need_rust
  hack/monitoring/check.sh --self-test
  hack/monitoring/check.sh
}

e2e() {
  step "end-to-end on a local Kubernetes"
  # The images carry the binaries `cargo test` just built (dependencies optimized,
  # see Cargo.toml) instead of a second, release build of the whole graph.
  E2E_CARGO_PROFILE="${E2E_CARGO_PROFILE:-dev}" hack/e2e.sh
}

# In CI the local cluster's Go builds (Kubernetes, etcd, CoreDNS, Helm, Jaeger, promtool: ~40 min
# cold, much of it module downloads) run in the background, niced, while cargo builds
# and tests; on a fresh machine that is most of the difference between ~85 and ~60
# minutes. `hack/e2e.sh` then finds them cached.
BG_BUILD_PID=""
BG_BUILD_LOG="${RAFTKV_CACHE_DIR:-$HOME/.cache/raftkv}/build-logs/local-cluster-build.log"
start_cluster_build() {
  [[ ${CI:-} == true && $EUID -eq 0 ]] || return 0
  mkdir -p "$(dirname "$BG_BUILD_LOG")"
  step "local cluster binaries: building in the background (log: ${BG_BUILD_LOG})"
  # Its own process group, so a failing lint or test stops the Go builds with it.
  setsid hack/local-cluster.sh build >"$BG_BUILD_LOG" 2>&1 &
  BG_BUILD_PID=$!
  trap 'stop_cluster_build' EXIT
}
stop_cluster_build() {
  [[ -n $BG_BUILD_PID ]] && kill -0 "$BG_BUILD_PID" 2>/dev/null && kill -- "-$BG_BUILD_PID" 2>/dev/null
  return 0
}
wait_cluster_build() {
  [[ -n $BG_BUILD_PID ]] || return 0
  step "local cluster binaries: waiting for the background build"
  if ! wait "$BG_BUILD_PID"; then
    tail -40 "$BG_BUILD_LOG" >&2
    echo "error: hack/local-cluster.sh build failed (full log: ${BG_BUILD_LOG})" >&2
    exit 1
  fi
  grep -E '<== |built ' "$BG_BUILD_LOG" || true
}

case "${1:-all}" in
  lint) lint ;;
  rust) rust_tests ;;
  faults) faults ;;
  guide) guide ;;
  monitoring) monitoring ;;
  e2e) e2e ;;
  all)
    start=$(date +%s)
    start_cluster_build
    lint
    rust_tests
    faults
    wait_cluster_build
    # After the background build: it is what builds promtool and Jaeger on a fresh machine.
    monitoring
    guide
    if [ -x hack/e2e.sh ]; then e2e; else echo "hack/e2e.sh missing" >&2; exit 1; fi
    echo "all tests passed in $(( $(date +%s) - start ))s"
    ;;
  *) echo "usage: hack/test.sh [all|lint|rust|faults|guide|monitoring|e2e]" >&2; exit 2 ;;
esac
