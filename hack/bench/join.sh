#!/usr/bin/env bash
# Times a new member joining a cluster that holds a large data set (docs/performance.md,
# "Scale"; issue #13: promoted in under 60 s with 1 GiB): one raft-node on loopback,
# preloaded with KEYS values of VALUE_SIZE bytes by `raftctl bench get` (its preload, as in
# hack/bench/backup.sh), then JOINS times: start an empty raft-node, `raftctl member
# add-learner` it, and retry `raftctl member promote` every 0.5 s until the leader accepts
# (it refuses a learner that is not caught up). The figure is the time from add-learner to
# the accepted promotion; resolution 0.5 s plus one promote call. Each joiner stays a voter,
# so the second one is sent the data by a leader with one more follower. Prints figures and
# asserts nothing about speed.
#
#   hack/bench/join.sh                                       # 1 GiB: 262,144 keys of 4 KiB, 2 joins
#   KEYS=16384 SKIP_BUILD=1 hack/bench/join.sh               # 64 MiB, quick look
#
# Knobs: KEYS (262144), VALUE_SIZE (4096), CLIENTS (64, for the preload), JOINS (2),
# PORT_BASE (28600), SKIP_BUILD (builds release raft-node and raftctl unless 1), KEEP=1,
# CARGO_TARGET_DIR (default ~/.cache/raftkv/target).
set -euo pipefail

ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
KEYS=${KEYS:-262144}
VALUE_SIZE=${VALUE_SIZE:-4096}
CLIENTS=${CLIENTS:-64}
JOINS=${JOINS:-2}
PORT_BASE=${PORT_BASE:-28600}
# A join that is not promoted within this long is reported as failed.
PROMOTE_GIVE_UP_S=300
TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/raftkv/target}

die() {
  echo "join.sh: $*" >&2
  exit 1
}
for tool in jq awk; do
  command -v "$tool" >/dev/null || die "${tool} is required (apt-get install ${tool})"
done
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  command -v cargo >/dev/null || die "cargo is not installed (https://rustup.rs)"
  (cd "$ROOT_DIR" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release -p raftkv-node -p raftctl >&2)
fi
RAFT_NODE=$TARGET_DIR/release/raft-node
RAFTCTL=$TARGET_DIR/release/raftctl
[[ -x $RAFT_NODE && -x $RAFTCTL ]] || die "missing ${RAFT_NODE} or ${RAFTCTL} (run without SKIP_BUILD=1)"

WORK=$(mktemp -d /tmp/raftkv-join.XXXXXX)
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ ${KEEP:-0} == 1 ]]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

now() { date +%s.%N; }
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
rss_mib() { awk -v f="$2" '$1 == f ":" { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }

start_node() { # start_node NAME CLIENT_PORT
  NO_COLOR=1 "$RAFT_NODE" --data-dir "$WORK/$1" --name "$1" \
    --client-addr "127.0.0.1:$2" --peer-addr "127.0.0.1:$(($2 + 1))" \
    --log-format text </dev/null >"$WORK/$1.log" 2>&1 &
  PIDS+=("$!")
}

answers() { "$RAFTCTL" --endpoints "$1" --timeout 1s status >/dev/null 2>&1; }

wait_answers() {
  local _
  for _ in $(seq 1 100); do answers "$1" && return 0; sleep 0.1; done
  die "no answer from $1 (logs: KEEP=1)"
}

ENDPOINTS=127.0.0.1:$PORT_BASE
start_node source "$PORT_BASE"
wait_answers "$ENDPOINTS"
"$RAFTCTL" --endpoints "$ENDPOINTS" cluster init --wait 30s >&2
echo "preloading $KEYS keys of $VALUE_SIZE bytes with $CLIENTS clients" >&2
t0=$(now)
"$RAFTCTL" --endpoints "$ENDPOINTS" --timeout 30s bench get --clients "$CLIENTS" --keys "$KEYS" \
  --value-size "$VALUE_SIZE" --duration 1s >/dev/null
t1=$(now)
echo "preload              $(seconds "$t0" "$t1") s ($(du -sm "$WORK/source" | cut -f1) MiB on disk, leader resident $(rss_mib "${PIDS[0]}" VmRSS) MiB)"

for ((j = 1; j <= JOINS; j++)); do
  name=joiner-$j
  port=$((PORT_BASE + 2 * j))
  start_node "$name" "$port"
  wait_answers "127.0.0.1:$port"
  t0=$(now)
  "$RAFTCTL" --endpoints "$ENDPOINTS" member add-learner "127.0.0.1:$port" >"$WORK/$name-add.log" 2>&1 ||
    die "add-learner failed: $(cat "$WORK/$name-add.log")"
  attempts=1
  until "$RAFTCTL" --endpoints "$ENDPOINTS" member promote "$name" >"$WORK/$name-promote.log" 2>&1; do
    (($(awk -v a="$t0" -v b="$(now)" 'BEGIN { print (b - a > '"$PROMOTE_GIVE_UP_S"') }'))) &&
      die "${name} not promoted within ${PROMOTE_GIVE_UP_S} s: $(tail -1 "$WORK/$name-promote.log")"
    attempts=$((attempts + 1))
    sleep 0.5
  done
  t1=$(now)
  echo "join $j: add-learner to promoted $(seconds "$t0" "$t1") s ($attempts promote calls; joiner resident $(rss_mib "${PIDS[-1]}" VmRSS) MiB, peak $(rss_mib "${PIDS[-1]}" VmHWM) MiB)"
  ENDPOINTS+=",127.0.0.1:$port"
done
