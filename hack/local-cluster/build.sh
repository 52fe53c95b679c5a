# shellcheck shell=bash
# Builds every Kubernetes-side binary from source through the Go module proxy, plus the
# images the cluster itself needs. Everything lands in ${RAFTKV_CACHE_DIR} keyed by
# version and by a hash of the build recipe, so a second run (or a CI run from another
# clone on the same machine) reuses it.
#
# Why throwaway go.mod files: `go install k8s.io/kubernetes/cmd/kubelet@v1.34.x` fails
# because k8s.io/kubernetes (like etcd's server module) has `replace` directives to its
# in-repo staging dirs. We generate, inside the cache, a tiny main module that requires
# the upstream module and replaces each staging module with its published tag.

BIN_ROOT="${RAFTKV_CACHE_DIR}/bin"
SRC_ROOT="${RAFTKV_CACHE_DIR}/src"
IMG_ROOT="${RAFTKV_CACHE_DIR}/images"
BUILD_LOG_DIR="${RAFTKV_CACHE_DIR}/build-logs"

KUBE_BIN="${BIN_ROOT}/kubernetes-${KUBE_VERSION}"
ETCD_BIN="${BIN_ROOT}/etcd-${ETCD_VERSION}"
COREDNS_BIN="${BIN_ROOT}/coredns-${COREDNS_VERSION}"
HELM_BIN="${BIN_ROOT}/helm-${HELM_VERSION}"
CRICTL_BIN="${BIN_ROOT}/cri-tools-${CRI_TOOLS_VERSION}"
LOCAL_PATH_BIN="${BIN_ROOT}/local-path-provisioner-${LOCAL_PATH_VERSION}"
JAEGER_BIN="${BIN_ROOT}/jaeger-${JAEGER_VERSION}"
PAUSE_BIN="${BIN_ROOT}/pause-local"
S3S_FS_BIN="${BIN_ROOT}/s3s-fs-${S3S_FS_VERSION}"

PAUSE_IMAGE="localhost/raftkv/pause:local"
COREDNS_IMAGE="localhost/raftkv/coredns:${COREDNS_VERSION}"
LOCAL_PATH_IMAGE="localhost/raftkv/local-path-provisioner:${LOCAL_PATH_VERSION}"
HELPER_IMAGE="localhost/raftkv/busybox:local"

# etcd v3.6.16's go.mod says `go 1.26.0`; everything else needs >= 1.24. GOTOOLCHAIN=local:
# never download a toolchain.
require_go() {
  local v
  command -v go >/dev/null || die "go is not installed (need Go >= 1.26)"
  v=$(go env GOVERSION)
  v=${v#go}
  if ((${v%%.*} < 1 || ($(cut -d. -f1 <<<"$v") == 1 && $(cut -d. -f2 <<<"$v") < 26))); then
    die "Go ${v} is too old: need >= 1.26 (etcd ${ETCD_VERSION} requires it)"
  fi
}

# go_throwaway_build KEY GOMOD_TEXT LDFLAGS OUTDIR PKG...
# Skips the build when OUTDIR holds a stamp with the same recipe hash.
go_throwaway_build() {
  local key=$1 gomod=$2 ldflags=$3 out=$4
  shift 4
  local src="${SRC_ROOT}/${key}" recipe logf t0=$SECONDS
  recipe=$(printf '%s\n' "$gomod" "$ldflags" "$*" "$(go env GOVERSION)" | sha256sum | cut -c1-16)
  if [[ -f ${out}/.recipe && $(cat "${out}/.recipe") == "$recipe" ]]; then
    log "cached: ${key} (${out})"
    return 0
  fi
  require_go
  mkdir -p "$src" "$BUILD_LOG_DIR"
  logf="${BUILD_LOG_DIR}/${key}.log"
  printf '%s\n' "$gomod" >"${src}/go.mod"
  log "building ${key}: $* (log: ${logf})"
  rm -rf "${out}.tmp"
  mkdir -p "${out}.tmp"
  # nice: other engineers compile Rust on the same 2 cores.
  # -mod=mod lets go record the dependency graph of the pinned module in our go.mod/go.sum;
  # checksums are still verified against sum.golang.org (reached through the proxy).
  if ! (cd "$src" && env GOTOOLCHAIN=local GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 \
    nice -n 10 go build -trimpath -tags providerless -ldflags "$ldflags" -o "${out}.tmp/" "$@") >"$logf" 2>&1; then
    tail -30 "$logf" >&2
    die "build of ${key} failed (full log: ${logf})"
  fi
  rm -rf "$out"
  mv "${out}.tmp" "$out"
  echo "$recipe" >"${out}/.recipe"
  log "built ${key} in $((SECONDS - t0))s: $(cd "$out" && echo *)"
}

# module_info MODULE VERSION FIELD: Time (or Origin.Hash, when the proxy has it) from the
# module's .info file in the module cache.
module_info() {
  local info
  info=$(cd "$SRC_ROOT" && GOTOOLCHAIN=local GOWORK=off GOFLAGS=-mod=mod go mod download -json "$1@$2" 2>/dev/null | jq -r '.Info // empty') || true
  if [[ -f $info ]]; then jq -r "$3 // empty" "$info" 2>/dev/null || true; fi
}

build_kubernetes() {
  local k="k8s.io/kubernetes" upstream_mod gomod commit date ldflags v
  mkdir -p "$SRC_ROOT"
  upstream_mod=$(cd "$SRC_ROOT" && GOTOOLCHAIN=local GOWORK=off GOFLAGS=-mod=mod go mod download -json "${k}@${KUBE_VERSION}" | jq -r .GoMod)
  [[ -f $upstream_mod ]] || die "could not fetch ${k}@${KUBE_VERSION} from the Go module proxy"
  gomod=$(
    printf 'module raftkv.local/kubernetes-build\n\ngo 1.24.0\n\n'
    # Same GODEBUG defaults as upstream's own builds of this release.
    printf 'godebug default=go1.24\n\nrequire %s %s\n\nreplace (\n' "$k" "$KUBE_VERSION"
    grep -E '=> \./staging/src/' "$upstream_mod" | awk -v v="$KUBE_STAGING_VERSION" '{printf "\t%s => %s %s\n", $1, $1, v}'
    printf ')\n'
  )
  commit=$(module_info "$k" "$KUBE_VERSION" .Origin.Hash)
  date=$(module_info "$k" "$KUBE_VERSION" .Time)
  v=${KUBE_VERSION#v}
  ldflags="-s -w"
  # Real version strings: kubectl, helm and client-go check the server's version.
  local pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X ${pkg}.gitVersion=${KUBE_VERSION} -X ${pkg}.gitMajor=${v%%.*}"
    ldflags+=" -X ${pkg}.gitMinor=$(cut -d. -f2 <<<"$v") -X ${pkg}.gitTreeState=clean"
    ldflags+=" -X ${pkg}.gitCommit=${commit:-unknown} -X ${pkg}.buildDate=${date:-1970-01-01T00:00:00Z}"
  done
  go_throwaway_build "kubernetes-${KUBE_VERSION}" "$gomod" "$ldflags" "$KUBE_BIN" \
    "${k}/cmd/kube-apiserver" "${k}/cmd/kube-controller-manager" "${k}/cmd/kube-scheduler" \
    "${k}/cmd/kubelet" "${k}/cmd/kube-proxy" "${k}/cmd/kubectl"
}

build_etcd() {
  local gomod
  # No replaces needed: as a dependency, etcd's server module requires its sibling modules
  # at the same published version (its in-repo replaces only apply inside etcd's repo).
  gomod=$(printf 'module raftkv.local/etcd-build\n\ngo 1.24.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION")
  go_throwaway_build "etcd-${ETCD_VERSION}" "$gomod" "-s -w" "$ETCD_BIN" go.etcd.io/etcd/server/v3
  # go names the binary after the module path minus its /vN suffix: "server".
  if [[ -x ${ETCD_BIN}/server ]]; then mv "${ETCD_BIN}/server" "${ETCD_BIN}/etcd"; fi
  [[ -x ${ETCD_BIN}/etcd ]] || die "etcd binary missing in ${ETCD_BIN}"
}

build_coredns() {
  local gomod commit
  commit=$(module_info github.com/coredns/coredns "$COREDNS_VERSION" .Origin.Hash)
  gomod=$(printf 'module raftkv.local/coredns-build\n\ngo 1.24.0\n\nrequire github.com/coredns/coredns %s\n' "$COREDNS_VERSION")
  go_throwaway_build "coredns-${COREDNS_VERSION}" "$gomod" \
    "-s -w -X github.com/coredns/coredns/coremain.GitCommit=${commit:0:7}" "$COREDNS_BIN" github.com/coredns/coredns
}

build_helm() {
  local gomod commit p="helm.sh/helm/v3" kv=${KUBE_STAGING_VERSION#v0.} ldflags
  commit=$(module_info "$p" "$HELM_VERSION" .Origin.Hash)
  gomod=$(printf 'module raftkv.local/helm-build\n\ngo 1.24.0\n\nrequire %s %s\n' "$p" "$HELM_VERSION")
  # The same -X flags helm's Makefile sets (version, default KubeVersion for templates).
  ldflags="-s -w -X ${p}/internal/version.version=${HELM_VERSION} -X ${p}/internal/version.gitCommit=${commit}"
  ldflags+=" -X ${p}/internal/version.gitTreeState=clean"
  ldflags+=" -X ${p}/pkg/lint/rules.k8sVersionMajor=1 -X ${p}/pkg/lint/rules.k8sVersionMinor=${kv%%.*}"
  ldflags+=" -X ${p}/pkg/chartutil.k8sVersionMajor=1 -X ${p}/pkg/chartutil.k8sVersionMinor=${kv%%.*}"
  go_throwaway_build "helm-${HELM_VERSION}" "$gomod" "$ldflags" "$HELM_BIN" "${p}/cmd/helm"
}

build_crictl() {
  local gomod
  gomod=$(printf 'module raftkv.local/cri-tools-build\n\ngo 1.24.0\n\nrequire sigs.k8s.io/cri-tools %s\n' "$CRI_TOOLS_VERSION")
  go_throwaway_build "cri-tools-${CRI_TOOLS_VERSION}" "$gomod" \
    "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=${CRI_TOOLS_VERSION}" "$CRICTL_BIN" sigs.k8s.io/cri-tools/cmd/crictl
}

build_local_path() {
  local gomod
  gomod=$(printf 'module raftkv.local/local-path-build\n\ngo 1.24.0\n\nrequire github.com/rancher/local-path-provisioner %s\n' "$LOCAL_PATH_VERSION")
  go_throwaway_build "local-path-provisioner-${LOCAL_PATH_VERSION}" "$gomod" \
    "-s -w -X main.VERSION=${LOCAL_PATH_VERSION}" "$LOCAL_PATH_BIN" github.com/rancher/local-path-provisioner
}

build_jaeger() {
  local gomod j="github.com/jaegertracing/jaeger"
  # Jaeger's own go.mod pins sarama through a replace; as a dependency we must repeat it.
  gomod=$(printf 'module raftkv.local/jaeger-build\n\ngo 1.24.6\n\nrequire %s %s\n\nreplace github.com/Shopify/sarama => github.com/Shopify/sarama v1.33.0\n' "$j" "$JAEGER_VERSION")
  go_throwaway_build "jaeger-${JAEGER_VERSION}" "$gomod" \
    "-s -w -X ${j}/internal/version.latestVersion=v${JAEGER_RELEASE}" "$JAEGER_BIN" "${j}/cmd/jaeger"
}

# The S3 server of the backup tests: `cargo install` of a pinned crates.io release with
# its own Cargo.lock, into ${S3S_FS_BIN}/bin/s3s-fs (its build tree is thrown away).
build_s3s_fs() {
  local t0=$SECONDS logf="${BUILD_LOG_DIR}/s3s-fs-${S3S_FS_VERSION}.log"
  if [[ -x ${S3S_FS_BIN}/bin/s3s-fs ]]; then
    log "cached: s3s-fs (${S3S_FS_BIN})"
    return 0
  fi
  command -v cargo >/dev/null || die "cargo is needed to build s3s-fs (install Rust from https://rustup.rs)"
  mkdir -p "$BUILD_LOG_DIR"
  rm -rf "${S3S_FS_BIN}.tmp" "${SRC_ROOT}/s3s-fs-target"
  log "building s3s-fs ${S3S_FS_VERSION} (log: ${logf})"
  CARGO_TARGET_DIR="${SRC_ROOT}/s3s-fs-target" nice cargo install --locked --quiet \
    --root "${S3S_FS_BIN}.tmp" --features binary "s3s-fs@${S3S_FS_VERSION}" >"$logf" 2>&1 \
    || die "building s3s-fs failed: see ${logf}"
  rm -rf "${SRC_ROOT}/s3s-fs-target"
  mv "${S3S_FS_BIN}.tmp" "$S3S_FS_BIN"
  log "built s3s-fs ${S3S_FS_VERSION} in $((SECONDS - t0))s"
}

# The sandbox ("pause") binary: a tiny static C program, as upstream's pause is.
build_pause() {
  local src="${LOCAL_CLUSTER_DIR}/pause.c" sum
  sum=$(sha256sum "$src" | cut -c1-16)
  if [[ -x ${PAUSE_BIN}/pause && $(cat "${PAUSE_BIN}/.recipe" 2>/dev/null) == "$sum" ]]; then
    log "cached: pause (${PAUSE_BIN})"
    return 0
  fi
  command -v gcc >/dev/null || die "gcc is needed to build the pause binary"
  mkdir -p "$PAUSE_BIN"
  gcc -Os -static -o "${PAUSE_BIN}/pause" "$src"
  strip "${PAUSE_BIN}/pause"
  echo "$sum" >"${PAUSE_BIN}/.recipe"
}

build_all_binaries() {
  step "build pause (gcc -static)" build_pause
  step "build kubernetes ${KUBE_VERSION} (6 binaries)" build_kubernetes
  step "build etcd ${ETCD_VERSION}" build_etcd
  step "build coredns ${COREDNS_VERSION}" build_coredns
  step "build local-path-provisioner ${LOCAL_PATH_VERSION}" build_local_path
  step "build crictl ${CRI_TOOLS_VERSION}" build_crictl
  step "build helm ${HELM_VERSION}" build_helm
  step "build jaeger ${JAEGER_RELEASE} (trace backend of the e2e)" build_jaeger
  step "build s3s-fs ${S3S_FS_VERSION} (S3 server of the backup e2e)" build_s3s_fs
}

# image_tarball NAME: where the cached tarball of one of our cluster images lives.
image_tarball() { echo "${IMG_ROOT}/cluster/$1.tar"; }

# build_cluster_image NAME REF ENTRYPOINT USER SETUP_FN: builds the image tarball once per
# (ref, binary) and caches it. SETUP_FN fills the rootfs.
build_cluster_image() {
  local name=$1 ref=$2 entry=$3 user=$4 setup=$5 out root key
  out=$(image_tarball "$name")
  key=$(printf '%s\n' "$ref" "$entry" "$user" "${IMAGE_AS_CMD:-0}" "$(declare -f "$setup")" "$(sha256sum "${@:6}" 2>/dev/null)" | sha256sum | cut -c1-16)
  if [[ -f $out && $(cat "${out}.recipe" 2>/dev/null) == "$key" ]]; then
    log "cached image: ${ref}"
    return 0
  fi
  root=$(mktemp -d)
  base_rootfs "$root"
  "$setup" "$root"
  write_image_tar "$root" "$ref" "$out" "$user" "$entry"
  rm -rf "$root"
  echo "$key" >"${out}.recipe"
}

rootfs_pause() { install -m 0755 "${PAUSE_BIN}/pause" "$1/pause"; }
rootfs_coredns() { install -m 0755 "${COREDNS_BIN}/coredns" "$1/coredns"; }
rootfs_local_path() { install -m 0755 "${LOCAL_PATH_BIN}/local-path-provisioner" "$1/usr/local/bin/local-path-provisioner"; }
# Helper pods of local-path-provisioner run `sh -c` scripts (mkdir/chmod/rm): busybox-static.
rootfs_busybox() {
  local a
  mkdir -p "$1/bin"
  install -m 0755 /bin/busybox "$1/bin/busybox"
  for a in $(/bin/busybox --list); do
    [[ $a == busybox ]] || ln -sf busybox "$1/bin/$a"
  done
}

build_cluster_images() {
  build_cluster_image pause "$PAUSE_IMAGE" /pause "65535:65535" rootfs_pause "${PAUSE_BIN}/pause"
  build_cluster_image coredns "$COREDNS_IMAGE" /coredns "65532:65532" rootfs_coredns "${COREDNS_BIN}/coredns"
  build_cluster_image local-path "$LOCAL_PATH_IMAGE" /usr/local/bin/local-path-provisioner "65532:65532" \
    rootfs_local_path "${LOCAL_PATH_BIN}/local-path-provisioner"
  IMAGE_AS_CMD=1 build_cluster_image busybox "$HELPER_IMAGE" /bin/sh "0:0" rootfs_busybox /bin/busybox
}
