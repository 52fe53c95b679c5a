# shellcheck shell=bash
# Step 5: delete a voter's pod AND its PVC: a new member replaces it by joint consensus.

pvc_of_pod() {
  k get pod "$1" -o jsonpath='{.spec.volumes[?(@.persistentVolumeClaim)].persistentVolumeClaim.claimName}'
}
# replaced POD OLD_ID: POD has a new node ID in the status and the membership swapped it.
replaced() {
  local pod=$1 old=$2 new voters
  new=$(node_id_of "$pod")
  [[ -n $new && $new != "$old" ]] || return 1
  voters=$(voter_ids)
  [[ ,$voters, == *",$new,"* && ,$voters, != *",$old,"* ]] || return 1
  voters_are 3 && cluster_available
}

# member_has_all_keys POD: a stale (local) read on POD returns every k/ key.
member_has_all_keys() {
  local n
  n=$(range_keys "$(pod_endpoint "$1")" k/ --consistency stale | wc -l)
  [[ $n == "$KEYS" ]]
}

e2e_step_5() {
  local leader victim old pvc pod
  leader=$(leader_pod)
  # The highest-ordinal voter that is not the leader.
  for pod in "${RC}-2" "${RC}-1" "${RC}-0"; do
    if [[ $pod != "$leader" ]]; then victim=$pod; break; fi
  done
  old=$(node_id_of "$victim")
  pvc=$(pvc_of_pod "$victim")
  [[ -n $old && -n $pvc ]] || fail "cannot find node ID/PVC of ${victim} (id='${old}', pvc='${pvc}')"
  check "delete PVC ${pvc} and pod ${victim} (follower, node ${old})"
  k delete pvc "$pvc" --wait=false
  k delete pod "$victim" --wait=false
  wait_for "${victim} back with a new node ID, old ${old} swapped out, 3 voters, Available" 300 replaced "$victim" "$old"
  ok "${victim} is node $(node_id_of "$victim"); voters $(voter_ids)"
  check "a MemberReplaced Event names the old ID ${old} (removed) and the new one (added)"
  local ev new
  new=$(node_id_of "$victim")
  ev=$(events_with_reason MemberReplaced | grep -F -- "$old" | tail -n 1 || true)
  [[ -n $ev ]] || fail "no MemberReplaced Event naming ${old}; reasons: $(event_reasons)"
  [[ $ev == *"removed [${old}"* && $ev == *"added [${new}"* ]] || fail "MemberReplaced Event does not say added ${new}, removed ${old}: ${ev}"
  ok "Event: ${ev}"
  check "every member has all ${KEYS} keys (stale reads, served locally by each member)"
  for pod in "${RC}-0" "${RC}-1" "${RC}-2"; do
    wait_for "${pod} has all ${KEYS} keys" 60 member_has_all_keys "$pod"
    ok "${pod}: ${KEYS} keys"
  done
}
