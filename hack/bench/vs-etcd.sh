#!/usr/bin/env bash
# raftkv side by side with etcd on this machine, in one run (docs/design.md, "Performance
# targets": the reference is etcd on the same machine).
#
#   hack/bench/vs-etcd.sh            table on stdout, progress on stderr
#   hack/bench/vs-etcd.sh -o json    one JSON document on stdout
#
# What it does, in order (about 3 minutes once the binaries are cached):
#   1. builds (cached) etcd, etcd's `benchmark` tool and etcdctl from the Go module proxy,
#      and raft-node/raftctl with `cargo build --release`;
#   2. starts 3 etcd members (ports 28000-28005) and 3 raft-node members (28100-28105,
#      metrics 28110-28112) on loopback, each with its default durability (fsync before
#      acknowledging) and timings;
#   3. a short warm-up of each, then ROUNDS alternating measured runs of `benchmark put`
#      (etcd's tool) and `raftctl bench put`, 64 clients, about BENCH_SECONDS each:
#      throughput, p50/p99, and the CPU time (utime+stime from /proc/<pid>/stat) of the 3
#      server processes -> CPU per write; the table shows the median over the rounds;
#   4. leader failover, etcd then raftkv: FAILOVER_RUNS times, kill -9 the leader while a
#      writer starts a CLI write every 100 ms; time from the kill to the first acknowledged
#      write started after it; the killed member is restarted before the next run;
#   5. a table: metric | etcd | raftkv | ratio | design target (docs/design.md), and the machine's load.
#
# No assertion on speed: this prints figures. Knobs (environment):
#   BENCH_SECONDS=10 ROUNDS=3 CLIENTS=64 ETCD_CONNS=64 KEYS=1000 VALUE_SIZE=100 FAILOVER_RUNS=5
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

BENCH_SECONDS=${BENCH_SECONDS:-10}
# Measured runs alternate etcd, raftkv, etcd, raftkv, ... (both clusters up, the idle one
# only heartbeats), so a change in the machine's load hits both; the table shows medians.
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-64}
# One gRPC connection per client, like raftctl bench (each client has its own connections).
ETCD_CONNS=${ETCD_CONNS:-$CLIENTS}
KEYS=${KEYS:-1000}
# raftctl bench keys are "bench/" + 10 digits = 16 bytes; etcd's --key-size matches that.
KEY_SIZE=16
VALUE_SIZE=${VALUE_SIZE:-100}
FAILOVER_RUNS=${FAILOVER_RUNS:-5}
# Give up on one failover run after this long without an acknowledged write.
FAILOVER_GIVE_UP_S=20
# The failover writer starts one write (one CLI process) every WRITER_INTERVAL_S, without
# waiting for the previous ones: a write that hangs on a dead or leaderless member does not
# delay the next, so the figure is not quantized by the client's timeout. Each write gives
# up after WRITER_TIMEOUT.
WRITER_INTERVAL_S=0.1
WRITER_TIMEOUT=3s
OUTPUT=table

ETCD_BASE_PORT=28000
RAFTKV_BASE_PORT=28100

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

while (($#)); do
  case $1 in
  -o | --output)
    OUTPUT=${2:-}
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

for tool in jq curl; do
  command -v "$tool" >/dev/null || die "${tool} is required"
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
ETCD="${ETCD_BIN}/etcd"
ETCDCTL="${ETCD_TOOLS_BIN}/etcdctl"
ETCD_BENCH="${ETCD_TOOLS_BIN}/benchmark"

build_all() {
  if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    step "build etcd ${ETCD_VERSION} (cached)" build_etcd
    step "build etcd benchmark ${ETCD_BENCH_VERSION} + etcdctl ${ETCD_VERSION} (cached)" build_etcd_tools
    command -v cargo >/dev/null || die "cargo is not installed"
    log "==> cargo build --release -p raftkv-node -p raftctl (log: ${WORK}/cargo.log)"
    (cd "$ROOT_DIR" && CARGO_TARGET_DIR="$TARGET_DIR" nice -n 10 cargo build --release -p raftkv-node -p raftctl) \
      >"${WORK}/cargo.log" 2>&1 || {
      tail -20 "${WORK}/cargo.log" >&2
      die "cargo build failed"
    }
  fi
  local b
  for b in "$ETCD" "$ETCDCTL" "$ETCD_BENCH" "$RAFT_NODE" "$RAFTCTL"; do
    [[ -x $b ]] || die "missing ${b} (run without SKIP_BUILD=1)"
  done
}

# --- etcd cluster -------------------------------------------------------------------

etcd_client_port() { echo $((ETCD_BASE_PORT + 2 * $1)); }
etcd_peer_port() { echo $((ETCD_BASE_PORT + 2 * $1 + 1)); }
ETCD_ENDPOINTS=$(for i in 0 1 2; do printf '127.0.0.1:%s,' "$(etcd_client_port "$i")"; done)
ETCD_ENDPOINTS=${ETCD_ENDPOINTS%,}

etcd_start_member() {
  local i=$1 initial="" j
  for j in 0 1 2; do initial+="m${j}=http://127.0.0.1:$(etcd_peer_port "$j"),"; done
  # Defaults everywhere else: fsync on every WAL write, heartbeat 100 ms, election 1000 ms.
  setsid "$ETCD" --name "m${i}" --data-dir "${WORK}/etcd/m${i}" \
    --listen-client-urls "http://127.0.0.1:$(etcd_client_port "$i")" \
    --advertise-client-urls "http://127.0.0.1:$(etcd_client_port "$i")" \
    --listen-peer-urls "http://127.0.0.1:$(etcd_peer_port "$i")" \
    --initial-advertise-peer-urls "http://127.0.0.1:$(etcd_peer_port "$i")" \
    --initial-cluster "${initial%,}" --initial-cluster-state new \
    --initial-cluster-token raftkv-vs-etcd </dev/null >>"${WORK}/etcd-m${i}.log" 2>&1 &
  SERVER_PID[etcd-$i]=$!
  # Disowned: bash reaps it silently instead of reporting "Killed" after a kill -9.
  disown "$!"
}

# etcd_fsyncs I: "COUNT SECONDS" of member I's WAL fsyncs plus backend (bbolt) commits (one
# fsync each; a commit's time includes its writes).
etcd_fsyncs() {
  curl -fsS "http://127.0.0.1:$(etcd_client_port "$1")/metrics" |
    awk '/^etcd_disk_(wal_fsync|backend_commit)_duration_seconds_count / { n += $2 }
      /^etcd_disk_(wal_fsync|backend_commit)_duration_seconds_sum / { s += $2 } END { printf "%d %.6f\n", n, s }'
}

etcd_status_json() {
  "$ETCDCTL" --endpoints "$ETCD_ENDPOINTS" --command-timeout 2s endpoint status -w json 2>/dev/null
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
  for i in 0 1 2; do stop_server "etcd-$i"; done
}

# --- raftkv cluster -----------------------------------------------------------------

raftkv_client_port() { echo $((RAFTKV_BASE_PORT + 2 * $1)); }
raftkv_peer_port() { echo $((RAFTKV_BASE_PORT + 2 * $1 + 1)); }
RAFTKV_ENDPOINTS=$(for i in 0 1 2; do printf '127.0.0.1:%s,' "$(raftkv_client_port "$i")"; done)
RAFTKV_ENDPOINTS=${RAFTKV_ENDPOINTS%,}

raftkv_start_member() {
  local i=$1
  # Default timings (heartbeat 50 ms, election 200-400 ms) and default durability.
  NO_COLOR=1 setsid "$RAFT_NODE" --data-dir "${WORK}/raftkv/node-${i}" \
    --client-addr "127.0.0.1:$(raftkv_client_port "$i")" \
    --peer-addr "127.0.0.1:$(raftkv_peer_port "$i")" \
    --metrics-addr "127.0.0.1:$((RAFTKV_BASE_PORT + 10 + i))" \
    --name "node-${i}" --log-format text </dev/null >>"${WORK}/raftkv-node-${i}.log" 2>&1 &
  SERVER_PID[raftkv-$i]=$!
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

raftkv_status_json() { "$RAFTCTL" --endpoints "$RAFTKV_ENDPOINTS" --timeout 2s status -o json 2>/dev/null; }

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
    "$RAFTCTL" --endpoints "127.0.0.1:$(raftkv_client_port "$i")" --timeout 1s status -o json >/dev/null 2>&1 || return 1
  done
}

raftkv_up() {
  local i
  for i in 0 1 2; do raftkv_start_member "$i"; done
  wait_for "3 raft-node members answering" 60 raftkv_answers
  "$RAFTCTL" --endpoints "$RAFTKV_ENDPOINTS" cluster init --wait 30s >"${WORK}/raftkv-init.log" 2>&1 ||
    die "raftctl cluster init failed: $(cat "${WORK}/raftkv-init.log")"
  wait_for "3 healthy raft-node members with a leader" 60 raftkv_ready
}

raftkv_down() {
  local i
  for i in 0 1 2; do stop_server "raftkv-$i"; done
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
  for i in 0 1 2; do printf '%s ' "${SERVER_PID[$sys-$i]}"; done
}

# --- throughput / latency / CPU -------------------------------------------------------

# Results of each system land in R_<sys>_<figure> (global associative array RESULT).
declare -A RESULT=()

etcd_bench_cmd() {
  local total=$1
  "$ETCD_BENCH" --endpoints "$ETCD_ENDPOINTS" --target-leader --clients "$CLIENTS" --conns "$ETCD_CONNS" --precise \
    put --key-size "$KEY_SIZE" --val-size "$VALUE_SIZE" --key-space-size "$KEYS" --total "$total"
}

raftkv_bench_cmd() {
  local seconds=$1
  "$RAFTCTL" --endpoints "$RAFTKV_ENDPOINTS" bench put --clients "$CLIENTS" --duration "${seconds}s" \
    --value-size "$VALUE_SIZE" --keys "$KEYS" -o json
}

# parse_etcd_bench FILE: "ops throughput p50_ms p99_ms errors elapsed_s"
parse_etcd_bench() {
  local file=$1 rps total p50 p99 errors
  rps=$(awk -F'\t' '/Requests\/sec:/ { print $2 }' "$file" | tr -d ' ')
  total=$(awk -F'\t' '/^  Total:/ { split($2, a, " "); print a[1] }' "$file")
  p50=$(awk '/^  50% in/ { print $3 * 1000 }' "$file")
  p99=$(awk '/^  99% in/ { print $3 * 1000 }' "$file")
  # "Error distribution:" lines look like "  [12]	etcdserver: ...".
  errors=$(awk '/^Error distribution/ { on = 1; next } on && /^  \[/ { gsub(/[\[\]]/, "", $1); n += $1 } END { print n + 0 }' "$file")
  [[ -n $rps && -n $p50 && -n $p99 ]] || return 1
  awk -v r="$rps" -v t="$total" -v a="$p50" -v b="$p99" -v e="$errors" \
    'BEGIN { printf "%d %.1f %.3f %.3f %d %.3f\n", r * t + 0.5 - e, r, a, b, e, t }'
}

parse_raftkv_bench() {
  jq -r '"\(.ops) \(.throughput_ops_per_s) \(.latency_ms.p50) \(.latency_ms.p99) \(.errors) \(.elapsed_s)"' "$1" |
    awk '{ printf "%d %.1f %.3f %.3f %d %.3f\n", $1, $2, $3, $4, $5, $6 }'
}

# Figures of one benchmark run, in table order; RESULT[SYS.ROUND.FIGURE] holds each run's,
# RESULT[SYS.FIGURE] the median over the rounds.
BENCH_FIGURES=(throughput server_cpu_us_per_write p50_ms p99_ms ops errors elapsed_s server_cpu_s
  client_cpu_us_per_write fsyncs_per_write leader_fsyncs_per_write fsync_mean_ms machine_busy_pct other_cpu_s elections)

# ETCD_TOTAL: --total of etcd's next measured run, from the rate of its previous run (the
# warm-up's at first) so that each run lasts about BENCH_SECONDS.
ETCD_TOTAL=

# calibrate_etcd RATE: set ETCD_TOTAL for BENCH_SECONDS at RATE writes/s.
calibrate_etcd() {
  ETCD_TOTAL=$(awk -v r="$1" -v s="$BENCH_SECONDS" 'BEGIN { n = int(r * s); print (n < 1000 ? 1000 : n) }')
}

# warm_up SYS: a few seconds of the same load (connections, first allocations, leader caches).
# For etcd it also calibrates --total so that a measured run lasts about BENCH_SECONDS.
warm_up() {
  local sys=$1 rate
  if [[ $sys == etcd ]]; then
    run_timed "${WORK}/etcd-warmup.out" "${WORK}/etcd-warmup.cpu" etcd_bench_cmd 3000 ||
      die "etcd warm-up failed: $(tail -5 "${WORK}/etcd-warmup.out")"
    rate=$(parse_etcd_bench "${WORK}/etcd-warmup.out" | cut -d' ' -f2)
    calibrate_etcd "$rate"
    log "etcd warm-up: ${rate} writes/s -> --total ${ETCD_TOTAL} for ~${BENCH_SECONDS}s"
  else
    run_timed "${WORK}/raftkv-warmup.out" "${WORK}/raftkv-warmup.cpu" raftkv_bench_cmd 2 ||
      die "raftkv warm-up failed: $(tail -5 "${WORK}/raftkv-warmup.out")"
  fi
}

# bench SYS ROUND: one measured run; fills RESULT[SYS.ROUND.*].
bench() {
  local sys=$1 round=$2 pids out cpuf term0 term1 fs0 fs1 leader cpu0 cpu1 busy0 busy1 t0 t1 ops tput p50 p99 errs elapsed
  local k="${sys}.${round}"
  read -r -a pids <<<"$(server_pids "$sys")"
  out="${WORK}/${sys}-bench-${round}.out"
  cpuf="${WORK}/${sys}-bench-${round}.cpu"

  term0=$("${sys}_term")
  leader=$("${sys}_leader_index") || die "no ${sys} leader before round ${round}"
  fs0=$(all_fsyncs "$sys")
  RESULT[$k.load_before]=$(loadavg)
  busy0=$(machine_busy_ticks)
  cpu0=$(cpu_ticks "${pids[@]}")
  t0=$EPOCHREALTIME
  if [[ $sys == etcd ]]; then
    run_timed "$out" "$cpuf" etcd_bench_cmd "$ETCD_TOTAL" || die "etcd benchmark failed: $(tail -5 "$out")"
  else
    run_timed "$out" "$cpuf" raftkv_bench_cmd "$BENCH_SECONDS" || die "raftctl bench failed: $(tail -5 "$out")"
  fi
  t1=$EPOCHREALTIME
  cpu1=$(cpu_ticks "${pids[@]}")
  busy1=$(machine_busy_ticks)
  term1=$("${sys}_term")
  fs1=$(all_fsyncs "$sys")

  if [[ $sys == etcd ]]; then
    read -r ops tput p50 p99 errs elapsed < <(parse_etcd_bench "$out") || die "cannot parse ${out}"
    calibrate_etcd "$tput"
  else
    # raftctl prints its progress on stderr, into the same file: the JSON is the last object.
    sed -n '/^{/,/^}/p' "$out" >"${out}.json"
    read -r ops tput p50 p99 errs elapsed < <(parse_raftkv_bench "${out}.json") || die "cannot parse ${out}"
  fi
  local client_cpu
  client_cpu=$(awk '{ print $1 + $2 }' "$cpuf")
  RESULT[$k.ops]=$ops
  RESULT[$k.throughput]=$tput
  RESULT[$k.p50_ms]=$p50
  RESULT[$k.p99_ms]=$p99
  RESULT[$k.errors]=$errs
  RESULT[$k.elapsed_s]=$elapsed
  RESULT[$k.server_cpu_s]=$(awk -v a="$cpu0" -v b="$cpu1" -v t="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / t }')
  RESULT[$k.server_cpu_us_per_write]=$(awk -v a="$cpu0" -v b="$cpu1" -v t="$CLK_TCK" -v n="$ops" 'BEGIN { printf "%.1f", (b - a) / t * 1e6 / n }')
  RESULT[$k.client_cpu_us_per_write]=$(awk -v c="$client_cpu" -v n="$ops" 'BEGIN { printf "%.1f", c * 1e6 / n }')
  # Whole machine busy during the run, in percent of all CPUs, and what of it was neither
  # the servers nor the benchmark client (other engineers' builds, the kernel's own work).
  RESULT[$k.machine_busy_pct]=$(awk -v a="$busy0" -v b="$busy1" -v t0="$t0" -v t1="$t1" -v t="$CLK_TCK" -v n="$(nproc)" \
    'BEGIN { printf "%.0f", (b - a) / t / ((t1 - t0) * n) * 100 }')
  RESULT[$k.other_cpu_s]=$(awk -v a="$busy0" -v b="$busy1" -v s0="$cpu0" -v s1="$cpu1" -v c="$client_cpu" -v t="$CLK_TCK" \
    'BEGIN { o = (b - a - (s1 - s0)) / t - c; printf "%.2f", (o < 0 ? 0 : o) }')
  RESULT[$k.elections]=$((term1 - term0))
  # All members, then the leader alone (1.0 means no group commit on the leader).
  local fpw lfpw fms
  read -r fpw lfpw fms < <(
    awk -v a="$fs0" -v b="$fs1" -v n="$ops" -v l="$leader" 'BEGIN {
      split(a, x, " "); split(b, y, " ")
      for (i = 0; i < 3; i++) { c += y[2 * i + 1] - x[2 * i + 1]; t += y[2 * i + 2] - x[2 * i + 2] }
      lc = y[2 * l + 1] - x[2 * l + 1]
      printf "%.3f %.3f %s\n", c / n, lc / n, (c > 0 ? sprintf("%.3f", t * 1000 / c) : "null") }')
  RESULT[$k.fsyncs_per_write]=$fpw
  RESULT[$k.leader_fsyncs_per_write]=$lfpw
  RESULT[$k.fsync_mean_ms]=$fms
  log "${sys} round ${round}: ${ops} writes in ${elapsed}s = ${tput}/s, p50 ${p50} ms, p99 ${p99} ms, errors ${errs}," \
    "server CPU ${RESULT[$k.server_cpu_s]} s (${RESULT[$k.server_cpu_us_per_write]} µs/write)," \
    "client ${RESULT[$k.client_cpu_us_per_write]} µs/write, machine busy ${RESULT[$k.machine_busy_pct]}%," \
    "others ${RESULT[$k.other_cpu_s]} s, fsyncs/write ${RESULT[$k.fsyncs_per_write]} (leader ${RESULT[$k.leader_fsyncs_per_write]}, mean ${RESULT[$k.fsync_mean_ms]} ms), term +${RESULT[$k.elections]}"
}

# summarize_rounds: RESULT[SYS.FIGURE] = median over the rounds (elections, errors: sum).
summarize_rounds() {
  local sys fig r
  for sys in etcd raftkv; do
    for fig in "${BENCH_FIGURES[@]}"; do
      case $fig in
      elections | errors | ops)
        RESULT[$sys.$fig]=$(for ((r = 1; r <= ROUNDS; r++)); do echo "${RESULT[$sys.$r.$fig]}"; done | awk '{ n += $1 } END { print n }')
        ;;
      *)
        RESULT[$sys.$fig]=$(for ((r = 1; r <= ROUNDS; r++)); do echo "${RESULT[$sys.$r.$fig]}"; done | median_max | cut -d' ' -f1)
        ;;
      esac
    done
  done
}

# --- leader failover ------------------------------------------------------------------

etcd_put_once() {
  "$ETCDCTL" --endpoints "$ETCD_ENDPOINTS" --dial-timeout "$WRITER_TIMEOUT" --command-timeout "$WRITER_TIMEOUT" \
    put failover/k "$1" >/dev/null 2>&1
}

raftkv_put_once() {
  "$RAFTCTL" --endpoints "$RAFTKV_ENDPOINTS" --timeout "$WRITER_TIMEOUT" put failover/k "$1" >/dev/null 2>&1
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
    pid=${SERVER_PID[$sys-$leader]}
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
  local median worst
  read -r median worst < <(printf '%s\n' "${secs[@]}" | median_max)
  RESULT[$sys.failover_median_s]=$median
  RESULT[$sys.failover_worst_s]=$worst
  RESULT[$sys.failover_runs_s]="${secs[*]}"
  RESULT[$sys.writer_attempt_ms]=$(printf '%s\n' "${resolution[@]}" | median_max | awk '{ printf "%.1f", $1 }')
}

# --- report -------------------------------------------------------------------------

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 == 0) print "-"; else printf "%.2fx", b / a }'; }

print_table() {
  local row label key target e r q fmt="%-36s %12s %12s %8s  %s\n" sys
  printf '\nraftkv vs etcd %s, 3 members each on loopback, %s clients, %s-byte keys, %s-byte values, %s keys\n' \
    "$ETCD_VERSION" "$CLIENTS" "$KEY_SIZE" "$VALUE_SIZE" "$KEYS"
  printf 'machine: %s CPUs (%s), load average at start %s, at end %s\n' \
    "$(nproc)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')" "$LOAD_START" "$LOAD_END"
  printf 'benchmark figures: median of %s alternating runs of ~%ss each (errors, elections: sums)\n\n' "$ROUNDS" "$BENCH_SECONDS"
  # shellcheck disable=SC2059 # the format is ours
  printf "$fmt" "metric" "etcd" "raftkv" "ratio" "DESIGN target (raftkv vs etcd)"
  # shellcheck disable=SC2059
  printf "$fmt" "------" "----" "------" "-----" "------------------------------"
  for row in \
    "write throughput (writes/s)|throughput|>= 1.5x" \
    "server CPU per write (µs, 3 nodes)|server_cpu_us_per_write|<= 0.6x" \
    "p50 latency (ms)|p50_ms|" \
    "p99 latency (ms)|p99_ms|<= 0.8x" \
    "writes measured (all rounds)|ops|" \
    "write errors (all rounds)|errors|" \
    "run length (s)|elapsed_s|" \
    "server CPU (s, 3 nodes)|server_cpu_s|" \
    "client CPU per write (µs)|client_cpu_us_per_write|" \
    "fsyncs per write (3 nodes)|fsyncs_per_write|" \
    "fsyncs per write (leader)|leader_fsyncs_per_write|" \
    "mean fsync time (ms)|fsync_mean_ms|" \
    "machine busy during run (%)|machine_busy_pct|" \
    "other processes' CPU during run (s)|other_cpu_s|" \
    "elections during runs (term delta)|elections|0 (no spurious elections)" \
    "failover median (s)|failover_median_s|<= 0.5 s" \
    "failover worst (s)|failover_worst_s|<= 1 s" \
    "failover: one write's time (ms)|writer_attempt_ms|(resolution: this + ${WRITER_INTERVAL_S} s)"; do
    IFS='|' read -r label key target <<<"$row"
    e=${RESULT[etcd.$key]:-}
    r=${RESULT[raftkv.$key]:-}
    q=""
    case $key in
    throughput | server_cpu_us_per_write | p50_ms | p99_ms | client_cpu_us_per_write | failover_median_s | failover_worst_s)
      q=$(ratio "$e" "$r")
      ;;
    esac
    # shellcheck disable=SC2059
    printf "$fmt" "$label" "$e" "$r" "$q" "$target"
  done
  printf '\nper round (writes/s | server µs/write | p99 ms | others CPU s | load average before, which counts this script too):\n'
  for sys in etcd raftkv; do
    for ((r = 1; r <= ROUNDS; r++)); do
      printf '  %-6s %d: %8s | %6s | %8s | %5s | %s\n' "$sys" "$r" "${RESULT[$sys.$r.throughput]}" \
        "${RESULT[$sys.$r.server_cpu_us_per_write]}" "${RESULT[$sys.$r.p99_ms]}" "${RESULT[$sys.$r.other_cpu_s]}" \
        "${RESULT[$sys.$r.load_before]}"
    done
  done
  printf 'failover runs (s): etcd %s; raftkv %s\n' "${RESULT[etcd.failover_runs_s]}" "${RESULT[raftkv.failover_runs_s]}"
}

print_json() {
  local k args=()
  for k in "${!RESULT[@]}"; do args+=(--arg "$k" "${RESULT[$k]}"); done
  jq -n "${args[@]}" \
    --arg nproc "$(nproc)" --arg load_start "$LOAD_START" --arg load_end "$LOAD_END" \
    --arg etcd_version "$ETCD_VERSION" --arg bench_version "$ETCD_BENCH_VERSION" --argjson rounds "$ROUNDS" \
    --argjson bench_seconds "$BENCH_SECONDS" --argjson failover_runs "$FAILOVER_RUNS" \
    --argjson clients "$CLIENTS" --argjson key_size "$KEY_SIZE" --argjson value_size "$VALUE_SIZE" --argjson keys "$KEYS" '
    def num: (tonumber? // .);
    def fields($p): $ARGS.named | to_entries | map(select(.key | startswith($p)) | {key: (.key | ltrimstr($p)), value: (.value | num)})
      | map(select(.key | contains(".") | not)) | from_entries;
    def sys($s): fields($s + ".") + { rounds: [range(1; $rounds + 1) as $r | fields($s + "." + ($r | tostring) + ".")] }
      | .failover_runs_s |= (if type == "string" then split(" ") | map(tonumber) elif type == "number" then [.] else . end);
    { machine: { nproc: ($nproc | tonumber), load_start: $load_start, load_end: $load_end },
      setup: { etcd_version: $etcd_version, etcd_benchmark_version: $bench_version, clients: $clients,
               key_size: $key_size, value_size: $value_size, keys: $keys, rounds: $rounds,
               bench_seconds: $bench_seconds, failover_runs: $failover_runs },
      etcd: sys("etcd"), raftkv: sys("raftkv") }'
}

# --- main ---------------------------------------------------------------------------

main() {
  local t0=$SECONDS
  LOAD_START=$(loadavg)
  log "machine: $(nproc) CPUs, load average ${LOAD_START}; work dir ${WORK}"
  build_all

  step "etcd: start 3 members" etcd_up
  step "raftkv: start 3 members" raftkv_up
  step "etcd: warm-up (3000 writes)" warm_up etcd
  step "raftkv: warm-up (2 s)" warm_up raftkv
  local r
  for ((r = 1; r <= ROUNDS; r++)); do
    step "round ${r}/${ROUNDS}: etcd put benchmark" bench etcd "$r"
    step "round ${r}/${ROUNDS}: raftkv put benchmark" bench raftkv "$r"
  done
  summarize_rounds
  step "etcd: leader failover x${FAILOVER_RUNS}" failover etcd
  step "raftkv: leader failover x${FAILOVER_RUNS}" failover raftkv
  step "etcd: stop" etcd_down
  step "raftkv: stop" raftkv_down

  LOAD_END=$(loadavg)
  log "done in $((SECONDS - t0))s; load average ${LOAD_END}"
  if [[ $OUTPUT == json ]]; then print_json; else print_table; fi
}

main
