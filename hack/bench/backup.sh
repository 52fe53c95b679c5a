#!/usr/bin/env bash
# Times a backup and a restore of a large data set (docs/performance.md, "Backup and
# restore"): one raft-node on loopback, preloaded with KEYS values of VALUE_SIZE bytes
# by `raftctl bench get` (its preload), then
#   save     `raftctl snapshot save` (stream, write, fsync, read back and verify, rename)
#   inspect  `raftctl snapshot inspect` (read and verify every checksum)
#   restore  `raft-node --restore` on an empty data directory, until it leads and serves
#            a linearizable read of the backup's revision
# Prints one line per figure and asserts nothing about speed.
#
#   hack/bench/backup.sh                                    # 1 GiB: 262,144 keys of 4 KiB
#   KEYS=16384 VALUE_SIZE=4096 SKIP_BUILD=1 hack/bench/backup.sh   # 64 MiB, quick look
#   KEEP=1 hack/bench/backup.sh                             # keep the temp dir (logs, file)
#
# Knobs: KEYS (262144), VALUE_SIZE (4096), CLIENTS (64, for the preload), PORT_BASE (28200),
# SKIP_BUILD (builds release raft-node and raftctl unless 1), BIN_DIR (where they are).
set -euo pipefail

ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
KEYS=${KEYS:-262144}
VALUE_SIZE=${VALUE_SIZE:-4096}
CLIENTS=${CLIENTS:-64}
PORT_BASE=${PORT_BASE:-28200}
TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/raftkv/target}
BIN_DIR=${BIN_DIR:-$TARGET_DIR/release}

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  (cd "$ROOT_DIR" && cargo build --release --bin raft-node --bin raftctl >&2)
fi
RAFT_NODE=$BIN_DIR/raft-node
RAFTCTL=$BIN_DIR/raftctl

WORK=$(mktemp --directory)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ ${KEEP:-0} == 1 ]]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

now() { date +%s.%N; }
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
rss_mib() { awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }

start_node() { # start_node NAME CLIENT_PORT [--restore FILE]
  local name=$1 port=$2
  shift 2
  "$RAFT_NODE" --data-dir "$WORK/$name" --name "$name" \
    --client-addr "127.0.0.1:$port" --peer-addr "127.0.0.1:$((port + 1))" \
    --log-format text "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=("$!")
}

wait_leader() { # wait_leader ENDPOINT
  for _ in $(seq 1 6000); do
    if "$RAFTCTL" --endpoints "$1" status --output json 2>/dev/null | grep --quiet '"role": "leader"'; then
      return 0
    fi
    sleep 0.1
  done
  echo "no leader at $1" >&2
  return 1
}

SRC=127.0.0.1:$PORT_BASE
start_node source "$PORT_BASE"
for _ in $(seq 1 100); do "$RAFTCTL" --endpoints "$SRC" status >/dev/null 2>&1 && break; sleep 0.1; done
"$RAFTCTL" --endpoints "$SRC" cluster init >&2
echo "preloading $KEYS keys of $VALUE_SIZE bytes with $CLIENTS clients" >&2
t0=$(now)
"$RAFTCTL" --endpoints "$SRC" --timeout 30s bench get --clients "$CLIENTS" --keys "$KEYS" \
  --value-size "$VALUE_SIZE" --duration 1s >/dev/null
t1=$(now)
echo "preload      $(seconds "$t0" "$t1") s"

FILE=$WORK/backup.rkv
t0=$(now)
"$RAFTCTL" --endpoints "$SRC" --timeout 60s snapshot save "$FILE" >&2
t1=$(now)
echo "save         $(seconds "$t0" "$t1") s, $(stat --format %s "$FILE") bytes; source node peak RSS $(rss_mib "${PIDS[0]}") MiB"

t0=$(now)
"$RAFTCTL" snapshot inspect "$FILE" >/dev/null
t1=$(now)
echo "inspect      $(seconds "$t0" "$t1") s"

kill "${PIDS[0]}"
wait "${PIDS[0]}" 2>/dev/null || true
DST=127.0.0.1:$((PORT_BASE + 10))
t0=$(now)
start_node restored $((PORT_BASE + 10)) --restore "$FILE"
wait_leader "$DST"
"$RAFTCTL" --endpoints "$DST" get bench/0000000000 >/dev/null
t1=$(now)
echo "restore      $(seconds "$t0" "$t1") s to a leader serving linearizable reads; peak RSS $(rss_mib "${PIDS[1]}") MiB; data dir $(du --summarize --block-size=1M "$WORK/restored" | cut --fields=1) MiB"
