#!/usr/bin/env bash
# Backups into a real S3 server, on loopback, without Kubernetes:
#   1. starts the S3 server hack/local-cluster.sh build built (s3s-fs, pinned in
#      hack/local-cluster/versions.sh) on 127.0.0.1 with an access key and a secret,
#   2. creates a bucket with a signed S3 CreateBucket request (curl --aws-sigv4),
#   3. runs the operator's ignored test `a_backup_streams_from_a_real_node_into_an_s3_server`
#      (operator/tests/backup_take.rs): a real raft-node with 1,000 keys, a backup streamed
#      the operator's way into the bucket (multipart upload), downloaded, every key checked,
#      and a wrong secret refused,
#   4. checks `raftctl snapshot inspect` accepts the downloaded file and that the object
#      is listed in the bucket.
#
#   hack/backup/s3-smoke.sh            # needs the s3s-fs binary: hack/local-cluster.sh build
#   S3_SMOKE_PORT=27790 hack/backup/s3-smoke.sh
set -euo pipefail

ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT_DIR"
# shellcheck source=hack/local-cluster/versions.sh
source hack/local-cluster/versions.sh
: "${RAFTKV_CACHE_DIR:=${HOME}/.cache/raftkv}"
: "${CARGO_TARGET_DIR:=${HOME}/.cache/raftkv/target}"
export CARGO_TARGET_DIR
: "${S3_SMOKE_PORT:=27790}"

say() { printf '[s3-smoke] %s\n' "$*" >&2; }
fail() {
  say "FAIL: $*"
  exit 1
}

S3_SERVER="${RAFTKV_CACHE_DIR}/bin/s3s-fs-${S3S_FS_VERSION}/bin/s3s-fs"
[[ -x $S3_SERVER ]] || fail "${S3_SERVER} missing: run hack/local-cluster.sh build (it builds s3s-fs ${S3S_FS_VERSION} with cargo install)"
command -v curl >/dev/null || fail "curl not found: apt-get install curl"
curl --help all 2>/dev/null | grep -q -- --aws-sigv4 || fail "this curl has no --aws-sigv4 (need curl >= 7.75)"

WORK=$(mktemp -d)
S3_PID=""
cleanup() {
  if [[ -n $S3_PID ]]; then
    kill "$S3_PID" 2>/dev/null || true
    wait "$S3_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

ACCESS_KEY=raftkv-smoke
SECRET_KEY=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
ENDPOINT="http://127.0.0.1:${S3_SMOKE_PORT}"
BUCKET=raftkv-backups
mkdir -p "${WORK}/s3"
say "starting s3s-fs ${S3S_FS_VERSION} on ${ENDPOINT}"
"$S3_SERVER" --host 127.0.0.1 --port "$S3_SMOKE_PORT" --access-key "$ACCESS_KEY" \
  --secret-key "$SECRET_KEY" "${WORK}/s3" >"${WORK}/s3.log" 2>&1 &
S3_PID=$!

s3() { curl --silent --show-error --fail --aws-sigv4 "aws:amz:us-east-1:s3" --user "${ACCESS_KEY}:${SECRET_KEY}" "$@"; }

deadline=$((SECONDS + 30))
until s3 -o /dev/null "${ENDPOINT}/" 2>/dev/null; do
  kill -0 "$S3_PID" 2>/dev/null || fail "s3s-fs exited: $(tail -5 "${WORK}/s3.log")"
  ((SECONDS < deadline)) || fail "s3s-fs did not answer within 30 s"
  sleep 0.2
done
s3 -X PUT -o /dev/null "${ENDPOINT}/${BUCKET}" || fail "CreateBucket ${BUCKET} refused"
# An unsigned request must be refused: the server checks credentials.
code=$(curl --silent -o /dev/null -w '%{http_code}' "${ENDPOINT}/${BUCKET}?list-type=2")
[[ $code == 403 ]] || fail "an unsigned ListObjects got HTTP ${code}, not 403"
say "bucket ${BUCKET} created; unsigned requests refused (403)"

say "cargo build raft-node and raftctl (the test runs a real node)"
cargo build --locked --quiet -p raftkv-node --bin raft-node -p raftctl --bin raftctl
say "the operator's upload into ${ENDPOINT}/${BUCKET} (operator/tests/backup_take.rs)"
t0=$SECONDS
RAFTKV_S3_ENDPOINT=$ENDPOINT RAFTKV_S3_BUCKET=$BUCKET RAFTKV_S3_ACCESS_KEY=$ACCESS_KEY \
  RAFTKV_S3_SECRET_KEY=$SECRET_KEY RAFTKV_S3_SMOKE_KEEP="${WORK}/downloaded.rkvb" \
  cargo test --locked --quiet -p raft-operator --test backup_take -- --ignored --exact \
  a_backup_streams_from_a_real_node_into_an_s3_server
say "test passed in $((SECONDS - t0))s"

[[ -s ${WORK}/downloaded.rkvb ]] || fail "the test left no downloaded backup"
inspect=$("${CARGO_TARGET_DIR}/debug/raftctl" snapshot inspect "${WORK}/downloaded.rkvb" -o json)
keys=$(jq -r 'select(.verified == true) | .keys' <<<"$inspect")
[[ $keys == 1000 ]] || fail "raftctl snapshot inspect: ${keys} keys, not 1000: ${inspect}"
size=$(stat -c %s "${WORK}/downloaded.rkvb")
listed=$(s3 "${ENDPOINT}/${BUCKET}?list-type=2&prefix=smoke/")
grep -q "<Key>smoke/ns/demo/demo-manual.rkvb</Key>" <<<"$listed" || fail "the object is not listed: ${listed}"
grep -q "<Size>${size}</Size>" <<<"$listed" || fail "the listed size is not ${size}: ${listed}"
say "raftctl snapshot inspect: 1000 keys; object smoke/ns/demo/demo-manual.rkvb listed with ${size} bytes"
say "PASSED"
