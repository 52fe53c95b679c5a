#!/usr/bin/env bash
# Guide, "What limits consensus at scale, and how do reads scale": two learners (read
# replicas) join three voters; reads at each level, against the voters and against
# the learners. Pictures: docs/guide/learner-read.{svg,txt}, read-scaling.txt.
# See docs/raft-through-traces.md.
# shellcheck source=hack/guide/lib.sh
source "$(dirname "$0")/lib.sh"
if short; then D=1s; else D=5s; fi

say "3 voters, then 2 learners (node-3, node-4 started by hand and added)"
start_cluster 3
ctl bench put --clients 8 --duration 1s --keys 200 --key-prefix bench/ >/dev/null
for i in 3 4; do
  start_node "$i"
  ctl member add-learner "$(client_addr "$i")" >/dev/null
done
for ((k = 0; k < 100; k++)); do
  lagging=$(status_json | jq '[.members[] | select(.voter == false and (.lag // 99) > 0)] | length')
  [[ $lagging == 0 ]] && break
  sleep 0.1
done
S="$OUT/read-scaling.txt"
{ echo "# 3 voters + 2 learners"; ctl status; } >"$S"
claim "the learners join without changing the quorum (3 voters, 2 learners)" \
  jtrue <(status_json) '(.membership.voters | length) == 3 and (.membership.learners | length) == 2'
claim "the learners are caught up (lag 0 as the leader sees it)" test "$lagging" == 0

say "a linearizable read served by a learner"
L3=$(client_addr 3)
ctl put guide/read hello >/dev/null
traced --endpoints "$L3" get guide/read
id=$TRACE_ID
claim "the learner serves a linearizable read" test "$LAST_RC" == 0 -a "$(cat "$WORK/last.out")" == hello
save_trace "$id" learner-read 2
cat "$OUT/learner-read.txt"
# The leader's confirmation is a ReadIndex RPC from the node's read batcher, a task of
# its own shared by concurrent reads: not a child of this read's span, and never a root.
claim "its trace is the learner's KV/Get alone: no log entry, and the leader's confirmation (ReadIndex, batched) is not in it" \
  jtrue "$WORK/learner-read.json" '.span_count == 2 and all(.spans[]; .name != "raft.propose" and .name != "raftkv.v1.RaftPeer/ReadIndex")'
N3=$(node_id 3)
claim "a stale read on a learner is answered by the learner itself" \
  jtrue <(ctl --endpoints "$L3" get guide/read --consistency stale -o json) ".header.node_id == $N3"

say "reads: voters only vs. learners only ($D each, 16 clients)"
VOTERS=$(for i in 0 1 2; do client_addr "$i"; done | paste -sd,)
LEARNERS=$(for i in 3 4; do client_addr "$i"; done | paste -sd,)
last_log() { status_json | jq -r '.members[] | select(.role == "leader") | .last_log_index'; }
# The keys the reads read, written once up front: the read runs below skip their
# own preload, so any entry the leader's log gains during them was made by a read.
ctl bench get --consistency stale --clients 1 --duration 1s --keys 200 --key-prefix bench/ >/dev/null
# Status reports the index from the leader's metrics: take it once it holds still.
LLI0=$(last_log)
for ((k = 0; k < 25; k++)); do
  sleep 0.2
  [[ $(last_log) == "$LLI0" ]] && break
  LLI0=$(last_log)
done
{
  echo
  printf '%-14s %-10s %10s %8s %8s\n' LEVEL ENDPOINTS OPS/S P99_MS ERRORS
  for level in linearizable bounded stale; do
    for eps in voters learners; do
      if [[ $eps == voters ]]; then e=$VOTERS; else e=$LEARNERS; fi
      ctl --endpoints "$e" bench get --consistency "$level" --clients 16 --duration "$D" --keys 200 \
        --key-prefix bench/ --skip-preload -o json >"$WORK/bench-$level-$eps.json" 2>/dev/null
      jq -r --arg l "$level" --arg e "$eps" '[$l, $e, (.throughput_ops_per_s | floor), .latency_ms.p99, .errors] | @tsv' \
        "$WORK/bench-$level-$eps.json" | awk '{printf "%-14s %-10s %10s %8s %8s\n", $1, $2, $3, $4, $5}'
    done
  done
} | tee -a "$S"
for level in linearizable bounded stale; do
  claim "learners alone serve $level reads without errors" \
    jtrue "$WORK/bench-$level-learners.json" '.errors == 0 and .ops > 0'
done
LLI1=$(last_log)
echo "leader's last log index before the read runs: $LLI0, after: $LLI1" | tee -a "$S"
claim "reads add no log entries (the leader's log did not grow during 6 read runs)" \
  test "$((LLI1 - LLI0))" == 0
