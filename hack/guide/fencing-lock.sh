#!/usr/bin/env bash
# Guide, "How does a distributed lock stay safe": a lock with a lease built from
# compare-and-swap, its fencing token the lock key's mod_revision. Client A takes the
# lock and is paused (SIGSTOP) past its lease; B takes the lock over and writes; A
# wakes up and writes too: once without the token (B's write is lost), once fenced
# (A's write is refused). Pictures: docs/guide/lock-{unfenced,fenced}-write.{svg,txt},
# lock.txt. See docs/raft-through-traces.md.
# shellcheck source=hack/guide/lib.sh
source "$(dirname "$0")/lib.sh"
LEASE_MS=1000
LOCK=guide/lock

say "a 3-voter cluster"
start_cluster 3
TX="$OUT/lock.txt"
: >"$TX"
log() { printf '%s\n' "$*" | tee -a "$TX"; }

# acquire NAME: take the lock if it is free or its lease ran out; prints the fencing
# token (the lock key's mod_revision after our compare-and-swap).
acquire() {
  local who=$1 now until cur rev exp
  now=$(date +%s%3N)
  until=$((now + LEASE_MS))
  if cur=$(ctl get "$LOCK" -o json 2>/dev/null); then
    rev=$(jq -r '.mod_revision' <<<"$cur")
    exp=$(jq -r '.value | capture("until=(?<t>[0-9]+)").t' <<<"$cur")
    ((now > exp)) || return 1
    ctl cas "$LOCK" "holder=$who until=$until" --expect-revision "$rev" -o json | jq -r '.kv.mod_revision'
  else
    ctl cas "$LOCK" "holder=$who until=$until" --expect-absent -o json | jq -r '.kv.mod_revision'
  fi
}

# run_round MODE RESOURCE: A locks, reads, is paused past its lease; B takes over and
# writes; A resumes and writes (MODE unfenced: a plain put; fenced: a CAS that also
# carries its token).
run_round() {
  local mode=$1 res=$2
  ctl del "$LOCK" >/dev/null 2>&1 || true
  log "## $mode"
  (
    tok=$(acquire A)
    echo "$tok" >"$WORK/a.token"
    # A reads the resource before working on it: its revision (0: absent) and token.
    rev=$(ctl get "$res" -o json 2>/dev/null | jq -r '.mod_revision' || echo 0)
    echo "$rev" >"$WORK/a.rev"
    touch "$WORK/a.ready"
    sleep 1 # SIGSTOPped here (the script stops it at once), for longer than its lease
    rc=0
    if [[ $mode == unfenced ]]; then
      ctl --trace put "$res" "written by A" >"$WORK/a.out" 2>"$WORK/a.err" || rc=$?
    else
      # Fenced: the write succeeds only if the resource is as A last saw it, so a
      # write under a later token in between makes it fail.
      if [[ ${rev:-0} == 0 || $rev == null ]]; then expect=(--expect-absent); else expect=(--expect-revision "$rev"); fi
      ctl --trace cas "$res" "token=$tok written by A" "${expect[@]}" >"$WORK/a.out" 2>"$WORK/a.err" || rc=$?
    fi
    echo "$rc" >"$WORK/a.rc"
  ) &
  local a=$!
  rm -f "$WORK/a.ready"
  for ((k = 0; k < 100; k++)); do [[ -f $WORK/a.ready ]] && break; sleep 0.05; done
  kill -STOP "$a"
  log "A holds the lock with token $(cat "$WORK/a.token"), read the resource (revision $(cat "$WORK/a.rev")), and is paused (SIGSTOP)"
  sleep "$(((LEASE_MS + 300) / 1000)).$(((LEASE_MS + 300) % 1000 / 100))"
  TOK_B=$(acquire B)
  log "A's lease ran out; B takes the lock: token $TOK_B"
  if [[ $mode == unfenced ]]; then
    ctl put "$res" "written by B" >/dev/null
  else
    # B's fenced write: its token is the highest so far.
    ctl cas "$res" "token=$TOK_B written by B" --expect-absent >/dev/null
  fi
  log "B writes the resource: $(ctl get "$res")"
  kill -CONT "$a"
  wait "$a" || true
  A_RC=$(cat "$WORK/a.rc")
  A_TRACE=$(sed -n 's/^trace: \([0-9a-f]\{32\}\)$/\1/p' "$WORK/a.err" | tail -1)
  log "A resumes and writes: exit $A_RC $(grep -v '^trace:' "$WORK/a.err" | awk "NR <= 1")"
  FINAL=$(ctl get "$res")
  log "the resource now holds: $FINAL"
  log ""
  TOK_A=$(cat "$WORK/a.token")
}

say "without a fencing token"
run_round unfenced guide/resource-unfenced
claim "B's token is larger than A's (mod_revision only grows)" test "$TOK_B" -gt "$TOK_A"
claim "without the token, A's late write is accepted and B's write is lost" \
  test "$A_RC" == 0 -a "$FINAL" == "written by A"
save_trace "$A_TRACE" lock-unfenced-write 4

say "with the fencing token"
run_round fenced guide/resource-fenced
claim "with the token, A's late write is refused" test "$A_RC" != 0
claim "and B's write stays" test "$FINAL" == "token=$TOK_B written by B"
save_trace "$A_TRACE" lock-fenced-write 2
cat "$OUT/lock-fenced-write.txt"
claim "the refused compare-and-swap goes through the log like a write (proposed, applied on every node) and fails when applied (rpc=ABORTED)" \
  jtrue "$WORK/lock-fenced-write.json" 'any(.spans[]; .attributes["rpc.response.status_code"] == "ABORTED") and any(.spans[]; .name == "raft.propose") and ([.spans[] | select(.name == "raft.apply")] | length == 3)'
