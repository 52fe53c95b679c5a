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
    kubectl -n "$OPERATOR_NS" get deploy,sa,svc,role,rolebinding -l "app.kubernetes.io/instance=${RELEASE}" -o name
    kubectl get clusterrole,clusterrolebinding -l "app.kubernetes.io/instance=${RELEASE}" -o name
  } 2>/dev/null
}

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

  check "helm uninstall ${RELEASE}"
  helm uninstall "$RELEASE" -n "$OPERATOR_NS" --wait --timeout 120s
  wait_for "the chart's objects gone" 120 no_helm_objects_left
  ok "Deployment, ServiceAccount, Service, RBAC gone"
  check "the CRD stays (Helm never deletes crds/)"
  kubectl get crd raftclusters.raftkv.dev -o name >/dev/null || fail "the CRD was deleted"
  ok "CRD kept, as documented"
  kubectl delete namespace "$OPERATOR_NS" --wait=false >/dev/null
}
