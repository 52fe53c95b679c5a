#!/usr/bin/env bash
# One command from a fresh machine to a running operator with the example RaftCluster
# Available, then prints what to try next.
#
#   hack/up.sh                      local Kubernetes built from source (hack/local-cluster.sh, needs root)
#   hack/up.sh --context kind-raftkv
#   USE_CURRENT_CONTEXT=1 hack/up.sh
#                                   an existing cluster (e.g. kind) through kubectl; the images must
#                                   already be there:
#                                     docker build --target raft-node -t raftkv/raft-node:dev .
#                                     docker build --target raft-operator -t raftkv/raft-operator:dev .
#                                     kind load docker-image raftkv/raft-node:dev raftkv/raft-operator:dev --name raftkv
#
# Environment: NAMESPACE (of the RaftCluster, default "default"), OPERATOR_NS (raftkv-system),
# SKIP_BUILD=1 (local cluster: reuse the images already imported).
set -euo pipefail

ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT_DIR"
T0=$SECONDS
: "${USE_CURRENT_CONTEXT:=0}"
: "${NAMESPACE:=default}"
: "${OPERATOR_NS:=raftkv-system}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/raftkv/target}"
CONTEXT=""

say() { printf '[up %s +%4ds] %s\n' "$(date -u +%H:%M:%S)" "$((SECONDS - T0))" "$*" >&2; }
die() {
  say "ERROR: $*"
  exit 1
}
step() {
  local name=$1 t0=$SECONDS
  shift
  say "==> ${name}"
  "$@" || die "${name} failed"
  say "<== ${name}: $((SECONDS - t0))s"
}

while (($#)); do
  case $1 in
    --context) CONTEXT=${2:?--context needs a name}; USE_CURRENT_CONTEXT=1; shift 2 ;;
    --context=*) CONTEXT=${1#*=}; USE_CURRENT_CONTEXT=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

kctl() { kubectl ${CONTEXT:+--context "$CONTEXT"} "$@"; }
helm_() { helm ${CONTEXT:+--kube-context "$CONTEXT"} "$@"; }

build_and_load() {
  command -v cargo >/dev/null || die "cargo not found: install Rust from https://rustup.rs"
  nice cargo build --release --locked -p raftkv-node -p raftctl -p raft-operator
  local bin="${CARGO_TARGET_DIR}/release"
  hack/images.sh load raftkv/raft-node:dev "${bin}/raft-node" "${bin}/raftctl" >/dev/null
  hack/images.sh load raftkv/raft-operator:dev "${bin}/raft-operator" >/dev/null
}

install_operator() {
  # The chart installs and upgrades the CRD (a template). A CRD left by an older chart,
  # which installed it from crds/, is adopted into the release first.
  if kctl get crd raftclusters.raftkv.dev >/dev/null 2>&1; then
    kctl label crd raftclusters.raftkv.dev app.kubernetes.io/managed-by=Helm --overwrite >/dev/null
    kctl annotate crd raftclusters.raftkv.dev meta.helm.sh/release-name=raft-operator \
      meta.helm.sh/release-namespace="$OPERATOR_NS" --overwrite >/dev/null
  fi
  helm_ upgrade --install raft-operator charts/raft-operator --namespace "$OPERATOR_NS" \
    --create-namespace --set image.tag=dev --wait --timeout 180s
}

apply_example() {
  kctl -n "$NAMESPACE" apply -f examples/raftcluster.yaml
  kctl -n "$NAMESPACE" wait raftcluster/demo --for=condition=Available --timeout=300s
}

if [[ $USE_CURRENT_CONTEXT == 1 ]]; then
  command -v kubectl >/dev/null || die "kubectl not found"
  command -v helm >/dev/null || die "helm not found: https://helm.sh/docs/intro/install/"
  say "using kubectl context ${CONTEXT:-$(kubectl config current-context)}; images must already be loaded (see --help)"
else
  ((EUID == 0)) || die "the local cluster needs root: sudo hack/up.sh (or --context for an existing cluster)"
  step "local Kubernetes (hack/local-cluster.sh up)" hack/local-cluster.sh up
  eval "$(hack/local-cluster.sh env)"
  export KUBECONFIG PATH
  if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    step "build raft-node, raftctl, raft-operator and import their images" build_and_load
  fi
fi
step "helm upgrade --install raft-operator" install_operator
step "kubectl apply -f examples/raftcluster.yaml and wait until Available" apply_example

ns_flag=""
[[ $NAMESPACE != default ]] && ns_flag=" -n ${NAMESPACE}"
ctx_flag=${CONTEXT:+ --context ${CONTEXT}}
cat <<EOF

raftkv is up in $((SECONDS - T0))s.
$([[ $USE_CURRENT_CONTEXT != 1 ]] && printf '  %s\n' "$(hack/local-cluster.sh env | tr '\n' ';' | sed 's/;$//')")
Try:
  kubectl${ctx_flag}${ns_flag} get raft
  kubectl${ctx_flag}${ns_flag} get pods -L raftkv.dev/role
  kubectl${ctx_flag}${ns_flag} describe raft demo
  kubectl${ctx_flag}${ns_flag} exec demo-0 -- raftctl --endpoints demo:7000 put hello world   # TLS: the pod's own certificate
  kubectl${ctx_flag}${ns_flag} exec demo-0 -- raftctl --endpoints demo:7000 status
  kubectl${ctx_flag}${ns_flag} scale raft demo --replicas=5      # then watch: kubectl get raft -w

Tear down: $([[ $USE_CURRENT_CONTEXT == 1 ]] && echo "kubectl${ctx_flag}${ns_flag} delete raft demo; helm${CONTEXT:+ --kube-context ${CONTEXT}} uninstall raft-operator -n ${OPERATOR_NS}" || echo "make down   (hack/local-cluster.sh down)")
EOF
