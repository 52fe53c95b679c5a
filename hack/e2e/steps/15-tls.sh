# shellcheck shell=bash
# Step 15: TLS on by default (issue 12), on the demo cluster:
# - a client without a certificate can neither read nor write;
# - the `<rc>-client` (kv role) certificate reads and writes but cannot change the
#   membership (PermissionDenied naming the admin role);
# - a peer certificate of another cluster's CA is refused on the peer port;
# - the raftkv.dev/renew-certificates annotation renews the certificates while a
#   writer writes: no failed write, no acknowledged write lost, the same leader and
#   term, a CertificatesRenewed Event, and every pod serving the new certificate.

TLS_OTHER_RC=tls-other

# pod_cert_expiry POD: the notAfter of POD's serving certificate (its metrics gauge),
# read from the client pod over the plaintext metrics port.
pod_cert_expiry() {
  csh "wget -qO- http://${1}.${RC}-peer.${E2E_NS}.svc:9100/metrics" |
    awk '$1 == "raftkv_tls_certificate_expiry_timestamp_seconds" {print $2}'
}

# voter_pods: the demo cluster's voter pod names, one a line.
voter_pods() { k get pods -l "app.kubernetes.io/instance=${RC},app.kubernetes.io/component=voter" -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}'; }

# all_pods_serve_newer_than FILE: every voter's gauge is greater than the one in FILE
# ("pod expiry" lines).
all_pods_serve_newer_than() {
  local pod before now
  while read -r pod before; do
    now=$(pod_cert_expiry "$pod")
    [[ -n $now ]] || return 1
    awk -v a="$now" -v b="$before" 'BEGIN {exit !(a > b)}' || return 1
  done <"$1"
}

# term_of_cluster: the highest term any member reports (raftctl status); fails if none does.
term_of_cluster() { cluster_status_json | jq -er '[.members[]?.term // empty] | max'; }

other_tls_secret() {
  kubectl -n "$E2E_NS" get secret "${TLS_OTHER_RC}-tls" >/dev/null 2>&1
}

e2e_step_15() {
  local out rc d kv
  check "the RaftCluster defaults to TLS with required client certificates; the Secrets exist"
  [[ $(rc_field .spec.tls.enabled) == true && $(rc_field .spec.tls.clientAuth) == Required ]] ||
    fail "spec.tls is $(rc_json | jq -c .spec.tls)"
  for s in "${RC}-ca" "${RC}-tls" "${RC}-client" "${RC}-admin"; do
    k get secret "$s" >/dev/null || fail "no Secret ${s}"
  done
  ok "Secrets ${RC}-ca, -tls, -client, -admin; status.certificates $(rc_json | jq -c .status.certificates)"

  check "a client without a certificate cannot read or write"
  rc=0
  out=$(cexec raftctl --endpoints "$(client_endpoint)" --timeout 2s get k/0001 2>&1) || rc=$?
  ((rc != 0)) || fail "a plaintext read succeeded: ${out}"
  say "    plaintext get: ${out:0:160}"
  d=$(tls_dir admin)
  rc=0
  out=$(cexec raftctl --cacert "${d}/ca.crt" --endpoints "$(client_endpoint)" --timeout 2s put tls/anon x 2>&1) || rc=$?
  ((rc != 0)) || fail "a write without a client certificate succeeded: ${out}"
  [[ $out == *"requires a client certificate"* ]] || fail "the refusal does not say a client certificate is needed: ${out}"
  ok "refused: ${out:0:160}"

  check "the ${RC}-client certificate (role kv) reads and writes, but cannot change the membership"
  kv=$(tls_dir client)
  [[ -n $kv ]] || fail "cannot copy Secret ${RC}-client into the client pod"
  cexec raftctl --cacert "${kv}/ca.crt" --cert "${kv}/tls.crt" --key "${kv}/tls.key" --endpoints "$(client_endpoint)" put tls/kv v1 >/dev/null ||
    fail "a kv-role write failed"
  out=$(cexec raftctl --cacert "${kv}/ca.crt" --cert "${kv}/tls.crt" --key "${kv}/tls.key" --endpoints "$(client_endpoint)" get tls/kv) ||
    fail "a kv-role read failed"
  [[ $out == *v1* ]] || fail "kv-role read returned '${out}'"
  rc=0
  out=$(cexec raftctl --cacert "${kv}/ca.crt" --cert "${kv}/tls.crt" --key "${kv}/tls.key" --endpoints "$(client_endpoint)" \
    member remove "$(node_id_of "${RC}-0")" 2>&1) || rc=$?
  ((rc != 0)) || fail "a kv-role certificate removed a member: ${out}"
  [[ $out == *PermissionDenied* && $out == *admin* ]] || fail "the refusal is not PermissionDenied naming the admin role: ${out}"
  [[ $(count_csv "$(voter_ids)") == 3 ]] || fail "voters changed: $(voter_ids)"
  ok "kv role: read and write; member remove refused: ${out:0:200}"

  check "a peer certificate from another cluster's CA is refused on the peer port"
  printf 'apiVersion: raftkv.dev/v1alpha1\nkind: RaftCluster\nmetadata: {name: %s}\nspec: {replicas: 1, storage: {size: 64Mi}, pvcRetentionPolicy: {whenDeleted: Delete}}\n' \
    "$TLS_OTHER_RC" | k apply -f - >/dev/null
  wait_for "Secret ${TLS_OTHER_RC}-tls (the other cluster's node certificate)" 60 other_tls_secret
  local other="/tmp/tls/other-peer"
  copy_secret_to_pod "$(k get secret "${TLS_OTHER_RC}-tls" -o json)" "$other" || fail "cannot copy ${TLS_OTHER_RC}-tls"
  # Our own CA to verify the server: what fails is the server refusing our certificate.
  rc=0
  out=$(cexec raftctl --cacert "${d}/ca.crt" --cert "${other}/tls.crt" --key "${other}/tls.key" \
    --endpoints "$(pod_endpoint "${RC}-0" | sed 's/:7000$/:7001/')" --timeout 3s status 2>&1) || rc=$?
  ((rc != 0)) || fail "the peer port accepted another cluster's certificate: ${out}"
  [[ $out == *"refused our certificate"* || $out == *"did it refuse our certificate"* ]] ||
    fail "the refusal is not the server refusing our certificate: ${out}"
  ok "refused: ${out:0:200}"
  # The control: this cluster's own admin certificate completes the handshake and is then
  # refused by role (the peer port serves peers only): the CA was the reason above.
  rc=0
  out=$(cexec raftctl --cacert "${d}/ca.crt" --cert "${d}/tls.crt" --key "${d}/tls.key" \
    --endpoints "$(pod_endpoint "${RC}-0" | sed 's/:7000$/:7001/')" --timeout 3s status 2>&1) || rc=$?
  if ((rc == 0)) || [[ $out != *PermissionDenied* ]]; then
    fail "our own admin certificate on the peer port: ${out}"
  fi
  ok "control: our own CA's admin certificate passes the handshake, then PermissionDenied (${out:0:120})"
  k delete raftcluster "$TLS_OTHER_RC" --wait=false >/dev/null

  check "renew the certificates (annotation raftkv.dev/renew-certificates) while a writer writes"
  local before leader term
  before=$(mktemp)
  for p in $(voter_pods); do
    echo "$p $(pod_cert_expiry "$p")" >>"$before"
  done
  awk 'NF != 2 {exit 1}' "$before" || fail "no certificate expiry gauge on every pod: $(cat "$before")"
  say "    before: $(tr '\n' ' ' <"$before")"
  leader=$(leader_pod)
  term=$(term_of_cluster) || fail "no member reports a term: $(rctl status -o json 2>&1 | head -c 400)"
  writer_start tls-w/
  k annotate raftcluster "$RC" --overwrite "raftkv.dev/renew-certificates=e2e-$(date +%s)" >/dev/null
  wait_for "a CertificatesRenewed Event" 60 has_event CertificatesRenewed
  say "    $(events_with_reason CertificatesRenewed | tail -n 1 | cut -c1-240)"
  # The kubelet rewrites Secret volumes on its sync (up to about a minute and a half).
  wait_for "every voter serving the renewed certificate (its expiry gauge moved)" 180 all_pods_serve_newer_than "$before"
  writer_acked_at_least "$(($(writer_acked) + 5))" || wait_for "5 more acknowledged writes" 30 writer_acked_at_least "$(($(writer_acked) + 5))"
  writer_stop
  [[ $(writer_failed) == 0 ]] || fail "$(writer_failed) writes failed during the renewal"
  writer_check_no_loss
  [[ $(leader_pod) == "$leader" ]] || fail "the leader changed: ${leader} -> $(leader_pod)"
  local term_after
  term_after=$(term_of_cluster) || fail "no member reports a term after the renewal"
  [[ $term_after == "$term" ]] || fail "the term changed: ${term} -> ${term_after}"
  ok "renewed with no failed write, leader ${leader} and term ${term} unchanged"
  rm -f "$before"
}
