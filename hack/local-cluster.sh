#!/usr/bin/env bash
# A real single-node Kubernetes on this machine, for raftkv's end-to-end tests
# (in the spirit of Kubernetes' hack/local-up-cluster.sh).
#
#   hack/local-cluster.sh up       build (cached) + start everything, wait until ready
#   hack/local-cluster.sh down     stop and remove everything `up` created
#   hack/local-cluster.sh status   what is running
#   hack/local-cluster.sh build    only build/cache binaries and images
#   hack/local-cluster.sh packages only install the Debian packages it needs (apt)
#   hack/local-cluster.sh env      print `export KUBECONFIG=...` (and PATH for kubectl/helm)
#
# Everything is built from source through the Go module proxy (versions pinned in
# hack/local-cluster/versions.sh) and cached in ${RAFTKV_CACHE_DIR:-~/.cache/raftkv}.
# Cluster state lives in ${RAFTKV_CACHE_DIR}/cluster; runtime sockets in /run/raftkv.
# Needs root, Debian 12 (apt) and Go >= 1.26. No systemd: daemons are background
# processes tracked by PID file. See hack/local-cluster/README.md for the details.
set -euo pipefail

ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOCAL_CLUSTER_DIR="${ROOT_DIR}/hack/local-cluster"
# shellcheck source=hack/local-cluster/versions.sh
source "${LOCAL_CLUSTER_DIR}/versions.sh"
# shellcheck source=hack/local-cluster/lib.sh
source "${LOCAL_CLUSTER_DIR}/lib.sh"
# shellcheck source=hack/images.sh
source "${ROOT_DIR}/hack/images.sh"
# shellcheck source=hack/local-cluster/build.sh
source "${LOCAL_CLUSTER_DIR}/build.sh"

# --- layout and network plan ------------------------------------------------------
STATE_DIR="${RAFTKV_CACHE_DIR}/cluster"
RUN_DIR="${RAFTKV_RUN_DIR}"
PID_DIR="${STATE_DIR}/pids"
LOG_DIR="${STATE_DIR}/logs"
PKI_DIR="${STATE_DIR}/pki"
CONF_DIR="${STATE_DIR}/config"
KUBECONFIG_PATH="${STATE_DIR}/kubeconfig"
KUBELET_DIR="${STATE_DIR}/kubelet"
POD_LOG_DIR="${STATE_DIR}/pod-logs"
VOLUME_DIR="${STATE_DIR}/volumes"
CNI_CONF_DIR="${STATE_DIR}/cni/net.d"
CNI_IPAM_DIR="${STATE_DIR}/cni/ipam"
CONTAINERD_ROOT="${STATE_DIR}/containerd"
CONTAINERD_STATE="${RUN_DIR}/containerd/state"
CNI_BIN_DIR=/usr/lib/cni # Debian's containernetworking-plugins install here, not /opt/cni/bin

NODE_NAME=raftkv-local
CLUSTER_DOMAIN=cluster.local
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
API_SERVICE_IP=10.96.0.1
DNS_IP=10.96.0.10
BRIDGE=cni0
CNI_NETWORK=raftkv
API_PORT=6443
# Not etcd's default ports: the project benchmarks against a stock etcd on this machine.
ETCD_CLIENT_PORT=2479
ETCD_PEER_PORT=2480
# Every iptables object we create carries this tag so `down` can find it.
IPT_TAG=raftkv-local-cluster
GUARD_CHAIN=RAFTKV-GUARD

APT_PACKAGES=(containerd runc containernetworking-plugins iptables conntrack openssl jq
  busybox-static gcc libc6-dev binutils curl ca-certificates iproute2 util-linux)

KUBECTL="${KUBE_BIN}/kubectl"
kc() { "$KUBECTL" --kubeconfig "$KUBECONFIG_PATH" "$@"; }
crictl_() { "${CRICTL_BIN}/crictl" --runtime-endpoint "unix://${CONTAINERD_SOCK}" --timeout 30s "$@"; }

# --- host preparation ---------------------------------------------------------------

require_root() { ((EUID == 0)) || die "run as root (containerd, kubelet and iptables need it)"; }

ensure_packages() {
  local missing=() p
  for p in "${APT_PACKAGES[@]}"; do
    [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == "install ok installed" ]] || missing+=("$p")
  done
  if ((${#missing[@]} == 0)); then
    log "apt packages present"
    return 0
  fi
  log "installing: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts nothing here (no systemd), but be explicit: we run our own containerd.
}

ext_iface() { ip -4 route show default | awk '{print $5; exit}'; }
node_ip() { ip -4 -o addr show dev "$(ext_iface)" | awk '{split($4, a, "/"); print a[1]; exit}'; }

# Kernel settings the node needs. The originals are saved once so `down` can restore them.
# The kubelet itself also sets vm.overcommit_memory, kernel.panic, kernel.panic_on_oops
# (protectKernelDefaults=false) and kube-proxy sets route_localnet: saved for that reason.
SYSCTLS_SAVED=(net.ipv4.ip_forward fs.inotify.max_user_instances fs.inotify.max_user_watches
  vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops net.ipv4.conf.all.route_localnet
  net.bridge.bridge-nf-call-iptables)
setup_sysctls() {
  local s
  mkdir -p "$STATE_DIR"
  if [[ ! -f ${STATE_DIR}/sysctl.orig ]]; then
    for s in "${SYSCTLS_SAVED[@]}"; do
      printf '%s=%s\n' "$s" "$(sysctl -n "$s" 2>/dev/null || echo '')" >>"${STATE_DIR}/sysctl.orig.tmp"
    done
    mv "${STATE_DIR}/sysctl.orig.tmp" "${STATE_DIR}/sysctl.orig"
  fi
  sysctl -qw net.ipv4.ip_forward=1                   # pods route through the host
  sysctl -qw fs.inotify.max_user_instances=8192      # default 128 is too low for a kubelet
  sysctl -qw fs.inotify.max_user_watches=524288
  sysctl -qw net.bridge.bridge-nf-call-iptables=1    # Services for pod->pod on the same bridge
}

restore_sysctls() {
  [[ -f ${STATE_DIR}/sysctl.orig ]] || return 0
  local kv
  while IFS= read -r kv; do
    if [[ -n ${kv#*=} ]]; then sysctl -qw "$kv" 2>/dev/null || true; fi
  done <"${STATE_DIR}/sysctl.orig"
}

# Guard: no packet to the pod or Service CIDR, and no packet from a pod, may ever leave
# the machine. It lives in mangle/POSTROUTING, which every routed or locally sent packet
# passes AFTER kube-proxy's DNAT and BEFORE any SNAT, so it judges the final destination
# and the real pod source. kube-proxy never touches the mangle table, so nothing can
# be put in front of it (in filter/FORWARD kube-proxy prepends its own ACCEPT rules).
# Installed before any component starts.
setup_guard() {
  local ext
  ext=$(ext_iface)
  iptables -w -t mangle -N "$GUARD_CHAIN" 2>/dev/null || iptables -w -t mangle -F "$GUARD_CHAIN"
  iptables -w -t mangle -A "$GUARD_CHAIN" -d "$POD_CIDR" ! -o "$BRIDGE" \
    -m comment --comment "${IPT_TAG}: pod CIDR never leaves via ${ext}" -j DROP
  iptables -w -t mangle -A "$GUARD_CHAIN" -d "$SERVICE_CIDR" ! -o "$BRIDGE" \
    -m comment --comment "${IPT_TAG}: un-DNATed Service VIPs never leave" -j DROP
  iptables -w -t mangle -A "$GUARD_CHAIN" -s "$POD_CIDR" ! -o "$BRIDGE" \
    -m comment --comment "${IPT_TAG}: pod traffic never leaves the machine" -j DROP
  if ! iptables -w -t mangle -C POSTROUTING -m comment --comment "${IPT_TAG}: guard" -j "$GUARD_CHAIN" 2>/dev/null; then
    iptables -w -t mangle -I POSTROUTING 1 -m comment --comment "${IPT_TAG}: guard" -j "$GUARD_CHAIN"
  fi
  log "guard: mangle/POSTROUTING -> ${GUARD_CHAIN} drops ${POD_CIDR} and ${SERVICE_CIDR} unless out ${BRIDGE}"
}

# --- PKI ----------------------------------------------------------------------------

# new_ca NAME CN: self-signed EC P-256 CA.
new_ca() {
  [[ -f ${PKI_DIR}/$1.crt ]] && return 0
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 -sha256 \
    -subj "/CN=$2" -keyout "${PKI_DIR}/$1.key" -out "${PKI_DIR}/$1.crt" 2>/dev/null
}

# sign_cert NAME SUBJECT EKU [SAN]: EC P-256 key + certificate signed by ${CA:-ca}.
sign_cert() {
  local name=$1 subj=$2 eku=$3 san=${4:-} ext ca=${CA:-ca}
  [[ -f ${PKI_DIR}/${name}.crt ]] && return 0
  ext="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=${eku}"
  [[ -n $san ]] && ext+=$'\n'"subjectAltName=${san}"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "${PKI_DIR}/${name}.key" 2>/dev/null
  openssl req -new -key "${PKI_DIR}/${name}.key" -subj "$subj" -out "${PKI_DIR}/${name}.csr"
  openssl x509 -req -in "${PKI_DIR}/${name}.csr" -CA "${PKI_DIR}/${ca}.crt" -CAkey "${PKI_DIR}/${ca}.key" \
    -CAcreateserial -days 3650 -sha256 -extfile <(printf '%s\n' "$ext") -out "${PKI_DIR}/${name}.crt" 2>/dev/null
  rm -f "${PKI_DIR}/${name}.csr"
}

setup_pki() {
  local ip
  ip=$(node_ip)
  mkdir -p "$PKI_DIR"
  chmod 700 "$PKI_DIR"
  new_ca ca raftkv-local-ca
  # Separate CA for the aggregation layer (front proxy), as kubeadm does.
  new_ca front-proxy-ca raftkv-local-front-proxy-ca
  CA=front-proxy-ca sign_cert front-proxy-client "/CN=front-proxy-client" clientAuth
  sign_cert apiserver "/CN=kube-apiserver" serverAuth \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.${CLUSTER_DOMAIN},DNS:localhost,DNS:${NODE_NAME},IP:${API_SERVICE_IP},IP:127.0.0.1,IP:${ip}"
  sign_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
  sign_cert admin "/O=system:masters/CN=kubernetes-admin" clientAuth
  sign_cert controller-manager "/CN=system:kube-controller-manager" clientAuth
  sign_cert scheduler "/CN=system:kube-scheduler" clientAuth
  sign_cert kube-proxy "/CN=system:kube-proxy" clientAuth
  sign_cert kubelet-client "/O=system:nodes/CN=system:node:${NODE_NAME}" clientAuth
  sign_cert kubelet-serving "/O=system:nodes/CN=system:node:${NODE_NAME}" serverAuth \
    "DNS:${NODE_NAME},DNS:localhost,IP:127.0.0.1,IP:${ip}"
  # Service account token signing key (RS256, what every client library expects).
  if [[ ! -f ${PKI_DIR}/sa.key ]]; then
    openssl genrsa -out "${PKI_DIR}/sa.key" 2048 2>/dev/null
    openssl rsa -in "${PKI_DIR}/sa.key" -pubout -out "${PKI_DIR}/sa.pub" 2>/dev/null
  fi
}

# write_kubeconfig FILE CERTNAME: client-cert kubeconfig for https://127.0.0.1:6443.
write_kubeconfig() {
  local file=$1 name=$2
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: raftkv-local
    cluster:
      server: https://127.0.0.1:${API_PORT}
      certificate-authority-data: $(base64 -w0 "${PKI_DIR}/ca.crt")
users:
  - name: ${name}
    user:
      client-certificate-data: $(base64 -w0 "${PKI_DIR}/${name}.crt")
      client-key-data: $(base64 -w0 "${PKI_DIR}/${name}.key")
contexts:
  - name: raftkv-local
    context: {cluster: raftkv-local, user: ${name}}
current-context: raftkv-local
EOF
  chmod 600 "$file"
}

setup_kubeconfigs() {
  mkdir -p "$CONF_DIR"
  local n
  for n in controller-manager scheduler kube-proxy kubelet-client; do
    write_kubeconfig "${CONF_DIR}/${n}.kubeconfig" "$n"
  done
  write_kubeconfig "$KUBECONFIG_PATH" admin
}

# write_if_changed FILE < content: kube-proxy exits when its config file changes under
# it, so a second `up` must not rewrite identical files.
write_if_changed() {
  local tmp
  mkdir -p "$(dirname "$1")"
  tmp=$(mktemp "$1.XXXXXX")
  cat >"$tmp"
  if cmp -s "$tmp" "$1"; then
    rm -f "$tmp"
  else
    mv "$tmp" "$1"
  fi
}

# --- control plane ----------------------------------------------------------------------

start_etcd() {
  mkdir -p "${STATE_DIR}/etcd"
  chmod 700 "${STATE_DIR}/etcd"
  start_daemon etcd "${ETCD_BIN}/etcd" --name "$NODE_NAME" --data-dir "${STATE_DIR}/etcd" \
    --listen-client-urls "http://127.0.0.1:${ETCD_CLIENT_PORT}" \
    --advertise-client-urls "http://127.0.0.1:${ETCD_CLIENT_PORT}" \
    --listen-peer-urls "http://127.0.0.1:${ETCD_PEER_PORT}" \
    --initial-advertise-peer-urls "http://127.0.0.1:${ETCD_PEER_PORT}" \
    --initial-cluster "${NODE_NAME}=http://127.0.0.1:${ETCD_PEER_PORT}" \
    --listen-metrics-urls "" --log-level warn
  wait_for "etcd /health" 60 curl -fsS "http://127.0.0.1:${ETCD_CLIENT_PORT}/health"
}

start_apiserver() {
  start_daemon kube-apiserver "${KUBE_BIN}/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:${ETCD_CLIENT_PORT}" \
    --bind-address 0.0.0.0 --secure-port "$API_PORT" --advertise-address "$(node_ip)" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --allow-privileged=true \
    --client-ca-file "${PKI_DIR}/ca.crt" \
    --tls-cert-file "${PKI_DIR}/apiserver.crt" --tls-private-key-file "${PKI_DIR}/apiserver.key" \
    --kubelet-client-certificate "${PKI_DIR}/apiserver-kubelet-client.crt" \
    --kubelet-client-key "${PKI_DIR}/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "${PKI_DIR}/ca.crt" \
    --kubelet-preferred-address-types InternalIP,Hostname \
    --service-account-issuer "https://kubernetes.default.svc.${CLUSTER_DOMAIN}" \
    --service-account-key-file "${PKI_DIR}/sa.pub" \
    --service-account-signing-key-file "${PKI_DIR}/sa.key" \
    --requestheader-client-ca-file "${PKI_DIR}/front-proxy-ca.crt" \
    --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --proxy-client-cert-file "${PKI_DIR}/front-proxy-client.crt" \
    --proxy-client-key-file "${PKI_DIR}/front-proxy-client.key" \
    --profiling=false --v=1
  wait_for "kube-apiserver /readyz" 120 kc get --raw /readyz
}

start_controller_manager() {
  local kcfg="${CONF_DIR}/controller-manager.kubeconfig"
  start_daemon kube-controller-manager "${KUBE_BIN}/kube-controller-manager" \
    --kubeconfig "$kcfg" --authentication-kubeconfig "$kcfg" --authorization-kubeconfig "$kcfg" \
    --bind-address 127.0.0.1 --leader-elect=false \
    --cluster-name raftkv-local --service-cluster-ip-range "$SERVICE_CIDR" \
    --root-ca-file "${PKI_DIR}/ca.crt" \
    --service-account-private-key-file "${PKI_DIR}/sa.key" --use-service-account-credentials=true \
    --cluster-signing-cert-file "${PKI_DIR}/ca.crt" --cluster-signing-key-file "${PKI_DIR}/ca.key" \
    --controllers '*,bootstrapsigner,tokencleaner' --v=1
  wait_for "kube-controller-manager /healthz" 60 curl -fsSk https://127.0.0.1:10257/healthz
}

start_scheduler() {
  local kcfg="${CONF_DIR}/scheduler.kubeconfig"
  start_daemon kube-scheduler "${KUBE_BIN}/kube-scheduler" \
    --kubeconfig "$kcfg" --authentication-kubeconfig "$kcfg" --authorization-kubeconfig "$kcfg" \
    --bind-address 127.0.0.1 --leader-elect=false --v=1
  wait_for "kube-scheduler /healthz" 60 curl -fsSk https://127.0.0.1:10259/healthz
}

# --- node: containerd, CNI, kubelet, kube-proxy -------------------------------------------

write_containerd_config() {
  mkdir -p "$CONTAINERD_ROOT" "$CONTAINERD_STATE" "$CNI_CONF_DIR" "$CNI_IPAM_DIR"
  write_if_changed "${CONF_DIR}/containerd.toml" <<EOF
# containerd for the raftkv local cluster (Debian's containerd 1.6, CRI v1).
version = 2
root = "${CONTAINERD_ROOT}"
state = "${CONTAINERD_STATE}"
# Unused snapshotters only slow start-up down and log warnings here.
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "${CONTAINERD_SOCK}"

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    # Built and imported by hack/local-cluster.sh: there is no registry to pull from.
    sandbox_image = "${PAUSE_IMAGE}"
    enable_selinux = false
    # This VM has no CAP_SYS_RESOURCE (not even PID 1), so runc cannot set a negative
    # oom_score_adj (sandboxes get -998) and every sandbox would fail. Clamp instead.
    restrict_oom_score_adj = true
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          BinaryName = "/usr/sbin/runc"
          # Keep runc's state with ours instead of the default /run/containerd/runc.
          Root = "${RUN_DIR}/runc"
          # No systemd here: cgroupfs driver, same as the kubelet.
          SystemdCgroup = false
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "${CNI_BIN_DIR}"
      conf_dir = "${CNI_CONF_DIR}"
      max_conf_num = 1
  [plugins."io.containerd.internal.v1.opt"]
    path = "${CONTAINERD_ROOT}/opt"
EOF
  write_if_changed "${CNI_CONF_DIR}/10-${CNI_NETWORK}.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "${CNI_NETWORK}",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "${BRIDGE}",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "${POD_CIDR}", "gateway": "${POD_CIDR%.*}.1"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "${CNI_IPAM_DIR}"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
  ]
}
EOF
}

start_containerd() {
  write_containerd_config
  start_daemon containerd "$(command -v containerd)" --config "${CONF_DIR}/containerd.toml"
  wait_for "containerd socket" 60 ctr --address "$CONTAINERD_SOCK" version
}

# Every image the cluster runs must be imported: there is no registry. `down` wipes
# containerd's store, so project images that hack/images.sh wrote to its default place
# (${IMG_ROOT}/project) are re-imported too.
import_cluster_images() {
  local n t
  for n in pause coredns local-path busybox; do
    ctr --address "$CONTAINERD_SOCK" -n k8s.io images import "$(image_tarball "$n")" >/dev/null
  done
  for t in "${IMG_ROOT}"/project/*.tar; do
    [[ -f $t ]] || continue
    ctr --address "$CONTAINERD_SOCK" -n k8s.io images import "$t" >/dev/null || log "warning: could not import ${t}"
  done
  log "images in containerd: $(ctr --address "$CONTAINERD_SOCK" -n k8s.io images ls -q | grep -vc '^sha256:')"
}

write_kubelet_config() {
  write_if_changed "${CONF_DIR}/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://${CONTAINERD_SOCK}
# No systemd, and containerd 1.6 cannot report its driver (CRI RuntimeConfig is
# unimplemented), so the kubelet falls back to this value.
cgroupDriver: cgroupfs
# Hybrid cgroup v1 host that cannot be changed from inside; 1.35+ refuses v1 by default.
failCgroupV1: false
# Negative values are impossible without CAP_SYS_RESOURCE.
oomScoreAdj: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: ${PKI_DIR}/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: ${PKI_DIR}/kubelet-serving.crt
tlsPrivateKeyFile: ${PKI_DIR}/kubelet-serving.key
clusterDomain: ${CLUSTER_DOMAIN}
clusterDNS: [${DNS_IP}]
podCIDR: ${POD_CIDR}
podLogsDir: ${POD_LOG_DIR}
healthzBindAddress: 127.0.0.1
healthzPort: 10248
# Image GC would delete imported images (incl. the sandbox image: containerd 1.6 cannot
# pin it) and nothing can pull them back. 100% disables it.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 200Mi
  nodefs.available: 2%
  imagefs.available: 2%
serializeImagePulls: false
EOF
}

start_kubelet() {
  write_kubelet_config
  mkdir -p "$KUBELET_DIR" "$POD_LOG_DIR"
  start_daemon kubelet "${KUBE_BIN}/kubelet" \
    --config "${CONF_DIR}/kubelet.yaml" \
    --kubeconfig "${CONF_DIR}/kubelet-client.kubeconfig" \
    --root-dir "$KUBELET_DIR" --cert-dir "${KUBELET_DIR}/pki" \
    --hostname-override "$NODE_NAME" --node-ip "$(node_ip)" --v=1
  wait_for "kubelet /healthz" 120 curl -fsS http://127.0.0.1:10248/healthz
  wait_for "node ${NODE_NAME} Ready" 180 node_ready
}

node_ready() {
  [[ $(kc get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}') == True ]]
}

start_kube_proxy() {
  write_if_changed "${CONF_DIR}/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: ${CONF_DIR}/kube-proxy.kubeconfig
# The kernel has no IPVS; iptables mode is the tested datapath on this VM.
mode: iptables
clusterCIDR: ${POD_CIDR}
hostnameOverride: ${NODE_NAME}
# NodePorts on the node IP only (not on every local address).
nodePortAddresses: [primary]
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# Leave the host's conntrack sysctls alone (0 = do not touch).
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
  start_daemon kube-proxy "${KUBE_BIN}/kube-proxy" --config "${CONF_DIR}/kube-proxy.yaml" --v=1
  wait_for "kube-proxy /healthz" 60 curl -fsS http://127.0.0.1:10256/healthz
}

# --- cluster add-ons -----------------------------------------------------------------------

render() {
  sed -e "s|@COREDNS_IMAGE@|${COREDNS_IMAGE}|g" -e "s|@CLUSTER_DOMAIN@|${CLUSTER_DOMAIN}|g" \
    -e "s|@DNS_IP@|${DNS_IP}|g" -e "s|@LOCAL_PATH_IMAGE@|${LOCAL_PATH_IMAGE}|g" \
    -e "s|@HELPER_IMAGE@|${HELPER_IMAGE}|g" -e "s|@VOLUME_DIR@|${VOLUME_DIR}|g" "$1"
}

default_sa_exists() { kc -n default get serviceaccount default; }

deploy_addons() {
  mkdir -p "$VOLUME_DIR"
  # Pods cannot be created in a namespace before its "default" ServiceAccount exists.
  wait_for "default ServiceAccount" 60 default_sa_exists
  render "${LOCAL_CLUSTER_DIR}/manifests/coredns.yaml" | kc apply -f - >/dev/null
  render "${LOCAL_CLUSTER_DIR}/manifests/local-path.yaml" | kc apply -f - >/dev/null
  kc -n kube-system rollout status deployment/coredns --timeout=180s >/dev/null
  kc -n local-path-storage rollout status deployment/local-path-provisioner --timeout=180s >/dev/null
  wait_for "kube-dns endpoints" 60 dns_has_endpoints
}

dns_has_endpoints() {
  [[ -n $(kc -n kube-system get endpointslices -l kubernetes.io/service-name=kube-dns \
    -o jsonpath='{.items[*].endpoints[?(@.conditions.ready==true)].addresses[0]}') ]]
}

# --- up / down / status ----------------------------------------------------------------------

cmd_build() {
  require_root
  step "apt packages" ensure_packages
  build_all_binaries
  step "cluster images (pause, coredns, local-path, busybox)" build_cluster_images
  # Not a cluster part: the monitoring tier's rule checker (hack/monitoring/check.sh),
  # built here so that CI's background build caches it too.
  step "build promtool ${PROMETHEUS_RELEASE} (the monitoring tier)" build_promtool
}

# Paths outside our state dirs that the kubelet/containerd/CNI insist on (fixed in their
# code): /var/lib/kubelet/device-plugins, /var/log/containers symlinks, libcni's result
# cache, containerd 1.6's shim socket dir. Remember which of them did not exist before
# our first `up`, so `down` removes exactly those.
HOST_PATHS=(/var/lib/kubelet /var/log/containers /var/lib/cni /run/containerd)
record_host_paths() {
  local p
  [[ -f ${STATE_DIR}/host-paths.created ]] && return 0
  mkdir -p "$STATE_DIR"
  for p in "${HOST_PATHS[@]}"; do
    [[ -e $p ]] || echo "$p"
  done >"${STATE_DIR}/host-paths.created"
}

remove_host_paths() {
  local l p
  # Our own entries, whether or not the directories existed before.
  for l in /var/log/containers/*.log; do
    [[ -L $l && $(readlink "$l") == "${POD_LOG_DIR}"/* ]] && rm -f "$l"
  done
  rm -f /var/lib/cni/results/"${CNI_NETWORK}"-* 2>/dev/null || true
  [[ -f ${STATE_DIR}/host-paths.created ]] || return 0
  while read -r p; do
    case $p in
      /var/log/containers) rmdir "$p" 2>/dev/null || log "keeping non-empty ${p}" ;;
      /var/lib/kubelet | /var/lib/cni | /run/containerd)
        if awk -v d="$p" 'index($5, d) == 1 {f=1} END {exit !f}' /proc/self/mountinfo; then
          log "warning: mounts under ${p}; not removing it"
        else
          rm -rf --one-file-system "$p"
        fi
        ;;
    esac
  done <"${STATE_DIR}/host-paths.created"
}

setup_host() {
  record_host_paths
  record_nft_tables
  setup_sysctls
  setup_guard
}

setup_certs() {
  setup_pki
  setup_kubeconfigs
}

cmd_up() {
  local t0=$SECONDS
  cmd_build
  step "host: sysctls + egress guard" setup_host
  step "PKI and kubeconfigs" setup_certs
  step "etcd ${ETCD_VERSION}" start_etcd
  step "kube-apiserver" start_apiserver
  step "kube-controller-manager" start_controller_manager
  step "kube-scheduler" start_scheduler
  step "containerd $(containerd --version | awk '{print $3}')" start_containerd
  step "import cluster images" import_cluster_images
  step "kubelet (node Ready)" start_kubelet
  step "kube-proxy (iptables mode)" start_kube_proxy
  step "add-ons: CoreDNS + local-path storage" deploy_addons
  log "cluster is up in $((SECONDS - t0))s"
  print_env_hint
}

print_env_hint() {
  cat <<EOF

  Kubernetes ${KUBE_VERSION} is running (node ${NODE_NAME}, API https://127.0.0.1:${API_PORT}).
  export KUBECONFIG=${KUBECONFIG_PATH}
  export PATH=${KUBE_BIN}:${HELM_BIN}:\$PATH
  images: hack/images.sh load raftkv/raft-node:dev target/release/raft-node   (imagePullPolicy: Never)
  storage class: standard (default)   DNS: <svc>.<ns>.svc.${CLUSTER_DOMAIN} via ${DNS_IP}
EOF
}

cmd_env() {
  echo "export KUBECONFIG=${KUBECONFIG_PATH}"
  echo "export PATH=${KUBE_BIN}:${HELM_BIN}:\$PATH"
}

# remove_pods: stop every pod through the CRI first, so the CNI plugins tear down their
# veths, network namespaces, IPAM leases and per-pod iptables chains properly.
remove_pods() {
  [[ -x ${CRICTL_BIN}/crictl && -S $CONTAINERD_SOCK ]] || return 0
  is_running containerd || return 0
  crictl_ rmp --all --force >/dev/null 2>&1 || log "warning: crictl rmp failed (continuing)"
}

# Shims outlive containerd (they re-parent to PID 1). Ours are the ones whose command line
# names our containerd socket; they are killed by PID.
kill_our_shims() {
  local pid
  for pid in $(pgrep -f -- "-address ${CONTAINERD_SOCK}" || true); do
    log "killing leftover shim pid ${pid}"
    kill -KILL "$pid" 2>/dev/null || true
  done
}

# unmount_under DIR: every mount point below DIR, deepest first.
unmount_under() {
  local dir=$1 m
  [[ -d $dir ]] || return 0
  awk -v d="$dir" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r |
    while read -r m; do
      m=$(printf '%b' "$m") # mountinfo escapes spaces as \040
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "warning: could not unmount ${m}"
    done
}

remove_netfilter() {
  local rule
  # Our guard chain.
  iptables -w -t mangle -D POSTROUTING -m comment --comment "${IPT_TAG}: guard" -j "$GUARD_CHAIN" 2>/dev/null || true
  iptables -w -t mangle -F "$GUARD_CHAIN" 2>/dev/null || true
  iptables -w -t mangle -X "$GUARD_CHAIN" 2>/dev/null || true
  # Anything else tagged with our comment (e.g. if an older version left rules behind).
  local table
  for table in filter nat mangle raw; do
    while read -r rule; do
      [[ -n $rule ]] || continue
      eval "iptables -w -t $table -D ${rule#-A }" 2>/dev/null || true
    done <<<"$(iptables-save -t "$table" 2>/dev/null | grep -e "--comment \"\?${IPT_TAG}" | grep '^-A' || true)"
  done
  # kube-proxy's KUBE-* chains (iptables and nftables).
  if [[ -x ${KUBE_BIN}/kube-proxy ]]; then
    "${KUBE_BIN}/kube-proxy" --cleanup >/dev/null 2>&1 || true
  fi
  # What --cleanup leaves: the kubelet's own KUBE-FIREWALL / KUBE-KUBELET-CANARY /
  # KUBE-IPTABLES-HINT chains (v4 and v6). Only kubelet and kube-proxy make KUBE-* chains.
  remove_kube_chains iptables
  remove_kube_chains ip6tables
  remove_cni_chains
  # conntrack entries of the pod and Service ranges.
  conntrack -D -s "$POD_CIDR" >/dev/null 2>&1 || true
  conntrack -D -d "$POD_CIDR" >/dev/null 2>&1 || true
  conntrack -D -d "$SERVICE_CIDR" >/dev/null 2>&1 || true
  remove_empty_nft_tables
}

# remove_kube_chains iptables|ip6tables: every KUBE-* chain and every jump to one.
remove_kube_chains() {
  local ipt=$1 table rule c
  for table in filter nat mangle raw; do
    while read -r rule; do
      [[ -n $rule ]] || continue
      eval "$ipt -w -t $table -D ${rule#-A }" 2>/dev/null || true
    done <<<"$("${ipt}-save" -t "$table" 2>/dev/null | grep -E '^-A [A-Z]+ .*-j KUBE-' | grep -vE '^-A KUBE-' || true)"
    for c in $("${ipt}-save" -t "$table" 2>/dev/null | awk '/^:KUBE-/ {print substr($1, 2)}'); do
      "$ipt" -w -t "$table" -F "$c" 2>/dev/null || true
    done
    for c in $("${ipt}-save" -t "$table" 2>/dev/null | awk '/^:KUBE-/ {print substr($1, 2)}'); do
      "$ipt" -w -t "$table" -X "$c" 2>/dev/null || true
    done
  done
}

# The nftables tables that iptables-nft instantiated for us (ip filter, ip6 nat, ...):
# deleted if they did not exist before our first `up` and hold no rule any more.
record_nft_tables() {
  [[ -f ${STATE_DIR}/nft-tables.before ]] && return 0
  nft list tables 2>/dev/null >"${STATE_DIR}/nft-tables.before" || true
}

remove_empty_nft_tables() {
  [[ -f ${STATE_DIR}/nft-tables.before ]] || return 0
  local fam table ipt
  for fam in ip ip6; do
    ipt=iptables
    [[ $fam == ip6 ]] && ipt=ip6tables
    for table in filter nat mangle raw; do
      grep -qx "table ${fam} ${table}" "${STATE_DIR}/nft-tables.before" && continue
      nft list table "$fam" "$table" >/dev/null 2>&1 || continue
      if "${ipt}-save" -t "$table" 2>/dev/null | grep '^-A' >/dev/null; then continue; fi
      nft delete table "$fam" "$table" 2>/dev/null || true
    done
  done
}

# CNI bridge/portmap leftovers of our network. Normally CNI DEL (crictl rmp) removes them;
# this handles pods that were never torn down (crash, kill -9). The bridge plugin tags its
# rules with the comment 'name: "<network>" id: "<container>"'.
remove_cni_chains() {
  local rules chains c rule
  rules=$(iptables-save -t nat 2>/dev/null | grep -F "name: \\\"${CNI_NETWORK}\\\" id:" | grep '^-A' || true)
  chains=$(grep -oE '(-A|-j) CNI-[A-Za-z0-9_-]+' <<<"$rules" | awk '{print $2}' | sort -u || true)
  while read -r rule; do
    [[ -n $rule ]] || continue
    eval "iptables -w -t nat -D ${rule#-A }" 2>/dev/null || true
  done <<<"$rules"
  for c in $chains; do
    [[ $c == CNI-HOSTPORT-* ]] && continue
    iptables -w -t nat -F "$c" 2>/dev/null || true
    iptables -w -t nat -X "$c" 2>/dev/null || true
  done
  # portmap's shared chains: only when empty (nobody else uses them).
  for c in CNI-HOSTPORT-DNAT CNI-HOSTPORT-SETMARK CNI-HOSTPORT-MASQ; do
    iptables -w -t nat -S "$c" 2>/dev/null | grep -q '^-A' && continue
    while read -r rule; do
      [[ -n $rule ]] || continue
      eval "iptables -w -t nat -D ${rule#-A }" 2>/dev/null || true
    done <<<"$(iptables-save -t nat 2>/dev/null | grep -E "^-A [A-Z]+ .*-j ${c}\b" || true)"
    iptables -w -t nat -X "$c" 2>/dev/null || true
  done
}

# Network namespaces made by containerd are named cni-<uuid>. After `crictl rmp` none of
# ours should be left; any cni-* namespace without processes is an orphan of a crash.
remove_orphan_netns() {
  local ns
  for ns in $(ip netns list 2>/dev/null | awk '$1 ~ /^cni-/ {print $1}'); do
    if [[ -z $(ip netns pids "$ns" 2>/dev/null) ]]; then
      ip netns delete "$ns" 2>/dev/null || true
    fi
  done
}

remove_network() {
  remove_netfilter
  remove_orphan_netns
  ip link delete "$BRIDGE" 2>/dev/null || true
}

# cgroups the kubelet created (cgroupfs driver): /sys/fs/cgroup/<controller>/kubepods*.
remove_cgroups() {
  local d
  for d in /sys/fs/cgroup/*/kubepods* /sys/fs/cgroup/kubepods*; do
    [[ -d $d ]] || continue
    find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || log "warning: could not remove all of ${d}"
  done
}

remove_state() {
  unmount_under "$STATE_DIR"
  unmount_under "$RUN_DIR"
  if awk -v d="$STATE_DIR" 'index($5, d) == 1 {found=1} END {exit !found}' /proc/self/mountinfo; then
    die "mounts remain under ${STATE_DIR}; not deleting it"
  fi
  remove_host_paths
  rm -rf --one-file-system "$STATE_DIR" "$RUN_DIR"
}

cmd_down() {
  require_root
  local t0=$SECONDS
  stop_daemon kubelet
  step "remove pods (CRI + CNI teardown)" remove_pods
  stop_daemon kube-proxy
  stop_daemon kube-scheduler
  stop_daemon kube-controller-manager
  stop_daemon kube-apiserver
  stop_daemon etcd
  stop_daemon containerd
  kill_our_shims
  step "netfilter, netns, bridge" remove_network
  step "cgroups" remove_cgroups
  restore_sysctls
  step "state dirs" remove_state
  log "cluster removed in $((SECONDS - t0))s (build cache kept in ${RAFTKV_CACHE_DIR}/bin and images)"
}

cmd_status() {
  local n rc=0
  for n in etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy; do
    if is_running "$n"; then
      printf '  %-24s running (pid %s)\n' "$n" "$(pid_of "$n")"
    else
      printf '  %-24s not running\n' "$n"
      rc=1
    fi
  done
  if iptables -w -t mangle -C POSTROUTING -m comment --comment "${IPT_TAG}: guard" -j "$GUARD_CHAIN" 2>/dev/null; then
    printf '  %-24s installed, %s packets dropped so far\n' "egress guard" \
      "$(iptables -w -t mangle -L "$GUARD_CHAIN" -v -n -x | awk 'NR > 2 {n += $1} END {print n + 0}')"
  else
    printf '  %-24s NOT installed\n' "egress guard"
  fi
  if is_running kube-apiserver && [[ -f $KUBECONFIG_PATH ]]; then
    echo
    kc get nodes -o wide 2>&1 | sed 's/^/  /' || true
    echo
    kc get pods -A -o wide 2>&1 | sed 's/^/  /' || true
    echo
    kc get storageclass 2>&1 | sed 's/^/  /' || true
    echo
    echo "  export KUBECONFIG=${KUBECONFIG_PATH}"
  fi
  return "$rc"
}

main() {
  case ${1:-} in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    build) cmd_build ;;
    packages)
      require_root
      ensure_packages
      ;;
    env) cmd_env ;;
    *)
      sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
      exit 2
      ;;
  esac
}

# Sourcing the script (e.g. from a test helper) only defines the functions.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  main "$@"
fi
