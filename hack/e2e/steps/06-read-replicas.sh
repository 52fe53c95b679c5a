# shellcheck shell=bash
# Step 6: readReplicas: learners join and serve reads through the read Service.

learners_are() {
  [[ $(count_csv "$(learner_ids)") == "$1" ]] && [[ $(rc_field .status.readReplicas) == "$1" ]]
}
learner_labels_are() { [[ $(pods_with_role learner | wc -l) == "$1" ]]; }

e2e_step_6() {
  local voters
  voters=$(voter_ids)
  check "readReplicas: 2"
  k patch raftcluster "$RC" --type merge -p '{"spec":{"readReplicas":2}}'
  wait_for "2 learners in the membership and status.readReplicas=2" 240 learners_are 2
  wait_for "2 pods labelled raftkv.dev/role=learner" 60 learner_labels_are 2
  say "$(k get pods -L raftkv.dev/role | sed 's/^/    /')"
  [[ $(voter_ids) == "$voters" ]] || fail "voters changed when adding learners: $(voter_ids), want ${voters}"
  ok "learners $(learner_ids); voters unchanged"
  local c v
  for c in stale linearizable; do
    check "a ${c} read through the read Service $(read_endpoint)"
    v=$(rctl_at "$(read_endpoint)" get k/0007 --consistency "$c")
    [[ $v == *v7* ]] || fail "${c} read of k/0007 via the read Service returned '${v}'"
    ok "${c}: ${v}"
  done
  check "a linearizable read on a learner sees a write made just before"
  rctl put rr/fresh 42 >/dev/null
  v=$(rctl_at "$(pod_endpoint "$(pods_with_role learner | head -n 1)")" get rr/fresh --consistency linearizable)
  [[ $v == *42* ]] || fail "linearizable read on a learner returned '${v}', want 42"
  ok "read-your-write on a learner"

  check "readReplicas: 0, with bounded reads through the read Service all along"
  bounded_reads_start
  k patch raftcluster "$RC" --type merge -p '{"spec":{"readReplicas":0}}'
  wait_for "no learners left" 180 learners_are 0
  wait_for "no learner pods left" 120 learner_labels_are 0
  [[ $(voter_ids) == "$voters" ]] || fail "voters changed when removing learners: $(voter_ids)"
  ok "read replicas gone, voters unchanged"
  local n f
  bounded_reads_stop
  read -r n f <<<"$BOUNDED_READS_RESULT"
  ((n > 0)) || fail "no bounded read completed during the scale-in"
  if ((f > 0)); then
    say "$(csh 'sort /tmp/br.err | uniq -c | head -n 5' | sed 's/^/    /')"
    fail "${f} of $((n + f)) bounded reads through the read Service failed during read-replica scale-in (a removed member was still routed to)"
  fi
  ok "${n} bounded reads through the read Service during the scale-in, none failed"
  check "each read replica left the Services before the membership (MemberDraining before MemberRemoved)"
  local drained
  drained=$(events_with_reason MemberDraining)
  for p in "${RC}-read-0" "${RC}-read-1"; do
    [[ $drained == *"$p left the client and read Services"* ]] || fail "no MemberDraining Event for ${p}: ${drained}"
  done
  ok "$(wc -l <<<"$drained") MemberDraining Events"
}

# bounded_reads_start: in the background, bounded reads of k/0007 through the read
# Service, each a new connection (a new kube-proxy choice), until bounded_reads_stop.
bounded_reads_start() {
  csh 'rm -f /tmp/br.stop /tmp/br.done /tmp/br.err' >/dev/null
  kubectl -n "$E2E_NS" exec "$CLIENT_POD" -- /usr/local/bin/busybox sh -c "export PATH=/tmp/bin:/usr/local/bin; $(tls_env)
    n=0; f=0
    while [ ! -e /tmp/br.stop ]; do
      if raftctl --endpoints $(read_endpoint) get k/0007 --consistency bounded >/dev/null 2>>/tmp/br.err; then
        n=\$((n + 1))
      else
        f=\$((f + 1))
      fi
    done
    echo \"\$n \$f\" >/tmp/br.done" >/dev/null 2>&1 &
  BOUNDED_READS_PID=$!
}
bounded_reads_done() { csh 'test -s /tmp/br.done'; }
# bounded_reads_stop: sets BOUNDED_READS_RESULT to "<succeeded> <failed>".
bounded_reads_stop() {
  csh 'touch /tmp/br.stop' >/dev/null
  wait_for "the bounded-read loop to stop" 60 bounded_reads_done || fail "the bounded-read loop did not stop"
  wait "$BOUNDED_READS_PID" || true
  BOUNDED_READS_RESULT=$(csh 'cat /tmp/br.done')
}
