# shellcheck shell=bash
# Step 12: day-2 operations.
# - The voters' PodDisruptionBudget follows the quorum: on 3 voters the Eviction API
#   admits one eviction, refuses a second (HTTP 429) while the first pod is not back,
#   and admits the next once it is.
# - spec.storage.size grows: refused by a StorageClass without allowVolumeExpansion
#   (reported, the cluster stays Available), then every member's PVC is patched.
# - The ZoneRisk condition is set (Unknown when the nodes have no zone label).
# - `kubectl raft status` and `transfer-leader` (the kubectl-raft plugin, built by
#   hack/e2e.sh) against it.
# Uses pod_recreated, member_healthy (step 4) and settled_at (step 3).

pdb_allowed() { k get poddisruptionbudget "$RC" -o jsonpath='{.status.disruptionsAllowed}'; }
pdb_allows() { [[ $(pdb_allowed) == "$1" ]]; }

# evict POD: POST an Eviction (policy/v1) for POD, as `kubectl drain` does. Prints the
# HTTP status of the answer (201 admitted, 429 refused by a disruption budget).
evict() {
  local pod=$1 out code rc=0
  out=$(printf '{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"%s","namespace":"%s"}}' "$pod" "$E2E_NS" |
    kubectl create --raw "/api/v1/namespaces/${E2E_NS}/pods/${pod}/eviction" -f - -v=6 2>&1) || rc=$?
  # -v=6 logs the response: `"Response" verb="POST" url=".../eviction" status="429 Too Many
  # Requests"` (structured logs), or `POST .../eviction 429 Too Many Requests` (older kubectl).
  code=$(grep -i 'eviction' <<<"$out" | grep -oE '(status="|eviction )[0-9]{3}' | tail -n 1 | grep -oE '[0-9]{3}$' || true)
  if [[ -z $code ]]; then
    # No response line: kubectl's own words. A refused eviction is TooManyRequests (429).
    if ((rc == 0)); then
      code=201
    elif [[ $out == *TooManyRequests* || $out == *"disruption budget"* ]]; then
      code=429
    else
      say "  eviction of ${pod}: no HTTP status in kubectl's output: $(tail -c 500 <<<"$out")"
      code=000
    fi
  fi
  echo "$code"
}

# admitted CODE: the Eviction API admitted the eviction (201 Created; 200 from some versions).
admitted() { [[ $1 == 201 || $1 == 200 ]]; }

# followers: the voters' pods other than the leader, lowest ordinal first.
followers() {
  local leader pod
  leader=$(leader_pod)
  for pod in "${RC}-0" "${RC}-1" "${RC}-2"; do
    [[ $pod == "$leader" ]] || echo "$pod"
  done
}

e2e_step_12() {
  local voters victim second uid code id pair
  wait_for "3 voters, Available" 180 settled_at 3
  voters=$(voter_ids)

  check "the voters' PDB ${RC}: minAvailable 2 (quorum of 3), 1 disruption allowed; the read replicas' PDB ${RC}-read: maxUnavailable 1"
  wait_for "PDB ${RC} status.disruptionsAllowed=1" 60 pdb_allows 1
  [[ $(k get poddisruptionbudget "$RC" -o jsonpath='{.spec.minAvailable}') == 2 ]] ||
    fail "PDB ${RC} minAvailable is '$(k get poddisruptionbudget "$RC" -o jsonpath='{.spec.minAvailable}')', want 2"
  [[ $(k get poddisruptionbudget "${RC}-read" -o jsonpath='{.spec.maxUnavailable}') == 1 ]] ||
    fail "no PDB ${RC}-read with maxUnavailable 1"
  ok "$(k get poddisruptionbudget | sed 's/^/    /' | tr '\n' ' ')"

  mapfile -t pair < <(followers)
  victim=${pair[0]}
  second=${pair[1]}
  uid=$(pod_uid "$victim")
  id=$(node_id_of "$victim")
  check "evict ${victim} (a follower) through the Eviction API: admitted"
  code=$(evict "$victim")
  admitted "$code" || fail "eviction of ${victim} answered HTTP ${code}, want 201"
  ok "HTTP ${code}"

  check "while ${victim} is not back, evicting ${second} is refused with HTTP 429"
  pod_recreated "$victim" "$uid" && fail "${victim} already back: the check below would prove nothing"
  code=$(evict "$second")
  [[ $code == 429 ]] || fail "a second eviction (${second}) answered HTTP ${code} while ${victim} is down, want 429"
  pod_recreated "$victim" "$uid" && fail "${victim} came back before the refusal was checked"
  pod_ready "$second" || fail "${second} is not Ready after a refused eviction"
  ok "HTTP 429; ${second} still Ready"
  wait_for "PDB ${RC} allows no disruption while ${victim} is down" 30 eval "pod_recreated ${victim} ${uid} || pdb_allows 0"

  check "${victim} returns (same node ID ${id}); the PDB allows one disruption again"
  wait_for "${victim} recreated and Ready" 180 pod_recreated "$victim" "$uid"
  wait_for "${victim} healthy in the status" 120 member_healthy "$victim"
  wait_for "3 voters, Available" 120 settled_at 3
  wait_for "PDB ${RC} status.disruptionsAllowed=1" 60 pdb_allows 1
  [[ $(node_id_of "$victim") == "$id" ]] || fail "${victim} is node $(node_id_of "$victim"), want ${id}"
  ok "${victim} back as node ${id}"

  check "evict ${second} now: admitted"
  uid=$(pod_uid "$second")
  code=$(evict "$second")
  admitted "$code" || fail "eviction of ${second} after recovery answered HTTP ${code}, want 201"
  wait_for "${second} recreated and Ready" 180 pod_recreated "$second" "$uid"
  wait_for "3 voters, Available, PDB allows 1" 180 eval "settled_at 3 && pdb_allows 1"
  [[ $(voter_ids) == "$voters" ]] || fail "evictions changed the voters: $(voter_ids), were ${voters}"
  ok "HTTP ${code}; voters unchanged (${voters})"

  e2e_step_12_placement
  e2e_step_12_plugin
  e2e_step_12_plugin_data
  e2e_step_12_volumes
  e2e_step_12_crd_upgrade
}

# crd_has_pod_labels: the live CRD's schema knows spec.podLabels.
crd_has_pod_labels() {
  kubectl get crd raftclusters.raftkv.dev -o json |
    jq -e '.spec.versions[] | select(.name == "v1alpha1") | .schema.openAPIV3Schema.properties.spec.properties.podLabels != null' >/dev/null
}

# e2e_step_12_crd_upgrade: the CRD is a template of the chart (crds.enabled), so a
# chart upgrade upgrades it. An "older chart" (this one with spec.podLabels cut out of
# its CRD) is installed over the release, then the current chart: the CRD must follow
# both. (Helm patches a CRD from the old release's manifest to the new one's, so the
# difference has to be between two charts, not between the cluster and a chart.)
e2e_step_12_crd_upgrade() {
  check "a chart upgrade upgrades the CRD (crds.enabled: the CRD is a chart template)"
  crd_has_pod_labels || fail "the installed CRD lacks spec.podLabels before the test"
  local old
  old=$(mktemp -d "${TMPDIR:-/tmp}/e2e-old-chart.XXXXXX")
  cp -r charts/raft-operator "$old/"
  awk 'match($0, /^ */) { ind = RLENGTH } /^ +podLabels:$/ && !skip { skip = 1; lvl = ind; next } skip && ind <= lvl && $0 ~ /[^ ]/ { skip = 0 } !skip' \
    charts/raft-operator/files/crds/raftcluster.yaml >"$old/raft-operator/files/crds/raftcluster.yaml"
  helm upgrade "$RELEASE" "$old/raft-operator" --namespace "$OPERATOR_NS" --reuse-values --wait --timeout 180s >/dev/null
  wait_for "the older chart's CRD, without spec.podLabels" 30 eval '! crd_has_pod_labels'
  helm upgrade "$RELEASE" charts/raft-operator --namespace "$OPERATOR_NS" --reuse-values --wait --timeout 180s >/dev/null
  rm -rf "$old"
  wait_for "the current chart's CRD, with spec.podLabels" 30 crd_has_pod_labels
  [[ $(kubectl get crd raftclusters.raftkv.dev -o jsonpath='{.metadata.annotations.helm\.sh/resource-policy}') == keep ]] ||
    fail "the CRD lost its helm.sh/resource-policy: keep annotation"
  wait_for "RaftCluster ${RC} Available" 120 cluster_available
  ok "the CRD followed the chart down and back up; still kept on uninstall"
}

# pvc_requests: "<pvc>=<requested size>" of the cluster's data PVCs, sorted, space-separated.
pvc_requests() {
  k get pvc -l "app.kubernetes.io/instance=${RC}" -o json |
    jq -r '[.items[] | "\(.metadata.name)=\(.spec.resources.requests.storage)"] | sort | join(" ")'
}
# every_pvc_requests SIZE: every data PVC of the cluster requests SIZE.
every_pvc_requests() {
  local all
  all=$(pvc_requests)
  [[ -n $all ]] || return 1
  ! tr ' ' '\n' <<<"$all" | grep -qv "=$1\$"
}
storage_message() { rc_field .status.storage.message; }
# storage_status_is SIZE VOLUMES: status.storage reports growing VOLUMES volumes to SIZE.
storage_status_is() { [[ $(rc_field .status.storage.size) == "$1" && $(rc_field .status.storage.volumes) == "$2" ]]; }
storage_status_gone() { [[ -z $(rc_field .status.storage) ]]; }
zone_risk_status() { rc_json | jq -r '.status.conditions[]? | select(.type == "ZoneRisk") | .status'; }
has_zone_risk_condition() { [[ -n $(zone_risk_status) ]]; }
storage_message_has() { [[ $(storage_message) == *"$1"* ]]; }
# default_storage_class: the name of the cluster's default StorageClass.
default_storage_class() {
  kubectl get storageclass -o json |
    jq -r '.items[] | select(.metadata.annotations["storageclass.kubernetes.io/is-default-class"] == "true") | .metadata.name' | head -n 1
}

e2e_step_12_volumes() {
  local class expandable before patched_class=0
  class=$(default_storage_class)
  [[ -n $class ]] || fail "no default StorageClass"
  expandable=$(kubectl get storageclass "$class" -o jsonpath='{.allowVolumeExpansion}')
  before=$(pvc_requests)
  check "spec.storage.size 1Gi -> 2Gi is accepted (growing is allowed)"
  k patch raftcluster "$RC" --type merge -p '{"spec":{"storage":{"size":"2Gi"}}}' >/dev/null
  # The API server refuses to grow a claim of a class without allowVolumeExpansion
  # (admission plugin PersistentVolumeClaimResize, on by default).
  wait_for "the PVCs patched to 2Gi, or the refusal reported in status.storage" 120 \
    eval "every_pvc_requests 2Gi || storage_message_has 'cannot grow'"
  if storage_message_has "cannot grow"; then
    check "StorageClass ${class} (allowVolumeExpansion: '${expandable}') refuses: the operator reports it, PVCs unchanged, the cluster stays Available"
    wait_for "a VolumeExpansionFailed Event" 60 has_event VolumeExpansionFailed
    say "    status.storage.message: $(storage_message)"
    [[ $(pvc_requests) == "$before" ]] || fail "PVCs changed although the class refuses expansion: $(pvc_requests)"
    cluster_available || fail "a refused expansion made the cluster unavailable"
    ok "reported; PVCs still ${before}"
    check "allow expansion on StorageClass ${class} (restored at the end of the step)"
    kubectl patch storageclass "$class" -p '{"allowVolumeExpansion":true}' >/dev/null
    patched_class=1
  fi
  wait_for "every data PVC requests 2Gi" 120 every_pvc_requests 2Gi
  ok "PVCs: $(pvc_requests)"
  # local-path (the local cluster's and kind's provisioner) has no resizer: the claims
  # request 2Gi but their capacity stays 1Gi, and status.storage keeps waiting. A
  # class with a resizer ends with status.storage gone.
  check "status.storage reports the growth (resized of volumes), or is gone once every volume has 2Gi"
  local capacities
  capacities=$(k get pvc -l "app.kubernetes.io/instance=${RC}" -o jsonpath='{.items[*].status.capacity.storage}')
  if [[ $capacities == *1Gi* ]]; then
    local n
    n=$(k get pvc -l "app.kubernetes.io/instance=${RC}" -o name | wc -l)
    wait_for "status.storage: growing ${n} volumes to 2Gi" 60 storage_status_is 2Gi "$n"
    say "    status.storage: $(rc_json | jq -c .status.storage) (PVC capacities: ${capacities}; this provisioner cannot resize)"
  else
    wait_for "status.storage gone (every volume has 2Gi)" 180 storage_status_gone
  fi
  ok "status.storage consistent with the PVCs"
  if ((patched_class)); then
    kubectl patch storageclass "$class" -p '{"allowVolumeExpansion":false}' >/dev/null
  fi
  cluster_available || fail "the cluster is not Available after growing its volumes"
}

# The placement condition exists. On the local cluster the nodes have no zone label:
# Unknown (reason PlacementUnknown); with zones (kind with labelled nodes, a cloud):
# True or False with the zones named.
e2e_step_12_placement() {
  check "the ZoneRisk condition reports the voters' placement"
  wait_for "a ZoneRisk condition" 60 has_zone_risk_condition
  ok "ZoneRisk: $(rc_json | jq -r '.status.conditions[] | select(.type == "ZoneRisk") | "\(.status) \(.reason): \(.message)"')"
}

# kraft ARGS...: the kubectl-raft plugin the suite built, found by kubectl on PATH.
kraft() {
  local bin
  bin="${CARGO_TARGET_DIR}/$(profile_dir)/kubectl-raft"
  [[ -x $bin ]] || fail "${bin} missing: hack/e2e.sh builds it (build_binaries)"
  PATH="$(dirname "$bin"):${PATH}" kubectl raft "$@"
}

e2e_step_12_plugin() {
  local out code leader
  leader=$(leader_pod)
  check "kubectl raft status ${RC}: a table naming the leader ${leader}, exit code 0 (Available)"
  code=0
  out=$(kraft status "$RC" -n "$E2E_NS") || code=$?
  say "$(printf '%s\n' "$out" | sed 's/^/    /')"
  ((code == 0)) || fail "kubectl raft status exited ${code} on an Available cluster"
  [[ $(head -n 2 <<<"$out" | tail -n 1) == "${RC} "*" ${leader} "* ]] || fail "the cluster line does not name the leader ${leader}"
  [[ $out == *"POD "*"NODE ID"*"ROLE"*"LAG"* && $out == *"Last membership change: "* ]] || fail "no member table or last change"
  ok "table printed"
  check "kubectl raft status -o json: status.leader and the members as the operator wrote them"
  out=$(kraft status "$RC" -n "$E2E_NS" -o json)
  [[ $(jq -r .status.leader <<<"$out") == "$leader" ]] || fail "-o json leader $(jq -r .status.leader <<<"$out"), want ${leader}"
  [[ $(jq -r '[.status.members[] | select(.role == "leader")] | length' <<<"$out") == 1 ]] || fail "-o json: not one leader member"
  ok "JSON: leader ${leader}"
  check "kubectl raft status of a RaftCluster that does not exist exits 1"
  code=0
  kraft status no-such-cluster -n "$E2E_NS" >/dev/null 2>&1 || code=$?
  ((code == 1)) || fail "exit code ${code}, want 1"
  ok "exit code 1"

  local target
  target=$(followers | tail -n 1)
  check "kubectl raft transfer-leader ${RC} --to ${target}: ${target} leads, voters unchanged"
  local voters
  voters=$(voter_ids)
  kraft transfer-leader "$RC" -n "$E2E_NS" --to "$target" || fail "kubectl raft transfer-leader failed"
  # The status follows at the next poll (no Kubernetes event marks a leadership change;
  # the idle requeue is 60 s).
  wait_for "${target} is the leader in the status" 120 leader_is "$target"
  [[ $(voter_ids) == "$voters" ]] || fail "a leadership transfer changed the voters: $(voter_ids), were ${voters}"
  ok "leader ${target}"
}
leader_is() { [[ $(leader_pod) == "$1" ]]; }
