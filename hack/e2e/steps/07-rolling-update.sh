# shellcheck shell=bash
# Step 7: a rolling image update restarts followers first and the leader last.

NODE_IMAGE2="${NODE_IMAGE%:*}:dev2"

voter_pod_images_are() {
  local p img
  for p in "${RC}-0" "${RC}-1" "${RC}-2"; do
    img=$(k get pod "$p" -o jsonpath='{.spec.containers[0].image}' 2>/dev/null)
    [[ $img == "$1" ]] && pod_ready "$p" || return 1
  done
}

# PHASES_SEEN: a file with every status.phase observed while the update runs.
PHASES_SEEN=""
# record_phase: append the current phase to PHASES_SEEN (wait_for's command runs in a
# subshell, so the record is a file).
record_phase() { echo "$(date -u +%T) $(rc_field .status.phase)" >>"$PHASES_SEEN"; }
rolled_to() { record_phase && voter_pod_images_are "$1"; }
updated_and_running() {
  record_phase && [[ $(rc_field .status.phase) == Running ]] && cluster_available
}

e2e_step_7() {
  if ((LOCAL_CLUSTER)); then
    check "retag the node image as ${NODE_IMAGE2} and import it"
    hack/images.sh load "$NODE_IMAGE2" "$(image_bin_dir)/raft-node" "$(image_bin_dir)/raftctl" >/dev/null
  fi
  local leader t0 p order last
  leader=$(leader_pod)
  t0=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  writer_start w7/
  check "spec.image=${NODE_IMAGE2} (leader now: ${leader})"
  k patch raftcluster "$RC" --type merge -p "{\"spec\":{\"image\":\"${NODE_IMAGE2}\"}}"
  PHASES_SEEN=$(mktemp)
  wait_for "every voter pod runs ${NODE_IMAGE2} and is Ready" 420 rolled_to "$NODE_IMAGE2"
  wait_for "RaftCluster Running and Available" 120 updated_and_running
  check "the planned update showed phase Updating, never Degraded"
  say "    phases seen: $(awk '{print $2}' "$PHASES_SEEN" | uniq | tr '\n' ' ')"
  if grep -q ' Degraded$' "$PHASES_SEEN"; then
    fail "phase Degraded during a planned rolling update: $(grep ' Degraded$' "$PHASES_SEEN" | head -n 5 | tr '\n' ' ')"
  fi
  grep -q ' Updating$' "$PHASES_SEEN" || fail "phase Updating never seen during the update"
  rm -f "$PHASES_SEEN"
  ok "Updating, then Running; never Degraded"
  check "each voter pod was restarted once, the old leader ${leader} last"
  order=$(k get pods -o json | jq -r --arg rc "$RC" \
    '.items[] | select(.metadata.name | test("^" + $rc + "-[0-9]+$")) | "\(.metadata.creationTimestamp) \(.metadata.name)"' | sort)
  while read -r ts p; do say "    ${p} created ${ts}"; done <<<"$order"
  while read -r ts p; do
    [[ $ts > "$t0" || $ts == "$t0" ]] || fail "${p} was not restarted (created ${ts}, update began ${t0})"
  done <<<"$order"
  last=$(tail -n 1 <<<"$order" | awk '{print $2}')
  [[ $last == "$leader" ]] || fail "the last pod restarted is ${last}, want the old leader ${leader}"
  ok "followers first, leader ${leader} last; leader now $(leader_pod)"
  check "the leader was handed off first (LeaderTransferred Event) and each pod roll is an Event"
  has_event LeaderTransferred || fail "no LeaderTransferred Event; reasons: $(event_reasons)"
  [[ $(events_with_reason PodUpdated | wc -l) -ge 1 ]] || fail "no PodUpdated Event; reasons: $(event_reasons)"
  ok "$(events_with_reason LeaderTransferred | tail -n 1)"
  writer_stop
  writer_check_no_loss
}
