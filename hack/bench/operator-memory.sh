#!/usr/bin/env bash
# The operator's memory while it watches many RaftClusters (issue #13, "Scale figures":
# target under 64 MiB with 100 RaftClusters).
#
#   hack/bench/operator-memory.sh            100 RaftClusters (COUNT=100)
#
# Needs: a cluster reached by KUBECONFIG whose raft-operator runs on THIS machine (the
# local cluster of hack/local-cluster.sh / hack/up.sh: its containers are processes
# here, so /proc shows the operator's memory exactly, with no metrics server).
#
# What it does: samples the operator's resident memory (VmRSS) for a while with no
# RaftCluster in the bench namespace, then creates COUNT RaftClusters of 3 voters whose
# pods can never be scheduled (a nodeSelector no node has), so the operator holds and
# reconciles the real objects of COUNT clusters (RaftCluster, 2 StatefulSets' worth of
# pods stuck Pending, Services, PDBs, NetworkPolicies, Events) without starting 300
# raft-node processes on a 2-core machine. It waits until every RaftCluster carries a
# status written by the operator, samples for SAMPLE_SECONDS more, prints the figures,
# and deletes the namespace. This is a simulation of the watch and reconcile load, not
# of 300 live members: the operator's gRPC calls to the members fail fast here.
set -euo pipefail

COUNT=${COUNT:-100}
NS=${NS:-rk-operator-memory}
SAMPLE_SECONDS=${SAMPLE_SECONDS:-60}
READY_TIMEOUT_S=${READY_TIMEOUT_S:-600}

log() { printf '[operator-memory %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

command -v kubectl >/dev/null || die "kubectl not found (eval \"\$(hack/local-cluster.sh env)\")"
kubectl get crd raftclusters.raftkv.dev >/dev/null 2>&1 || die "no RaftCluster CRD: install the operator first (hack/up.sh)"
pid=$(pgrep -x raft-operator | head -1 || true)
[[ -n $pid ]] || die "no raft-operator process on this machine: this script reads its memory from /proc, so it needs the local cluster (hack/up.sh)"

kib() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/${pid}/status"; }
mib() { awk -v v="$1" 'BEGIN {printf "%.1f", v / 1024}'; }

# Samples VmRSS every 2 s for $1 seconds; prints "min median max" in KiB.
sample() {
  local until=$((SECONDS + $1)) v=()
  while ((SECONDS < until)); do
    v+=("$(kib VmRSS)")
    sleep 2
  done
  printf '%s\n' "${v[@]}" | sort -n | awk '{a[NR]=$1} END {print a[1], a[int((NR+1)/2)], a[NR]}'
}

cleanup() { kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1 || true; }
trap cleanup EXIT

kubectl create namespace "$NS" >/dev/null
log "operator pid ${pid}; sampling ${SAMPLE_SECONDS}s with no RaftCluster in ${NS}"
read -r idle_min idle_med idle_max < <(sample "$SAMPLE_SECONDS")

log "creating ${COUNT} RaftClusters (3 voters each, unschedulable)"
t0=$SECONDS
for i in $(seq -w 1 "$COUNT"); do
  cat <<EOF
---
apiVersion: raftkv.dev/v1alpha1
kind: RaftCluster
metadata:
  name: mem-${i}
spec:
  replicas: 3
  image: raftkv/raft-node:dev
  imagePullPolicy: IfNotPresent
  storage:
    size: 1Gi
  nodeSelector:
    raftkv.dev/operator-memory-bench: "no-such-node"
EOF
done | kubectl -n "$NS" apply -f - >/dev/null

# Every RaftCluster has a status the operator wrote (its phase) and a StatefulSet.
deadline=$((SECONDS + READY_TIMEOUT_S))
while :; do
  with_status=$(kubectl -n "$NS" get raftclusters -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}' | grep -c . || true)
  sts=$(kubectl -n "$NS" get statefulsets --no-headers 2>/dev/null | wc -l)
  ((with_status >= COUNT && sts >= COUNT)) && break
  ((SECONDS < deadline)) || die "after ${READY_TIMEOUT_S}s only ${with_status}/${COUNT} RaftClusters have a status and ${sts} StatefulSets exist"
  sleep 5
done
settle=$((SECONDS - t0))
log "all ${COUNT} reconciled in ${settle}s; sampling ${SAMPLE_SECONDS}s"
read -r busy_min busy_med busy_max < <(sample "$SAMPLE_SECONDS")
hwm=$(kib VmHWM)
pods=$(kubectl -n "$NS" get pods --no-headers 2>/dev/null | wc -l)
objects=$(kubectl -n "$NS" get statefulsets,services,poddisruptionbudgets,networkpolicies --no-headers 2>/dev/null | wc -l)

cat <<EOF

| figure | value |
| --- | --- |
| RaftClusters | ${COUNT} (3 voters each; ${pods} pods Pending, ${objects} StatefulSets/Services/PDBs/NetworkPolicies) |
| time until every RaftCluster had a status | ${settle} s |
| operator VmRSS, no RaftCluster (min / median / max over ${SAMPLE_SECONDS} s) | $(mib "$idle_min") / $(mib "$idle_med") / $(mib "$idle_max") MiB |
| operator VmRSS, ${COUNT} RaftClusters (min / median / max over ${SAMPLE_SECONDS} s) | $(mib "$busy_min") / $(mib "$busy_med") / $(mib "$busy_max") MiB |
| operator peak VmHWM since it started | $(mib "$hwm") MiB |
| target | under 64 MiB |
EOF
