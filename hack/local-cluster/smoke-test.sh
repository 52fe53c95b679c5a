#!/usr/bin/env bash
# End-to-end check of the local cluster (hack/local-cluster.sh up must have run):
#  - an image built by hack/images.sh from a Rust binary, run as a 2-pod Deployment
#  - a ClusterIP Service reachable from another pod (by DNS name) and from the host
#  - a headless Service whose per-pod DNS names resolve from a pod
#  - a StatefulSet whose PVCs bind (default StorageClass) and are writable as uid 65532
#  - in-cluster API access with a ServiceAccount token under RBAC (kubectl in a pod)
#  - deleting a PVC deletes its PV and the data directory (reclaimPolicy Delete)
#  - the egress guard drops a pod's packet to an outside address
# KEEP=1 leaves the namespace behind for inspection.
set -euo pipefail

ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=hack/local-cluster.sh
source "${ROOT_DIR}/hack/local-cluster.sh"

NS=raftkv-smoke
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
FAILED=0

pass() { log "PASS: $*"; }
fail() {
  log "FAIL: $*"
  FAILED=1
}

# A dependency-free Rust HTTP server (std only), built with rustc: stands in for our
# Rust binaries. With DATA_DIR set it first writes a file there (PVC write test).
build_echo_image() {
  command -v rustc >/dev/null || die "rustc is needed for the smoke test image"
  cat >"${WORK}/echo.rs" <<'EOF'
use std::io::{Read, Write};
use std::net::TcpListener;

fn main() {
    let host = std::env::var("HOSTNAME").unwrap_or_default();
    if let Ok(dir) = std::env::var("DATA_DIR") {
        let path = std::path::Path::new(&dir).join("written-by");
        std::fs::write(&path, format!("{host}\n")).expect("write to the data volume");
        eprintln!("wrote {}", path.display());
    }
    let listener = TcpListener::bind("0.0.0.0:8080").expect("bind :8080");
    eprintln!("listening on :8080");
    for stream in listener.incoming().flatten() {
        let mut stream = stream;
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf);
        let body = format!("hello from {host}\n");
        let _ = write!(stream, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{}", body.len(), body);
    }
}
EOF
  rustc -O --edition 2021 -o "${WORK}/smoke-echo" "${WORK}/echo.rs"
  IMAGE_OUT="${WORK}/echo.tar" build_rootfs_image raftkv/smoke-echo:dev "${WORK}/smoke-echo" >/dev/null
  import_images "${WORK}/echo.tar"
  # kubectl (static Go binary) for the in-cluster API test.
  IMAGE_OUT="${WORK}/kubectl.tar" build_rootfs_image raftkv/smoke-kubectl:dev "${KUBE_BIN}/kubectl" >/dev/null
  import_images "${WORK}/kubectl.tar"
}

apply_workloads() {
  kc create namespace "$NS" --dry-run=client -o yaml | kc apply -f - >/dev/null
  wait_for "default ServiceAccount in ${NS}" 60 kc -n "$NS" get serviceaccount default
  kc -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
spec:
  replicas: 2
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      terminationGracePeriodSeconds: 2
      securityContext: {runAsNonRoot: true}
      containers:
        - name: echo
          image: raftkv/smoke-echo:dev
          imagePullPolicy: Never
          ports: [{containerPort: 8080}]
          readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: store-peers}
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector: {app: store}
  ports: [{port: 8080}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: store}
spec:
  serviceName: store-peers
  replicas: 2
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: store}}
  template:
    metadata: {labels: {app: store}}
    spec:
      terminationGracePeriodSeconds: 2
      securityContext: {runAsNonRoot: true, fsGroup: 65532}
      containers:
        - name: store
          image: raftkv/smoke-echo:dev
          imagePullPolicy: Never
          env: [{name: DATA_DIR, value: /data}]
          volumeMounts: [{name: data, mountPath: /data}]
          readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
  volumeClaimTemplates:
    - metadata: {name: data}
      spec:
        accessModes: [ReadWriteOnce]
        resources: {requests: {storage: 64Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: client
      image: ${HELPER_IMAGE}
      imagePullPolicy: Never
      command: [sleep, "3600"]
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: lister}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-lister}
rules: [{apiGroups: [""], resources: [pods], verbs: [get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: lister}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-lister}
subjects: [{kind: ServiceAccount, name: lister, namespace: ${NS}}]
---
apiVersion: v1
kind: Pod
metadata: {name: in-cluster-api}
spec:
  serviceAccountName: lister
  restartPolicy: Never
  containers:
    - name: kubectl
      image: raftkv/smoke-kubectl:dev
      imagePullPolicy: Never
      args: [get, pods, -o, name]
EOF
}

wait_workloads() {
  kc -n "$NS" rollout status deployment/echo --timeout=120s
  kc -n "$NS" rollout status statefulset/store --timeout=180s
  kc -n "$NS" wait --for=condition=Ready pod/client --timeout=120s
}

in_client() { kc -n "$NS" exec client -- sh -c "$1"; }

check_deployment_image() {
  local n
  n=$(kc -n "$NS" get pods -l app=echo -o jsonpath='{range .items[?(@.status.phase=="Running")]}{.metadata.name}{"\n"}{end}' | grep -c . || true)
  if [[ $n == 2 ]]; then pass "Deployment: 2 pods running the hack/images.sh image (Rust binary)"; else fail "Deployment: ${n}/2 running"; fi
}

check_clusterip() {
  local out seen=""
  for _ in 1 2 3 4 5 6 7 8; do
    out=$(in_client "printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 echo.${NS}.svc.${CLUSTER_DOMAIN} 80" | tail -1 || true)
    [[ $out == "hello from echo-"* ]] || {
      fail "ClusterIP from a pod: got '${out}'"
      return
    }
    seen+="${out##* } "
  done
  pass "ClusterIP Service from a pod by DNS name; backends seen: $(tr ' ' '\n' <<<"$seen" | sort -u | grep -c .)"
  local ip
  ip=$(kc -n "$NS" get service echo -o jsonpath='{.spec.clusterIP}')
  out=$(curl -fsS -m 5 "http://${ip}/" || true)
  if [[ $out == "hello from echo-"* ]]; then pass "ClusterIP ${ip} from the host: ${out}"; else fail "ClusterIP from host: '${out}'"; fi
}

check_headless_dns() {
  local i name want got
  for i in 0 1; do
    name="store-${i}.store-peers.${NS}.svc.${CLUSTER_DOMAIN}"
    want=$(kc -n "$NS" get pod "store-${i}" -o jsonpath='{.status.podIP}')
    got=$(in_client "nslookup ${name} ${DNS_IP}" 2>/dev/null | awk '/^Address/ {a=$NF} END {print a}')
    if [[ -n $want && $got == "$want" ]]; then pass "DNS ${name} -> ${got}"; else fail "DNS ${name}: got '${got}', pod IP '${want}'"; fi
  done
  got=$(in_client "printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 store-1.store-peers 8080" | tail -1 || true)
  if [[ $got == "hello from store-1" ]]; then pass "pod -> store-1.store-peers (short name via search path)"; else fail "short name: '${got}'"; fi
  got=$(in_client "nslookup kubernetes.default.svc.${CLUSTER_DOMAIN}" 2>/dev/null | awk '/^Address/ {a=$NF} END {print a}')
  if [[ $got == "$API_SERVICE_IP" ]]; then pass "DNS kubernetes.default -> ${got}"; else fail "kubernetes.default: '${got}'"; fi
}

check_pvcs() {
  local i pv path content
  for i in 0 1; do
    [[ $(kc -n "$NS" get pvc "data-store-${i}" -o jsonpath='{.status.phase}') == Bound ]] || {
      fail "PVC data-store-${i} not Bound"
      continue
    }
    pv=$(kc -n "$NS" get pvc "data-store-${i}" -o jsonpath='{.spec.volumeName}')
    path=$(kc get pv "$pv" -o jsonpath='{.spec.hostPath.path}{.spec.local.path}')
    content=$(cat "${path}/written-by" 2>/dev/null || true)
    if [[ $content == "store-${i}" ]]; then
      pass "PVC data-store-${i} Bound (${pv}); pod wrote ${path}/written-by as uid $(stat -c %u "${path}/written-by")"
    else
      fail "PVC data-store-${i}: expected file in ${path}, got '${content}'"
    fi
  done
}

check_in_cluster_api() {
  local phase out
  wait_for "in-cluster-api pod to finish" 120 pod_finished in-cluster-api || true
  phase=$(kc -n "$NS" get pod in-cluster-api -o jsonpath='{.status.phase}')
  out=$(kc -n "$NS" logs in-cluster-api 2>&1 || true)
  if [[ $phase == Succeeded && $out == *pod/client* ]]; then
    pass "ServiceAccount token + RBAC: kubectl in a pod listed $(grep -c '^pod/' <<<"$out") pods"
  else
    fail "in-cluster API: phase=${phase} output=${out}"
  fi
}

guard_drops() { iptables -w -t mangle -L "$GUARD_CHAIN" -v -n -x | awk '/pod traffic never leaves/ {print $1}'; }

# A pod's packet to an outside address (TEST-NET-2, documentation range) must be dropped by
# the egress guard before it leaves through the machine's interface.
check_egress_guard() {
  local before after
  before=$(guard_drops)
  in_client "nc -w 2 198.51.100.1 9 </dev/null" >/dev/null 2>&1 || true
  after=$(guard_drops)
  if ((after > before)); then
    pass "egress guard dropped $((after - before)) packet(s) from a pod to an outside address"
  else
    fail "egress guard counter did not move (${before} -> ${after})"
  fi
}

pod_finished() {
  local p
  p=$(kc -n "$NS" get pod "$1" -o jsonpath='{.status.phase}')
  [[ $p == Succeeded || $p == Failed ]]
}

pv_gone() { ! kc get pv "$1" >/dev/null 2>&1; }

check_pvc_delete() {
  local pv path
  pv=$(kc -n "$NS" get pvc data-store-1 -o jsonpath='{.spec.volumeName}')
  path=$(kc get pv "$pv" -o jsonpath='{.spec.hostPath.path}{.spec.local.path}')
  kc -n "$NS" scale statefulset store --replicas=1 >/dev/null
  wait_for "store-1 gone" 120 pod_gone store-1
  kc -n "$NS" delete pvc data-store-1 --wait=true >/dev/null
  if wait_for "PV ${pv} deleted" 120 pv_gone "$pv" && wait_for "dir ${path} removed" 60 test ! -e "$path"; then
    pass "deleting PVC data-store-1 deleted PV ${pv} and ${path}"
  else
    fail "PV ${pv} or ${path} still there after PVC deletion"
  fi
}

pod_gone() { ! kc -n "$NS" get pod "$1" >/dev/null 2>&1; }

smoke_main() {
  require_root
  [[ -f $KUBECONFIG_PATH ]] || die "no cluster: run hack/local-cluster.sh up"
  local t0=$SECONDS
  kc delete namespace "$NS" --ignore-not-found --wait=true >/dev/null
  step "build + import test images (rustc, hack/images.sh)" build_echo_image
  step "apply workloads" apply_workloads
  step "wait for workloads" wait_workloads
  check_deployment_image
  check_clusterip
  check_headless_dns
  check_pvcs
  check_in_cluster_api
  check_egress_guard
  check_pvc_delete
  if [[ ${KEEP:-0} != 1 ]]; then
    kc delete namespace "$NS" --wait=true >/dev/null
  fi
  if ((FAILED)); then
    log "smoke test FAILED after $((SECONDS - t0))s"
    exit 1
  fi
  log "smoke test passed in $((SECONDS - t0))s"
}

smoke_main "$@"
