#!/usr/bin/env bash
# Guide, "When is a Raft cluster available": one node cut off from the other two.
# `raft-node local` has no network partitions, so the majority is frozen with SIGSTOP:
# to the lone node that is what a partition looks like (no answer from anyone).
# Pictures: docs/guide/minority-write.{svg,txt}, minority-reads.txt. See docs/raft-through-traces.md.
# shellcheck source=hack/guide/lib.sh
source "$(dirname "$0")/lib.sh"
BOUND=3s
BOUND_S=3

say "a 3-voter cluster"
start_cluster 3
M=$(first_follower)
MAJ=$(for i in 0 1 2; do ((i == M)) || echo "$i"; done)
OLD_LEADER=$LEADER
T=$(status_json | jq -r '.members[] | select(.role == "leader") | .term')
ctl put guide/minority before >/dev/null
sleep 0.5
echo "leader node-$LEADER (term $T); the minority will be node-$M"
MEP=$(client_addr "$M")
R="$OUT/minority-reads.txt"
: >"$R"
# on_minority CMD...: raftctl against the lone node only; the transcript goes to minority-reads.txt.
on_minority() {
  local rc=0
  printf '$ raftctl %s\n' "$*" >>"$R"
  CTL_TIMEOUT=1s ctl --endpoints "$MEP" "$@" >>"$R" 2>&1 || rc=$?
  [[ $rc == 0 ]] || echo "(exit $rc)" >>"$R"
  return "$rc"
}

say "SIGSTOP the majority (node-${MAJ//$'\n'/, node-})"
for i in $MAJ; do kill -STOP "${NODE_PID[i]}"; done
t0=$SECONDS
claim "a bounded read ($BOUND) is served at first: the lone node heard from the leader just now" \
  on_minority get guide/minority --consistency bounded --max-staleness "$BOUND"
claim "a linearizable read is refused (no quorum to confirm a leader)" \
  refused on_minority get guide/minority
claim "a stale read is served, from the lone node's own state" \
  on_minority get guide/minority --consistency stale
printf '$ raftctl --trace put guide/minority after\n' >>"$R"
CTL_TIMEOUT=1s traced --endpoints "$MEP" put guide/minority after
id=$TRACE_ID
cat "$WORK/last.err" >>"$R"
claim "a write is refused (it can reach no leader, and no majority)" test "$LAST_RC" -ne 0
while ((SECONDS - t0 <= BOUND_S)); do sleep 0.2; done
claim "after $BOUND without the leader the same bounded read is refused" \
  refused on_minority get guide/minority --consistency bounded --max-staleness "$BOUND"
claim "the refusal names the bound that failed" grep -q 'bounded read refused' "$R"
printf '$ raftctl status   # the lone node after %ss\n' "$((SECONDS - t0))" >>"$R"
CTL_TIMEOUT=1s ctl --endpoints "$MEP" status >>"$R" 2>&1 || true
TM=$(status_json "$MEP" | jq -r --arg a "$MEP" '.members[] | select(.client_addr == $a) | .term')
claim "pre-vote: the lone node never raised its term while cut off (term $TM)" test "$TM" -eq "$T"
cat "$R"

GUIDE_TRACE_WAIT=3s save_trace "$id" minority-write 1
cat "$OUT/minority-write.txt"
claim "the refused write's trace: the lone node forwards the Put to the leader it knows, and no answer comes for the client's whole timeout" \
  jtrue "$WORK/minority-write.json" "[.spans[] | select(.name == \"raftkv.v1.KV/Put\" and .kind == \"client\" and .instance == \"node-$M\")] | length >= 1 and all(.duration_us >= 900000)"
claim "nothing of it reaches another node (no span outside the lone node and raftctl)" \
  jtrue "$WORK/minority-write.json" "[.spans[] | .instance // \"raftctl\"] | unique | . - [\"node-$M\", \"raftctl\"] | length == 0"

say "SIGCONT the majority"
for i in $MAJ; do kill -CONT "${NODE_PID[i]}"; done
sleep 1
wait_for_leader "$RAFTCTL_ENDPOINTS"
T2=$(status_json | jq -r '.members[] | select(.role == "leader") | .term')
# Not claimed: that the same leader carries on. The frozen nodes' clocks jump by the
# pause, so on resuming the frozen follower (and the lone node, whose pre-vote it now
# grants) may campaign before the resumed leader's first heartbeat; a real partition,
# with the majority running all along, does not do that.
echo "healed: leader node-$LEADER in term $T2 (before: node-$OLD_LEADER in term $T)" | tee -a "$R"
claim "and the lone node takes writes again" ctl --endpoints "$MEP" put guide/minority healed
