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
  v=$(rctl_at "$(pod_ip "$(pods_with_role learner | head -n 1)"):${CLIENT_PORT}" get rr/fresh --consistency linearizable)
  [[ $v == *42* ]] || fail "linearizable read on a learner returned '${v}', want 42"
  ok "read-your-write on a learner"

  check "readReplicas: 0"
  k patch raftcluster "$RC" --type merge -p '{"spec":{"readReplicas":0}}'
  wait_for "no learners left" 180 learners_are 0
  wait_for "no learner pods left" 120 learner_labels_are 0
  [[ $(voter_ids) == "$voters" ]] || fail "voters changed when removing learners: $(voter_ids)"
  ok "read replicas gone, voters unchanged"
}
