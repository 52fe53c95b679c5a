# shellcheck shell=bash
# Step 9: the chart with watchNamespace set: Role instead of ClusterRole, and the operator
# manages RaftClusters in that namespace only.

e2e_step_9() {
  local ns_ops=raftkv-e2e-ops release=scoped
  check "helm install ${release} with watchNamespace=${E2E_NS} (1 replica)"
  # crds.enabled=false: the CRD kept from ${RELEASE} (step 8) stays its; one release owns it.
  helm install "$release" charts/raft-operator --namespace "$ns_ops" --create-namespace \
    --set image.repository="${OPERATOR_IMAGE%:*}" --set image.tag="${OPERATOR_IMAGE##*:}" \
    --set crds.enabled=false --set watchNamespace="$E2E_NS" --set replicas=1 --wait --timeout 180s >/dev/null
  check "no cluster-wide RBAC, a Role in ${E2E_NS}"
  [[ -z $(kubectl get clusterrole,clusterrolebinding -l "app.kubernetes.io/instance=${release}" -o name) ]] ||
    fail "cluster-wide RBAC with watchNamespace set: $(kubectl get clusterrole,clusterrolebinding -l "app.kubernetes.io/instance=${release}" -o name)"
  k get role "${release}-raft-operator" -o name >/dev/null || fail "no Role ${release}-raft-operator in ${E2E_NS}"
  ok "Role + RoleBinding in ${E2E_NS} only"
  check "a 1-voter RaftCluster in ${E2E_NS} becomes Available; one in ${ns_ops} is left alone"
  local spec="spec: {replicas: 1, image: ${NODE_IMAGE}, storage: {size: 64Mi}, pvcRetentionPolicy: {whenDeleted: Delete}}"
  printf 'apiVersion: raftkv.dev/v1alpha1\nkind: RaftCluster\nmetadata: {name: scoped}\n%s\n' "$spec" | k apply -f - >/dev/null
  printf 'apiVersion: raftkv.dev/v1alpha1\nkind: RaftCluster\nmetadata: {name: ignored}\n%s\n' "$spec" |
    kubectl -n "$ns_ops" apply -f - >/dev/null
  wait_for "RaftCluster scoped Available" 180 scoped_available
  kubectl -n "$ns_ops" get statefulset ignored >/dev/null 2>&1 && fail "the operator acted outside its namespace"
  [[ -z $(kubectl -n "$ns_ops" get raftcluster ignored -o jsonpath='{.status}') ]] || fail "RaftCluster ${ns_ops}/ignored got a status"
  ok "only ${E2E_NS} is managed"
  k delete raftcluster scoped --wait=true --timeout=120s >/dev/null
  kubectl -n "$ns_ops" delete raftcluster ignored --wait=true --timeout=60s >/dev/null
  helm uninstall "$release" -n "$ns_ops" --wait --timeout 120s >/dev/null
  kubectl delete namespace "$ns_ops" --wait=false >/dev/null
}

scoped_available() {
  # shellcheck disable=SC2034 # rc_json reads $RC (dynamic scope)
  local RC=scoped
  cluster_available
}
