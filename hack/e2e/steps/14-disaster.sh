# shellcheck shell=bash
# Step 14: a majority of voters lost for good (issue 14 item 4). Two of three voter pods
# are deleted with their PVCs (the StatefulSet recreates them on empty volumes, so no
# old data comes back); the survivor cannot elect a leader. A force-new-cluster
# annotation naming a pod that is not a surviving voter is refused (Warning Event); the
# one naming the survivor makes it the one voter of a new cluster (new cluster ID), and
# the normal path grows it back: 3 voters serve writes again, holding every key the
# survivor had. Runs on the demo cluster at 3 voters (before step 8); uses pvc_of_pod
# (step 5), voters_are (step 2).

DISASTER_KEYS=200

annotation_gone() {
  [[ -z $(k get raftcluster "$RC" -o jsonpath='{.metadata.annotations.raftkv\.dev/force-new-cluster}') ]]
}
no_leader() { [[ -z $(leader_pod) ]] && condition_is Available False; }
# regrown OLD_CLUSTER_ID: a new cluster ID, 3 voters, Available.
regrown() {
  local id
  id=$(rc_field .status.clusterId)
  [[ -n $id && $id != "$1" ]] && voters_are 3 && cluster_available
}

e2e_step_14() {
  local survivor old_cluster pod pvc lost=() n ev
  wait_for "3 voters, Available" 240 voters_are 3
  wait_for "Available" 120 cluster_available
  check "write ${DISASTER_KEYS} keys d/0001.. through the client Service"
  put_keys d/ "$DISASTER_KEYS"
  survivor=$(leader_pod)
  old_cluster=$(rc_field .status.clusterId)
  [[ -n $survivor && -n $old_cluster ]] || fail "no leader (${survivor}) or cluster ID (${old_cluster})"
  ok "cluster ${old_cluster}; ${survivor} (the leader, which holds every acknowledged write) survives"

  for pod in "${RC}-0" "${RC}-1" "${RC}-2"; do
    [[ $pod == "$survivor" ]] || lost+=("$pod")
  done
  check "delete the PVCs and pods of ${lost[*]}: a majority of the voters is gone for good"
  for pod in "${lost[@]}"; do
    pvc=$(pvc_of_pod "$pod")
    [[ -n $pvc ]] || fail "no PVC for ${pod}"
    # The PVC first: it is only removed once its pod is gone, and the StatefulSet then
    # recreates the pod on a new, empty PVC.
    k delete pvc "$pvc" --wait=false
    k delete pod "$pod" --wait=false
  done
  wait_for "no leader (Available False)" 180 no_leader
  ok "no leader: $(k get raft "$RC" --no-headers)"

  check "an annotation naming a recreated (empty) pod is refused with the reason, and nothing happens"
  k annotate raftcluster "$RC" "raftkv.dev/force-new-cluster=${lost[0]}" --overwrite >/dev/null
  wait_for "a ForceNewClusterRefused Event" 60 has_event ForceNewClusterRefused
  ev=$(events_with_reason ForceNewClusterRefused | tail -n 1)
  ok "Event: ${ev}"
  if has_event ForcedNewCluster; then fail "a new cluster was forced on ${lost[0]}"; fi

  check "annotate raftkv.dev/force-new-cluster=${survivor}"
  k annotate raftcluster "$RC" "raftkv.dev/force-new-cluster=${survivor}" --overwrite >/dev/null
  wait_for "a ForcedNewCluster Warning Event" 60 has_event ForcedNewCluster
  ev=$(events_with_reason ForcedNewCluster | tail -n 1)
  [[ $ev == *"$survivor"* && $ev == *"commit index"* ]] || fail "the Event does not name the survivor and its commit index: ${ev}"
  ok "Event: ${ev}"
  wait_for "the annotation removed by the operator" 60 annotation_gone
  [[ $(rc_json | jq -r '.status.conditions[] | select(.type == "ForcedNewCluster") | .status') == True ]] ||
    fail "no ForcedNewCluster condition: $(rc_json | jq -c .status.conditions)"
  ok "condition ForcedNewCluster: $(rc_json | jq -r '.status.conditions[] | select(.type == "ForcedNewCluster") | .message')"

  wait_for "a new cluster ID, 3 voters, Available" 480 regrown "$old_cluster"
  ok "cluster $(rc_field .status.clusterId) with voters $(voter_ids); $(k get raft "$RC" --no-headers)"
  check "every key the survivor had is there: ${DISASTER_KEYS} d/ keys and ${KEYS} k/ keys (linearizable)"
  n=$(range_keys "$(client_endpoint)" d/ | wc -l)
  [[ $n == "$DISASTER_KEYS" ]] || fail "range d/ returned ${n} keys, want ${DISASTER_KEYS}"
  n=$(range_keys "$(client_endpoint)" k/ | wc -l)
  [[ $n == "$KEYS" ]] || fail "range k/ returned ${n} keys, want ${KEYS}"
  [[ $(kv_value d/0123) == *v123* ]] || fail "get d/0123 = '$(kv_value d/0123)', want v123"
  ok "all keys there"
  check "writes work on the new cluster"
  rctl put d/after-force yes >/dev/null || fail "put after the forced new cluster failed"
  [[ $(kv_value d/after-force) == *yes* ]] || fail "d/after-force not read back"
  ok "written and read back"
}
