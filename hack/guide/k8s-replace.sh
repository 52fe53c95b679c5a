#!/usr/bin/env bash
# Guide, "What happens when a server is replaced", on Kubernetes: a voter's pod and
# its volume are deleted; the pod comes back empty under a new node ID and the
# operator swaps it in by joint consensus (a learner first, then one membership
# change that adds the new ID and removes the old one). The operator's step is one
# trace, from its reconcile to the members committing the new configuration.
#
#   hack/guide/k8s-replace.sh [--short]
#
# Needs a Kubernetes cluster set up as in examples/tracing/ (see
# docs/raft-through-traces.md, "On Kubernetes"): the raftkv operator exporting
# traces, a RaftCluster with spec.tracing, and Jaeger from
# examples/tracing/jaeger.yaml; kubectl, jq and raftctl on this machine. e2e step 11
# runs this script, so CI checks every claim it makes.
#
# Environment:
#   NAMESPACE=default        the RaftCluster's namespace
#   CLUSTER=traced           the RaftCluster
#   JAEGER_NS=observability  Jaeger's namespace (Service `jaeger`, query port 16686)
#   RAFTCTL                  raftctl (default: ${CARGO_TARGET_DIR}/debug/raftctl)
#   GUIDE_OUT                where the pictures go (default docs/guide; --short: a temp dir)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SHORT=0
for arg in "$@"; do
  case $arg in
    --short) SHORT=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: $0 [--short]" >&2; exit 2 ;;
  esac
done
NAMESPACE="${NAMESPACE:-default}"
CLUSTER="${CLUSTER:-traced}"
JAEGER_NS="${JAEGER_NS:-observability}"
RAFTCTL="${RAFTCTL:-${CARGO_TARGET_DIR:-$HOME/.cache/raftkv/target}/debug/raftctl}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/raftkv-guide-k8s-replace.XXXXXX")"
if ((SHORT)); then OUT="${GUIDE_OUT:-$WORK/out}"; else OUT="${GUIDE_OUT:-$ROOT/docs/guide}"; fi
mkdir -p "$OUT"

say() { printf '\n--- %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
claim() {
  local text=$1
  shift
  if "$@"; then
    printf 'ok    k8s-replace: %s\n' "$text"
  else
    printf 'FAIL  k8s-replace: %s\n  (the guide claims this; work dir: %s)\n' "$text" "$WORK" >&2
    KEEP=1
    exit 1
  fi
}
PROXY_PID=""
cleanup() {
  local rc=$?
  [[ -n $PROXY_PID ]] && kill "$PROXY_PID" 2>/dev/null
  if ((rc == 0)) && [[ -z ${KEEP:-} ]] && ((!SHORT)); then rm -rf "$WORK"; else echo "work dir kept: $WORK" >&2; fi
  exit "$rc"
}
trap cleanup EXIT

for t in kubectl jq; do command -v "$t" >/dev/null || die "this experiment needs ${t}: install it"; done
[[ -x $RAFTCTL ]] || die "raftctl not found at ${RAFTCTL}: cargo build -p raftctl (or set RAFTCTL)"
k() { kubectl -n "$NAMESPACE" "$@"; }
k get raftcluster "$CLUSTER" >/dev/null 2>&1 ||
  die "no RaftCluster ${NAMESPACE}/${CLUSTER}: apply examples/tracing/raftcluster-traced.yaml (or set NAMESPACE, CLUSTER)"
kubectl -n "$JAEGER_NS" get service jaeger >/dev/null 2>&1 ||
  die "no Service jaeger in namespace ${JAEGER_NS}: apply examples/tracing/jaeger.yaml (or set JAEGER_NS)"

rc_json() { k get raftcluster "$CLUSTER" -o json; }
node_id_of() { rc_json | jq -r --arg p "$1" '.status.members[]? | select(.pod == $p) | .nodeId // empty'; }
voters() { rc_json | jq -r '[.status.members[]? | select(.role == "leader" or .role == "follower") | .nodeId | tostring] | sort | join(",")'; }
# wait_until SECONDS WHAT COMMAND...: polls once a second.
wait_until() {
  local timeout=$1 what=$2
  local deadline=$((SECONDS + timeout))
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "timed out after ${timeout}s waiting for: ${what}"
    sleep 1
  done
}
# settled: phase Running and as many voters in the status as the spec asks for (a
# scale-out just before may still be finishing; the voter count is taken after).
settled() {
  rc_json | jq -e '.status.phase == "Running" and
    ([.status.members[]? | select(.role == "leader" or .role == "follower")] | length) == .spec.replicas' >/dev/null
}

say "the cluster before"
wait_until 300 "${CLUSTER} settled (phase Running, spec.replicas voters in the status)" settled
leader=$(rc_json | jq -r '.status.leader // empty')
[[ -n $leader ]] || die "${CLUSTER} has no leader in its status; wait until it is Available"
victim=""
for ((i = 2; i >= 0; i--)); do
  [[ ${CLUSTER}-$i != "$leader" ]] && { victim=${CLUSTER}-$i; break; }
done
old=$(node_id_of "$victim")
pvc=$(k get pod "$victim" -o jsonpath='{.spec.volumes[?(@.persistentVolumeClaim)].persistentVolumeClaim.claimName}')
[[ -n $old && -n $pvc ]] || die "cannot find the node ID or PVC of ${victim}"
n_voters=$(rc_json | jq '[.status.members[]? | select(.role == "leader" or .role == "follower")] | length')
k get raftcluster "$CLUSTER" | tee "$WORK/before.txt"
echo "leader ${leader}; ${victim} is node ${old} on volume ${pvc}"

say "${victim} loses its volume: delete the PVC and the pod"
k delete pvc "$pvc" --wait=false
k delete pod "$victim" --wait=false

# replaced: the pod reports a new node ID, which is a voter, the old one is gone, and
# there are as many voters as before.
replaced() {
  local new v
  new=$(node_id_of "$victim")
  [[ -n $new && $new != "$old" ]] || return 1
  v=$(voters)
  [[ ,$v, == *",$new,"* && ,$v, != *",$old,"* ]] && [[ $(rc_json | jq '[.status.members[]? | select(.role == "leader" or .role == "follower")] | length') == "$n_voters" ]]
}
wait_until 300 "${victim} back with a new node ID, swapped in for ${old}" replaced
new=$(node_id_of "$victim")
claim "an empty volume means a new node ID (${old} -> ${new})" test "$new" != "$old"
k get raftcluster "$CLUSTER" | tee "$WORK/after.txt"

say "what the operator did: its Events"
k events --for "raftcluster/${CLUSTER}" 2>/dev/null | grep -E "LearnerAdded|MemberReplaced" | tail -n 2 | tee "$OUT/k8s-replace-events.txt" || true
events() { k get events -o json | jq -r --arg n "$CLUSTER" '.items[] | select(.involvedObject.kind == "RaftCluster" and .involvedObject.name == $n) | "\(.reason) \(.message // .note)"'; }
claim "the new node joined as a learner first (LearnerAdded names ${new})" \
  grep -q "^LearnerAdded .*${new}" <(events)
claim "one joint change added ${new} and removed ${old} (MemberReplaced)" \
  grep -qE "^MemberReplaced .*added \[${new}.*removed \[${old}" <(events)

say "the replacement as one trace"
change=$(rc_json | jq -c '.status.lastMembershipChange')
echo "status.lastMembershipChange: ${change}"
id=$(jq -r 'select(.kind == "MemberReplaced") | .traceId // empty' <<<"$change")
claim "status.lastMembershipChange names the trace of the MemberReplaced step" test -n "$id"
# Jaeger's query API through the API server's service proxy: no port-forward needed.
kubectl proxy --port=0 >"$WORK/proxy.log" 2>&1 &
PROXY_PID=$!
wait_until 20 "kubectl proxy" grep -q "Starting to serve" "$WORK/proxy.log"
port=$(sed -n 's/.*127\.0\.0\.1:\([0-9]*\).*/\1/p' "$WORK/proxy.log" | head -n 1)
query="http://127.0.0.1:${port}/api/v1/namespaces/${JAEGER_NS}/services/jaeger:16686/proxy"
"$RAFTCTL" --timeout 5s trace get "$id" --query-url "$query" --wait 60s --min-spans 8 -o json >"$WORK/trace.json"
"$RAFTCTL" --timeout 5s trace get "$id" --query-url "$query" --svg "$OUT/k8s-replace.svg" >"$OUT/k8s-replace.txt"
cat "$OUT/k8s-replace.txt"
echo "picture: $OUT/k8s-replace.svg"
spans() { jq "[.spans[] | select($1)] | length" "$WORK/trace.json"; }
claim "the trace starts at the operator's step (raftcluster.change_membership)" \
  test "$(spans '.name == "raftcluster.change_membership"')" -ge 1
claim "the leader served Cluster/ChangeMembership in the same trace" \
  test "$(spans '.name == "raftkv.v1.Cluster/ChangeMembership"')" -ge 1
claim "raft.membership on the leader: the joint and then the final configuration committed" \
  test "$(spans '.name == "raft.membership"')" -ge 1
claim "the configuration entries reached the members (AppendEntries in the trace)" \
  test "$(spans '.name == "raftkv.v1.RaftPeer/AppendEntries"')" -ge 1
