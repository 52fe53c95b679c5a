# shellcheck shell=bash
# Step 2: a 3-voter cluster from examples/, Available, a leader, 1,000 keys.

KEYS=1000

status_has_leader() { [[ -n $(leader_pod) ]]; }
one_leader_label() { [[ $(pods_with_role leader | wc -l) == 1 ]]; }
voters_are() { [[ $(count_csv "$(voter_ids)") == "$1" ]]; }

e2e_step_2() {
  check "kubectl apply -f examples/raftcluster.yaml (3 voters)"
  k apply -f examples/raftcluster.yaml
  check "storage may not shrink, nor change class, on the existing cluster (messages name spec.storage)"
  local out rc=0
  out=$(k patch raftcluster "$RC" --type merge -p '{"spec":{"storage":{"size":"512Mi"}}}' 2>&1) || rc=$?
  ((rc != 0)) || fail "storage shrink accepted: ${out}"
  say "    kubectl said: ${out}"
  [[ $out == *spec.storage* && $out == *"never shrink"* ]] || fail "refusal does not say spec.storage never shrinks: ${out}"
  rc=0
  out=$(k patch raftcluster "$RC" --type merge -p '{"spec":{"storage":{"storageClassName":"other"}}}' 2>&1) || rc=$?
  ((rc != 0)) || fail "storageClassName change accepted: ${out}"
  [[ $out == *spec.storage* && $out == *immutable* ]] || fail "refusal does not name storageClassName as immutable: ${out}"
  ok "shrink and class change refused"

  wait_for "RaftCluster ${RC} Available" 240 cluster_available
  wait_for "a leader in the status" 60 status_has_leader
  check "the raft-node pods run in a namespace that enforces Pod Security \"restricted\""
  local probe prc=0
  probe=$(k run psa-probe --image="$NODE_IMAGE" --restart=Never --dry-run=server 2>&1) || prc=$?
  ((prc != 0)) || fail "a pod without a hardened securityContext was admitted: ${probe}"
  [[ $probe == *restricted* ]] || fail "the refusal does not name the restricted profile: ${probe}"
  ok "an unhardened pod is refused (${probe:0:110}...), the RaftCluster's pods were admitted"
  check "NetworkPolicy ${RC}-peer: the peer port only from the cluster's own pods"
  local np
  np=$(k get networkpolicy "${RC}-peer" -o json) || fail "no NetworkPolicy ${RC}-peer"
  jq -e --arg rc "$RC" '.spec.ingress | any(.ports[0].port == 7001 and .from[0].podSelector.matchLabels["app.kubernetes.io/instance"] == $rc)' <<<"$np" >/dev/null ||
    fail "NetworkPolicy ${RC}-peer does not limit the peer port to the cluster's pods: $(jq -c .spec <<<"$np")"
  ok "peer port limited to app.kubernetes.io/instance=${RC} (enforced where the network plugin supports NetworkPolicy)"
  # The client port: this namespace's pods and the operator's namespace (the default of
  # spec.networkPolicy.clientFrom); the metrics port open.
  jq -e --arg ns "$OPERATOR_NS" '.spec.ingress | any(.ports == [{"port": 7000, "protocol": "TCP"}]
      and (.from | length) == 2 and .from[0] == {"podSelector": {}}
      and .from[1].namespaceSelector.matchLabels["kubernetes.io/metadata.name"] == $ns)' <<<"$np" >/dev/null ||
    fail "NetworkPolicy ${RC}-peer does not limit the client port to the namespace and the operator's (${OPERATOR_NS}): $(jq -c .spec.ingress <<<"$np")"
  jq -e '.spec.ingress | any(.ports[0].port == 9100 and .from == null)' <<<"$np" >/dev/null ||
    fail "the metrics port is not open by default: $(jq -c .spec.ingress <<<"$np")"
  ok "client port from this namespace and ${OPERATOR_NS} only; metrics from anywhere"
  check "kubectl get raft shows the leader"
  local table
  table=$(k get raft "$RC")
  say "$(sed 's/^/    /' <<<"$table")"
  [[ $table == *"$(leader_pod)"* ]] || fail "kubectl get raft does not show the leader $(leader_pod)"
  ok "leader $(leader_pod)"
  wait_for "exactly one pod labelled raftkv.dev/role=leader" 60 one_leader_label
  say "$(k get pods -L raftkv.dev/role | sed 's/^/    /')"
  wait_for "3 voters in the cluster's own membership" 60 voters_are 3
  ok "voters: $(voter_ids)"

  check "write ${KEYS} keys k/0001..k/${KEYS} through the client Service $(client_endpoint)"
  put_keys k/ "$KEYS"
  local n
  n=$(range_keys "$(client_endpoint)" k/ | wc -l)
  [[ $n == "$KEYS" ]] || fail "range k/ returned ${n} keys, want ${KEYS}"
  [[ $(kv_value k/0042) == *v42* ]] || fail "get k/0042 = '$(kv_value k/0042)', want v42"
  ok "${KEYS} keys written and read back"
}
