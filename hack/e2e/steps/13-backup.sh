# shellcheck shell=bash
# Step 13: backups to a real S3 server in the cluster (issue #14 items 2 and 5).
# s3s-fs (built from crates.io by hack/local-cluster.sh build) runs as a pod
# (hack/backup/s3-server.yaml, Pod Security "restricted"); the bucket is made with a signed
# S3 CreateBucket request from the host. On its own RaftCluster `backed` (3 voters,
# spec.backup every minute, keep 1):
# - an invalid destination (s3 and filesystem at once) is refused by the API server;
# - 1,000 keys, then `kubectl apply` of a RaftClusterBackup without a destination (it takes
#   the cluster's): Succeeded, an Event BackupSucceeded, the object in the bucket with the
#   status' size, at least 1,000 keys at a revision;
# - a scheduled backup <cluster>-<yyyymmddhhmm> appears within 45 s of its minute and
#   succeeds; status.backup names it, BackupStale is False, the operator exports
#   raftkv_operator_backup_last_success_timestamp_seconds and _interval_seconds 60;
# - the next scheduled backup prunes the first (keep 1): its object and its
#   RaftClusterBackup are gone.
# - 100 more keys after that backup; then the RaftCluster and every PVC deleted, and a new
#   RaftCluster `restored` with spec.bootstrap.fromBackup (the bucket and the manual backup's
#   key): Restoring/Restored Events, 3 voters, exactly the 1,000 keys with their values and
#   none of the 100, a new cluster ID, and writes work; a bootstrap naming a damaged object
#   (the same bytes with one flipped, uploaded beside it) never serves: RestoreFailed names
#   the problem.
# Local cluster only: the host reaches the S3 Service's ClusterIP and the operator's pod IP.

BACKED_RC=backed
S3_IMAGE="localhost/raftkv/s3s-fs:local"
S3_BUCKET=raftkv-backups
S3_ACCESS_KEY=raftkv-e2e

# s3 CURL_ARGS...: a signed S3 request (SigV4) to the in-cluster server, from the host
# (s3s-fs requires x-amz-content-sha256; the payload is left unsigned).
s3() {
  curl --silent --show-error --fail --aws-sigv4 "aws:amz:us-east-1:s3" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
    --user "${S3_ACCESS_KEY}:${S3_SECRET_KEY}" "$@"
}
s3_url() { echo "http://$(k get service s3 -o jsonpath='{.spec.clusterIP}'):8333"; }
s3_ready() { [[ $(k get deploy s3 -o jsonpath='{.status.readyReplicas}') == 1 ]] && s3 -o /dev/null "$(s3_url)/"; }
# s3_size KEY: the stored object's Content-Length (fails when there is none).
s3_size() {
  s3 --head "$(s3_url)/${S3_BUCKET}/$1" | tr -d '\r' | awk -F': ' 'tolower($1) == "content-length" {print $2}'
}
s3_absent() {
  local code
  code=$(curl --silent -o /dev/null -w '%{http_code}' --aws-sigv4 "aws:amz:us-east-1:s3" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
    --user "${S3_ACCESS_KEY}:${S3_SECRET_KEY}" --head "$(s3_url)/${S3_BUCKET}/$1")
  [[ $code == 404 ]]
}

backup_json() { k get raftclusterbackup "$1" -o json; }
backup_phase() { k get raftclusterbackup "$1" -o jsonpath='{.status.phase}' 2>/dev/null; }
# backup_done NAME: Succeeded (0), still going (1); Failed stops the step with its message.
backup_done() {
  local phase
  phase=$(backup_phase "$1")
  [[ $phase == Failed ]] && fail "backup $1 Failed: $(k get raftclusterbackup "$1" -o jsonpath='{.status.message}')"
  [[ $phase == Succeeded ]]
}
backup_absent() { ! k get raftclusterbackup "$1" >/dev/null 2>&1; }
# scheduled_backups: names of the schedule's backups of the cluster, oldest first.
scheduled_backups() {
  k get raftclusterbackups -l "raftkv.dev/cluster=${BACKED_RC},raftkv.dev/scheduled=true" -o json |
    jq -r '.items | sort_by(.metadata.annotations["raftkv.dev/scheduled-at"]) | .[].metadata.name'
}
has_scheduled_backup() { [[ -n $(scheduled_backups) ]]; }
# A scheduled backup later than FIRST_SCHEDULED is the cluster's last success.
has_two_scheduled_successes() {
  local last
  last=$(backed_status_field lastBackup)
  [[ -n $last && $last != "$FIRST_SCHEDULED" && $last != "${BACKED_RC}-manual" ]]
}
backed_status_field() { k get raftcluster "$BACKED_RC" -o jsonpath="{.status.backup.$1}"; }
status_backup_is() { [[ $(backed_status_field lastBackup) == "$1" ]]; }
backup_events() {
  k get events -o json | jq -r --arg n "$1" --arg r "$2" \
    '.items[] | select(.involvedObject.kind == "RaftClusterBackup" and .involvedObject.name == $n and .reason == $r) | .message'
}
has_backup_event() { [[ -n $(backup_events "$1" "$2") ]]; }

operator_metrics() {
  local ip
  ip=$(kubectl -n "$OPERATOR_NS" get pod "$(lease_holder)" -o jsonpath='{.status.podIP}')
  curl --silent --show-error --fail "http://${ip}:8080/metrics"
}
metric_of_backed() {
  operator_metrics | grep "^$1{" | grep "namespace=\"${E2E_NS}\"" | grep "raftcluster=\"${BACKED_RC}\""
}

remove_backed_cluster() {
  k delete raftclusterbackups -l "raftkv.dev/cluster=${BACKED_RC}" --ignore-not-found --wait=true --timeout=60s >/dev/null 2>&1 || true
  k delete raftcluster "$BACKED_RC" --ignore-not-found --wait=true --timeout=120s >/dev/null
  k delete pvc -l app.kubernetes.io/instance="$BACKED_RC" --ignore-not-found --wait=true --timeout=120s >/dev/null
}

backed_manifest() {
  cat <<YAML
apiVersion: raftkv.dev/v1alpha1
kind: RaftCluster
metadata:
  name: ${BACKED_RC}
spec:
  replicas: 3
  image: ${NODE_IMAGE}
  imagePullPolicy: IfNotPresent
  storage: {size: 256Mi}
  backup:
    schedule: "* * * * *"
    retention: {keep: 1}
    destination:
      s3:
        endpoint: http://s3.${E2E_NS}.svc:8333
        bucket: ${S3_BUCKET}
        prefix: e2e
        forcePathStyle: true
        credentialsSecret: {name: s3-credentials}
YAML
}

e2e_step_13() {
  ((LOCAL_CLUSTER)) || fail "step 13 needs the local cluster (hack/local-cluster.sh): it loads the s3s-fs image into its containerd and reaches Service IPs from the host"
  need curl "apt-get install curl (signed S3 requests to the in-cluster server)"
  curl --help all 2>/dev/null | grep -q -- --aws-sigv4 || fail "this curl has no --aws-sigv4 (need curl >= 7.75)"
  local RC=$BACKED_RC
  remove_backed_cluster

  check "s3s-fs as a pod (hack/backup/s3-server.yaml), image from the binary hack/local-cluster.sh built"
  local bin
  bin="${RAFTKV_CACHE_DIR:-$HOME/.cache/raftkv}/bin/s3s-fs-$(source hack/local-cluster/versions.sh && echo "$S3S_FS_VERSION")/bin/s3s-fs"
  [[ -x $bin ]] || fail "${bin} missing: hack/local-cluster.sh build builds it"
  hack/images.sh load "$S3_IMAGE" "$bin" >/dev/null
  S3_SECRET_KEY=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
  k create secret generic s3-credentials --from-literal=accessKeyID="$S3_ACCESS_KEY" \
    --from-literal=secretAccessKey="$S3_SECRET_KEY" --dry-run=client -o yaml | k apply -f - >/dev/null
  sed "s|image: S3_IMAGE|image: ${S3_IMAGE}|" hack/backup/s3-server.yaml | k apply -f - >/dev/null
  k rollout restart deploy/s3 >/dev/null # a rerun picks up the new secret
  wait_for "the S3 server ready and answering signed requests" 120 s3_ready
  s3 -X PUT -o /dev/null "$(s3_url)/${S3_BUCKET}" || fail "CreateBucket ${S3_BUCKET} refused"
  ok "bucket ${S3_BUCKET} at $(s3_url) (admitted under Pod Security \"restricted\")"

  check "a destination with both s3 and filesystem is refused by the API server"
  local out rc=0
  out=$(backed_manifest | sed 's|      s3:|      filesystem: {path: /backups}\n      s3:|' | k apply --dry-run=server -f - 2>&1) || rc=$?
  ((rc != 0)) || fail "a destination with s3 and filesystem was accepted: ${out}"
  [[ $out == *"exactly one of s3 and filesystem"* ]] || fail "the refusal does not say why: ${out}"
  ok "refused: ${out:0:160}"

  check "RaftCluster ${RC}: 3 voters, spec.backup every minute to s3://${S3_BUCKET}/e2e, keep 1"
  backed_manifest | k apply -f - >/dev/null
  wait_for "RaftCluster ${RC} Available" 240 cluster_available
  put_keys k/ 1000
  ok "1,000 keys written"

  check "kubectl apply a RaftClusterBackup without a destination: it takes the cluster's"
  k apply -f - >/dev/null <<YAML
apiVersion: raftkv.dev/v1alpha1
kind: RaftClusterBackup
metadata:
  name: ${RC}-manual
spec:
  cluster: ${RC}
YAML
  wait_for "backup ${RC}-manual Succeeded" 120 backup_done "${RC}-manual"
  local b size key keys revision stored
  b=$(backup_json "${RC}-manual")
  size=$(jq -r .status.size <<<"$b")
  key=$(jq -r .status.objectKey <<<"$b")
  keys=$(jq -r .status.keys <<<"$b")
  revision=$(jq -r .status.revision <<<"$b")
  [[ $key == "e2e/${E2E_NS}/${RC}/${RC}-manual.rkvb" ]] || fail "objectKey ${key}"
  ((keys >= 1000)) || fail "the backup holds ${keys} keys, fewer than the 1,000 written"
  ((revision >= 1000)) || fail "revision ${revision} < 1000"
  stored=$(s3_size "$key") || fail "no object ${key} in the bucket"
  [[ $stored == "$size" ]] || fail "the stored object has ${stored} bytes, status.size says ${size}"
  wait_for "Event BackupSucceeded on ${RC}-manual" 30 has_backup_event "${RC}-manual" BackupSucceeded
  ok "${key}: ${size} bytes in the bucket as in status, ${keys} keys at revision ${revision}, took $(jq -r .status.duration <<<"$b")"
  MANUAL_KEY=$key
  MANUAL_CLUSTER_ID=$(jq -r .status.clusterId <<<"$b")
  put_keys a/ 100
  ok "100 more keys (a/) written after the backup"

  check "the schedule creates ${RC}-<yyyymmddhhmm> on time, and it succeeds"
  wait_for "a scheduled RaftClusterBackup" 100 has_scheduled_backup
  # The newest: an older one may already be pruned by the time we look (keep 1).
  FIRST_SCHEDULED=$(scheduled_backups | tail -n 1)
  b=$(backup_json "$FIRST_SCHEDULED")
  local slot created late
  slot=$(jq -r '.metadata.annotations["raftkv.dev/scheduled-at"]' <<<"$b")
  created=$(jq -r .metadata.creationTimestamp <<<"$b")
  [[ $FIRST_SCHEDULED == "${RC}-$(date -u -d "$slot" +%Y%m%d%H%M)" ]] || fail "name ${FIRST_SCHEDULED} does not match its time ${slot}"
  late=$(($(date -u -d "$created" +%s) - $(date -u -d "$slot" +%s)))
  ((late >= 0 && late <= 45)) || fail "${FIRST_SCHEDULED} created ${late}s after its time ${slot}"
  wait_for "${FIRST_SCHEDULED} Succeeded" 120 backup_done "$FIRST_SCHEDULED"
  local first_key
  first_key=$(backup_json "$FIRST_SCHEDULED" | jq -r .status.objectKey)
  s3_size "$first_key" >/dev/null || fail "no object ${first_key} in the bucket"
  wait_for "status.backup.lastBackup: a scheduled backup" 90 has_scheduled_success_in_status
  [[ $(rc_json | jq -r '.status.conditions[] | select(.type == "BackupStale") | .status') == False ]] ||
    fail "BackupStale is not False: $(rc_json | jq -c '.status.conditions[] | select(.type == "BackupStale")')"
  metric_of_backed raftkv_operator_backup_last_success_timestamp_seconds >/dev/null ||
    fail "no raftkv_operator_backup_last_success_timestamp_seconds for ${RC}"
  [[ $(metric_of_backed raftkv_operator_backup_interval_seconds | awk '{print $2}') == 60* ]] ||
    fail "raftkv_operator_backup_interval_seconds is not 60: $(metric_of_backed raftkv_operator_backup_interval_seconds)"
  ok "${FIRST_SCHEDULED} created ${late}s after ${slot}, Succeeded; status.backup: $(rc_json | jq -c .status.backup)"

  check "keep 1: the next scheduled success prunes ${FIRST_SCHEDULED} (object and RaftClusterBackup)"
  wait_for "a later scheduled backup in status.backup" 150 has_two_scheduled_successes
  wait_for "${FIRST_SCHEDULED} deleted" 90 backup_absent "$FIRST_SCHEDULED"
  s3_absent "$first_key" || fail "${first_key} is still in the bucket"
  s3_size "$(backed_status_field lastObjectKey)" >/dev/null || fail "the kept backup's object is missing"
  ok "pruned: ${FIRST_SCHEDULED} and ${first_key}; kept $(backed_status_field lastBackup)"

  e2e_step_13_restore

  remove_backed_cluster
  k delete -f hack/backup/s3-server.yaml --ignore-not-found >/dev/null
  k delete secret s3-credentials --ignore-not-found >/dev/null
}

RESTORED_RC=restored

# restored_manifest NAME KEY: a RaftCluster bootstrapped from the object KEY of the bucket.
restored_manifest() {
  cat <<YAML
apiVersion: raftkv.dev/v1alpha1
kind: RaftCluster
metadata:
  name: $1
spec:
  replicas: 3
  image: ${NODE_IMAGE}
  imagePullPolicy: IfNotPresent
  storage: {size: 256Mi}
  bootstrap:
    fromBackup:
      key: $2
      destination:
        s3:
          endpoint: http://s3.${E2E_NS}.svc:8333
          bucket: ${S3_BUCKET}
          forcePathStyle: true
          credentialsSecret: {name: s3-credentials}
YAML
}

cluster_events() {
  k get events -o json | jq -r --arg n "$1" --arg r "$2" \
    '.items[] | select(.involvedObject.kind == "RaftCluster" and .involvedObject.name == $n and .reason == $r) | .message'
}
has_cluster_event() { [[ -n $(cluster_events "$1" "$2") ]]; }
three_voters_available() { cluster_available && [[ $(rc_field .status.replicas) == 3 && $(rc_field .status.readyReplicas) == 3 ]]; }
remove_cluster_and_pvcs() {
  k delete raftcluster "$1" --ignore-not-found --wait=true --timeout=120s >/dev/null
  k delete pvc -l app.kubernetes.io/instance="$1" --ignore-not-found --wait=true --timeout=120s >/dev/null
}

# The Done-when of issue #14: back up 1,000 keys, write 100 more, lose the cluster and its
# volumes, restore: exactly the 1,000.
e2e_step_13_restore() {
  local RC=$BACKED_RC
  check "delete RaftCluster ${RC} and every PVC: the backup ${MANUAL_KEY} stays in the bucket"
  remove_backed_cluster
  [[ -z $(k get pvc -l app.kubernetes.io/instance="$RC" -o name) ]] || fail "PVCs of ${RC} remain"
  s3_size "$MANUAL_KEY" >/dev/null || fail "${MANUAL_KEY} is gone from the bucket"
  ok "${RC} and its PVCs deleted; ${MANUAL_KEY} still stored"

  RC=$RESTORED_RC
  remove_cluster_and_pvcs "$RC"
  check "RaftCluster ${RC} with spec.bootstrap.fromBackup: the key of that backup"
  restored_manifest "$RC" "$MANUAL_KEY" | k apply -f - >/dev/null
  wait_for "RaftCluster ${RC} Available with 3 voters" 300 three_voters_available
  wait_for "Event Restored on ${RC}" 30 has_cluster_event "$RC" Restored
  has_cluster_event "$RC" Restoring || fail "no Restoring Event on ${RC}"
  [[ $(rc_field .status.restore.pod) == "${RC}-0" ]] || fail "status.restore: $(rc_json | jq -c .status.restore)"
  local id
  id=$(rc_field .status.clusterId)
  [[ -n $id && $id != "$MANUAL_CLUSTER_ID" ]] || fail "cluster ID ${id}: want a new one (the backup's was ${MANUAL_CLUSTER_ID})"
  ok "Restored: $(cluster_events "$RC" Restored | head -n 1)"

  check "exactly the 1,000 backed-up keys with their values, none of the 100 written after"
  local page n bad
  page=$(rctl range --from k/ --to k0 --limit 5000 -o json) || fail "range k/ through ${RC}"
  n=$(jq '.kvs | length' <<<"$page")
  ((n == 1000)) || fail "range k/ returned ${n} keys, want 1000"
  # put_keys wrote k/NNNN = vN.
  bad=$(jq -r '.kvs[] | select(.value != ("v" + ((.key | ltrimstr("k/") | tonumber) | tostring))) | .key' <<<"$page" | head -n 3)
  [[ -z $bad ]] || fail "keys with another value than written: ${bad}"
  n=$(range_keys "$(client_endpoint)" a/ | wc -l)
  ((n == 0)) || fail "range a/ returned ${n} keys written after the backup"
  rctl put restored/probe yes >/dev/null || fail "a write to the restored cluster failed"
  [[ $(rctl get restored/probe -o json | jq -r .value) == yes ]] || fail "the write is not read back"
  ok "1,000 keys with their values, 0 of a/, a new write read back; cluster ${id}"
  remove_cluster_and_pvcs "$RC"

  check "a damaged backup (one byte flipped) never becomes a cluster: RestoreFailed names the problem"
  local tmp damaged_key
  tmp=$(mktemp)
  s3 -o "$tmp" "$(s3_url)/${S3_BUCKET}/${MANUAL_KEY}" || fail "cannot download ${MANUAL_KEY}"
  python3 - "$tmp" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[len(b) // 2] ^= 0x40
open(p, "wb").write(bytes(b))
PY
  damaged_key="e2e/damaged/$(basename "$MANUAL_KEY")"
  s3 -X PUT --data-binary "@${tmp}" -o /dev/null "$(s3_url)/${S3_BUCKET}/${damaged_key}" || fail "cannot upload ${damaged_key}"
  rm -f "$tmp"
  RC=damaged
  remove_cluster_and_pvcs "$RC"
  restored_manifest "$RC" "$damaged_key" | k apply -f - >/dev/null
  wait_for "Warning RestoreFailed on ${RC}" 180 has_cluster_event "$RC" RestoreFailed
  local why
  why=$(cluster_events "$RC" RestoreFailed | head -n 1)
  [[ $why == *"not a usable backup"* ]] || fail "RestoreFailed does not name the problem: ${why}"
  [[ -z $(rc_field .status.clusterId) ]] || fail "a cluster ID from a damaged backup: $(rc_field .status.clusterId)"
  [[ -z $(rc_field .status.restore.pod) ]] || fail "status.restore set for a refused backup"
  ok "refused: ${why:0:200}"
  remove_cluster_and_pvcs "$RC"
}

# The first scheduled backup, or a later one, is the cluster's last success.
has_scheduled_success_in_status() {
  local last
  last=$(backed_status_field lastBackup)
  [[ -n $last && $last != "${BACKED_RC}-manual" ]]
}
