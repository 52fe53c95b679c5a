# shellcheck shell=bash
# Step 4: delete the leader's pod; a new leader, the pod returns with its node ID.

# leader_is_not POD: a leader other than POD is reported by the cluster itself.
leader_is_not() {
  local l
  l=$(leader_pod)
  [[ -n $l && $l != "$1" ]]
}
pod_recreated() {
  local uid
  uid=$(pod_uid "$1")
  [[ -n $uid && $uid != "$2" ]] && pod_ready "$1"
}
member_healthy() {
  [[ $(rc_json | jq -r --arg p "$1" '.status.members[]? | select(.pod == $p) | .healthy') == true ]]
}

pod_node() { k get pod "$1" -o jsonpath='{.spec.nodeName}'; }
pod_pending() { [[ $(k get pod "$1" -o jsonpath='{.status.phase}' 2>/dev/null) == Pending ]]; }

# The leader's node is cordoned while its pod is deleted, so the pod stays away until the
# followers have elected a new leader. (A pod that is back within the followers' election
# timeout plus leader lease, ~1.2 s here, may resume leadership at the same term, and the
# check would race.) The PVC binds the pod to that node, so it returns there.
e2e_step_4() {
  local leader id uid voters node changes
  leader=$(leader_pod)
  id=$(node_id_of "$leader")
  uid=$(pod_uid "$leader")
  voters=$(voter_ids)
  changes=$(membership_event_count)
  node=$(pod_node "$leader")
  [[ -n $id ]] || fail "no node ID for the leader ${leader} in the status"
  check "kubectl cordon ${node}; kubectl delete pod ${leader} (the leader, node ${id})"
  kubectl cordon "$node" >/dev/null
  # shellcheck disable=SC2034 # read by the trap in hack/e2e.sh
  CORDONED_NODE=$node
  k delete pod "$leader" --wait=false
  wait_for "${leader} recreated and Pending (its node is cordoned)" 60 eval "pod_pending ${leader} && [[ \$(pod_uid ${leader}) != ${uid} ]]"
  wait_for "a new leader other than ${leader}" 60 leader_is_not "$leader"
  ok "new leader $(leader_pod) (term $(rc_field .status.term))"
  check "the cluster takes writes with 2 of 3 voters"
  rctl put after/leader-loss 1 >/dev/null
  ok "write acknowledged"
  check "kubectl uncordon ${node}: ${leader} comes back"
  kubectl uncordon "$node" >/dev/null
  # shellcheck disable=SC2034
  CORDONED_NODE=""
  wait_for "${leader} Ready" 180 pod_recreated "$leader" "$uid"
  wait_for "${leader} healthy in the status" 120 member_healthy "$leader"
  wait_for "RaftCluster Available" 120 cluster_available
  check "${leader} came back with the same node ID ${id}"
  [[ $(node_id_of "$leader") == "$id" ]] || fail "${leader} has node ID $(node_id_of "$leader"), want ${id}"
  ok "same node ID"
  check "no membership change (voters ${voters})"
  [[ $(voter_ids) == "$voters" ]] || fail "voters changed: $(voter_ids), want ${voters}"
  [[ $(membership_event_count) == "$changes" ]] || fail "membership Events appeared: $(event_reasons)"
  ok "voters unchanged, no membership Event"
  [[ $(rctl get after/leader-loss) == 1 ]] || fail "the write made without ${leader} is not readable"
  ok "the write made while ${leader} was away is readable"
}
