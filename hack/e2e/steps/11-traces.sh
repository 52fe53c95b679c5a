# shellcheck shell=bash
# Step 11: traces in a trace backend. Jaeger (built from source, examples/tracing/jaeger.yaml)
# receives OTLP from the operator and from every node of a RaftCluster with spec.tracing;
# a client write is one trace across raftctl and the members, and a membership change is one
# trace from the operator's step to the members committing the new configuration. Runs on
# its own RaftCluster `traced` (between 10 and 8: it needs the operator).

TRACED_RC=traced
JAEGER_OTLP="http://jaeger.${E2E_NS}.svc:4317"
JAEGER_QUERY="http://jaeger.${E2E_NS}.svc:16686"

jaeger_ready() { [[ $(k get deploy jaeger -o jsonpath='{.status.readyReplicas}') == 1 ]]; }

# trace_spans ID: the trace's spans as one JSON array of
# {service, instance, pod, name, kind, parent, events}, read from Jaeger's OTLP query API
# (api/v3) through the client pod. Fails while Jaeger has not indexed the trace.
trace_spans() {
  csh "wget -qO- ${JAEGER_QUERY}/api/v3/traces/$1" | jq -c '
    [.result.resourceSpans[]
      | (.resource.attributes | map({(.key): .value.stringValue}) | add) as $r
      | .scopeSpans[].spans[]
      | {service: $r["service.name"], instance: $r["service.instance.id"], pod: $r["k8s.pod.name"],
         name, kind, parent: (.parentSpanId // ""), events: [.events[]?.name]}]'
}

# trace_has ID JQ_FILTER: the trace exists and the filter (over trace_spans' array) is true.
trace_has() {
  local spans
  spans=$(trace_spans "$1" 2>/dev/null) || return 1
  jq -e "$2" <<<"$spans" >/dev/null
}

# traced_change REASON: the trace ID status.lastMembershipChange records for REASON.
traced_change() {
  local RC=$TRACED_RC
  rc_json | jq -r --arg k "$1" '.status.lastMembershipChange | select(.kind == $k) | .traceId // empty'
}
has_traced_change() { [[ -n $(traced_change "$1") ]]; }

# lease_held_by_tracing_operator: the Lease holder is a live pod of the upgraded
# Deployment (an old replica keeps the Lease until it has shut down).
lease_held_by_tracing_operator() {
  local h
  h=$(lease_holder)
  [[ -n $h ]] && kubectl -n "$OPERATOR_NS" get pod "$h" -o json 2>/dev/null | jq -e '
    .metadata.deletionTimestamp == null
    and any(.spec.containers[0].env[]?; .name == "OTEL_EXPORTER_OTLP_ENDPOINT")' >/dev/null
}

# remove_traced_cluster: the RaftCluster of this step and its volumes (also leftovers).
remove_traced_cluster() {
  k delete raftcluster "$TRACED_RC" --ignore-not-found --wait=true --timeout=120s >/dev/null
  k delete pvc -l app.kubernetes.io/instance="$TRACED_RC" --ignore-not-found --wait=true --timeout=120s >/dev/null
}

e2e_step_11() {
  remove_traced_cluster
  check "Jaeger from examples/tracing/jaeger.yaml (image built from source: ${JAEGER_IMAGE})"
  sed -e "s|image: jaegertracing/jaeger:.*|image: ${JAEGER_IMAGE}|" -e "s|imagePullPolicy: IfNotPresent|imagePullPolicy: ${JAEGER_PULL}|" \
    examples/tracing/jaeger.yaml | k apply -f - >/dev/null
  wait_for "Jaeger ready" 120 jaeger_ready
  ok "Jaeger running"

  check "helm upgrade: the operator exports its spans to Jaeger"
  helm upgrade "$RELEASE" charts/raft-operator --namespace "$OPERATOR_NS" --reuse-values \
    --set tracing.enabled=true --set tracing.endpoint="$JAEGER_OTLP" --wait --timeout 180s >/dev/null
  kubectl -n "$OPERATOR_NS" rollout status deploy/"$RELEASE" --timeout=180s >/dev/null
  wait_for "an upgraded (exporting) operator holds the Lease" 120 lease_held_by_tracing_operator
  ok "operator upgraded, Lease held by $(lease_holder)"

  check "RaftCluster ${TRACED_RC} from examples/tracing/raftcluster-traced.yaml"
  sed -e "s|http://jaeger.observability.svc:4317|${JAEGER_OTLP}|" -e "s|image: raftkv/raft-node:dev|image: ${NODE_IMAGE}|" \
    examples/tracing/raftcluster-traced.yaml | k apply -f - >/dev/null
  local RC=$TRACED_RC
  wait_for "RaftCluster ${RC} Available" 240 cluster_available
  wait_for "a leader in the status" 60 status_has_leader

  check "bootstrap: status.lastMembershipChange names the trace of the Initialize step"
  local id
  wait_for "a trace ID for Bootstrapped in status.lastMembershipChange" 60 has_traced_change Bootstrapped
  id=$(traced_change Bootstrapped)
  wait_for "trace ${id}: operator step -> Cluster/Initialize on a member" 60 trace_has "$id" '
    any(.[]; .service == "raft-operator" and .name == "raftcluster.initialize" and .parent == "")
    and any(.[]; .service == "raft-node" and .name == "raftkv.v1.Cluster/Initialize" and .kind == 2)'
  ok "initialize trace ${id}"

  check "raftctl --trace put: one trace across raftctl, the member it reached and the followers"
  local out
  # shellcheck disable=SC2046 # tls_flags is words without spaces
  out=$(cexec /usr/local/bin/busybox env OTEL_EXPORTER_OTLP_ENDPOINT="$JAEGER_OTLP" \
    raftctl $(tls_flags) --endpoints "$(client_endpoint)" --trace put traced/key v1 2>&1) || fail "raftctl --trace put failed: ${out}"
  # The only 32-hex-digit token in the output is the trace ID (`trace: <id>` on stderr).
  id=$(grep -oE '\b[0-9a-f]{32}\b' <<<"$out" | head -n 1)
  [[ -n $id ]] || fail "raftctl --trace printed no trace ID: ${out}"
  wait_for "trace ${id} complete in Jaeger" 60 trace_has "$id" '
    (map(select(.service == "raft-node") | .pod) | unique | length) >= 3
    and (map(select(.service == "raft-node") | .instance) | unique | length) >= 3
    and any(.[]; .service == "raftctl" and .name == "raftctl put" and .parent == "")
    and any(.[]; .name == "raftkv.v1.KV/Put" and .kind == 2)
    and any(.[]; .name == "raftkv.v1.RaftPeer/AppendEntries" and .kind == 2)
    and any(.[]; .name == "raft.log.append")
    and (map(select(.name == "raft.apply")) | length) >= 2'
  say "$(trace_spans "$id" | jq -r '.[] | "    \(.service)/\(.pod // .instance // "-")  \(.name)"' | sort | uniq -c)"
  ok "put trace ${id}: spans from raftctl and 3 members"

  check "raftctl trace get shows the same trace from the terminal"
  out=$(cexec raftctl trace get "$id" --query-url "$JAEGER_QUERY") || fail "raftctl trace get failed: ${out}"
  say "${out//$'\n'/$'\n'    }"
  [[ $out == *"raftkv.v1.RaftPeer/AppendEntries"* && $out == *"${RC}-"* ]] || fail "the waterfall lacks AppendEntries or pod names"
  ok "waterfall printed"

  check "scale ${RC} 3 -> 5: the promotion is one trace from the operator's step to the joint and final configuration"
  k patch raftcluster "$RC" --type merge -p '{"spec":{"replicas":5}}' >/dev/null
  wait_for "5 voters in the membership" 240 voters_are 5
  wait_for "a trace ID for MemberPromoted in status.lastMembershipChange" 60 has_traced_change MemberPromoted
  id=$(traced_change MemberPromoted)
  wait_for "trace ${id}: raftcluster.change_membership -> Cluster/ChangeMembership -> raft.membership committed" 60 trace_has "$id" '
    any(.[]; .service == "raft-operator" and .name == "raftcluster.change_membership" and .parent == "")
    and any(.[]; .service == "raft-node" and .name == "raftkv.v1.Cluster/ChangeMembership" and .kind == 2)
    and any(.[]; .name == "raft.membership" and (.events | index("raft.committed")))
    and (map(select(.service == "raft-node") | .pod) | unique | length) >= 3'
  events_with_reason MemberPromoted | grep -q "$id" ||
    fail "no MemberPromoted Event names trace ${id}"
  ok "membership trace ${id}, named in the MemberPromoted Event"

  check "the guide's Kubernetes experiment (hack/guide/k8s-replace.sh): a wiped pod swapped in by one traced joint change"
  local glog
  glog=$(mktemp "${TMPDIR:-/tmp}/e2e-k8s-replace.XXXXXX")
  NAMESPACE="$E2E_NS" CLUSTER="$RC" JAEGER_NS="$E2E_NS" RAFTCTL="${CARGO_TARGET_DIR:-$HOME/.cache/raftkv/target}/debug/raftctl" \
    hack/guide/k8s-replace.sh --short >"$glog" 2>&1 ||
    fail "hack/guide/k8s-replace.sh failed: $(tail -n 20 "$glog")"
  say "$(grep -E '^(ok|FAIL) ' "$glog" | sed 's/^/    /')"
  ok "every claim of the guide's replacement section holds on Kubernetes"

  check "cleanup: delete ${RC} and its PVCs, operator tracing off"
  remove_traced_cluster
  helm upgrade "$RELEASE" charts/raft-operator --namespace "$OPERATOR_NS" --reuse-values \
    --set tracing.enabled=false --wait --timeout 180s >/dev/null
  ok "done"
}
