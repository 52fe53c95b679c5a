# shellcheck shell=bash
# Helpers of the e2e suite (sourced by hack/e2e.sh): logging with timings, polling waits,
# kubectl/raftctl wrappers, and the failure diagnostics.
#
# Conventions: every check prints what it checks (`check`), every wait polls a real
# condition with a deadline (`wait_for`), a failed check ends the suite (`fail`).

: "${E2E_NS:=raftkv-e2e}"                 # where the RaftClusters of the suite live
: "${OPERATOR_NS:=raftkv-system}"         # where the chart is installed
: "${RELEASE:=raft-operator}"             # Helm release name
: "${RC:=demo}"                           # the RaftCluster the steps drive
: "${NODE_IMAGE:=raftkv/raft-node:dev}"
: "${OPERATOR_IMAGE:=raftkv/raft-operator:dev}"
: "${CLIENT_IMAGE:=raftkv/raft-e2e-client:dev}" # raftctl + busybox (test-only image)
: "${CLIENT_POD:=e2e-client}"
: "${HELM_TEST_IMAGE:=localhost/raftkv/busybox:local}" # `helm test`'s pod: the local cluster's busybox
: "${CLIENT_PORT:=7000}"

E2E_T0=${E2E_T0:-$SECONDS}

ts() { date -u +%H:%M:%S; }
say() { printf '[e2e %s +%4ds] %s\n' "$(ts)" "$((SECONDS - E2E_T0))" "$*" >&2; }
check() { say "  check: $*"; }
ok() { say "  ok:    $*"; }
fail() {
  say "FAIL: $*"
  exit 1
}

# run_step NAME FUNCTION: run one step with its timing; a failure names the step.
CURRENT_STEP=""
run_step() {
  local name=$1 fn=$2 t0=$SECONDS
  CURRENT_STEP=$name
  say "==> ${name}"
  "$fn"
  say "<== ${name}: $((SECONDS - t0))s"
  CURRENT_STEP=""
}

# wait_for WHAT TIMEOUT_SECONDS CMD...: run CMD once a second until it succeeds. The sleep
# is only the polling interval; readiness is always the real check in CMD. On timeout the
# last output of CMD is printed and the function fails.
wait_for() {
  local what=$1 timeout=$2 deadline out rc next_note
  shift 2
  deadline=$((SECONDS + timeout))
  next_note=$((SECONDS + 20))
  say "  wait:  ${what} (up to ${timeout}s)"
  while true; do
    rc=0
    out=$("$@" 2>&1) || rc=$?
    if ((rc == 0)); then
      return 0
    fi
    if ((SECONDS >= deadline)); then
      say "  timed out after ${timeout}s waiting for: ${what}"
      say "  last output of '$*': $(tail -c 2000 <<<"$out")"
      return 1
    fi
    if ((SECONDS >= next_note)); then
      say "  ... still waiting for ${what} ($((deadline - SECONDS))s left): $(tail -c 200 <<<"$out" | tr '\n' ' ')"
      next_note=$((SECONDS + 20))
    fi
    sleep 1
  done
}

# --- kubectl ---------------------------------------------------------------------------

k() { kubectl -n "$E2E_NS" "$@"; }
rc_json() { k get raftcluster "$RC" -o json; }
rc_field() { k get raftcluster "$RC" -o "jsonpath={$1}"; }
leader_pod() { rc_field .status.leader; }

# node_id_of POD: the Raft node ID the operator reports for POD.
node_id_of() { rc_json | jq -r --arg p "$1" '.status.members[]? | select(.pod == $p) | .nodeId // empty'; }

# condition_is TYPE STATUS: the RaftCluster's condition TYPE has STATUS.
condition_is() {
  [[ $(rc_json | jq -r --arg t "$1" '.status.conditions[]? | select(.type == $t) | .status') == "$2" ]]
}
cluster_available() { condition_is Available True; }

# pods_with_role ROLE: names of the cluster's pods (voters <rc>-N, read replicas
# <rc>-read-N) labelled raftkv.dev/role=ROLE.
pods_with_role() {
  k get pods -l "raftkv.dev/role=$1" -o json |
    jq -r --arg rc "$RC" '.items[].metadata.name | select(test("^" + $rc + "-(read-)?[0-9]+$"))'
}

pod_uid() { k get pod "$1" -o jsonpath='{.metadata.uid}' 2>/dev/null; }
pod_ip() { k get pod "$1" -o jsonpath='{.status.podIP}'; }
pod_ready() {
  [[ $(k get pod "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}
pod_absent() { ! k get pod "$1" >/dev/null 2>&1; }

# events_with_reason REASON: Events on the RaftCluster with that reason (messages, one a line).
# Reads the core Events API, which also shows events.k8s.io Events.
events_with_reason() {
  k get events -o json | jq -r --arg n "$RC" --arg r "$1" \
    '.items[] | select(.involvedObject.kind == "RaftCluster" and .involvedObject.name == $n and .reason == $r) | .message'
}
event_reasons() {
  k get events -o json | jq -r --arg n "$RC" \
    '[.items[] | select(.involvedObject.kind == "RaftCluster" and .involvedObject.name == $n) | .reason] | unique | join(",")'
}
has_event() { [[ -n $(events_with_reason "$1") ]]; }
# membership_event_count: Events that change the voter set (promote, remove, replace).
membership_event_count() {
  k get events -o json | jq -r --arg n "$RC" \
    '[.items[] | select(.involvedObject.kind == "RaftCluster" and .involvedObject.name == $n and
      (.reason == "MemberPromoted" or .reason == "MemberRemoved" or .reason == "MemberReplaced")) | (.count // 1)] | add // 0'
}

# --- raftctl in the client pod -----------------------------------------------------------

# cexec CMD...: run a command in the client pod.
cexec() { kubectl -n "$E2E_NS" exec "$CLIENT_POD" -- "$@"; }
# csh SCRIPT: run a busybox shell script in the client pod (busybox applets on PATH).
csh() { kubectl -n "$E2E_NS" exec "$CLIENT_POD" -- /usr/local/bin/busybox sh -c "export PATH=/tmp/bin:/usr/local/bin; $1"; }

client_endpoint() { echo "${RC}.${E2E_NS}.svc:${CLIENT_PORT}"; }
read_endpoint() { echo "${RC}-read.${E2E_NS}.svc:${CLIENT_PORT}"; }
# pod_endpoint POD: one pod's client port by its stable DNS name, which its TLS
# certificate lists (a pod IP is not in it). The peer Service publishes pods that are
# not ready too, so this resolves for a member without quorum.
pod_endpoint() { echo "${1}.${RC}-peer.${E2E_NS}.svc:${CLIENT_PORT}"; }

# --- TLS: the cluster's certificates in the client pod -----------------------------------
# Clusters run TLS by default: raftctl in the client pod needs the cluster's CA and a
# client certificate. The `<rc>-admin` Secret (or `<rc>-client`, the kv role) is copied
# into the client pod once per RaftCluster incarnation (its UID is in the directory name,
# so a cluster deleted and made again gets fresh files); a marker on this host saves the
# copy on later calls (subshells included). The files are never rewritten in place, so a
# raftctl running meanwhile never reads half a file.
E2E_TLS_MARKS=${E2E_TLS_MARKS:-$(mktemp -d "${TMPDIR:-/tmp}/raftkv-e2e-tls.XXXXXX")}

# copy_secret_to_pod SECRET_JSON DIR: ca.crt, tls.crt, tls.key of the Secret into DIR in the
# client pod (each written aside, then renamed).
copy_secret_to_pod() {
  local json=$1 dir=$2 key
  for key in ca.crt tls.crt tls.key; do
    jq -er --arg k "$key" '.data[$k]' <<<"$json" | base64 -d |
      kubectl -n "$E2E_NS" exec -i "$CLIENT_POD" -- /usr/local/bin/busybox sh -c \
        "/usr/local/bin/busybox mkdir -p '$dir' && /usr/local/bin/busybox cat >'$dir/$key.tmp' && /usr/local/bin/busybox mv '$dir/$key.tmp' '$dir/$key'" ||
      return 1
  done
}

# tls_dir [ROLE] [RC] [NS]: the directory in the client pod with ca.crt, tls.crt, tls.key of
# the RaftCluster's `<rc>-ROLE` Secret (ROLE admin, the default, or client); empty when the
# cluster has no such Secret (TLS off, or not made yet).
tls_dir() {
  local role=${1:-admin} rc=${2:-$RC} ns=${3:-$E2E_NS} uid dir mark secret
  uid=$(kubectl -n "$ns" get raftcluster "$rc" -o jsonpath='{.metadata.uid}' 2>/dev/null) || return 0
  [[ -n $uid ]] || return 0
  dir="/tmp/tls/${ns}.${rc}.${uid}.${role}"
  mark="${E2E_TLS_MARKS}/${ns}.${rc}.${uid}.${role}"
  if [[ ! -e $mark ]]; then
    secret=$(kubectl -n "$ns" get secret "${rc}-${role}" -o json 2>/dev/null) || return 0
    copy_secret_to_pod "$secret" "$dir" || return 0
    touch "$mark"
  fi
  echo "$dir"
}

# tls_flags: raftctl's --cacert/--cert/--key of the admin certificate of $RC (nothing
# without TLS).
tls_flags() {
  local d
  d=$(tls_dir admin)
  [[ -z $d ]] || echo "--cacert ${d}/ca.crt --cert ${d}/tls.crt --key ${d}/tls.key"
}

# tls_env [ROLE]: the same as RAFTCTL_* exports, for scripts run in the client pod.
tls_env() {
  local d
  d=$(tls_dir "${1:-admin}")
  [[ -z $d ]] || echo "export RAFTCTL_CACERT=${d}/ca.crt RAFTCTL_CERT=${d}/tls.crt RAFTCTL_KEY=${d}/tls.key;"
}

# rctl ARGS...: raftctl against the client Service, with the cluster's admin certificate.
# shellcheck disable=SC2046 # tls_flags is words without spaces
rctl() { cexec raftctl $(tls_flags) --endpoints "$(client_endpoint)" "$@"; }
# rctl_at ENDPOINT ARGS...: raftctl against one endpoint (a pod's DNS name or another Service).
rctl_at() {
  local ep=$1
  shift
  # shellcheck disable=SC2046
  cexec raftctl $(tls_flags) --endpoints "$ep" "$@"
}

# cluster_status_json: `raftctl status -o json`, with every integer of 16+ digits (node
# IDs are random u64) turned into a string first: jq 1.6 reads numbers as doubles.
cluster_status_json() { rctl status -o json | sed -E 's/(^|[^0-9."])([0-9]{16,})/\1"\2"/g'; }
# voter_ids / learner_ids: sorted node IDs of the committed membership, as the cluster reports it.
voter_ids() { cluster_status_json | jq -r '[.membership.voters[]? | tostring] | sort | join(",")'; }
learner_ids() { cluster_status_json | jq -r '[.membership.learners[]? | tostring] | sort | join(",")'; }
count_csv() {
  if [[ -z $1 ]]; then echo 0; else tr ',' '\n' <<<"$1" | wc -l; fi
}

# start_client_pod: a long-running pod with raftctl and busybox, used for every client call.
start_client_pod() {
  k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: ${CLIENT_POD}
  labels: {app.kubernetes.io/name: raftkv-e2e-client}
spec:
  terminationGracePeriodSeconds: 1
  securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
  containers:
    - name: client
      image: ${CLIENT_IMAGE}
      imagePullPolicy: Never
      securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
      command: [/usr/local/bin/busybox, sh, -c, "busybox mkdir -p /tmp/bin && busybox --install -s /tmp/bin && exec busybox sleep 2147483647"]
EOF
  wait_for "client pod ${CLIENT_POD} ready" 90 pod_ready "$CLIENT_POD"
  wait_for "busybox applets in the client pod" 30 cexec /tmp/bin/true
}

# --- diagnostics ---------------------------------------------------------------------------

# dump_diagnostics: everything a person needs to see why a step failed.
dump_diagnostics() {
  local p c
  say "---------------- diagnostics (step: ${CURRENT_STEP:-setup}) ----------------"
  {
    echo "### RaftClusters (${E2E_NS})"
    k get raftclusters -o wide 2>&1
    k get raftclusters -o yaml 2>&1
    echo "### objects (${E2E_NS})"
    k get statefulsets,services,endpointslices,pdb,pods,pvc -o wide 2>&1
    k get pods -L raftkv.dev/role 2>&1
    echo "### Events (${E2E_NS}), oldest first (kubectl events orders events.k8s.io Events)"
    k events 2>&1 | tail -n 120
    echo "### cluster status via raftctl"
    rctl status -o json 2>&1 | head -c 4000
    echo
    echo "### describe pods (${E2E_NS})"
    k describe pods 2>&1 | tail -n 300
    for p in $(k get pods -o jsonpath='{.items[*].metadata.name}' 2>/dev/null); do
      [[ $p == "$CLIENT_POD" ]] && continue
      for c in $(k get pod "$p" -o jsonpath='{.spec.containers[*].name}' 2>/dev/null); do
        echo "### logs ${E2E_NS}/${p}/${c} (last 200 lines)"
        k logs "$p" -c "$c" --tail=200 2>&1
        echo "### previous logs ${E2E_NS}/${p}/${c}"
        k logs "$p" -c "$c" --previous --tail=80 2>&1 | grep -v 'previous terminated container .* not found' || true
      done
    done
    echo "### operator (${OPERATOR_NS})"
    kubectl -n "$OPERATOR_NS" get deploy,pods,lease,svc -o wide 2>&1
    kubectl -n "$OPERATOR_NS" get events --sort-by=.lastTimestamp 2>&1 | tail -n 40
    for p in $(kubectl -n "$OPERATOR_NS" get pods -o jsonpath='{.items[*].metadata.name}' 2>/dev/null); do
      echo "### logs ${OPERATOR_NS}/${p} (last 300 lines)"
      kubectl -n "$OPERATOR_NS" logs "$p" --tail=300 2>&1
      kubectl -n "$OPERATOR_NS" logs "$p" --previous --tail=80 2>/dev/null || true
    done
    kubectl -n "$OPERATOR_NS" describe pods 2>&1 | tail -n 80
  } >&2
  say "---------------- end of diagnostics ----------------"
}
