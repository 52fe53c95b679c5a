#!/usr/bin/env bash
# Guide, "What does the leader do": one write sent to a follower, followed as a trace
# (client -> follower -> leader -> followers -> fsync -> commit -> apply).
# Pictures: docs/guide/write-path.{svg,txt}, write-path-status.txt. See docs/raft-through-traces.md.
# shellcheck source=hack/guide/lib.sh
source "$(dirname "$0")/lib.sh"

say "a 3-voter cluster"
start_cluster 3
F=$(first_follower)
echo "leader node-$LEADER, writing through follower node-$F"

say "a traced write sent to a follower"
traced --endpoints "$(client_addr "$F")" put guide/greeting hello
id=$TRACE_ID
[[ $LAST_RC == 0 && -n $id ]] || die "put failed: $(cat "$WORK/last.err")"
save_trace "$id" write-path 14
save_status write-path-status
cat "$OUT/write-path.txt"
T="$WORK/write-path.json"
L="node-$LEADER"
FN="node-$F"

claim "the write is one trace of 14 spans over raftctl and the three nodes" \
  jtrue "$T" '.span_count == 14 and (.processes | length) == 4'
claim "the follower forwards the Put to the leader (KV/Put on the follower, then on the leader)" \
  jtrue "$T" "[.spans[] | select(.name == \"raftkv.v1.KV/Put\" and .kind == \"server\") | .instance] | sort == ([\"$FN\", \"$L\"] | sort)"
claim "only the leader proposes (raft.propose on $L, with a raft.committed event)" \
  jtrue "$T" "[.spans[] | select(.name == \"raft.propose\")] | length == 1 and .[0].instance == \"$L\" and (.[0].events | map(.name) | index(\"raft.committed\") != null)"
claim "the leader sends one AppendEntries per follower, each answered OK" \
  jtrue "$T" "[.spans[] | select(.name == \"raftkv.v1.RaftPeer/AppendEntries\" and .kind == \"client\" and .attributes[\"rpc.response.status_code\"] == \"OK\") | .instance] | (length == 2 and all(. == \"$L\"))"
claim "each follower writes and fsyncs the entry (raft.log.append)" \
  jtrue "$T" '[.spans[] | select(.name == "raft.log.append") | .instance] | length == 2'
# The first follower append to end, and the leader's apply.
FIRST_APPEND='[.spans[] | select(.name == "raft.log.append") | .offset_us + .duration_us] | min'
LEADER_APPLY="[.spans[] | select(.name == \"raft.apply\" and .instance == \"$L\") | .offset_us][0]"
claim "the leader applies once one follower has the entry on disk (with itself, a majority of three)" \
  jtrue "$T" "($FIRST_APPEND) <= ($LEADER_APPLY)"
claim "every node applies the entry" \
  jtrue "$T" '[.spans[] | select(.name == "raft.apply") | .instance] | sort == ["node-0", "node-1", "node-2"]'
echo "first follower fsync done at $(jq "$FIRST_APPEND" "$T") µs, leader applies at $(jq "$LEADER_APPLY" "$T") µs," \
  "slowest follower fsync done at $(jq '[.spans[] | select(.name == "raft.log.append") | .offset_us + .duration_us] | max' "$T") µs," \
  "client answered at $(jq '.spans[0].duration_us' "$T") µs" | tee -a "$OUT/write-path-status.txt"

say "metrics: one proposal on the leader, fsyncs everywhere"
for i in 0 1 2; do
  echo "node-$i: proposals_total{ok}=$(metric "$i" raftkv_raft_proposals_total 'result="ok"') fsyncs_total=$(metric "$i" raftkv_storage_fsyncs_total) commit_index=$(metric "$i" raftkv_raft_commit_index)"
done | tee -a "$OUT/write-path-status.txt"
claim "the leader counts the proposal (raftkv_raft_proposals_total{result=\"ok\"})" \
  test "$(metric "$LEADER" raftkv_raft_proposals_total 'result="ok"')" -ge 1
