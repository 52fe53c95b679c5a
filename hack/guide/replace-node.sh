#!/usr/bin/env bash
# Guide, "What happens when a server is replaced": a follower's disk is wiped; the node
# comes back empty under a new ID, joins as a learner, catches up, is promoted (joint
# consensus) and the old ID is removed. With `raft-node local` and `raftctl member`:
# the steps the operator takes on Kubernetes for a pod back with an empty volume.
# Pictures: docs/guide/replace-{add-learner,promote,remove}.{svg,txt}, replace-status.txt.
# See docs/raft-through-traces.md.
# shellcheck source=hack/guide/lib.sh
source "$(dirname "$0")/lib.sh"

say "a 3-voter cluster with some data"
start_cluster 3
ctl bench put --clients 8 --duration 1s --keys 200 --key-prefix bench/ >/dev/null
ctl put guide/replace before >/dev/null
F=$(first_follower)
OLD_ID=$(node_id "$F")
FEP=$(client_addr "$F")
ST="$OUT/replace-status.txt"
{ echo "# before: node-$F is voter $OLD_ID"; ctl status; } >"$ST"

say "node-$F loses its disk: kill -9, wipe, start empty"
kill -KILL "${NODE_PID[F]}"
rm -rf "$WORK/cluster/node-$F"
start_node "$F"
NEW_ID=$(ctl --endpoints "$FEP" status -o json | jq -r --arg a "$FEP" '.members[] | select(.client_addr == $a) | .id')
echo "node-$F is back empty as node ID $NEW_ID (was $OLD_ID)"
{ echo; echo "# node-$F back with an empty disk: new ID $NEW_ID, not a member; $OLD_ID unreachable"; ctl status; } >>"$ST" 2>&1
claim "an empty disk means a new node ID" test -n "$NEW_ID" -a "$NEW_ID" != "$OLD_ID" -a "$NEW_ID" != null
claim "the cluster still takes writes with 2 of 3 voters" ctl put guide/replace during

say "add it as a learner, wait until caught up"
traced member add-learner "$FEP"
id_learner=$TRACE_ID
[[ $LAST_RC == 0 ]] || die "add-learner: $(cat "$WORK/last.err")"
for ((k = 0; k < 200; k++)); do
  lag=$(status_json | jq -r --argjson n "$NEW_ID" '.members[] | select(.id == $n) | .lag // 99')
  [[ $lag == 0 ]] && break
  sleep 0.1
done
claim "the learner catches up (lag 0)" test "$lag" == 0

say "promote it (joint consensus), then remove the old ID"
traced member promote "$NEW_ID"
id_promote=$TRACE_ID
[[ $LAST_RC == 0 ]] || die "promote: $(cat "$WORK/last.err")"
{ echo; echo "# promoted: 4 voters, one of them ($OLD_ID) unreachable; quorum 3"; ctl status; } >>"$ST" 2>&1
traced member remove "$OLD_ID"
id_remove=$TRACE_ID
[[ $LAST_RC == 0 ]] || die "remove: $(cat "$WORK/last.err")"
{ echo; echo "# $OLD_ID removed"; ctl status; } >>"$ST" 2>&1
cat "$ST"
claim "three voters again: the new ID in, the old ID out" \
  jtrue <(status_json) "(.membership.voters | sort) as \$v | (\$v | length) == 3 and (\$v | index($NEW_ID)) != null and (\$v | index($OLD_ID)) == null and .membership.joint == false"
claim "the new member has every write, including those made while it was gone" \
  test "$(ctl --endpoints "$FEP" get guide/replace --consistency stale)" == during

save_trace "$id_learner" replace-add-learner 3
# A membership change's trace has ~20 spans over three nodes; waiting for only 3
# could stop at raftctl's Status calls, before the leader's spans arrive (CI did).
save_trace "$id_promote" replace-promote 8
save_trace "$id_remove" replace-remove 8
cat "$OUT/replace-promote.txt"
for t in promote remove; do
  claim "the $t is one trace: a raft.membership span on the leader, committed" \
    jtrue "$WORK/replace-$t.json" 'any(.spans[]; .name == "raft.membership" and any(.events[]; .name == "raft.committed"))'
done
claim "the promotion's entries reach the new member (its AppendEntries in the trace)" \
  jtrue "$WORK/replace-promote.json" "any(.spans[]; .name == \"raftkv.v1.RaftPeer/AppendEntries\" and .kind == \"server\" and .instance == \"node-$F\")"
claim "the leader still sends to the old ID's address, and the new node refuses those messages" \
  jtrue "$WORK/replace-promote.json" "any(.spans[]; .instance == \"node-$F\" and any(.events[]; .name | startswith(\"refused peer message: message for node $OLD_ID reached node $NEW_ID\")))"
