#!/usr/bin/env bash
# Guide, "Is there always a leader" / "How is one elected": kill -9 the leader of three,
# watch the pre-vote, the vote requests and the new leader; bring the old leader back.
# Pictures: docs/guide/election.{svg,txt}, election-status.txt. See docs/raft-through-traces.md.
# shellcheck source=hack/guide/lib.sh
source "$(dirname "$0")/lib.sh"

say "a 3-voter cluster"
start_cluster 3
OLD=$LEADER
OLD_ID=$LEADER_ID
T=$(status_json | jq -r '.members[] | select(.role == "leader") | .term')
ctl put guide/before-election 1 >/dev/null
{ echo "# before: leader node-$OLD (term $T)"; ctl status; } >"$OUT/election-status.txt"

say "kill -9 the leader (node-$OLD)"
kill -KILL "${NODE_PID[OLD]}"
t0=$(date +%s%N)
SURVIVORS=$(for i in 0 1 2; do ((i == OLD)) || client_addr "$i"; done | paste -sd,)
export RAFTCTL_ENDPOINTS="$SURVIVORS"
wait_for_leader "$SURVIVORS" 10
ms=$((($(date +%s%N) - t0) / 1000000))
NEW=$LEADER
T2=$(status_json | jq -r '.members[] | select(.role == "leader") | .term')
echo "new leader node-$NEW (term $T2) after ${ms} ms"
{ echo; echo "# ${ms} ms after the kill: leader node-$NEW (term $T2)"; ctl status; } >>"$OUT/election-status.txt"
claim "a survivor is leader within 2 s of the kill, in a later term" \
  test "$ms" -lt 2000 -a "$NEW" -ne "$OLD" -a "$T2" -gt "$T"
claim "the cluster takes writes again" ctl put guide/after-election 1

say "the election trace (the winner's raft.election)"
sleep 1
ctl trace ls --service raft-node --operation raft.election --since 2m --limit 20 -o json >"$WORK/elections.json"
won=""
echo >>"$OUT/election-status.txt"
echo "# every campaign after the kill (raft.election traces, oldest first)" >>"$OUT/election-status.txt"
for id in $(jq -r '.traces | sort_by(.start_unix_us) | .[].trace_id' "$WORK/elections.json"); do
  ctl trace get "$id" --wait 5s --min-spans 2 -o json >"$WORK/e.json" || continue
  jq -r --argjson t0 "$((t0 / 1000))" '.spans[] | select(.name == "raft.election")
    | "term \(.attributes["raft.term"]): candidate \(.instance), outcome \([.events[] | .attributes["raft.election.outcome"] // empty] | first // "none"), \((.start_unix_us - $t0) / 1000 | floor) ms after the kill"' \
    "$WORK/e.json" | tee -a "$OUT/election-status.txt"
done
for id in $(jq -r '.traces[].trace_id' "$WORK/elections.json"); do
  ctl trace get "$id" --wait 10s --min-spans 3 -o json >"$WORK/e.json" || continue
  if jtrue "$WORK/e.json" "any(.spans[]; .name == \"raft.election\" and .instance == \"node-$NEW\" and .attributes[\"raft.term\"] == \"$T2\" and any(.events[]; .attributes[\"raft.election.outcome\"] == \"won\"))"; then
    won=$id
    break
  fi
done
claim "the winner's campaign for term $T2 is one trace ending 'won'" test -n "$won"
save_trace "$won" election 4
cat "$OUT/election.txt"
E="$WORK/election.json"
claim "the candidate asks every other voter: one Vote request each (the dead one's fails)" \
  jtrue "$E" "[.spans[] | select(.name == \"raftkv.v1.RaftPeer/Vote\" and .kind == \"client\")] | length == 2 and (map(.attributes[\"rpc.response.status_code\"]) | sort == [\"OK\", \"UNAVAILABLE\"])"
claim "the live voter handles the request (a Vote server span on it)" \
  jtrue "$E" "[.spans[] | select(.name == \"raftkv.v1.RaftPeer/Vote\" and .kind == \"server\") | .instance] | length == 1 and .[0] != \"node-$NEW\""

say "what the logs and metrics say"
logs 'pre-vote won|campaign|leader' | tail -8 | tee "$WORK/election-logs.txt"
claim "the winner ran a pre-vote before campaigning (its log: 'pre-vote won, campaigning')" \
  grep -q 'pre-vote won, campaigning' "$WORK/cluster/node-$NEW.log"
for i in 0 1 2; do
  ((i == OLD)) && continue
  echo "node-$i: raftkv_raft_term=$(metric "$i" raftkv_raft_term) leader_changes_total=$(metric "$i" raftkv_raft_leader_changes_total)"
done | tee -a "$OUT/election-status.txt"
claim "each survivor counted the change of leader (raftkv_raft_leader_changes_total >= 2)" \
  test "$(metric "$NEW" raftkv_raft_leader_changes_total)" -ge 2

say "the old leader comes back (same disk, same ID)"
start_node "$OLD"
export RAFTCTL_ENDPOINTS="$ENDPOINTS"
sleep 2
wait_for_leader "$RAFTCTL_ENDPOINTS"
T3=$(status_json | jq -r '.members[] | select(.role == "leader") | .term')
{ echo; echo "# node-$OLD restarted: leader node-$LEADER (term $T3)"; ctl status; } >>"$OUT/election-status.txt"
cat "$OUT/election-status.txt"
claim "the returning node rejoins as a follower without disturbing the leader (same leader, same term)" \
  test "$LEADER" -eq "$NEW" -a "$T3" -eq "$T2" -a "$(node_id "$OLD")" == "$OLD_ID"
claim "it has the write made while it was dead (stale read on it)" \
  ctl --endpoints "$(client_addr "$OLD")" get guide/after-election --consistency stale --min-revision 0
