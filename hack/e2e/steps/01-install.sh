# shellcheck shell=bash
# Step 1: helm install the operator; the API server itself refuses invalid RaftClusters.

OPERATOR_LEASE=raft-operator-leader

operator_pods_ready() {
  local want=$1 ready
  ready=$(kubectl -n "$OPERATOR_NS" get deploy "$RELEASE" -o jsonpath='{.status.readyReplicas}')
  [[ ${ready:-0} == "$want" ]]
}

lease_holder() {
  kubectl -n "$OPERATOR_NS" get lease "${OPERATOR_LEASE}" -o jsonpath='{.spec.holderIdentity}'
}
lease_held() { [[ -n $(lease_holder) ]]; }

# expect_refused WHAT FIELD MESSAGE_PART: stdin is applied; the API server must refuse it
# with a message naming FIELD and containing MESSAGE_PART.
expect_refused() {
  local what=$1 field=$2 part=$3 out rc=0
  check "${what} is refused by the API server, naming ${field}"
  out=$(k apply -f - 2>&1) || rc=$?
  ((rc != 0)) || fail "${what} was accepted: ${out}"
  say "    kubectl said: ${out}"
  [[ $out == *"$field"* ]] || fail "the refusal does not name ${field}: ${out}"
  [[ $out == *"$part"* ]] || fail "the refusal does not say '${part}': ${out}"
  ok "refused: ${what}"
}

# expect_accepted WHAT: stdin passes the API server's validation (server-side dry run:
# nothing is created).
expect_accepted() {
  local what=$1 out rc=0
  check "${what} is accepted by the API server (dry run)"
  out=$(k apply --dry-run=server -f - 2>&1) || rc=$?
  ((rc == 0)) || fail "${what} was refused: ${out}"
  ok "accepted: ${out}"
}

e2e_step_1() {
  check "helm install ${RELEASE} into ${OPERATOR_NS} (2 replicas, leader election)"
  helm install "$RELEASE" charts/raft-operator --namespace "$OPERATOR_NS" --create-namespace \
    --set image.repository="${OPERATOR_IMAGE%:*}" --set image.tag="${OPERATOR_IMAGE##*:}" \
    --set leaderElection.leaseName="$OPERATOR_LEASE" --set logging.level="info\\,raft_operator=debug" \
    --set test.image="$HELM_TEST_IMAGE" --wait --timeout 180s
  check "the CRD is established"
  kubectl wait --for=condition=Established crd/raftclusters.raftkv.dev --timeout=60s >/dev/null
  wait_for "operator Deployment 2/2 ready" 120 operator_pods_ready 2
  wait_for "an operator holds the leader-election Lease ${OPERATOR_NS}/${OPERATOR_LEASE}" 60 lease_held
  ok "operator running, Lease held by $(lease_holder)"
  check "helm test ${RELEASE}: the chart's own test pod reaches the operator's /healthz"
  local out
  out=$(helm test "$RELEASE" --namespace "$OPERATOR_NS" --timeout 120s 2>&1) || fail "helm test failed: ${out}"
  [[ $out == *"Phase:"*"Succeeded"* ]] || fail "helm test did not report a succeeded test: ${out}"
  ok "helm test: $(grep -E 'TEST SUITE|Phase' <<<"$out" | tr -s ' ' | paste -sd ' ')"

  expect_refused "replicas: 0" "spec.replicas" "0" <<EOF
apiVersion: raftkv.dev/v1alpha1
kind: RaftCluster
metadata: {name: bad-replicas}
spec: {replicas: 0, image: ${NODE_IMAGE}}
EOF
  expect_refused "replicas: 10" "spec.replicas" "9" <<EOF
apiVersion: raftkv.dev/v1alpha1
kind: RaftCluster
metadata: {name: bad-replicas}
spec: {replicas: 10, image: ${NODE_IMAGE}}
EOF
  expect_refused "an election timeout under 3 heartbeats" "spec.raft" "electionTimeoutMinMs" <<EOF
apiVersion: raftkv.dev/v1alpha1
kind: RaftCluster
metadata: {name: bad-timings}
spec: {replicas: 3, image: ${NODE_IMAGE}, raft: {heartbeatMs: 100, electionTimeoutMinMs: 200}}
EOF
  expect_refused "storage.size that is not a quantity" "spec.storage" "must be a quantity" <<EOF
apiVersion: raftkv.dev/v1alpha1
kind: RaftCluster
metadata: {name: bad-storage}
spec: {replicas: 1, image: ${NODE_IMAGE}, storage: {size: 1GB}}
EOF
  expect_refused "a pod label with the operator's prefix" "spec.podLabels" "may not use the app.kubernetes.io/" <<EOF
apiVersion: raftkv.dev/v1alpha1
kind: RaftCluster
metadata: {name: bad-labels}
spec: {replicas: 1, image: ${NODE_IMAGE}, podLabels: {app.kubernetes.io/component: mine}}
EOF
  # Specs the API server used to accept although they can never run (issue 17).
  local long48 long47
  long48=$(printf 'a%.0s' {1..48})
  long47=$(printf 'a%.0s' {1..47})
  expect_refused "a 48-character name (its read replicas' revision label would exceed 63)" \
    "metadata.name" "must be at most 47 characters" <<EOF
apiVersion: raftkv.dev/v1alpha1
kind: RaftCluster
metadata: {name: ${long48}}
spec: {replicas: 1, image: ${NODE_IMAGE}}
EOF
  expect_refused "a name with a dot (Services need a DNS-1035 label)" "metadata.name" "DNS-1035" <<EOF
apiVersion: raftkv.dev/v1alpha1
kind: RaftCluster
metadata: {name: bad.name}
spec: {replicas: 1, image: ${NODE_IMAGE}}
EOF
  # One field alone, checked against raft-node's defaults (heartbeat 50, min 200, max 400),
  # which the message names.
  expect_refused "heartbeatMs: 500 alone (the default min 200 is under 3 heartbeats)" "spec.raft" \
    "electionTimeoutMinMs must be at least 3 times heartbeatMs; an unset field takes the raft-node default (heartbeatMs 50, electionTimeoutMinMs 200" <<EOF
apiVersion: raftkv.dev/v1alpha1
kind: RaftCluster
metadata: {name: bad-timings}
spec: {replicas: 1, image: ${NODE_IMAGE}, raft: {heartbeatMs: 500}}
EOF
  expect_refused "electionTimeoutMinMs: 30 alone (under 3 default heartbeats)" "spec.raft" \
    "electionTimeoutMinMs must be at least 3 times heartbeatMs; an unset field takes the raft-node default (heartbeatMs 50," <<EOF
apiVersion: raftkv.dev/v1alpha1
kind: RaftCluster
metadata: {name: bad-timings}
spec: {replicas: 1, image: ${NODE_IMAGE}, raft: {electionTimeoutMinMs: 30}}
EOF
  expect_refused "electionTimeoutMaxMs: 100 alone (not above the default min 200)" "spec.raft" \
    "electionTimeoutMaxMs must be greater than electionTimeoutMinMs; an unset field takes the raft-node default" <<EOF
apiVersion: raftkv.dev/v1alpha1
kind: RaftCluster
metadata: {name: bad-timings}
spec: {replicas: 1, image: ${NODE_IMAGE}, raft: {electionTimeoutMaxMs: 100}}
EOF
  expect_accepted "a 47-character name with 16 read replicas, no spec.image (the operator's default) and heartbeatMs: 60 alone" <<EOF
apiVersion: raftkv.dev/v1alpha1
kind: RaftCluster
metadata: {name: ${long47}}
spec: {replicas: 1, readReplicas: 16, raft: {heartbeatMs: 60}}
EOF

  check "nothing was created by the refused applies"
  [[ -z $(k get raftclusters -o name) ]] || fail "a refused RaftCluster exists: $(k get raftclusters -o name)"
  ok "no RaftCluster exists"
  # The storage-immutability refusal needs an existing cluster: step 2 checks it on ${RC}.
}
