#!/usr/bin/env bash
# Guide, "Sampling": what the default sampler keeps under load (a rate limit of new
# traces per process), and that `raftctl --trace` still gets a whole trace once the
# nodes' budgets are spent. Pictures: docs/guide/sampling.txt. See docs/raft-through-traces.md.
# shellcheck source=hack/guide/lib.sh
source "$(dirname "$0")/lib.sh"
if short; then D=2s; else D=5s; fi

say "a 3-voter cluster, default sampling (ratio 1, at most 20 new traces per minute per process)"
start_cluster 3
ctl bench put --clients 8 --duration "$D" --keys 500 --key-prefix bench/ -o json >"$WORK/bench.json"
OPS=$(jq -r '.ops' "$WORK/bench.json")
sleep 2
# Every bench request starts its own trace on the node that receives it.
ctl trace ls --service raft-node --operation raftkv.v1.KV/Put --since 1m --limit 1000 -o json >"$WORK/puts.json"
KEPT=$(jq '[.traces[] | select(.root.name == "raftkv.v1.KV/Put")] | length' "$WORK/puts.json")
traced put guide/forced 1
id=$TRACE_ID
save_trace "$id" sampling-forced 12
{
  echo "bench: $OPS writes in $D, each a candidate root on the node it reached"
  echo "kept: $KEPT traces rooted in raftkv.v1.KV/Put (at most 20 a minute per node that receives writes)"
  echo "then raftctl --trace put: $(jq -r '.span_count' "$WORK/sampling-forced.json") spans, complete: $(jq -r '.spans_with_missing_parent == 0 and .client_spans_without_server == 0' "$WORK/sampling-forced.json")"
} | tee "$OUT/sampling.txt"
rm -f "$OUT/sampling-forced.svg" "$OUT/sampling-forced.txt"
claim "under load the nodes keep at most their budget: 1..60 traces of $OPS writes" \
  test "$KEPT" -ge 1 -a "$KEPT" -le 60 -a "$OPS" -gt "$KEPT"
claim "a write forced with --trace is kept whole although the budgets are spent" \
  jtrue "$WORK/sampling-forced.json" '.spans_with_missing_parent == 0 and .client_spans_without_server == 0 and ([.spans[] | select(.name == "raft.apply")] | length == 3)'
