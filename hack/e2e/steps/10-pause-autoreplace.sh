# shellcheck shell=bash
# Step 10: the pause annotation stops every action (status still updates); autoReplace
# replaces a member whose pod stays unavailable longer than `after`.
# Uses pod_node (step 4) and replaced (step 5).

sts_replicas() { k get statefulset "$RC" -o jsonpath='{.spec.replicas}'; }
phase_is() { [[ $(rc_field .status.phase) == "$1" ]]; }
pod_unschedulable() { [[ $(k get pod "$1" -o jsonpath='{.status.phase}' 2>/dev/null) == Pending ]]; }

# columns_are DESIRED VOTERS: `kubectl get raft` shows spec.replicas under DESIRED and
# the voters of the cluster's membership under VOTERS.
columns_are() {
  local table header row
  table=$(k get raftcluster "$RC")
  header=$(head -n 1 <<<"$table" | awk '{print $1, $2, $3}')
  row=$(tail -n 1 <<<"$table" | awk '{print $2, $3}')
  [[ $header == "NAME DESIRED VOTERS" ]] || { echo "columns: ${header}"; return 1; }
  [[ $row == "$1 $2" ]] || { echo "DESIRED VOTERS = ${row}, want $1 $2"; return 1; }
}
# progressing_reason_is REASON
progressing_reason_is() {
  [[ $(rc_json | jq -r '.status.conditions[]? | select(.type == "Progressing") | .reason') == "$1" ]]
}

# A scale-in to 1 voter while <rc>-0, the only voter that would stay, is down and
# another pod leads: the leader must leave but no healthy voter can take over, so
# the operator refuses it. The columns keep the truth: DESIRED 1, VOTERS 3.
refused_scale_in() {
  local node uid
  # (If ${RC}-0 leads, deleting its pod moves the leadership to another voter.)
  node=$(pod_node "${RC}-0")
  uid=$(pod_uid "${RC}-0")
  check "cordon ${node}, delete ${RC}-0 (stays Pending), kubectl scale raft ${RC} --replicas=1"
  kubectl cordon "$node" >/dev/null
  # shellcheck disable=SC2034 # read by the trap in hack/e2e.sh
  CORDONED_NODE=$node
  k delete pod "${RC}-0" --wait=false >/dev/null
  wait_for "${RC}-0 recreated and Pending" 60 eval "pod_pending ${RC}-0 && [[ \$(pod_uid ${RC}-0) != ${uid} ]]"
  wait_for "a leader other than ${RC}-0" 60 leader_is_not "${RC}-0"
  k scale raftcluster "$RC" --replicas=1 >/dev/null
  wait_for "a ScaleInBlocked Event" 60 has_event ScaleInBlocked
  wait_for "Progressing=False reason Blocked" 30 progressing_reason_is Blocked
  wait_for "kubectl get raft: DESIRED 1, VOTERS 3" 30 columns_are 1 3
  say "$(k get raftcluster "$RC" | sed 's/^/    /')"
  say "    Progressing: $(rc_json | jq -r '.status.conditions[] | select(.type == "Progressing") | .message')"
  [[ $(voter_ids) == "$1" ]] || fail "voters changed by a refused scale-in: $(voter_ids), were $1"
  ok "scale-in refused: $(events_with_reason ScaleInBlocked | tail -n 1)"
  check "scale back to 3 and uncordon ${node}: ${RC}-0 returns, nothing changed"
  k scale raftcluster "$RC" --replicas=3 >/dev/null
  kubectl uncordon "$node" >/dev/null
  # shellcheck disable=SC2034
  CORDONED_NODE=""
  wait_for "${RC}-0 Ready and the cluster Available with 3 voters" 180 eval "pod_ready ${RC}-0 && settled_at 3"
  wait_for "kubectl get raft: DESIRED 3, VOTERS 3" 30 columns_are 3 3
  [[ $(voter_ids) == "$1" ]] || fail "voters changed: $(voter_ids), were $1"
  ok "back to 3 voters, unchanged"
}

# Quorum loss (issue 17): the leader's two followers are deleted and kept Pending by a
# cordon. The leader left alone must stop reporting itself as leader within an election
# timeout of losing its quorum: no pod labelled role=leader, no leader in the status,
# and `raftctl status` against it names none. Then the pods return and so does the leader.
no_leader_label() { [[ -z $(pods_with_role leader) ]]; }
no_status_leader() { [[ -z $(leader_pod) ]]; }
one_leader_label() { [[ $(pods_with_role leader | wc -l) == 1 ]]; }

quorum_loss() {
  local leader node pod others=() doc
  leader=$(leader_pod)
  [[ -n $leader ]] || fail "no leader before the quorum-loss check"
  node=$(pod_node "$leader")
  for pod in "${RC}-0" "${RC}-1" "${RC}-2"; do
    [[ $pod == "$leader" ]] || others+=("$pod")
  done
  check "cordon ${node}, delete ${others[*]}: ${leader} is left alone, without a quorum"
  kubectl cordon "$node" >/dev/null
  # shellcheck disable=SC2034 # read by the trap in hack/e2e.sh
  CORDONED_NODE=$node
  k delete pod "${others[@]}" --wait=false >/dev/null
  wait_for "${others[*]} recreated and Pending" 90 eval "pod_pending ${others[0]} && pod_pending ${others[1]}"
  wait_for "no pod labelled raftkv.dev/role=leader" 60 no_leader_label
  wait_for "no leader in the RaftCluster's status" 60 no_status_leader
  doc=$(rctl_at "$(pod_endpoint "$leader")" status -o json || true)
  [[ $(jq -r '.leader_id' <<<"$doc") == 0 ]] || fail "raftctl status on ${leader} still names a leader: ${doc}"
  [[ -z $(jq -r '.members[]? | select(.role == "leader") | .name' <<<"$doc") ]] ||
    fail "raftctl status shows a member as leader: ${doc}"
  ok "${leader} alone: role $(jq -r --arg p "$leader" '.members[]? | select(.name == $p) | .role' <<<"$doc"), no leader anywhere"
  check "uncordon ${node}: the followers return, and a leader with them"
  kubectl uncordon "$node" >/dev/null
  # shellcheck disable=SC2034
  CORDONED_NODE=""
  wait_for "3 pods Ready and the cluster Available with 3 voters" 240 eval "pod_ready ${others[0]} && pod_ready ${others[1]} && settled_at 3"
  wait_for "one pod labelled raftkv.dev/role=leader" 60 one_leader_label
  ok "leader $(leader_pod) again"
}

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
  check "while paused: DESIRED 5, VOTERS 3, Progressing=False reason Paused"
  wait_for "kubectl get raft: DESIRED 5, VOTERS 3" 30 columns_are 5 3
  wait_for "Progressing reason Paused" 30 progressing_reason_is Paused
  say "$(k get raftcluster "$RC" | sed 's/^/    /')"
  ok "Progressing: $(rc_json | jq -r '.status.conditions[] | select(.type == "Progressing") | .message')"
  check "scale back to 3 and remove the annotation: the cluster resumes without a change"
  k scale raftcluster "$RC" --replicas=3 >/dev/null
  k annotate raftcluster "$RC" raftkv.dev/paused- >/dev/null
  wait_for "the Paused condition gone and the cluster Available" 60 eval "! condition_is Paused True && cluster_available"
  [[ $(voter_ids) == "$voters" ]] || fail "voters changed: $(voter_ids), were ${voters}"
  ok "resumed; voters ${voters}"

  refused_scale_in "$voters"

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

  quorum_loss
}
