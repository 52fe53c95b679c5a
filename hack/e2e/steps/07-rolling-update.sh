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
  wait_for "every voter pod runs ${NODE_IMAGE2} and is Ready" 420 voter_pod_images_are "$NODE_IMAGE2"
  wait_for "RaftCluster Available" 120 cluster_available
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
