# shellcheck shell=bash
# Shared by the steps: titles, the fresh-namespace reset, the KV helpers and the writer.

e2e_step_title() {
  case $1 in
    1) echo "helm install; invalid RaftClusters refused by the API server" ;;
    2) echo "3-voter cluster Available with a leader; 1,000 keys through the client Service" ;;
    3) echo "scale 3 -> 5 -> 3 under writes; membership Events; no acknowledged write lost" ;;
    4) echo "delete the leader's pod: new leader, same node ID, no membership change" ;;
    5) echo "delete a voter's pod and PVC: replaced by a new member by joint consensus" ;;
    6) echo "readReplicas 2: learners serve reads through the read Service; back to 0" ;;
    7) echo "rolling image update: followers first, leader last" ;;
    8) echo "delete the RaftCluster, helm uninstall: owned objects gone, PVCs per policy" ;;
    9) echo "chart with watchNamespace: namespaced RBAC, only that namespace managed" ;;
    10) echo "pause annotation stops every action; autoReplace replaces an unavailable member; quorum loss shows no leader" ;;
    11) echo "traces in Jaeger: a write across 3 members, a promotion from operator step to commit" ;;
    12) echo "day-2: the voters' PDB follows the quorum (one eviction admitted, a second refused with 429)" ;;
    13) echo "backups to S3 (s3s-fs in the cluster): now, on schedule, retention; restore into a new RaftCluster (fromBackup)" ;;
    14) echo "disaster: 2 of 3 voters lost with their PVCs; force-new-cluster regrows 3 voters with every key" ;;
    15) echo "TLS by default: no certificate refused, kv role cannot change membership, another CA refused on the peer port, renewal under writes" ;;
    *) echo "?" ;;
  esac
}

# remove_raftclusters NS: delete every RaftCluster of NS; if no operator is left to run the
# finalizers (an earlier run died), drop them so the namespace can go.
remove_raftclusters() {
  local ns=$1 n
  kubectl get crd raftclusters.raftkv.dev >/dev/null 2>&1 || return 0
  for n in $(kubectl -n "$ns" get raftclusters -o name 2>/dev/null); do
    kubectl -n "$ns" delete "$n" --wait=false >/dev/null 2>&1 || true
    if ! kubectl -n "$ns" wait --for=delete "$n" --timeout=60s >/dev/null 2>&1; then
      say "  ${n} still has finalizers after 60s; removing them (leftover of an earlier run)"
      kubectl -n "$ns" patch "$n" --type merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
    fi
  done
}

# e2e_reset: no leftovers of an earlier run (KEEP_CLUSTER=1 reruns), then the test
# namespace with the client pod.
e2e_reset() {
  local rel
  for rel in "${OPERATOR_NS}/${RELEASE}" raftkv-e2e-ops/scoped; do
    if helm status "${rel#*/}" -n "${rel%/*}" >/dev/null 2>&1; then
      remove_raftclusters "$E2E_NS"
      say "  uninstalling leftover release ${rel}"
      helm uninstall "${rel#*/}" -n "${rel%/*}" --wait >/dev/null
    fi
  done
  remove_raftclusters "$E2E_NS"
  remove_raftclusters raftkv-e2e-ops
  local ns
  for ns in "$E2E_NS" "$OPERATOR_NS" raftkv-e2e-ops; do
    if kubectl get namespace "$ns" >/dev/null 2>&1; then
      say "  deleting leftover namespace ${ns}"
      kubectl delete namespace "$ns" --wait=true --timeout=180s >/dev/null
    fi
  done
  # A CRD left by an earlier run may be stale: the chart installs the current one.
  kubectl delete crd raftclusters.raftkv.dev raftclusterbackups.raftkv.dev --ignore-not-found --wait=true >/dev/null
  kubectl create namespace "$E2E_NS" >/dev/null
  # Every pod of the suite (raft-node, the client, Jaeger) must pass the Pod
  # Security "restricted" profile, as in a hardened cluster (issue 12).
  kubectl label namespace "$E2E_NS" pod-security.kubernetes.io/enforce=restricted >/dev/null
  wait_for "default ServiceAccount in ${E2E_NS}" 60 k get serviceaccount default
  start_client_pod
}

# --- KV helpers (raftctl output formats live here only) ---------------------------------

# kv_value KEY [raftctl options...]: the value of KEY through the client Service.
kv_value() {
  local key=$1
  shift
  rctl get "$key" "$@"
}

# range_keys ENDPOINT PREFIX [read options]: every key under PREFIX (which must end in
# "/"), one a line, sorted; pages through the server's range limit (10,000 keys a reply).
range_keys() {
  local ep=$1 prefix=$2 from end page last more
  shift 2
  [[ $prefix == */ ]] || fail "range_keys: prefix must end in /: ${prefix}"
  end="${prefix%/}0" # the first key after the prefix ('0' follows '/')
  from=$prefix
  last=""
  while true; do
    page=$(rctl_at "$ep" range --from "$from" --to "$end" --limit "${RANGE_PAGE:-10000}" -o json "$@") || return 1
    more=$(jq -r '.more' <<<"$page")
    jq -r --arg last "$last" '.kvs[] | select(.key != $last) | .key' <<<"$page"
    [[ $more == true ]] || break
    last=$(jq -r '.kvs[-1].key' <<<"$page")
    from=$last
  done | LC_ALL=C sort
}

# put_keys PREFIX COUNT: COUNT sequential puts PREFIX0001.. through the client Service,
# from inside the client pod (one raftctl per key, as a user's script would).
put_keys() {
  local prefix=$1 count=$2
  csh "$(tls_env) ep=$(client_endpoint); i=1
       while [ \$i -le ${count} ]; do
         k=\$(printf '${prefix}%04d' \$i)
         raftctl --endpoints \$ep put \$k v\$i >/dev/null || { echo \"put \$k failed\" >&2; exit 1; }
         i=\$((i + 1))
       done"
}

# --- the background writer (in the client pod) --------------------------------------------
# Writes <prefix><n> = n (writer_start PREFIX, default w/) in a loop through the client Service; acknowledged n go to
# /tmp/writer.acked, failed ones to /tmp/writer.failed. (setsid: a plain background job
# dies with the `kubectl exec` session.) (a failed write may or may not
# have been applied; an acknowledged one must never be lost).

writer_start() {
  WRITER_PREFIX=${1:-w/}
  csh "rm -f /tmp/writer.*; touch /tmp/writer.acked /tmp/writer.failed
       $(tls_env) setsid sh -c 'ep=$(client_endpoint); i=0
         while [ ! -e /tmp/writer.stop ]; do
           i=\$((i + 1))
           if raftctl --endpoints \$ep put ${WRITER_PREFIX}\$i \$i >/dev/null 2>>/tmp/writer.err; then
             echo \$i >>/tmp/writer.acked
           else
             echo \$i >>/tmp/writer.failed
           fi
         done
         touch /tmp/writer.done' </dev/null >/dev/null 2>&1 &"
  wait_for "the writer's first acknowledged write" 30 writer_acked_at_least 1
}

writer_acked() { csh "wc -l </tmp/writer.acked" | tr -d ' '; }
writer_failed() { csh "wc -l </tmp/writer.failed" | tr -d ' '; }
writer_acked_at_least() { (($(writer_acked) >= $1)); }

writer_stop() {
  csh "touch /tmp/writer.stop"
  wait_for "the writer to stop" 60 csh "test -e /tmp/writer.done"
  say "  writer: $(writer_acked) writes acknowledged, $(writer_failed) failed (retried by nobody; allowed during changes)"
  if [[ $(writer_failed) != 0 ]]; then
    say "  writer errors (last 5): $(csh 'tail -n 5 /tmp/writer.err' | tr '\n' ' ')"
  fi
}

# writer_check_no_loss: every acknowledged w/<n> is in the store (linearizable range).
writer_check_no_loss() {
  local acked stored missing
  acked=$(mktemp)
  stored=$(mktemp)
  csh "cat /tmp/writer.acked" | sed "s|^|${WRITER_PREFIX}|" | LC_ALL=C sort >"$acked"
  range_keys "$(client_endpoint)" "$WRITER_PREFIX" >"$stored"
  check "all $(wc -l <"$acked") acknowledged writes are in the store ($(wc -l <"$stored") ${WRITER_PREFIX} keys stored)"
  missing=$(LC_ALL=C comm -23 "$acked" "$stored" | head -n 20)
  rm -f "$acked" "$stored"
  [[ -z $missing ]] || fail "acknowledged writes lost: $(tr '\n' ' ' <<<"$missing")"
  ok "no acknowledged write lost"
}
