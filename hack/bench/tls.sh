#!/usr/bin/env bash
# Write throughput with and without TLS (docs/security.md): `raft-node local`
# (3 nodes on loopback) loaded by `raftctl bench put`, rounds alternating
# plaintext and --tls so a change in foreign load hits both. Prints one line
# per round and the medians; asserts nothing about speed. The same cost measured
# next to etcd with TLS, with CPU per write: hack/bench/vs-etcd.sh --tls.
#
#   hack/bench/tls.sh                    # release build, 3 rounds of 10 s each way
#   ROUNDS=1 BENCH_SECONDS=5 SKIP_BUILD=1 hack/bench/tls.sh
#
# Knobs: ROUNDS (3), BENCH_SECONDS (10), CLIENTS (64), BASE_PORT (27300),
# BIN_DIR (default $CARGO_TARGET_DIR/release, else target/release).
set -euo pipefail

ROUNDS=${ROUNDS:-3}
BENCH_SECONDS=${BENCH_SECONDS:-10}
CLIENTS=${CLIENTS:-64}
BASE_PORT=${BASE_PORT:-27300}
cd "$(dirname "$0")/../.."
if [[ -z "${SKIP_BUILD:-}" ]]; then
  cargo build --release --bin raft-node --bin raftctl >&2
fi
BIN_DIR=${BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}
WORK=$(mktemp -d)
trap 'kill "${LOCAL_PID:-0}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

# One round: a fresh cluster, a bench, a stop. Prints "mode ops/s p50 p99 errors".
round() {
  local mode=$1 flags=() out="$WORK/local-$1.out"
  [[ $mode == tls ]] && flags=(--tls)
  "$BIN_DIR/raft-node" local --fresh --nodes 3 --base-port "$BASE_PORT" \
    --data-dir "$WORK/$mode" "${flags[@]}" >"$out" 2>&1 &
  LOCAL_PID=$!
  for _ in $(seq 1 300); do
    grep -q '^export RAFTCTL_ENDPOINTS=' "$out" && grep -q 'Press Ctrl-C' "$out" && break
    sleep 0.1
  done
  # The printed exports point raftctl at the cluster (TLS flags included).
  local env
  env=$(grep '^export RAFTCTL_' "$out" | sed 's/^export //')
  local json
  json=$(env $env "$BIN_DIR/raftctl" bench put --clients "$CLIENTS" \
    --duration "${BENCH_SECONDS}s" -o json 2>/dev/null)
  kill -TERM "$LOCAL_PID"
  wait "$LOCAL_PID" || true
  echo "$mode $(jq -r '[(.throughput_ops_per_s | floor), .latency_ms.p50, .latency_ms.p99, .errors] | map(tostring) | join(" ")' <<<"$json")"
}

for r in $(seq 1 "$ROUNDS"); do
  round plain
  round tls
done | tee "$WORK/rounds"
echo "medians (mode writes/s p50_ms p99_ms):"
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
for mode in plain tls; do
  echo "$mode $(grep "^$mode " "$WORK/rounds" | cut -d' ' -f2 | median)" \
    "$(grep "^$mode " "$WORK/rounds" | cut -d' ' -f3 | median)" \
    "$(grep "^$mode " "$WORK/rounds" | cut -d' ' -f4 | median)"
done
