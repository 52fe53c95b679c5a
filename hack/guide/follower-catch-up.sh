#!/usr/bin/env bash
# Guide, "What happens when a replica falls behind": SIGSTOP a follower, keep writing,
# SIGCONT it and time its catch-up. Pictures: docs/guide/follower-paused.{svg,txt},
# follower-catch-up-status.txt. See docs/raft-through-traces.md.
# shellcheck source=hack/guide/lib.sh
source "$(dirname "$0")/lib.sh"
WRITES=2000

say "a 3-voter cluster"
start_cluster 3
P=$(first_follower)
echo "leader node-$LEADER; pausing follower node-$P"

say "SIGSTOP node-$P, then writes for a few seconds"
kill -STOP "${NODE_PID[P]}"
traced --endpoints "$(client_addr "$LEADER")" put guide/while-paused 1
id=$TRACE_ID
[[ $LAST_RC == 0 ]] || die "a write with one follower paused failed: $(cat "$WORK/last.err")"
if short; then D=2s; else D=5s; fi
ctl --endpoints "$(client_addr "$LEADER")" bench put --clients 8 --duration "$D" --keys "$WRITES" \
  --key-prefix guide/lag/ -o json >"$WORK/bench.json"
echo "bench: $(jq -c '{ops, errors, ops_per_s: .throughput_ops_per_s}' "$WORK/bench.json" 2>/dev/null || cat "$WORK/bench.json")"
ctl --endpoints "$(client_addr "$LEADER")" put guide/last-while-paused 1 >/dev/null
CI_LEADER=$(metric "$LEADER" raftkv_raft_commit_index)
{ echo "# node-$P paused (SIGSTOP), after a few seconds of writes"; ctl status; } >"$OUT/follower-catch-up-status.txt" 2>&1
LAG=$(status_json | jq -r --arg a "$(client_addr "$P")" '.members[] | select(.client_addr == $a) | .lag')
echo "leader commit index $CI_LEADER, node-$P lag $LAG"
claim "writes go on with one follower of three paused (a majority is two)" test "$CI_LEADER" -gt 10
claim "raftctl status shows the paused follower's lag as the leader sees it" test "$LAG" -gt 10
claim "the paused follower's metrics endpoint does not answer (a scrape sees it down, not behind)" \
  test -z "$(metric "$P" raftkv_raft_commit_index)"

save_trace "$id" follower-paused 4
cat "$OUT/follower-paused.txt"
T="$WORK/follower-paused.json"
claim "the write committed with the other follower's append alone" \
  jtrue "$T" "[.spans[] | select(.name == \"raft.log.append\") | .instance] | (length >= 1) and (index(\"node-$P\") == null)"

say "SIGCONT node-$P: catching up"
t0=$(date +%s%N)
kill -CONT "${NODE_PID[P]}"
caught=""
for ((k = 0; k < 300; k++)); do
  a=$(metric "$P" raftkv_raft_applied_index || true)
  if [[ -n $a && $a -ge $CI_LEADER ]]; then caught=$((($(date +%s%N) - t0) / 1000000)); break; fi
  sleep 0.05
done
{ echo; echo "# ${caught:-?} ms after SIGCONT"; ctl status; } >>"$OUT/follower-catch-up-status.txt" 2>&1
cat "$OUT/follower-catch-up-status.txt"
echo "node-$P applied index $CI_LEADER after ${caught:-never} ms"
claim "the follower catches up within 10 s of SIGCONT (applied index reaches the leader's commit index)" \
  test -n "$caught"
claim "and serves the last write made while it was stopped" \
  ctl --endpoints "$(client_addr "$P")" get guide/last-while-paused --consistency stale
