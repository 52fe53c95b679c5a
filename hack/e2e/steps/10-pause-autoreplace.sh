# shellcheck shell=bash
# Step 10: the pause annotation stops every action (status still updates); autoReplace
# replaces a member whose pod stays unavailable longer than `after`.
# Uses pod_node (step 4) and replaced (step 5).

sts_replicas() { k get statefulset "$RC" -o jsonpath='{.spec.replicas}'; }
phase_is() { [[ $(rc_field .status.phase) == "$1" ]]; }
pod_unschedulable() { [[ $(k get pod "$1" -o jsonpath='{.status.phase}' 2>/dev/null) == Pending ]]; }

e2e_step_10() {
  local voters t_end leader victim old node pod
  voters=$(voter_ids)

  check "annotate raftkv.dev/paused=true, then kubectl scale raft ${RC} --replicas=5"
  k annotate raftcluster "$RC" raftkv.dev/paused=true --overwrite >/dev/null
  wait_for "a Paused condition and phase" 60 eval "condition_is Paused True && phase_is Paused"
  k scale raftcluster "$RC" --replicas=5 >/dev/null
  # An observation window, not a readiness wait: nothing may move while paused.
  t_end=$((SECONDS + 20))
  while ((SECONDS < t_end)); do
    [[ $(sts_replicas) == 3 ]] || fail "the StatefulSet was scaled to $(sts_replicas) while paused"
    [[ $(voter_ids) == "$voters" ]] || fail "voters changed while paused: $(voter_ids), were ${voters}"
    sleep 2
  done
  ok "20 s paused with spec.replicas=5: StatefulSet still at 3, voters unchanged"
  check "scale back to 3 and remove the annotation: the cluster resumes without a change"
  k scale raftcluster "$RC" --replicas=3 >/dev/null
  k annotate raftcluster "$RC" raftkv.dev/paused- >/dev/null
  wait_for "the Paused condition gone and the cluster Available" 60 eval "! condition_is Paused True && cluster_available"
  [[ $(voter_ids) == "$voters" ]] || fail "voters changed: $(voter_ids), were ${voters}"
  ok "resumed; voters ${voters}"

  check "spec.autoReplace {enabled: true, after: 15s}"
  k patch raftcluster "$RC" --type merge -p '{"spec":{"autoReplace":{"enabled":true,"after":"15s"}}}' >/dev/null
  leader=$(leader_pod)
  for pod in "${RC}-2" "${RC}-1" "${RC}-0"; do
    if [[ $pod != "$leader" ]]; then victim=$pod; break; fi
  done
  old=$(node_id_of "$victim")
  node=$(pod_node "$victim")
  [[ -n $old && -n $node ]] || fail "cannot find node ID/node of ${victim}"
  check "cordon ${node} and delete pod ${victim} (node ${old}): it stays Pending, unavailable"
  kubectl cordon "$node" >/dev/null
  # shellcheck disable=SC2034 # read by the trap in hack/e2e.sh
  CORDONED_NODE=$node
  k delete pod "$victim" --wait=false
  wait_for "${victim} recreated and Pending" 60 pod_unschedulable "$victim"
  wait_for "a MemberAutoReplaced Event (pod and PVC deleted after 15 s unavailable)" 180 has_event MemberAutoReplaced
  ok "$(events_with_reason MemberAutoReplaced | tail -1)"
  check "uncordon ${node}: ${victim} comes back empty, as a new member swapped in for ${old}"
  kubectl uncordon "$node" >/dev/null
  # shellcheck disable=SC2034
  CORDONED_NODE=""
  wait_for "${victim} back with a new node ID, ${old} swapped out, 3 voters, Available" 300 replaced "$victim" "$old"
  ok "${victim} is node $(node_id_of "$victim"); voters $(voter_ids)"
  k patch raftcluster "$RC" --type merge -p '{"spec":{"autoReplace":{"enabled":false}}}' >/dev/null
}
