# shellcheck shell=bash
# Step 8: delete the RaftCluster and helm uninstall: what they own is gone; PVCs follow
# the retention policy (default whenDeleted: Retain).

owned_left() {
  k get statefulsets,services,poddisruptionbudgets,pods -o json |
    jq -r --arg rc "$RC" '.items[] | select(any(.metadata.ownerReferences[]?; .kind == "RaftCluster" and .name == $rc)
      or (.metadata.name | test("^" + $rc + "(-|$)"))) | "\(.kind)/\(.metadata.name)"'
}
nothing_owned_left() { [[ -z $(owned_left) ]]; }
helm_objects_left() {
  {
    kubectl -n "$OPERATOR_NS" get deploy,sa,svc,role,rolebinding,pdb -l "app.kubernetes.io/instance=${RELEASE}" -o name
    kubectl get clusterrole,clusterrolebinding -l "app.kubernetes.io/instance=${RELEASE}" -o name
  } 2>/dev/null
}

ephemeral_available() {
  # shellcheck disable=SC2034 # rc_json reads $RC (dynamic scope)
  local RC=ephemeral
  cluster_available
}
has_pvc_for() { k get pvc -o name | grep -q -- "-$1-[0-9]*\$"; }
no_pvc_for() { ! has_pvc_for "$1"; }
no_helm_objects_left() { [[ -z $(helm_objects_left) ]]; }

e2e_step_8() {
  local pvcs
  pvcs=$(k get pvc -o name | sort)
  check "kubectl delete raftcluster ${RC}"
  k delete raftcluster "$RC" --wait=true --timeout=180s
  wait_for "StatefulSets, Services, PDB and pods of ${RC} gone" 180 nothing_owned_left
  ok "owned objects gone"
  check "PVCs are retained (whenDeleted: Retain): ${pvcs//$'\n'/ }"
  [[ $(k get pvc -o name | sort) == "$pvcs" ]] || fail "PVCs changed: $(k get pvc -o name | tr '\n' ' '), want ${pvcs}"
  ok "PVCs kept"
  k delete pvc --all --wait=true --timeout=120s >/dev/null

  check "a 1-voter cluster with pvcRetentionPolicy.whenDeleted: Delete loses its PVC with it"
  k apply -f - <<EOF
apiVersion: raftkv.dev/v1alpha1
kind: RaftCluster
metadata: {name: ephemeral}
spec:
  replicas: 1
  image: ${NODE_IMAGE}
  storage: {size: 64Mi}
  pvcRetentionPolicy: {whenDeleted: Delete}
EOF
  wait_for "RaftCluster ephemeral Available" 180 ephemeral_available
  has_pvc_for ephemeral || fail "ephemeral has no PVC: $(k get pvc -o name | tr '\n' ' ')"
  k delete raftcluster ephemeral --wait=true --timeout=120s
  wait_for "the PVC of ephemeral deleted with it" 120 no_pvc_for ephemeral
  ok "PVC deleted with the cluster (whenDeleted: Delete)"

  check "the operator never hit an RBAC refusal (least-privilege rules are enough)"
  local denied
  # RBAC refusals say 'is forbidden: User "system:serviceaccount:…" cannot …'; other
  # refusals (e.g. step 12's claim of a class that cannot expand) are not RBAC's.
  denied=$(kubectl -n "$OPERATOR_NS" logs -l "app.kubernetes.io/instance=${RELEASE}" --tail=-1 --prefix 2>&1 | grep -iE 'forbidden: User' | head -n 5 || true)
  [[ -z $denied ]] || fail "RBAC refusals in the operator logs: ${denied}"
  ok "no 'forbidden' in the operator logs"

  check "helm uninstall ${RELEASE}"
  helm uninstall "$RELEASE" -n "$OPERATOR_NS" --wait --timeout 120s
  wait_for "the chart's objects gone" 120 no_helm_objects_left
  ok "Deployment, ServiceAccount, Service, RBAC, PDB gone"
  check "the CRD stays (the chart's template carries helm.sh/resource-policy: keep)"
  kubectl get crd raftclusters.raftkv.dev -o name >/dev/null || fail "the CRD was deleted"
  ok "CRD kept, as documented"
  kubectl delete namespace "$OPERATOR_NS" --wait=false >/dev/null
}
