# shellcheck shell=bash
# Step 3: scale 3 -> 5 -> 3 voters while a writer writes.

sts_replicas_are() { [[ $(k get statefulset "$RC" -o jsonpath='{.spec.replicas}') == "$1" ]]; }
status_replicas_are() { [[ $(rc_field .status.replicas) == "$1" ]]; }

# settled_at N: N voters in the cluster's membership, the status agrees, Available.
settled_at() {
  voters_are "$1" && status_replicas_are "$1" && cluster_available
}

# pvc_of POD: the data PVC of a member pod (from the pod spec, or by StatefulSet naming).
pvc_names() { k get pvc -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}'; }
pvc_of_ordinal_exists() { pvc_names | grep -q -- "-${RC}-$1\$"; }

# scaled_events: the StatefulSetScaled messages on the RaftCluster, oldest first, as
# `kubectl events --for` orders them (by series.lastObservedTime / eventTime).
scaled_events() {
  k events --for "raftcluster/${RC}" -o json |
    jq -r '.items[] | select(.reason == "StatefulSetScaled") | .message'
}

e2e_step_3() {
  writer_start w3/
  check "kubectl scale raft ${RC} --replicas=5 (scale subresource) while the writer writes"
  k scale raftcluster "$RC" --replicas=5
  wait_for "5 voters, status.replicas=5, Available" 300 settled_at 5
  ok "voters: $(voter_ids)"
  check "membership changes appear as Events on the RaftCluster"
  local reasons
  reasons=$(event_reasons)
  say "    Event reasons so far: ${reasons}"
  [[ $reasons == *LearnerAdded* || $reasons == *MemberAdded* ]] || fail "no LearnerAdded/MemberAdded Event (reasons: ${reasons})"
  [[ $reasons == *MemberPromoted* ]] || fail "no MemberPromoted Event (reasons: ${reasons})"
  ok "Events: $(events_with_reason MemberPromoted | tail -n 1)"
  local acked_mid
  acked_mid=$(writer_acked)

  check "kubectl scale raft ${RC} --replicas=3"
  k scale raftcluster "$RC" --replicas=3
  wait_for "3 voters, status.replicas=3, Available" 300 settled_at 3
  wait_for "StatefulSet ${RC} scaled to 3" 120 sts_replicas_are 3
  wait_for "pods ${RC}-3 and ${RC}-4 gone" 120 eval "pod_absent ${RC}-3 && pod_absent ${RC}-4"
  reasons=$(event_reasons)
  [[ $reasons == *MemberRemoved* ]] || fail "no MemberRemoved Event (reasons: ${reasons})"
  ok "Events: $(events_with_reason MemberRemoved | tail -n 1)"
  check "PVCs of the removed members are deleted (default whenScaled: Delete)"
  wait_for "PVCs of ordinals 3 and 4 deleted" 120 eval "! pvc_of_ordinal_exists 3 && ! pvc_of_ordinal_exists 4"
  ok "PVCs: $(pvc_names | tr '\n' ' ')"

  check "each scale step is its own Event with its own message, in order in kubectl events --for raftcluster/${RC}"
  local scaled
  scaled=$(scaled_events)
  say "$(sed 's/^/    /' <<<"$scaled")"
  grep -qx 'voters StatefulSet scaled to 5' <<<"$scaled" || fail "no 'scaled to 5' Event: ${scaled}"
  grep -qx 'voters StatefulSet scaled to 3' <<<"$scaled" || fail "no 'scaled to 3' Event: ${scaled}"
  [[ $(tail -n 1 <<<"$scaled") == 'voters StatefulSet scaled to 3' ]] ||
    fail "the scale-in's Event is not the newest StatefulSetScaled Event: ${scaled}"
  ok "StatefulSetScaled Events: $(tr '\n' ';' <<<"$scaled")"

  writer_acked_at_least $((acked_mid + 1)) || fail "the writer made no progress during the scale-in"
  writer_stop
  writer_check_no_loss
}
