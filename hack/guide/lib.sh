# shellcheck shell=bash
# LEADER, LEADER_ID, LAST_RC, ... are set here for the experiments that source this file.
# shellcheck disable=SC2034
# Shared by the guide's experiments (hack/guide/*.sh, docs/raft-through-traces.md):
# a Jaeger and a `raft-node local` cluster on loopback, started on unusual ports,
# stopped on exit; helpers to read status, metrics and traces; `claim`, which
# fails the experiment when what the guide says no longer happens.
#
# Knobs (environment):
#   GUIDE_SHORT=1 (or --short)  CI mode: fewer writes, shorter waits, pictures to the
#                               work directory instead of docs/guide/
#   GUIDE_PORT_BASE=27100       node i: clients base+2i, peers base+2i+1 (i < 10);
#                               metrics base+20+i; Jaeger: OTLP base+40, query base+41
#                               (gRPC base+42, health base+43)
#   GUIDE_WORK_DIR              data directories, logs, JSON (default: a fresh temp dir)
#   GUIDE_OUT                   where pictures go (default docs/guide, short: <work>/out)
#   GUIDE_BIN_DIR               raft-node and raftctl (default ${CARGO_TARGET_DIR}/debug)
#   GUIDE_JAEGER                a Jaeger v2 binary (default: the one hack/local-cluster.sh builds)
#   GUIDE_KEEP=1                leave the work directory behind
set -euo pipefail

GUIDE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
GUIDE_NAME="$(basename "$0" .sh)"

for arg in "$@"; do
  case $arg in
    --short) GUIDE_SHORT=1 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
      exit 0
      ;;
    *) echo "usage: $0 [--short]" >&2; exit 2 ;;
  esac
done
GUIDE_SHORT="${GUIDE_SHORT:-0}"
short() { [[ $GUIDE_SHORT == 1 ]]; }

BASE="${GUIDE_PORT_BASE:-27100}"
METRICS_BASE=$((BASE + 20))
OTLP_PORT=$((BASE + 40))
QUERY_PORT=$((BASE + 41))
QUERY_URL="http://127.0.0.1:${QUERY_PORT}"

WORK="${GUIDE_WORK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/raftkv-guide-${GUIDE_NAME}.XXXXXX")}"
mkdir -p "$WORK"
if short; then OUT="${GUIDE_OUT:-$WORK/out}"; else OUT="${GUIDE_OUT:-$GUIDE_ROOT/docs/guide}"; fi
mkdir -p "$OUT"

BIN_DIR="${GUIDE_BIN_DIR:-${CARGO_TARGET_DIR:-$HOME/.cache/raftkv/target}/debug}"
RAFT_NODE="$BIN_DIR/raft-node"
RAFTCTL="$BIN_DIR/raftctl"

say() { printf '\n--- %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# claim TEXT COMMAND...: what the guide says, checked. A failure names the claim.
claim() {
  local text=$1
  shift
  if "$@"; then
    printf 'ok    %s: %s\n' "$GUIDE_NAME" "$text"
    printf '%s\n' "$text" >>"$WORK/claims.txt"
  else
    printf 'FAIL  %s: %s\n  (the guide claims this; work dir: %s)\n' "$GUIDE_NAME" "$text" "$WORK" >&2
    GUIDE_KEEP=1
    exit 1
  fi
}

# refused COMMAND...: the command fails (for claims about refusals).
refused() { ! "$@"; }

# jtrue FILE JQ: the jq expression is true on FILE.
jtrue() { [[ $(jq -r "$2" "$1") == true ]]; }

# --- prerequisites ------------------------------------------------------------------

jaeger_bin() {
  if [[ -n ${GUIDE_JAEGER:-} ]]; then echo "$GUIDE_JAEGER"; return; fi
  # shellcheck source=hack/local-cluster/versions.sh
  echo "${RAFTKV_CACHE_DIR:-$HOME/.cache/raftkv}/bin/jaeger-$(source "$GUIDE_ROOT/hack/local-cluster/versions.sh" && echo "$JAEGER_VERSION")/jaeger"
}

preflight() {
  local missing=()
  for t in jq curl; do command -v "$t" >/dev/null || missing+=("$t"); done
  ((${#missing[@]} == 0)) || die "the guide's experiments need ${missing[*]}: install them (apt-get install ${missing[*]})"
  [[ -x $RAFT_NODE && -x $RAFTCTL ]] ||
    die "raft-node or raftctl missing in ${BIN_DIR}: run cargo build -p raftkv-node -p raftctl --bin raft-node --bin raftctl (or set GUIDE_BIN_DIR)"
  JAEGER="$(jaeger_bin)"
  [[ -x $JAEGER ]] ||
    die "Jaeger v2 not found at ${JAEGER}: build it with hack/local-cluster.sh build (Jaeger is built from source there, module github.com/jaegertracing/jaeger $(source "$GUIDE_ROOT/hack/local-cluster/versions.sh" && echo "$JAEGER_VERSION")), or set GUIDE_JAEGER to a Jaeger v2 binary"
  local p
  for p in "$BASE" $((BASE + 1)) "$METRICS_BASE" "$OTLP_PORT" "$QUERY_PORT"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      die "port $p is in use: set GUIDE_PORT_BASE to a free range (needs base..base+43)"
    fi
  done
}

# --- processes ------------------------------------------------------------------------

PIDS=()        # everything we started, stopped in reverse order on exit
NODE_PID=()    # node index -> PID
LOCAL_PID=""

cleanup() {
  local rc=$?
  local p
  # A SIGSTOPped node must be continued to be able to stop.
  for p in "${NODE_PID[@]}"; do kill -CONT "$p" 2>/dev/null || true; done
  if [[ -n $LOCAL_PID ]]; then kill -TERM "$LOCAL_PID" 2>/dev/null || true; fi
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill -TERM "${PIDS[i]}" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  # Nothing worth keeping before Jaeger started (a failed preflight).
  if [[ -z ${STARTED:-} ]]; then
    rm -rf "$WORK"
  elif ((rc != 0)) || [[ ${GUIDE_KEEP:-0} == 1 ]]; then
    echo "work dir kept: $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "error: ${BASH_SOURCE[0]}:${LINENO}: \`${BASH_COMMAND}\` failed" >&2' ERR
trap 'exit 130' INT TERM

start_jaeger() {
  STARTED=1
  GUIDE_JAEGER_OTLP_PORT=$OTLP_PORT GUIDE_JAEGER_QUERY_PORT=$QUERY_PORT \
    GUIDE_JAEGER_QUERY_GRPC_PORT=$((BASE + 42)) GUIDE_JAEGER_HEALTH_PORT=$((BASE + 43)) \
    "$JAEGER" --config "file:$GUIDE_ROOT/hack/guide/jaeger.yaml" >"$WORK/jaeger.log" 2>&1 &
  PIDS+=($!)
  local i
  for ((i = 0; i < 100; i++)); do
    curl -sf "http://127.0.0.1:$((BASE + 43))/status" >/dev/null && return 0
    sleep 0.1
  done
  tail -20 "$WORK/jaeger.log" >&2
  die "Jaeger did not become healthy (log: $WORK/jaeger.log)"
}

# Every process we start exports its spans to our Jaeger, quickly.
export OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:${OTLP_PORT}"
export OTEL_BSP_SCHEDULE_DELAY=200
export RAFTCTL_TRACE_QUERY="$QUERY_URL"
export NO_COLOR=1

client_addr() { echo "127.0.0.1:$((BASE + 2 * $1))"; }
peer_addr() { echo "127.0.0.1:$((BASE + 2 * $1 + 1))"; }

# start_cluster N [raft-node local flags]: N voters, nodes not restarted when they exit.
start_cluster() {
  local n=$1
  shift
  # Emptied here, not by the redirection below: that one runs in the background child,
  # and a second cluster's wait could otherwise still read the first one's "ready".
  : >"$WORK/local.log"
  "$RAFT_NODE" local --nodes "$n" --base-port "$BASE" --metrics-base-port "$METRICS_BASE" \
    --data-dir "$WORK/cluster" --fresh --no-restart "$@" >"$WORK/local.log" 2>&1 &
  LOCAL_PID=$!
  PIDS+=("$LOCAL_PID")
  local i
  for ((i = 0; i < 600; i++)); do
    grep -qs '^==> ready' "$WORK/local.log" && break
    kill -0 "$LOCAL_PID" 2>/dev/null || { cat "$WORK/local.log" >&2; die "raft-node local exited"; }
    sleep 0.1
  done
  grep -q '^==> ready' "$WORK/local.log" || { cat "$WORK/local.log" >&2; die "raft-node local not ready"; }
  for ((i = 0; i < n; i++)); do
    NODE_PID[i]=$(awk -v n="node-$i" '$1 == n && $2 ~ /^[0-9]+$/ {print $2; exit}' "$WORK/local.log")
  done
  ENDPOINTS=$(for ((i = 0; i < n; i++)); do client_addr "$i"; done | paste -sd,)
  export RAFTCTL_ENDPOINTS="$ENDPOINTS"
  wait_for_leader "$ENDPOINTS"
}

# stop_cluster: stop `raft-node local` and its nodes (to start another one).
stop_cluster() {
  local p
  for p in "${NODE_PID[@]}"; do kill -CONT "$p" 2>/dev/null || true; done
  kill -TERM "$LOCAL_PID" 2>/dev/null || true
  wait "$LOCAL_PID" 2>/dev/null || true
  LOCAL_PID=""
  NODE_PID=()
}

# start_node I [env assignments...]: node I by hand (a learner, or a restart with other
# settings), with the flags `raft-node local` gives its nodes.
start_node() {
  local i=$1
  shift
  mkdir -p "$WORK/cluster/node-$i"
  env "$@" "$RAFT_NODE" --data-dir "$WORK/cluster/node-$i" --client-addr "$(client_addr "$i")" \
    --peer-addr "$(peer_addr "$i")" --name "node-$i" --metrics-addr "127.0.0.1:$((METRICS_BASE + i))" \
    --log-format text >>"$WORK/cluster/node-$i.log" 2>&1 &
  NODE_PID[i]=$!
  PIDS+=($!)
  local k
  for ((k = 0; k < 100; k++)); do
    ctl --endpoints "$(client_addr "$i")" status -o json >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "node-$i did not answer (log: $WORK/cluster/node-$i.log)"
}

ctl() { "$RAFTCTL" --timeout "${CTL_TIMEOUT:-2s}" "$@"; }

# status_json [ENDPOINTS]: `raftctl status -o json`.
status_json() { ctl --endpoints "${1:-$RAFTCTL_ENDPOINTS}" status -o json 2>/dev/null; }

# index_of ADDR: node index of a client address.
index_of() { echo $(((${1##*:} - BASE) / 2)); }

# wait_for_leader [ENDPOINTS] [SECONDS]: sets LEADER (node index) and LEADER_ID.
# shellcheck disable=SC2120
wait_for_leader() {
  local eps=${1:-$RAFTCTL_ENDPOINTS} deadline=$((SECONDS + ${2:-20})) doc addr
  while ((SECONDS < deadline)); do
    doc=$(status_json "$eps" || true)
    addr=$(jq -r '.leader_addr // empty' <<<"$doc" 2>/dev/null || true)
    if [[ -n $addr ]] && [[ $(jq -r --arg a "$addr" '.members[] | select(.client_addr == $a) | .role' <<<"$doc") == leader ]]; then
      LEADER=$(index_of "$addr")
      LEADER_ID=$(jq -r '.leader_id' <<<"$doc")
      return 0
    fi
    sleep 0.1
  done
  die "no leader within ${2:-20}s on $eps"
}

# node_id I: the Raft node ID of node I.
node_id() { status_json "$(client_addr "$1")" | jq -r --arg a "$(client_addr "$1")" '.members[] | select(.client_addr == $a) | .id'; }

# followers: node indexes of the voters that are not the leader.
followers() {
  local doc a
  doc=$(status_json)
  for a in $(jq -r '.members[] | select(.voter == true and .role == "follower") | .client_addr' <<<"$doc"); do
    index_of "$a"
  done
}

# first_follower: one of them (no pipe into head: under pipefail its early exit fails the pipe).
first_follower() {
  local f
  f=$(followers)
  [[ -n $f ]] || die "no follower found"
  echo "${f%%$'\n'*}"
}

# metric I NAME [LABEL_MATCH]: the value of a metric of node I (first matching sample).
metric() {
  curl -sf --max-time 2 "http://127.0.0.1:$((METRICS_BASE + $1))/metrics" |
    awk -v n="$2" -v l="${3:-}" '!found && ($1 == n || (index($1, n "{") == 1 && (l == "" || index($1, l) > 0))) {print $2; found = 1}'
}

# save_status NAME [ENDPOINTS]: `raftctl status` as the reader sees it, into OUT/NAME.txt.
save_status() { ctl --endpoints "${2:-$RAFTCTL_ENDPOINTS}" status >"$OUT/$1.txt" 2>&1 || true; }

# traced CMD...: run `raftctl --trace CMD...`; sets TRACE_ID and LAST_RC (its exit
# code), stdout and stderr in $WORK/last.{out,err}.
traced() {
  LAST_RC=0
  ctl --trace "$@" >"$WORK/last.out" 2>"$WORK/last.err" || LAST_RC=$?
  TRACE_ID=$(sed -n 's/^trace: \([0-9a-f]\{32\}\)$/\1/p' "$WORK/last.err" | tail -1)
}

# save_trace ID NAME [MIN_SPANS]: waits for the trace (at most GUIDE_TRACE_WAIT, 20s), writes OUT/NAME.svg and
# OUT/NAME.txt (the text waterfall) and WORK/NAME.json (for the claims).
save_trace() {
  local id=$1 name=$2 min=${3:-1}
  CTL_TIMEOUT=5s ctl trace get "$id" --wait "${GUIDE_TRACE_WAIT:-20s}" --min-spans "$min" -o json >"$WORK/$name.json"
  CTL_TIMEOUT=5s ctl trace get "$id" --svg "$OUT/$name.svg" >"$OUT/$name.txt"
  echo "picture: $OUT/$name.svg"
}

# spans FILE JQ_FILTER: the spans of a saved trace matching a jq condition (count).
spans() { jq "[.spans[] | select($2)] | length" "$1"; }

# logs PATTERN: node log lines matching PATTERN (all nodes), shortened.
logs() { grep -h -E "$1" "$WORK"/cluster/node-*.log 2>/dev/null | cut -c1-220 || true; }

preflight
start_jaeger
