#!/usr/bin/env bash
# Bounded fault-suite run for CI (issue 11): builds raft-node and raftkv-faults,
# then runs every nemesis once, seeded, and prints a summary table. Needs root
# (network namespaces); about 4-5 minutes on 2 cores after the build.
#
#   hack/faults.sh                        every nemesis in FAULTS_NEMESES, 3 voters
#   FAULTS_N5=0 hack/faults.sh            without the 5-voter partition run (leader-minority,
#                                         bridge, ring), which runs by default
#   FAULTS_SEED=7 hack/faults.sh          another seed (default 1)
#   FAULTS_DURATION=30s hack/faults.sh    workload time per run (default 15s)
#   FAULTS_NEMESES="kill pause" ...       a subset (names: kill pause partition peer-faults
#                                         fsync wipe membership abandon-membership disk-full mixed none)
#   FAULTS_OUT=dir ...                    where failing runs are kept (default target/faults-out)
#   FAULTS_SKIP_BUILD=1 ...               use the binaries already built
#   FAULTS_KEEP=1 ...                     keep the folders of clean runs too
#
# Exit code: 0 if every run is clean, 1 if any run found anomalies, 2 on harness errors.
# A failing run keeps history.jsonl, checker.txt, nemesis.log and node logs in its folder
# under FAULTS_OUT; its path is printed.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "hack/faults.sh needs root (network namespaces, veth pairs, iptables); run it with sudo -E" >&2
    exit 2
fi

TARGET=${CARGO_TARGET_DIR:-target}
SEED=${FAULTS_SEED:-1}
DURATION=${FAULTS_DURATION:-15s}
OUT=${FAULTS_OUT:-$TARGET/faults-out}
# Every nemesis runs by default. If a nemesis hits a known, documented hole of the
# server (faults/README.md "Known findings"), it may be dropped here until the fix lands;
# the README must then say so.
# Nothing is left out today (abandon-membership, hole 1 of issue 11, runs since its fix).
# slow-link and fsync-stall are steady runs (any leader change is an anomaly) at the
# default Raft timings since hole 7 of issue 11 was fixed (300 ms links and fsyncs slow
# the cluster down, they no longer need a 1 s heartbeat).
NEMESES=${FAULTS_NEMESES:-"kill pause partition peer-faults fsync wipe membership abandon-membership disk-full mixed slow-link fsync-stall"}

if [ -z "${FAULTS_SKIP_BUILD:-}" ]; then
    cargo build -p raftkv-node --bin raft-node
    cargo build -p raftkv-faults --bin raftkv-faults
fi
SUITE="$TARGET/debug/raftkv-faults"
export RAFTKV_NODE_BIN="$TARGET/debug/raft-node"

mkdir -p "$OUT"
rm -f "$OUT/summary.jsonl"
worst=0
run() {
    local rc=0
    "$SUITE" run --seed "$SEED" --duration "$DURATION" --out "$OUT" ${FAULTS_KEEP:+--keep} "$@" || rc=$?
    if [ "$rc" = 1 ]; then
        worst=1
    elif [ "$rc" != 0 ] && [ "$worst" = 0 ]; then
        worst=2
    fi
}
for n in $NEMESES; do
    run --nemesis "$n" --nodes 3
done
# Partitions with 5 voters (leader-minority, bridge, ring): the shapes where a
# deposed leader keeps a follower on its side (hole 3 of issue 11, fixed by the
# quorum lease in node/src/raft/lease.rs). FAULTS_N5=0 leaves them out.
case " $NEMESES " in
    *" partition "*)
        if [ "${FAULTS_N5:-1}" != 0 ]; then
            run --nemesis partition --nodes 5
        else
            skipped="partition with 5 voters (FAULTS_N5=0)"
        fi
        ;;
esac

echo
echo "== fault suite summary (seed $SEED, $DURATION per run) =="
"$SUITE" table "$OUT/summary.jsonl"
if [ -n "${skipped:-}" ]; then
    echo "NOT RUN: ${skipped}"
fi
exit "$worst"
