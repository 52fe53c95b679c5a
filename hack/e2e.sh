#!/usr/bin/env bash
# End-to-end suite on a real Kubernetes (issue 4), as a user would drive it: Helm chart,
# kubectl, raftctl through the cluster's Services.
#
#   hack/e2e.sh                       cluster up, build + import images, helm install, suite, cluster down
#   KEEP_CLUSTER=1 hack/e2e.sh        leave the local cluster (and the test namespace) running
#   E2E_STEPS="1 2 4" hack/e2e.sh     run only some steps (each step still needs the ones it builds on)
#   E2E_SKIP_BUILD=1 hack/e2e.sh      reuse the images already imported
#   E2E_CARGO_PROFILE=dev hack/e2e.sh images of the dev-profile binaries `cargo test` already
#                                     built (hack/test.sh does this; default: release)
#   E2E_USE_CURRENT_CONTEXT=1 ...     use the current kubectl context instead of the local cluster
#                                     (images must already be loaded there, e.g. with `kind load`)
#
# Steps (hack/e2e/steps/*.sh):
#   1 helm install; invalid RaftClusters refused by the API server
#   2 3-voter cluster Available, a leader in `kubectl get raft`, 1,000 keys through the client Service
#   3 scale 3 -> 5 -> 3 while a writer writes; Events; no acknowledged write lost
#   4 delete the leader's pod: new leader, same node ID, no membership change
#   5 delete a voter's pod and PVC: new member, old ID swapped out, every member has every key
#   6 readReplicas 2: learners serve stale and linearizable reads via the read Service; back to 0
#   7 rolling image update: followers first, leader last
#   8 delete the RaftCluster and helm uninstall: owned objects gone, PVCs per retention policy
#   9 the chart with watchNamespace: a Role instead of a ClusterRole, only that namespace managed
#  10 the pause annotation stops every action; autoReplace replaces a member that stays
#     unavailable (runs between 7 and 8; hack/e2e/steps/10-pause-autoreplace.sh)
#  11 traces in Jaeger (built from source): a write is one trace across raftctl and three
#     members, a scale-out's promotion one trace from the operator's step to the commit;
#     `raftctl trace get` prints the waterfall (runs before 8; hack/e2e/steps/11-traces.sh)
#  12 day-2: the voters' PodDisruptionBudget follows the quorum: one eviction admitted, a
#     second refused (HTTP 429) until the first pod is back (runs before 8; 12-day2.sh)
#  13 backups to a real S3 server in the cluster (s3s-fs): a RaftClusterBackup now, spec.backup
#     every minute with retention, status, Events and metrics; then the cluster and its PVCs
#     deleted and a new one restored from the backup (spec.bootstrap.fromBackup) holding
#     exactly the backed-up keys; a damaged backup refused (runs before 14; 13-backup.sh)
#  14 disaster: delete 2 of 3 voter pods with their PVCs; the force-new-cluster annotation
#     regrows 3 voters holding every key the survivor had (runs before 8; 14-disaster.sh)
#  15 TLS by default: a client without a certificate refused, the kv role cannot change the
#     membership, another cluster's CA refused on the peer port, renewal by annotation under
#     writes with no failed write nor election (runs before 8; 15-tls.sh)
#
# On failure it dumps the RaftCluster, Events, pod logs and operator logs. The local cluster is
# always taken down at the end (trap), unless KEEP_CLUSTER=1.
set -euo pipefail

ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT_DIR"
E2E_T0=$SECONDS
# shellcheck source=hack/e2e/lib.sh
source "${ROOT_DIR}/hack/e2e/lib.sh"
for f in "${ROOT_DIR}"/hack/e2e/steps/*.sh; do
  # shellcheck source=/dev/null
  source "$f"
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/raftkv/target}"
: "${KEEP_CLUSTER:=0}"
# Step 10 (pause + autoReplace) runs on the demo cluster, so before step 8 deletes it.
if [[ -z ${E2E_STEPS:-} ]]; then
  E2E_STEPS="1 2 3 4 5 6 7"
  if declare -F e2e_step_10 >/dev/null; then E2E_STEPS+=" 10"; fi
  if declare -F e2e_step_11 >/dev/null; then E2E_STEPS+=" 11"; fi
  if declare -F e2e_step_12 >/dev/null; then E2E_STEPS+=" 12"; fi
  if declare -F e2e_step_13 >/dev/null; then E2E_STEPS+=" 13"; fi
  if declare -F e2e_step_14 >/dev/null; then E2E_STEPS+=" 14"; fi
  if declare -F e2e_step_15 >/dev/null; then E2E_STEPS+=" 15"; fi
  E2E_STEPS+=" 8 9"
fi
: "${E2E_SKIP_BUILD:=0}"
: "${E2E_CARGO_PROFILE:=release}"
: "${E2E_USE_CURRENT_CONTEXT:=0}"
LOCAL_CLUSTER=1
CORDONED_NODE=""
[[ $E2E_USE_CURRENT_CONTEXT == 1 ]] && LOCAL_CLUSTER=0
# Step 11's trace backend. Local cluster: an image of the Jaeger binary hack/local-cluster.sh
# built from source; another cluster (kind): the upstream image of the same release.
if ((LOCAL_CLUSTER)); then
  : "${JAEGER_IMAGE:=localhost/raftkv/jaeger:local}"
  JAEGER_PULL=Never
else
  : "${JAEGER_IMAGE:=jaegertracing/jaeger:2.13.0}"
  JAEGER_PULL=IfNotPresent
fi
export JAEGER_IMAGE JAEGER_PULL

need() {
  local cmd=$1 hint=$2
  command -v "$cmd" >/dev/null 2>&1 || fail "'${cmd}' not found: ${hint}"
}

preflight() {
  need cargo "install Rust from https://rustup.rs (the workspace needs rustc >= 1.89)"
  if ((LOCAL_CLUSTER)); then
    ((EUID == 0)) || fail "the local cluster needs root (containerd, kubelet, iptables): run as root or with sudo"
    # A fresh machine has none of jq, binutils, busybox-static, containerd...: the
    # cluster script installs its Debian packages (ours among them) before we check.
    hack/local-cluster.sh packages 9>&-
    need go "install Go >= 1.24 (https://go.dev/dl/); the local cluster builds Kubernetes from source"
    need readelf "install binutils (apt-get install binutils); hack/images.sh needs it"
    [[ -x /bin/busybox ]] || fail "/bin/busybox missing: apt-get install busybox-static (the e2e client image uses it)"
  else
    need kubectl "install kubectl (https://kubernetes.io/docs/tasks/tools/)"
    need helm "install helm 3 (https://helm.sh/docs/intro/install/)"
  fi
  need jq "install it (Debian: apt-get install jq)"
}

# One suite at a time per machine: two runs share the cluster, namespaces and Helm release
# and would tear each other's clusters down.
E2E_LOCK="${RAFTKV_CACHE_DIR:-$HOME/.cache/raftkv}/e2e.lock"
mkdir -p "$(dirname "$E2E_LOCK")"
exec 9>"$E2E_LOCK"
if ! flock -n 9; then
  say "another hack/e2e.sh holds ${E2E_LOCK} (pid $(cat "${E2E_LOCK}.pid" 2>/dev/null || echo '?')): wait for it to finish"
  exit 1
fi
echo $$ >"${E2E_LOCK}.pid"

E2E_RC=0
finish() {
  E2E_RC=$?
  set +e
  if ((E2E_RC != 0)); then
    say "e2e FAILED in step '${CURRENT_STEP:-setup}' (rc=${E2E_RC}) after $((SECONDS - E2E_T0))s"
    if kubectl version --request-timeout=5s >/dev/null 2>&1; then
      dump_diagnostics
    else
      say "(no API server reachable: no Kubernetes diagnostics)"
    fi
  fi
  # Step 4 cordons the leader's node for a while: never leave it cordoned.
  if [[ -n ${CORDONED_NODE:-} ]]; then
    kubectl uncordon "$CORDONED_NODE" >/dev/null 2>&1 || say "warning: could not uncordon ${CORDONED_NODE}"
  fi
  # Background helpers are ours: stop them by PID.
  local pid
  for pid in $(jobs -p); do kill "$pid" 2>/dev/null; done
  if ((LOCAL_CLUSTER)) && [[ $KEEP_CLUSTER != 1 ]]; then
    say "==> local cluster down"
    hack/local-cluster.sh down 9>&- || say "warning: hack/local-cluster.sh down failed"
  elif ((LOCAL_CLUSTER)); then
    say "KEEP_CLUSTER=1: cluster left running. $(hack/local-cluster.sh env | tr '\n' ';')"
  fi
  if ((E2E_RC == 0)); then
    say "e2e PASSED (steps: ${E2E_STEPS}) in $((SECONDS - E2E_T0))s"
  fi
  exit "$E2E_RC"
}
trap finish EXIT
trap 'exit 130' INT TERM

# The cluster's daemons outlive this script: they must not inherit the lock (fd 9).
cluster_up() {
  hack/local-cluster.sh up 9>&-
}

use_cluster_env() {
  if ((LOCAL_CLUSTER)); then
    eval "$(hack/local-cluster.sh env)"
    export KUBECONFIG PATH
  fi
  kubectl version >/dev/null || fail "kubectl cannot reach the cluster (KUBECONFIG=${KUBECONFIG:-unset})"
}

build_binaries() {
  nice cargo build --profile "$E2E_CARGO_PROFILE" --locked -p raftkv-node -p raftctl -p raft-operator -p kubectl-raft
}

# Where cargo puts a profile's binaries ("dev" builds into debug/).
profile_dir() { [[ $E2E_CARGO_PROFILE == dev ]] && echo debug || echo "$E2E_CARGO_PROFILE"; }

# The binaries that go into images (step 7 retags from here too). Dev-profile ones are
# copied without debug info, which makes them 170-350 MB; the images need only the code.
image_bin_dir() {
  [[ $(profile_dir) == debug ]] && echo "${CARGO_TARGET_DIR}/e2e-stripped" || echo "${CARGO_TARGET_DIR}/$(profile_dir)"
}

build_images() {
  local bin b
  bin=$(image_bin_dir)
  if [[ $(profile_dir) == debug ]]; then
    mkdir -p "$bin"
    for b in raft-node raftctl raft-operator; do
      objcopy --strip-debug "${CARGO_TARGET_DIR}/debug/${b}" "${bin}/${b}"
    done
  fi
  hack/images.sh load "$NODE_IMAGE" "${bin}/raft-node" "${bin}/raftctl" >/dev/null
  hack/images.sh load "$OPERATOR_IMAGE" "${bin}/raft-operator" >/dev/null
  # Test-only client: raftctl plus a static busybox for loops and files in the pod.
  hack/images.sh load "$CLIENT_IMAGE" "${bin}/raftctl" /bin/busybox >/dev/null
  # The trace backend of step 11, from the binary hack/local-cluster.sh built from source.
  local jaeger
  jaeger="${RAFTKV_CACHE_DIR:-$HOME/.cache/raftkv}/bin/jaeger-$(source hack/local-cluster/versions.sh && echo "$JAEGER_VERSION")/jaeger"
  [[ -x $jaeger ]] || fail "${jaeger} missing: hack/local-cluster.sh build builds it"
  hack/images.sh load "$JAEGER_IMAGE" "$jaeger" >/dev/null
}

main() {
  say "raftkv e2e: steps ${E2E_STEPS}; cluster: $( ((LOCAL_CLUSTER)) && echo local || echo "current context")"
  run_step "preflight" preflight
  if ((LOCAL_CLUSTER)); then
    run_step "local cluster up (hack/local-cluster.sh up)" cluster_up
  fi
  # After `up`: on the local cluster, helm is one of the binaries it builds.
  run_step "helm lint + template (hack/e2e/chart-lint.sh)" hack/e2e/chart-lint.sh
  use_cluster_env
  if [[ $E2E_SKIP_BUILD != 1 ]]; then
    run_step "cargo build --profile ${E2E_CARGO_PROFILE} (raft-node, raftctl, raft-operator, kubectl-raft)" build_binaries
    if ((LOCAL_CLUSTER)); then
      run_step "images: build and import into containerd" build_images
    fi
  fi
  run_step "fresh test namespaces" e2e_reset
  local s
  for s in $E2E_STEPS; do
    declare -F "e2e_step_${s}" >/dev/null || fail "no such step: ${s}"
    run_step "step ${s}: $(e2e_step_title "$s")" "e2e_step_${s}"
  done
}

main "$@"
