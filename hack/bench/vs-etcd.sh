#!/usr/bin/env bash
# raftkv side by side with etcd on this machine, in one run (docs/design.md, "Performance
# targets": the reference is etcd on the same machine).
#
#   hack/bench/vs-etcd.sh                    full sweep: 3 rounds x 1,4,16,64,256 clients (~15 min)
#   hack/bench/vs-etcd.sh --quick            1 round x 1,64,256 clients, 5 s runs (~3 min)
#   hack/bench/vs-etcd.sh --plot-dir docs/img   also draw perf-writes.svg, perf-reads.svg there
#   hack/bench/vs-etcd.sh -o json            the run document on stdout instead of the tables
#   hack/bench/vs-etcd.sh --tls              the cost of TLS: 4 configurations (etcd and raftkv, each
#                                            plaintext and with mutual TLS on both planes), writes at
#                                            8 and 64 clients, 5 rounds (~8 min)
#
# What it does, in order:
#   1. builds (cached) etcd, etcd's `benchmark` tool and etcdctl from the Go module proxy,
#      and raft-node, raftctl and raftkv-bench with `cargo build --release`;
#   2. starts 3 etcd members (ports 28000-28005) and 3 raft-node members (28100-28105,
#      metrics 28110-28112) on loopback, each with its default durability (fsync before
#      acknowledging) and timings;
#   3. for each op (put, then linearizable get) and each client count: a warm-up of each
#      system, then ROUNDS alternating measured runs of etcd's `benchmark` and `raftctl
#      bench`, about BENCH_SECONDS each: throughput, p50/p99, the CPU time of the 3 server
#      processes (utime+stime from /proc/<pid>/stat) per request, fsyncs per request;
#   4. leader failover, etcd then raftkv: FAILOVER_RUNS times, kill -9 the leader while a
#      writer starts a CLI write every 100 ms; time from the kill to the first acknowledged
#      write started after it; the killed member is restarted before the next run;
#   5. writes every round into one JSON document, RESULTS_DIR/vs-etcd-<UTC time>.json, and
#      prints the sweep and the targets as Markdown tables (medians over the rounds), made
#      by `raftkv-bench summary`; with --plot-dir, `raftkv-bench plot` draws the curves.
#
# With --tls, a second pair of clusters runs next to the first (etcd on 28020-28025, raftkv
# on 28120-28125, metrics 28130-28132), with TLS on the client and the peer plane and client
# certificates required: raft-node with --tls-cert/--tls-key/--tls-ca as `raft-node local
# --tls` starts it; etcd with --cert-file/--key-file/--trusted-ca-file --client-cert-auth and
# the --peer-* equivalents with --peer-client-cert-auth. One throwaway CA (the raftkv-certs
# example `loopback-certs`) signs both: the node certificates serve both systems' members,
# the admin client certificate both load tools. Each round then runs etcd, raftkv, etcd TLS,
# raftkv TLS (the two halves swap places every other round); rounds carry "tls": true|false,
# the summary adds the TLS / plaintext ratios (medians of per-round ratios), and --plot-dir
# draws perf-tls-writes.svg. Failover is measured on the plaintext clusters only.
#
# Every load output is parsed by `raftkv-bench parse` (bench/src/*_output.rs), which
# refuses an output it cannot read: the run stops with that output's tail, never a zero.
# No assertion on speed: this prints figures. Knobs (environment; --quick and --tls change
# defaults, the environment overrides both):
#   ROUNDS=3 (quick 1, tls 5)  CLIENT_COUNTS="1 4 16 64 256" (quick "1 64 256", tls "8 64")
#   OPS="put get" (tls "put")  BENCH_SECONDS=10 (quick 5)  FAILOVER_RUNS=5 (quick 2, tls 0;
#   0 skips failover)
#   KEYS=1000 VALUE_SIZE=100  RESULTS_DIR (default ~/.cache/raftkv/bench-results)
#   SKIP_BUILD=1 (use the binaries already built)  KEEP=1 (keep the temp dir with logs)
#   RAFTKV_CACHE_DIR (default ~/.cache/raftkv)  CARGO_TARGET_DIR (default its target/)
set -euo pipefail

ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOCAL_CLUSTER_DIR="${ROOT_DIR}/hack/local-cluster"
# Same pinned etcd version, cache layout and throwaway-module build as hack/local-cluster.sh.
# shellcheck source=hack/local-cluster/versions.sh
source "${LOCAL_CLUSTER_DIR}/versions.sh"
# shellcheck source=hack/local-cluster/lib.sh
source "${LOCAL_CLUSTER_DIR}/lib.sh"
# shellcheck source=hack/local-cluster/build.sh
source "${LOCAL_CLUSTER_DIR}/build.sh"

log() { printf '[vs-etcd %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# etcd's benchmark tool lives in etcd's root module go.etcd.io/etcd/v3 (tools/benchmark;
# go.etcd.io/etcd/tools/v3 is only etcd's tool-dependency module and the proxy serves no
# version of it). The proxy answers 403 "not available" for go.etcd.io/etcd/v3 at
# v3.6.9 and later; v3.6.8 is the newest it serves (`go list -m -versions`). We build that
# benchmark against the libraries of ${ETCD_VERSION}: requiring etcdctl and the server at
# ${ETCD_VERSION} in the same go.mod raises client/v3, api/v3, pkg/v3 and server/v3 to it (MVS).
ETCD_BENCH_VERSION=v3.6.8
ETCD_TOOLS_BIN="${BIN_ROOT}/etcd-tools-${ETCD_VERSION}"

QUICK=0
TLS_MODE=0
OUTPUT=table
PLOT_DIR=
COMMAND_LINE="hack/bench/vs-etcd.sh $*"
KEYS=${KEYS:-1000}
# raftctl bench keys are "bench/" + 10 digits = 16 bytes; etcd's --key-size matches that.
KEY_SIZE=16
VALUE_SIZE=${VALUE_SIZE:-100}
# The key etcd's linearizable reads ask for (etcd's benchmark reads one key or range;
# raftctl reads random keys among KEYS: both are point lookups in memory).
ETCD_READ_KEY=bench/read000000
# Give up on one failover run after this long without an acknowledged write.
FAILOVER_GIVE_UP_S=20
# The failover writer starts one write (one CLI process) every WRITER_INTERVAL_S, without
# waiting for the previous ones: a write that hangs on a dead or leaderless member does not
# delay the next, so the figure is not quantized by the client's timeout. Each write gives
# up after WRITER_TIMEOUT.
WRITER_INTERVAL_S=0.1
WRITER_TIMEOUT=3s

# Plaintext clusters; the TLS ones (--tls) sit TLS_PORT_OFFSET above.
ETCD_PLAIN_BASE_PORT=28000
RAFTKV_PLAIN_BASE_PORT=28100
TLS_PORT_OFFSET=20

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

while (($#)); do
  case $1 in
  -o | --output)
    OUTPUT=${2:-}
    shift 2
    ;;
  --quick)
    QUICK=1
    shift
    ;;
  --tls)
    TLS_MODE=1
    shift
    ;;
  --plot-dir)
    PLOT_DIR=${2:-}
    [[ -n $PLOT_DIR ]] || die "--plot-dir needs a directory"
    shift 2
    ;;
  -h | --help)
    usage
    exit 0
    ;;
  *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[[ $OUTPUT == table || $OUTPUT == json ]] || die "-o must be table or json"

# Mode defaults; the environment overrides either mode.
if ((TLS_MODE)); then
  # The cost of TLS at the write targets' point (64 clients) and a low one; each round runs
  # 4 configurations, so more rounds for the same confidence in the ratios.
  ROUNDS=${ROUNDS:-$((QUICK ? 1 : 5))}
  CLIENT_COUNTS=${CLIENT_COUNTS:-8 64}
  OPS=${OPS:-put}
  FAILOVER_RUNS=${FAILOVER_RUNS:-0}
fi
if ((QUICK)); then
  ROUNDS=${ROUNDS:-1}
  CLIENT_COUNTS=${CLIENT_COUNTS:-1 64 256}
  BENCH_SECONDS=${BENCH_SECONDS:-5}
  FAILOVER_RUNS=${FAILOVER_RUNS:-2}
else
  # Measured runs alternate etcd, raftkv, etcd, raftkv, ... (both clusters up, the idle
  # one only heartbeats), so a change in the machine's load hits both.
  ROUNDS=${ROUNDS:-3}
  CLIENT_COUNTS=${CLIENT_COUNTS:-1 4 16 64 256}
  BENCH_SECONDS=${BENCH_SECONDS:-10}
  FAILOVER_RUNS=${FAILOVER_RUNS:-5}
fi
OPS=${OPS:-put get}
read -r -a CLIENT_COUNTS_A <<<"$CLIENT_COUNTS"
read -r -a OPS_A <<<"$OPS"
for c in "${CLIENT_COUNTS_A[@]}"; do
  [[ $c =~ ^[1-9][0-9]*$ ]] || die "CLIENT_COUNTS: ${c} is not a positive integer"
done
for o in "${OPS_A[@]}"; do
  [[ $o == put || $o == get ]] || die "OPS: ${o} is neither put nor get"
done
RESULTS_DIR=${RESULTS_DIR:-${RAFTKV_CACHE_DIR}/bench-results}

for tool in jq curl awk; do
  command -v "$tool" >/dev/null || die "${tool} is required (install it, e.g. apt-get install ${tool})"
done
# go_throwaway_build hashes `go env GOVERSION` into its cache key: go is needed even when cached.
require_go

CLK_TCK=$(getconf CLK_TCK)
WORK=$(mktemp -d /tmp/raftkv-vs-etcd.XXXXXX)
# name -> pid of every server we started, so cleanup stops exactly those.
declare -A SERVER_PID=()

cleanup() {
  local rc=$? name
  for name in "${!SERVER_PID[@]}"; do
    kill -9 "${SERVER_PID[$name]}" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  if [[ ${KEEP:-0} == 1 || $rc != 0 ]]; then
    log "logs and data kept in ${WORK}"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

# --- measurement helpers ------------------------------------------------------------

# cpu_ticks PID...: utime+stime (fields 14, 15 of /proc/<pid>/stat) summed, in clock ticks.
# The command name (field 2) may hold spaces: parse after its closing parenthesis.
cpu_ticks() {
  local pid total=0 rest
  local -a f
  for pid in "$@"; do
    rest=$(<"/proc/${pid}/stat")
    rest=${rest##*) }
    read -r -a f <<<"$rest"
    # After "pid (comm) ", field 3 (state) is f[0], so utime (14) is f[11], stime (15) f[12].
    total=$((total + f[11] + f[12]))
  done
  echo "$total"
}

# machine_busy_ticks: all CPUs' non-idle time from /proc/stat (user..steal minus idle, iowait).
machine_busy_ticks() {
  local _ user nice system irq softirq steal
  # cpu user nice system idle iowait irq softirq steal ...
  read -r _ user nice system _ _ irq softirq steal _ </proc/stat
  echo $((user + nice + system + irq + softirq + steal))
}

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# seconds_of "0m1.234s" -> 1.234 (format of bash's `times`).
seconds_of() {
  local t=$1 m s
  m=${t%%m*}
  s=${t#*m}
  s=${s%s}
  awk -v m="$m" -v s="$s" 'BEGIN { printf "%.3f", m * 60 + s }'
}

# run_timed OUT_FILE CPU_FILE CMD...: run CMD with stdout+stderr to OUT_FILE; write the CPU
# seconds CMD and its children used (user+sys, from `times` in a subshell) to CPU_FILE.
run_timed() {
  local out=$1 cpuf=$2 rc=0
  shift 2
  (
    "$@" >"$out" 2>&1 || exit $?
    # `times` must run in this subshell itself (not in a pipeline) to see its children.
    local t
    times >"${cpuf}.times"
    t=$(tail -1 "${cpuf}.times")
    echo "$(seconds_of "${t%% *}") $(seconds_of "${t##* }")" >"$cpuf"
  ) || rc=$?
  return "$rc"
}

# median and max of numbers on stdin (one per line), printed "median max" (awk's %.6g).
median_max() {
  sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print "null null"; exit }
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    print m + 0, v[NR] + 0 }'
}

# --- builds -------------------------------------------------------------------------

build_etcd_tools() {
  local gomod
  gomod=$(printf 'module raftkv.local/etcd-tools-build\n\ngo 1.24.0\n\nrequire (\n\tgo.etcd.io/etcd/v3 %s\n\tgo.etcd.io/etcd/etcdctl/v3 %s\n\tgo.etcd.io/etcd/server/v3 %s\n)\n' \
    "$ETCD_BENCH_VERSION" "$ETCD_VERSION" "$ETCD_VERSION")
  go_throwaway_build "etcd-tools-${ETCD_VERSION}" "$gomod" "-s -w" "$ETCD_TOOLS_BIN" \
    go.etcd.io/etcd/v3/tools/benchmark go.etcd.io/etcd/etcdctl/v3
  [[ -x ${ETCD_TOOLS_BIN}/benchmark && -x ${ETCD_TOOLS_BIN}/etcdctl ]] ||
    die "benchmark or etcdctl missing in ${ETCD_TOOLS_BIN}"
}

TARGET_DIR=${CARGO_TARGET_DIR:-${RAFTKV_CACHE_DIR}/target}
RAFT_NODE="${TARGET_DIR}/release/raft-node"
RAFTCTL="${TARGET_DIR}/release/raftctl"
RAFTKV_BENCH="${TARGET_DIR}/release/raftkv-bench"
LOOPBACK_CERTS="${TARGET_DIR}/release/examples/loopback-certs"
ETCD="${ETCD_BIN}/etcd"
ETCDCTL="${ETCD_TOOLS_BIN}/etcdctl"
ETCD_BENCH="${ETCD_TOOLS_BIN}/benchmark"

build_all() {
  if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    step "build etcd ${ETCD_VERSION} (cached)" build_etcd
    step "build etcd benchmark ${ETCD_BENCH_VERSION} + etcdctl ${ETCD_VERSION} (cached)" build_etcd_tools
    command -v cargo >/dev/null || die "cargo is not installed (https://rustup.rs)"
    log "==> cargo build --release -p raftkv-node -p raftctl -p raftkv-bench (log: ${WORK}/cargo.log)"
    (cd "$ROOT_DIR" && CARGO_TARGET_DIR="$TARGET_DIR" nice -n 10 cargo build --release -p raftkv-node -p raftctl -p raftkv-bench) \
      >"${WORK}/cargo.log" 2>&1 || {
      tail -20 "${WORK}/cargo.log" >&2
      die "cargo build failed"
    }
    if ((TLS_MODE)); then
      log "==> cargo build --release -p raftkv-certs --example loopback-certs"
      (cd "$ROOT_DIR" && CARGO_TARGET_DIR="$TARGET_DIR" nice -n 10 cargo build --release -p raftkv-certs --example loopback-certs) \
        >>"${WORK}/cargo.log" 2>&1 || {
        tail -20 "${WORK}/cargo.log" >&2
        die "cargo build failed"
      }
    fi
  fi
  local b bins=("$ETCD" "$ETCDCTL" "$ETCD_BENCH" "$RAFT_NODE" "$RAFTCTL" "$RAFTKV_BENCH")
  ((TLS_MODE)) && bins+=("$LOOPBACK_CERTS")
  for b in "${bins[@]}"; do
    [[ -x $b ]] || die "missing ${b} (run without SKIP_BUILD=1)"
  done
}

# --- plaintext or TLS -----------------------------------------------------------------

# The throwaway CA and certificates of a --tls run (loopback-certs' layout).
TLS_DIR="${WORK}/tls"

make_certs() {
  "$LOOPBACK_CERTS" "$TLS_DIR" 3 >/dev/null || die "loopback-certs failed"
}

# use_tls 0|1: point every helper below at the plaintext clusters or at the TLS ones:
# ports, endpoints, URL schemes, the load tools' and CLIs' certificate flags, and SUFFIX,
# which names the instance ("etcd${SUFFIX}": server PIDs, data and log files), and MODE
# (plain or tls), which keys the per-cluster state of the load runs.
use_tls() {
  TLS=$1
  local offset=0 i
  if ((TLS)); then
    offset=$TLS_PORT_OFFSET
    SUFFIX=-tls
    MODE=tls
    SCHEME=https
    # etcdctl, etcd's benchmark and raftctl take the same three flags.
    CLIENT_TLS_ARGS=(--cacert "${TLS_DIR}/ca.crt" --cert "${TLS_DIR}/admin.crt" --key "${TLS_DIR}/admin.key")
  else
    SUFFIX=
    MODE=plain
    SCHEME=http
    CLIENT_TLS_ARGS=()
  fi
  ETCD_BASE_PORT=$((ETCD_PLAIN_BASE_PORT + offset))
  RAFTKV_BASE_PORT=$((RAFTKV_PLAIN_BASE_PORT + offset))
  ETCD_ENDPOINTS=
  RAFTKV_ENDPOINTS=
  for i in 0 1 2; do
    ETCD_ENDPOINTS+="127.0.0.1:$(etcd_client_port "$i"),"
    RAFTKV_ENDPOINTS+="$(raftkv_client_url "$i"),"
  done
  ETCD_ENDPOINTS=${ETCD_ENDPOINTS%,}
  RAFTKV_ENDPOINTS=${RAFTKV_ENDPOINTS%,}
}

# The configurations of this run: plaintext, and with --tls TLS too.
TLS_CONFIGS=(0)
((TLS_MODE)) && TLS_CONFIGS+=(1)

# --- etcd cluster -------------------------------------------------------------------

etcd_client_port() { echo $((ETCD_BASE_PORT + 2 * $1)); }
etcd_peer_port() { echo $((ETCD_BASE_PORT + 2 * $1 + 1)); }

etcd_start_member() {
  local i=$1 initial="" j tls=()
  for j in 0 1 2; do initial+="m${j}=${SCHEME}://127.0.0.1:$(etcd_peer_port "$j"),"; done
  if ((TLS)); then
    # Mutual TLS on both planes, the same node certificate serving both (as raft-node's).
    tls=(--cert-file "${TLS_DIR}/node-${i}.crt" --key-file "${TLS_DIR}/node-${i}.key"
      --trusted-ca-file "${TLS_DIR}/ca.crt" --client-cert-auth
      --peer-cert-file "${TLS_DIR}/node-${i}.crt" --peer-key-file "${TLS_DIR}/node-${i}.key"
      --peer-trusted-ca-file "${TLS_DIR}/ca.crt" --peer-client-cert-auth)
  fi
  # Defaults everywhere else: fsync on every WAL write, heartbeat 100 ms, election 1000 ms.
  setsid "$ETCD" --name "m${i}" --data-dir "${WORK}/etcd${SUFFIX}/m${i}" \
    --listen-client-urls "${SCHEME}://127.0.0.1:$(etcd_client_port "$i")" \
    --advertise-client-urls "${SCHEME}://127.0.0.1:$(etcd_client_port "$i")" \
    --listen-peer-urls "${SCHEME}://127.0.0.1:$(etcd_peer_port "$i")" \
    --initial-advertise-peer-urls "${SCHEME}://127.0.0.1:$(etcd_peer_port "$i")" \
    --initial-cluster "${initial%,}" --initial-cluster-state new \
    --initial-cluster-token "raftkv-vs-etcd${SUFFIX}" "${tls[@]}" </dev/null >>"${WORK}/etcd${SUFFIX}-m${i}.log" 2>&1 &
  SERVER_PID[etcd${SUFFIX}-$i]=$!
  # Disowned: bash reaps it silently instead of reporting "Killed" after a kill -9.
  disown "$!"
}

# etcd_fsyncs I: "COUNT SECONDS" of member I's WAL fsyncs plus backend (bbolt) commits (one
# fsync each; a commit's time includes its writes).
etcd_fsyncs() {
  curl -fsS "${CLIENT_TLS_ARGS[@]}" "${SCHEME}://127.0.0.1:$(etcd_client_port "$1")/metrics" |
    awk '/^etcd_disk_(wal_fsync|backend_commit)_duration_seconds_count / { n += $2 }
      /^etcd_disk_(wal_fsync|backend_commit)_duration_seconds_sum / { s += $2 } END { printf "%d %.6f\n", n, s }'
}

etcd_status_json() {
  "$ETCDCTL" --endpoints "$ETCD_ENDPOINTS" "${CLIENT_TLS_ARGS[@]}" --command-timeout 2s endpoint status -w json 2>/dev/null
}

# etcd_leader_index: index of the member whose status says it is the leader.
etcd_leader_index() {
  local ep
  ep=$(etcd_status_json | jq -r '[.[] | select(.Status.header.member_id == .Status.leader)][0].Endpoint // empty') || return 1
  [[ -n $ep ]] || return 1
  echo $(((${ep##*:} - ETCD_BASE_PORT) / 2))
}

etcd_term() { etcd_status_json | jq -r '[.[].Status.raftTerm] | max'; }

# All 3 members answer and agree on one leader.
etcd_ready() {
  etcd_status_json | jq -e 'length == 3 and ([.[].Status.leader] | unique | length == 1) and .[0].Status.leader != 0' >/dev/null
}

etcd_up() {
  local i
  for i in 0 1 2; do etcd_start_member "$i"; done
  wait_for "3 etcd members with a leader" 60 etcd_ready
}

etcd_down() {
  local i
  for i in 0 1 2; do stop_server "etcd${SUFFIX}-$i"; done
}

# --- raftkv cluster -----------------------------------------------------------------

raftkv_client_port() { echo $((RAFTKV_BASE_PORT + 2 * $1)); }
raftkv_peer_port() { echo $((RAFTKV_BASE_PORT + 2 * $1 + 1)); }
# raftctl's endpoint of member I (https:// with TLS).
raftkv_client_url() {
  local scheme=
  ((TLS)) && scheme=https://
  echo "${scheme}127.0.0.1:$(raftkv_client_port "$1")"
}

raftkv_start_member() {
  local i=$1 tls=()
  # TLS on both planes as `raft-node local --tls` starts a node (client certificates
  # required: --client-auth defaults to required).
  ((TLS)) && tls=(--tls-cert "${TLS_DIR}/node-${i}.crt" --tls-key "${TLS_DIR}/node-${i}.key" --tls-ca "${TLS_DIR}/ca.crt")
  # Default timings (heartbeat 50 ms, election 200-400 ms) and default durability.
  NO_COLOR=1 setsid "$RAFT_NODE" --data-dir "${WORK}/raftkv${SUFFIX}/node-${i}" \
    --client-addr "127.0.0.1:$(raftkv_client_port "$i")" \
    --peer-addr "127.0.0.1:$(raftkv_peer_port "$i")" \
    --metrics-addr "127.0.0.1:$((RAFTKV_BASE_PORT + 10 + i))" \
    --name "node-${i}" --log-format text "${tls[@]}" </dev/null >>"${WORK}/raftkv${SUFFIX}-node-${i}.log" 2>&1 &
  SERVER_PID[raftkv${SUFFIX}-$i]=$!
  disown "$!"
}

# raftkv_fsyncs I: "COUNT SECONDS" of node I's fsync/fdatasync calls (log, snapshots, metadata).
raftkv_fsyncs() {
  curl -fsS "http://127.0.0.1:$((RAFTKV_BASE_PORT + 10 + $1))/metrics" |
    awk '/^raftkv_storage_fsyncs_total / { n += $2 } /^raftkv_storage_fsync_seconds_total / { s += $2 }
      END { printf "%d %.6f\n", n, s }'
}

# all_fsyncs SYS: "COUNT0 SECONDS0 COUNT1 SECONDS1 COUNT2 SECONDS2" of the 3 members.
all_fsyncs() {
  local i
  for i in 0 1 2; do "${1}_fsyncs" "$i"; done | tr '\n' ' '
}

raftkv_status_json() { "$RAFTCTL" --endpoints "$RAFTKV_ENDPOINTS" "${CLIENT_TLS_ARGS[@]}" --timeout 2s status -o json 2>/dev/null; }

raftkv_leader_index() {
  local addr
  addr=$(raftkv_status_json | jq -r '.leader_addr // empty') || return 1
  [[ -n $addr ]] || return 1
  echo $(((${addr##*:} - RAFTKV_BASE_PORT) / 2))
}

raftkv_term() { raftkv_status_json | jq -r '[.members[]?.term // 0] | max'; }

raftkv_ready() {
  raftkv_status_json | jq -e '.leader_id != 0 and ([.members[]? | select(.healthy == true)] | length == 3)' >/dev/null
}

raftkv_answers() {
  local i
  for i in 0 1 2; do
    "$RAFTCTL" --endpoints "$(raftkv_client_url "$i")" "${CLIENT_TLS_ARGS[@]}" --timeout 1s status -o json >/dev/null 2>&1 || return 1
  done
}

raftkv_up() {
  local i
  for i in 0 1 2; do raftkv_start_member "$i"; done
  wait_for "3 raft-node members answering" 60 raftkv_answers
  "$RAFTCTL" --endpoints "$RAFTKV_ENDPOINTS" "${CLIENT_TLS_ARGS[@]}" cluster init --wait 30s >"${WORK}/raftkv${SUFFIX}-init.log" 2>&1 ||
    die "raftctl cluster init failed: $(cat "${WORK}/raftkv${SUFFIX}-init.log")"
  wait_for "3 healthy raft-node members with a leader" 60 raftkv_ready
}

raftkv_down() {
  local i
  for i in 0 1 2; do stop_server "raftkv${SUFFIX}-$i"; done
}

# stop_server NAME: SIGTERM the recorded PID, SIGKILL after 10 s.
stop_server() {
  local name=$1 pid deadline
  pid=${SERVER_PID[$name]:-}
  [[ -n $pid ]] || return 0
  kill "$pid" 2>/dev/null || true
  deadline=$((SECONDS + 10))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  unset "SERVER_PID[$name]"
}

server_pids() {
  local sys=$1 i
  for i in 0 1 2; do printf '%s ' "${SERVER_PID[$sys${SUFFIX}-$i]}"; done
}

# --- throughput / latency / CPU -------------------------------------------------------

# etcd_bench_cmd OP CLIENTS TOTAL: etcd's tool, one connection per client like raftctl.
# Writes go to the leader (raftctl starts there too); reads are spread over the members
# (etcd's client round-robins its connections; raftctl spreads its clients).
etcd_bench_cmd() {
  local op=$1 clients=$2 total=$3
  if [[ $op == put ]]; then
    "$ETCD_BENCH" --endpoints "$ETCD_ENDPOINTS" "${CLIENT_TLS_ARGS[@]}" --target-leader --clients "$clients" --conns "$clients" --precise \
      put --key-size "$KEY_SIZE" --val-size "$VALUE_SIZE" --key-space-size "$KEYS" --total "$total"
  else
    "$ETCD_BENCH" --endpoints "$ETCD_ENDPOINTS" "${CLIENT_TLS_ARGS[@]}" --clients "$clients" --conns "$clients" --precise \
      range "$ETCD_READ_KEY" --consistency l --total "$total"
  fi
}

# raftkv_bench_cmd OP CLIENTS SECONDS [EXTRA...]: raftctl's load tool. `get` reads
# linearizably; its keys were written once by the first warm-up (--skip-preload after).
raftkv_bench_cmd() {
  local op=$1 clients=$2 seconds=$3
  shift 3
  "$RAFTCTL" --endpoints "$RAFTKV_ENDPOINTS" "${CLIENT_TLS_ARGS[@]}" bench "$op" --clients "$clients" --duration "${seconds}s" \
    --value-size "$VALUE_SIZE" --keys "$KEYS" --consistency linearizable -o json "$@"
}

# parse_run TOOL FILE: "ops throughput p50_ms p99_ms errors elapsed_s" from `raftkv-bench
# parse`, which refuses (exit 1, with the reason on stderr) an output it cannot read.
parse_run() {
  "$RAFTKV_BENCH" parse "$1" "$2" | jq -r '"\(.ops) \(.throughput) \(.p50_ms) \(.p99_ms) \(.errors) \(.elapsed_s)"'
}

# ETCD_TOTAL[SUFFIX]: --total of that etcd cluster's next measured run, from the rate of its
# previous run of the same op and client count (the warm-up's at first), so that each run
# lasts ~BENCH_SECONDS.
declare -A ETCD_TOTAL=()

# calibrate_etcd RATE: set the current etcd's ETCD_TOTAL for BENCH_SECONDS at RATE requests/s.
calibrate_etcd() {
  ETCD_TOTAL[$MODE]=$(awk -v r="$1" -v s="$BENCH_SECONDS" 'BEGIN { n = int(r * s); print (n < 200 ? 200 : n) }')
}

# The raftkv read keys are written once per cluster (its first get warm-up), then every get
# skips it.
declare -A RAFTKV_PRELOADED=()

# warm_up SYS OP CLIENTS: a short run of the same load (connections, first allocations,
# leader caches). For etcd it also calibrates --total for the measured runs.
warm_up() {
  local sys=$1 op=$2 clients=$3 rate out="${WORK}/${1}${SUFFIX}-${2}-${3}-warmup.out"
  if [[ $sys == etcd ]]; then
    # ~2 s at the rates seen here, and at least 40 requests per client.
    run_timed "$out" "${out%.out}.cpu" etcd_bench_cmd "$op" "$clients" $((clients * 40 < 1000 ? 1000 : clients * 40)) ||
      die "etcd warm-up failed: $(tail -5 "$out")"
    read -r _ rate _ < <(parse_run etcd "$out") || die "cannot parse ${out}: $(tail -5 "$out")"
    calibrate_etcd "$rate"
    log "etcd${SUFFIX} ${op} warm-up, ${clients} clients: ${rate} req/s -> --total ${ETCD_TOTAL[$MODE]} for ~${BENCH_SECONDS}s"
  else
    local extra=()
    if [[ $op == get ]]; then
      if [[ -n ${RAFTKV_PRELOADED[$MODE]:-} ]]; then extra=(--skip-preload); fi
      RAFTKV_PRELOADED[$MODE]=1
    fi
    run_timed "$out" "${out%.out}.cpu" raftkv_bench_cmd "$op" "$clients" 2 "${extra[@]}" ||
      die "raftkv warm-up failed: $(tail -5 "$out")"
  fi
}

# Every measured round, one JSON object a line (the run document's "rounds").
ROUNDS_FILE=

# bench SYS OP CLIENTS ROUND: one measured run; appends its figures to ROUNDS_FILE.
bench() {
  local sys=$1 op=$2 clients=$3 round=$4 pids out cpuf term0 term1 fs0 fs1 leader cpu0 cpu1 busy0 busy1 t0 t1
  local ops tput p50 p99 errs elapsed load_before
  read -r -a pids <<<"$(server_pids "$sys")"
  out="${WORK}/${sys}${SUFFIX}-${op}-${clients}-${round}.out"
  cpuf="${out%.out}.cpu"

  term0=$("${sys}_term")
  leader=$("${sys}_leader_index") || die "no ${sys} leader before ${op} ${clients} clients round ${round}"
  fs0=$(all_fsyncs "$sys")
  load_before=$(loadavg)
  busy0=$(machine_busy_ticks)
  cpu0=$(cpu_ticks "${pids[@]}")
  t0=$EPOCHREALTIME
  if [[ $sys == etcd ]]; then
    run_timed "$out" "$cpuf" etcd_bench_cmd "$op" "$clients" "${ETCD_TOTAL[$MODE]}" || die "etcd benchmark failed: $(tail -5 "$out")"
  else
    run_timed "$out" "$cpuf" raftkv_bench_cmd "$op" "$clients" "$BENCH_SECONDS" --skip-preload ||
      die "raftctl bench failed: $(tail -5 "$out")"
  fi
  t1=$EPOCHREALTIME
  cpu1=$(cpu_ticks "${pids[@]}")
  busy1=$(machine_busy_ticks)
  term1=$("${sys}_term")
  fs1=$(all_fsyncs "$sys")

  local tool=raftctl
  [[ $sys == etcd ]] && tool=etcd
  read -r ops tput p50 p99 errs elapsed < <(parse_run "$tool" "$out") ||
    die "cannot parse ${out} (kept; KEEP=1 keeps it after a success too): $(tail -5 "$out")"
  [[ $sys == etcd ]] && calibrate_etcd "$tput"
  local client_cpu server_cpu_s
  client_cpu=$(awk '{ print $1 + $2 }' "$cpuf")
  server_cpu_s=$(awk -v a="$cpu0" -v b="$cpu1" -v t="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / t }')
  # All members, then the leader alone (1.0 means no group commit on the leader).
  local fpw lfpw fms
  read -r fpw lfpw fms < <(
    awk -v a="$fs0" -v b="$fs1" -v n="$ops" -v l="$leader" 'BEGIN {
      split(a, x, " "); split(b, y, " ")
      for (i = 0; i < 3; i++) { c += y[2 * i + 1] - x[2 * i + 1]; t += y[2 * i + 2] - x[2 * i + 2] }
      lc = y[2 * l + 1] - x[2 * l + 1]
      printf "%.3f %.3f %s\n", c / n, lc / n, (c > 0 ? sprintf("%.3f", t * 1000 / c) : "null") }')
  # Whole machine busy during the run, in percent of all CPUs, and what of it was neither
  # the servers nor the load tool (other engineers' builds, the kernel's own work).
  jq -cn --arg system "$sys" --argjson tls "$( ((TLS)) && echo true || echo false)" --arg op "$op" --arg load_before "$load_before" \
    --argjson clients "$clients" --argjson round "$round" --argjson ops "$ops" --argjson errors "$errs" \
    --argjson throughput "$tput" --argjson p50_ms "$p50" --argjson p99_ms "$p99" --argjson elapsed_s "$elapsed" \
    --argjson server_cpu_s "$server_cpu_s" \
    --argjson server_cpu_us_per_op "$(awk -v s="$server_cpu_s" -v n="$ops" 'BEGIN { printf "%.1f", s * 1e6 / n }')" \
    --argjson client_cpu_us_per_op "$(awk -v c="$client_cpu" -v n="$ops" 'BEGIN { printf "%.1f", c * 1e6 / n }')" \
    --argjson machine_busy_pct "$(awk -v a="$busy0" -v b="$busy1" -v t0="$t0" -v t1="$t1" -v t="$CLK_TCK" -v n="$(nproc)" \
      'BEGIN { printf "%.0f", (b - a) / t / ((t1 - t0) * n) * 100 }')" \
    --argjson other_cpu_s "$(awk -v a="$busy0" -v b="$busy1" -v s="$server_cpu_s" -v c="$client_cpu" -v t="$CLK_TCK" \
      'BEGIN { o = (b - a) / t - s - c; printf "%.2f", (o < 0 ? 0 : o) }')" \
    --argjson elections $((term1 - term0)) --argjson fsyncs_per_op "$fpw" --argjson leader_fsyncs_per_op "$lfpw" \
    --argjson fsync_mean_ms "$fms" '$ARGS.named' >>"$ROUNDS_FILE"
  log "$(jq -r '"\(.system)\(if .tls then "+TLS" else "" end) \(.op) \(.clients) clients round \(.round): \(.ops) in \(.elapsed_s * 100 | round / 100)s = \(.throughput | round)/s, p50 \(.p50_ms * 1000 | round / 1000) ms, p99 \(.p99_ms * 1000 | round / 1000) ms, errors \(.errors), server CPU \(.server_cpu_us_per_op) µs/req, client \(.client_cpu_us_per_op) µs/req, machine busy \(.machine_busy_pct)%, others \(.other_cpu_s) s, fsyncs/req \(.fsyncs_per_op) (leader \(.leader_fsyncs_per_op)), term +\(.elections)"' <<<"$(tail -1 "$ROUNDS_FILE")")"
}

# --- leader failover ------------------------------------------------------------------

etcd_put_once() {
  "$ETCDCTL" --endpoints "$ETCD_ENDPOINTS" "${CLIENT_TLS_ARGS[@]}" --dial-timeout "$WRITER_TIMEOUT" --command-timeout "$WRITER_TIMEOUT" \
    put failover/k "$1" >/dev/null 2>&1
}

raftkv_put_once() {
  "$RAFTCTL" --endpoints "$RAFTKV_ENDPOINTS" "${CLIENT_TLS_ARGS[@]}" --timeout "$WRITER_TIMEOUT" put failover/k "$1" >/dev/null 2>&1
}

# writer_loop SYS LOG STOPFILE: starts a CLI write every WRITER_INTERVAL_S until STOPFILE
# exists; each write appends "start end rc" (epoch seconds, µs precision) to LOG when done
# (one short O_APPEND write per line, so concurrent writers do not mix lines).
writer_loop() {
  local sys=$1 logf=$2 stop=$3 n=0
  while [[ ! -e $stop ]]; do
    (
      s=$EPOCHREALTIME
      rc=0
      "${sys}_put_once" "v$n" || rc=$?
      echo "$s $EPOCHREALTIME $rc" >>"$logf"
    ) &
    n=$((n + 1))
    sleep "$WRITER_INTERVAL_S"
  done
  wait
}

ok_writes() { awk '$3 == 0' "$1" 2>/dev/null | wc -l; }

# first_ack_after LOG T: earliest end time of a successful write that started after T.
# (A write in flight at T is not counted even if it succeeds later: its ack could be the
# old leader's, read late by a descheduled client.)
first_ack_after() {
  awk -v t="$2" '$1 > t && $3 == 0 && (m == "" || $2 < m) { m = $2 } END { if (m != "") print m }' "$1"
}

has_ack_after() { [[ -n $(first_ack_after "$1" "$2") ]]; }

min_ok_writes() { (($(ok_writes "$1") >= $2)); }

# failover SYS: FAILOVER_RUNS times kill -9 the leader under a writer loop; fills RESULT.
failover() {
  local sys=$1 run leader pid logf stop wpid t_kill t_ack secs=() resolution=()
  for ((run = 1; run <= FAILOVER_RUNS; run++)); do
    wait_for "${sys} ready before failover run ${run}" 60 "${sys}_ready" || die "${sys} not ready"
    logf="${WORK}/${sys}-failover-${run}.log"
    stop="${WORK}/${sys}-failover-${run}.stop"
    writer_loop "$sys" "$logf" "$stop" &
    wpid=$!
    # Steady state first: a few acknowledged writes.
    wait_for "${sys} writer running" 30 min_ok_writes "$logf" 5 || die "${sys} writer never succeeded"
    leader=$("${sys}_leader_index") || die "no ${sys} leader"
    pid=${SERVER_PID[$sys${SUFFIX}-$leader]}
    t_kill=$EPOCHREALTIME
    kill -9 "$pid"
    echo "$t_kill" >"${logf%.log}.kill"
    if wait_for "${sys} write acknowledged after the kill" "$FAILOVER_GIVE_UP_S" has_ack_after "$logf" "$t_kill"; then
      t_ack=$(first_ack_after "$logf" "$t_kill")
      secs+=("$(awk -v a="$t_kill" -v b="$t_ack" 'BEGIN { printf "%.3f", b - a }')")
    else
      secs+=("$FAILOVER_GIVE_UP_S")
      log "${sys} failover run ${run}: no write acknowledged within ${FAILOVER_GIVE_UP_S}s (counted as ${FAILOVER_GIVE_UP_S}s)"
    fi
    touch "$stop"
    wait "$wpid" || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    # Resolution of this measurement: the start interval plus how long one write (a CLI
    # process) took in steady state, before the kill.
    resolution+=("$(awk -v t="$t_kill" '$2 < t && $3 == 0 { print ($2 - $1) * 1000 }' "$logf" | median_max | cut -d' ' -f1)")
    log "${sys} failover run ${run}: leader m${leader} (pid ${pid}) killed, next acknowledged write after ${secs[-1]}s" \
      "($(awk -v t="$t_kill" '$1 > t && $3 != 0' "$logf" | wc -l) writes started after the kill failed)"
    "${sys}_start_member" "$leader"
  done
  wait_for "${sys} ready after the failover runs" 60 "${sys}_ready" || die "${sys} not ready"
  # One JSON object per system, a line each (the run document's "failover").
  jq -cn --arg system "$sys" --argjson interval_s "$WRITER_INTERVAL_S" \
    --argjson runs_s "$(printf '%s\n' "${secs[@]}" | jq -s -c .)" \
    --argjson writer_attempt_ms "$(printf '%s\n' "${resolution[@]}" | median_max | awk '{ printf "%.1f", $1 }')" \
    '{($system): {runs_s: $runs_s, writer_attempt_ms: $writer_attempt_ms, writer_interval_s: $interval_s}}' >>"$FAILOVER_FILE"
  log "${sys} failover (s): ${secs[*]}"
}

# --- report -------------------------------------------------------------------------

# write_doc FILE: the run document (bench/src/run_doc.rs reads it; schema raftkv-vs-etcd/3:
# /2 plus "tls" in every round and in the setup).
write_doc() {
  jq -n --slurpfile rounds "$ROUNDS_FILE" --slurpfile failover "$FAILOVER_FILE" \
    --arg date "$RUN_DATE" --arg command "$COMMAND_LINE" \
    --argjson nproc "$(nproc)" --arg cpu_model "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')" \
    --argjson mem_gib "$(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)" \
    --arg kernel "$(uname -r)" --arg load_start "$LOAD_START" --arg load_end "$LOAD_END" \
    --arg etcd_version "$ETCD_VERSION" --arg bench_version "$ETCD_BENCH_VERSION" \
    --arg raftkv_commit "$(git -C "$ROOT_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --argjson rounds_per_point "$ROUNDS" --argjson bench_seconds "$BENCH_SECONDS" \
    --argjson client_counts "$(printf '%s\n' "${CLIENT_COUNTS_A[@]}" | jq -s -c .)" \
    --argjson key_size "$KEY_SIZE" --argjson value_size "$VALUE_SIZE" --argjson keys "$KEYS" \
    --argjson quick "$QUICK" --argjson tls "$TLS_MODE" '
    { schema: "raftkv-vs-etcd/3", date: $date, command: $command,
      machine: { nproc: $nproc, cpu_model: $cpu_model, mem_gib: $mem_gib, kernel: $kernel,
                 load_start: $load_start, load_end: $load_end },
      setup: { etcd_version: $etcd_version, etcd_benchmark_version: $bench_version, raftkv_commit: $raftkv_commit,
               quick: ($quick == 1), tls: ($tls == 1), rounds: $rounds_per_point, bench_seconds: $bench_seconds,
               client_counts: $client_counts, key_size: $key_size, value_size: $value_size, keys: $keys },
      rounds: $rounds, failover: ($failover | add // {}) }' >"$1"
}

# --- main ---------------------------------------------------------------------------

main() {
  local t0=$SECONDS op clients r
  LOAD_START=$(loadavg)
  RUN_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  ROUNDS_FILE="${WORK}/rounds.jsonl"
  FAILOVER_FILE="${WORK}/failover.jsonl"
  : >"$ROUNDS_FILE"
  : >"$FAILOVER_FILE"
  mkdir -p "$RESULTS_DIR"
  local doc
  doc="${RESULTS_DIR}/vs-etcd-$(date -u +%Y%m%dT%H%M%SZ).json"
  log "machine: $(nproc) CPUs, load average ${LOAD_START}; work dir ${WORK}"
  log "plan: ops (${OPS_A[*]}) x clients (${CLIENT_COUNTS_A[*]}) x ${ROUNDS} rounds x 2 systems x ${#TLS_CONFIGS[@]} (plaintext$( ((TLS_MODE)) && echo ", TLS")), ~${BENCH_SECONDS}s each; failover x${FAILOVER_RUNS}"
  build_all
  ((TLS_MODE)) && step "certificates for both systems (loopback-certs)" make_certs

  local tls order sys
  for tls in "${TLS_CONFIGS[@]}"; do
    use_tls "$tls"
    step "etcd${SUFFIX}: start 3 members" etcd_up
    step "raftkv${SUFFIX}: start 3 members" raftkv_up
    "$ETCDCTL" --endpoints "$ETCD_ENDPOINTS" "${CLIENT_TLS_ARGS[@]}" put "$ETCD_READ_KEY" "$(head -c "$VALUE_SIZE" /dev/zero | tr '\0' v)" >/dev/null ||
      die "etcdctl put ${ETCD_READ_KEY} (etcd${SUFFIX}) failed"
  done
  local points=$((${#OPS_A[@]} * ${#CLIENT_COUNTS_A[@]})) point=0
  for op in "${OPS_A[@]}"; do
    for clients in "${CLIENT_COUNTS_A[@]}"; do
      point=$((point + 1))
      for tls in "${TLS_CONFIGS[@]}"; do
        use_tls "$tls"
        for sys in etcd raftkv; do
          step "[${point}/${points}] ${sys}${SUFFIX}: ${op} warm-up, ${clients} clients" warm_up "$sys" "$op" "$clients"
        done
      done
      for ((r = 1; r <= ROUNDS; r++)); do
        # With --tls, plaintext first in odd rounds and TLS first in even ones: neither
        # always runs right after the other's load (page cache, CPU frequency, compaction).
        order=("${TLS_CONFIGS[@]}")
        ((${#order[@]} == 2 && r % 2 == 0)) && order=(1 0)
        for tls in "${order[@]}"; do
          use_tls "$tls"
          for sys in etcd raftkv; do
            step "[${point}/${points}] round ${r}/${ROUNDS}: ${sys}${SUFFIX} ${op}, ${clients} clients" bench "$sys" "$op" "$clients" "$r"
          done
        done
      done
    done
  done
  # Failover on the plaintext clusters only.
  use_tls 0
  if ((FAILOVER_RUNS > 0)); then
    step "etcd: leader failover x${FAILOVER_RUNS}" failover etcd
    step "raftkv: leader failover x${FAILOVER_RUNS}" failover raftkv
  fi
  for tls in "${TLS_CONFIGS[@]}"; do
    use_tls "$tls"
    step "etcd${SUFFIX}: stop" etcd_down
    step "raftkv${SUFFIX}: stop" raftkv_down
  done

  LOAD_END=$(loadavg)
  write_doc "$doc"
  log "done in $((SECONDS - t0))s; load average ${LOAD_END}; run document: ${doc}"
  if [[ -n $PLOT_DIR ]]; then
    local prefix=perf-
    ((TLS_MODE)) && prefix=perf-tls-
    "$RAFTKV_BENCH" plot "$doc" --out-dir "$PLOT_DIR" --prefix "$prefix" || die "raftkv-bench plot failed"
  fi
  if [[ $OUTPUT == json ]]; then
    cat "$doc"
  else
    printf 'raftkv vs etcd %s, 3 members each on loopback, %s-byte keys, %s-byte values, %s keys\n' \
      "$ETCD_VERSION" "$KEY_SIZE" "$VALUE_SIZE" "$KEYS"
    printf 'machine: %s CPUs (%s), load average at start %s, at end %s\n' \
      "$(nproc)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')" "$LOAD_START" "$LOAD_END"
    printf 'medians of %s alternating rounds of ~%ss; every round: %s\n' "$ROUNDS" "$BENCH_SECONDS" "$doc"
    ((TLS_MODE)) && printf 'TLS: mutual TLS on the client and peer planes of both systems, client certificates required\n'
    echo
    "$RAFTKV_BENCH" summary "$doc"
  fi
}

use_tls 0
main
