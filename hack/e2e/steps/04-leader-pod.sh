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

e2e_step_4() {
  local leader id uid voters
  leader=$(leader_pod)
  id=$(node_id_of "$leader")
  uid=$(pod_uid "$leader")
  voters=$(voter_ids)
  local changes
  changes=$(membership_event_count)
  [[ -n $id ]] || fail "no node ID for the leader ${leader} in the status"
  check "kubectl delete pod ${leader} (the leader, node ${id})"
  k delete pod "$leader" --wait=false
  wait_for "a new leader other than ${leader}" 60 leader_is_not "$leader"
  ok "new leader $(leader_pod)"
  wait_for "${leader} recreated and Ready" 180 pod_recreated "$leader" "$uid"
  wait_for "${leader} healthy in the status" 120 member_healthy "$leader"
  wait_for "RaftCluster Available" 120 cluster_available
  check "${leader} came back with the same node ID ${id}"
  [[ $(node_id_of "$leader") == "$id" ]] || fail "${leader} has node ID $(node_id_of "$leader"), want ${id}"
  ok "same node ID"
  check "no membership change (voters ${voters})"
  [[ $(voter_ids) == "$voters" ]] || fail "voters changed: $(voter_ids), want ${voters}"
  [[ $(membership_event_count) == "$changes" ]] || fail "membership Events appeared: $(event_reasons)"
  ok "voters unchanged, no membership Event"
  check "the cluster takes writes"
  rctl put after/leader-restart 1 >/dev/null
  ok "write acknowledged"
}
