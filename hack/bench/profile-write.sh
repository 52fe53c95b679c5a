#!/usr/bin/env bash
# Instructions per write on the leader (docs/performance.md, "CPU per write"): 3 raft-node
# members on loopback, the leader under valgrind's callgrind, the followers native. After a
# warm-up the counters are zeroed, WRITES writes are made by `raftctl bench put`, and the
# leader's instruction count (Ir) is dumped: Ir per write, then the top functions
# (inclusive and exclusive). Instruction counts do not depend on what else runs on the
# machine, unlike wall-clock figures, so a before/after comparison holds on a shared box.
#
#   hack/bench/profile-write.sh                  # 3 members, 16 clients, ~20 s of writes
#   NODES=1 hack/bench/profile-write.sh          # one member: no replication on the path
#   KEEP=1 hack/bench/profile-write.sh           # keep the callgrind output (for kcachegrind)
#
# The leader runs ~50x slower under callgrind, so every member gets a long election timeout
# (ELECTION_MS, default 5000-10000 ms) and the load is light (CLIENTS=16): this measures
# the instructions of the path, not its speed. Knobs: NODES (3), CLIENTS (16),
# BENCH_SECONDS (20), VALUE_SIZE (100), KEYS (1000), TOP (25), BASE_PORT (28300),
# SKIP_BUILD=1, CARGO_TARGET_DIR (default ~/.cache/raftkv/target).
set -euo pipefail

ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
NODES=${NODES:-3}
CLIENTS=${CLIENTS:-16}
BENCH_SECONDS=${BENCH_SECONDS:-20}
VALUE_SIZE=${VALUE_SIZE:-100}
KEYS=${KEYS:-1000}
TOP=${TOP:-25}
BASE_PORT=${BASE_PORT:-28300}
ELECTION_MS=${ELECTION_MS:-5000}
: "${RAFTKV_CACHE_DIR:=${HOME}/.cache/raftkv}"
TARGET_DIR=${CARGO_TARGET_DIR:-${RAFTKV_CACHE_DIR}/target}

log() { printf '[profile-write %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

for tool in valgrind callgrind_control callgrind_annotate jq; do
  command -v "$tool" >/dev/null || die "${tool} is required (apt-get install valgrind jq)"
done
[[ $NODES =~ ^[13]$ ]] || die "NODES must be 1 or 3"

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  command -v cargo >/dev/null || die "cargo is not installed (https://rustup.rs)"
  log "cargo build --release -p raftkv-node -p raftctl"
  (cd "$ROOT_DIR" && CARGO_TARGET_DIR="$TARGET_DIR" nice -n 10 cargo build --release -p raftkv-node -p raftctl) >&2
fi
RAFT_NODE="${TARGET_DIR}/release/raft-node"
RAFTCTL="${TARGET_DIR}/release/raftctl"
[[ -x $RAFT_NODE && -x $RAFTCTL ]] || die "missing ${RAFT_NODE} or ${RAFTCTL} (run without SKIP_BUILD=1)"

WORK=$(mktemp -d /tmp/raftkv-profile-write.XXXXXX)
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ ${KEEP:-0} == 1 ]]; then log "kept ${WORK}"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

client_port() { echo $((BASE_PORT + 2 * $1)); }
ENDPOINTS=$(for ((i = 0; i < NODES; i++)); do printf '127.0.0.1:%s,' "$(client_port "$i")"; done)
ENDPOINTS=${ENDPOINTS%,}

start_member() {
  local i=$1
  shift
  NO_COLOR=1 setsid "$@" "$RAFT_NODE" --data-dir "${WORK}/node-${i}" \
    --client-addr "127.0.0.1:$(client_port "$i")" --peer-addr "127.0.0.1:$((BASE_PORT + 2 * i + 1))" \
    --name "node-${i}" --log-format text \
    --election-timeout-min-ms "$ELECTION_MS" --election-timeout-max-ms $((2 * ELECTION_MS)) \
    </dev/null >"${WORK}/node-${i}.log" 2>&1 &
  PIDS+=("$!")
}

# Member 0 under callgrind; it is the one `cluster init` is sent to, so it becomes leader.
# --instr-atstart=no: nothing is instrumented (nor counted) until the warm-up is over
# (callgrind_control --instr=on), so start-up and the election run at native-ish speed.
start_member 0 valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="${WORK}/callgrind.out"
for ((i = 1; i < NODES; i++)); do start_member "$i"; done
LEADER_PID=${PIDS[0]}

log "waiting for the members to answer (member 0 starts slowly under valgrind)"
for _ in $(seq 1 120); do
  ok=1
  for ((i = 0; i < NODES; i++)); do
    "$RAFTCTL" --endpoints "127.0.0.1:$(client_port "$i")" --timeout 2s status -o json >/dev/null 2>&1 || ok=0
  done
  ((ok)) && break
  sleep 1
done
((ok)) || die "members did not answer; logs in ${WORK} (KEEP=1)"
"$RAFTCTL" --endpoints "127.0.0.1:$(client_port 0)" --timeout 30s cluster init --wait 60s >"${WORK}/init.log" 2>&1 ||
  die "cluster init failed: $(cat "${WORK}/init.log")"
leader=$("$RAFTCTL" --endpoints "$ENDPOINTS" --timeout 5s status -o json | jq -r .leader_addr)
[[ $leader == "127.0.0.1:$(client_port 0)" ]] || die "the leader is ${leader}, not member 0 (the profiled one)"

log "warm-up: 5 s of writes (not counted)"
"$RAFTCTL" --endpoints "$ENDPOINTS" --timeout 30s bench put --clients "$CLIENTS" --duration 5s \
  --value-size "$VALUE_SIZE" --keys "$KEYS" -o json >"${WORK}/warmup.json" 2>/dev/null ||
  die "warm-up failed"
callgrind_control --instr=on "$LEADER_PID" >/dev/null
log "measuring: ${BENCH_SECONDS} s of writes, ${CLIENTS} clients"
"$RAFTCTL" --endpoints "$ENDPOINTS" --timeout 30s bench put --clients "$CLIENTS" --duration "${BENCH_SECONDS}s" \
  --value-size "$VALUE_SIZE" --keys "$KEYS" -o json >"${WORK}/bench.json" 2>/dev/null || die "bench failed"
callgrind_control --instr=off "$LEADER_PID" >/dev/null
callgrind_control --dump=measured "$LEADER_PID" >/dev/null
sleep 1
writes=$(jq -r .ops "${WORK}/bench.json")
errors=$(jq -r .errors "${WORK}/bench.json")
((writes > 0)) || die "no write succeeded"
# --dump writes callgrind.out.1 (the final dump at exit never happens: kill -9).
out="${WORK}/callgrind.out.1"
[[ -s $out ]] || die "callgrind wrote no dump (${out})"
total=$(callgrind_annotate --auto=no "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ && t == "" { t = $1; gsub(",", "", t) } END { print t }')
[[ -n $total ]] || die "no PROGRAM TOTALS in ${out}"

printf 'members: %s (leader under callgrind), clients: %s, value size: %s\n' "$NODES" "$CLIENTS" "$VALUE_SIZE"
printf 'writes: %s (errors %s); leader instructions: %s; per write: %s\n' "$writes" "$errors" "$total" \
  "$(awk -v t="$total" -v n="$writes" 'BEGIN { printf "%.0f", t / n }')"
# per_write: "N (P%)  file:function [binary]" lines -> "instructions-per-write  function", the
# registry and toolchain paths cut so that the crate and file stay readable.
per_write() {
  awk -v n="$writes" -v top="$TOP" '/^ *[0-9,]+ +\( *[0-9.]+%\)/ && c < top {
    v = $1; gsub(",", "", v)
    line = $0; sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, "", line); sub(/ \[[^]]*\]$/, "", line)
    sub(/^.*index\.crates\.io-[0-9a-f]+\//, "", line); sub(/^\/rustc\/[0-9a-f]+\/library\//, "std:", line)
    printf "%10.0f  %s\n", v / n, line; c++ }'
}
printf '\ntop %s functions by inclusive instructions (per write):\n' "$TOP"
callgrind_annotate --auto=no --inclusive=yes --threshold=100 "$out" 2>/dev/null | per_write
printf '\ntop %s functions by exclusive instructions (per write):\n' "$TOP"
callgrind_annotate --auto=no --threshold=100 "$out" 2>/dev/null | per_write
# By component: exclusive instructions summed by the crate (or library) whose source file
# holds the code. Inlined code counts where it was written (a std `drop_in_place` inlined in
# h2 counts as std), so this is a map of where the work is, not of who asked for it.
printf '\nexclusive instructions per write by component:\n'
callgrind_annotate --auto=no --threshold=100 "$out" 2>/dev/null | awk -v n="$writes" '
  /^ *[0-9,]+ +\( *[0-9.]+%\)/ && !/PROGRAM TOTALS/ {
    v = $1; gsub(",", "", v); line = $0
    if (line ~ /index\.crates\.io-[0-9a-f]+\//) {
      c = line; sub(/^.*index\.crates\.io-[0-9a-f]+\//, "", c); sub(/\/.*$/, "", c); sub(/-[0-9]+\.[0-9]+\.[0-9]+.*$/, "", c)
    } else if (line ~ /raftkv-proto-[0-9a-f]+\/out\//) { c = "raftkv-proto (generated)"
    } else if (line ~ /\/(node|client|telemetry|proto)\/src\//) {
      c = line; sub(/^.*\/(node|client|telemetry|proto)\/src\//, "", c); m = line; sub(/\/src\/.*$/, "", m); sub(/^.*\//, "", m)
      sub(/[\/.].*$/, "", c); c = "raftkv " m ": " c
    } else if (line ~ /malloc|arena\.c/) { c = "libc malloc/free"
    } else if (line ~ /memmove|memcpy|memset|memcmp|strlen/) { c = "libc mem*"
    } else if (line ~ /\/rustc\/[0-9a-f]+\/library\//) {
      c = line; sub(/^.*\/library\//, "", c); sub(/\/.*$/, "", c); c = "rust " c
    } else if (line ~ /libc\.so|sysdeps|\.\/[a-z]+\//) { c = "libc other (syscalls, locks)"
    } else { c = "other" }
    sum[c] += v; total += v }
  END { for (c in sum) printf "%10.0f  %5.1f%%  %s\n", sum[c] / n, 100 * sum[c] / total, c }' | sort -rn | head -n "$TOP"
