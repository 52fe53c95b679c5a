#!/usr/bin/env bash
# Build container images WITHOUT a registry or a Docker engine, and import them into the
# local cluster's containerd (hack/local-cluster.sh).
#
#   hack/images.sh build-rootfs-image NAME:TAG BINARY [BINARY...]
#       Copies the binaries (to /usr/local/bin), every shared library `ldd` lists and the
#       ELF interpreter into a fresh rootfs, adds /etc/passwd+group with the non-root
#       user 65532, /tmp (1777) and the CA bundle, and writes ONE image tarball that is
#       both an OCI image layout and a docker-archive (so `ctr images import`,
#       `docker load` and `kind load image-archive` all accept it). Entrypoint = the
#       first binary, user 65532:65532. Prints the tarball path on stdout.
#       IMAGE_OUT=path overrides where the tarball goes.
#   hack/images.sh build-dir-image NAME:TAG ROOTDIR ENTRYPOINT [USER]
#       Same, from an already prepared rootfs directory.
#   hack/images.sh import TARBALL [TARBALL...]
#       `ctr -n k8s.io images import` into the local cluster's containerd.
#   hack/images.sh load NAME:TAG BINARY [BINARY...]
#       build-rootfs-image + import in one go.
#   hack/images.sh list
#       Images the local cluster's containerd knows (namespace k8s.io).
#
# Image names follow Docker's normalisation: raftkv/raft-node:dev is stored as
# docker.io/raftkv/raft-node:dev, which is what the kubelet looks for when a pod says
# `image: raftkv/raft-node:dev` (use imagePullPolicy: Never or IfNotPresent).
set -euo pipefail

IMAGES_SH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=hack/local-cluster/lib.sh
source "${IMAGES_SH_DIR}/local-cluster/lib.sh"

: "${RAFTKV_RUN_DIR:=/run/raftkv}"
CONTAINERD_SOCK="${RAFTKV_RUN_DIR}/containerd/containerd.sock"

# normalize_ref NAME[:TAG] -> fully qualified reference, Docker style.
normalize_ref() {
  local ref=$1 name tag first
  if [[ ${ref##*/} == *:* ]]; then
    name=${ref%:*}
    tag=${ref##*:}
  else
    name=$ref
    tag=latest
  fi
  first=${name%%/*}
  if [[ $name != */* ]]; then
    name="docker.io/library/${name}"
  elif [[ $first != *.* && $first != *:* && $first != localhost ]]; then
    name="docker.io/${name}"
  fi
  printf '%s:%s\n' "$name" "$tag"
}

go_arch() {
  case $(uname -m) in
    x86_64) echo amd64 ;;
    aarch64) echo arm64 ;;
    *) uname -m ;;
  esac
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# write_image_tar ROOTDIR REF OUT USER ENTRYPOINT...
# (IMAGE_AS_CMD=1 stores the command as Cmd instead of Entrypoint, like a base image, so
# `kubectl run --image=... -- sh -c ...` replaces it.)
# One gzip layer (owner 0:0, mtime 0, sorted: reproducible) + OCI config + manifest,
# laid out as an OCI image layout that is also a docker-archive.
write_image_tar() {
  local root=$1 ref=$2 out=$3 user=$4
  shift 4
  local work arch full tag diff_id layer_digest layer_size cfg_digest cfg_size man_digest man_size entry_json
  work=$(mktemp -d)
  arch=$(go_arch)
  full=$(normalize_ref "$ref")
  tag=${full##*:}
  mkdir -p "${work}/blobs/sha256"

  (cd "$root" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort) >"${work}/files"
  tar --create --file "${work}/layer.tar" --directory "$root" --no-recursion \
    --format=gnu --numeric-owner --owner=0 --group=0 --mtime=@0 --files-from "${work}/files"
  diff_id="sha256:$(sha256_of "${work}/layer.tar")"
  gzip -n -6 <"${work}/layer.tar" >"${work}/layer.tar.gz"
  layer_digest=$(sha256_of "${work}/layer.tar.gz")
  layer_size=$(stat -c %s "${work}/layer.tar.gz")
  mv "${work}/layer.tar.gz" "${work}/blobs/sha256/${layer_digest}"

  entry_json=$(jq -cn '$ARGS.positional' --args "$@")
  jq -cnS --arg arch "$arch" --arg user "$user" --arg diff "$diff_id" --argjson entry "$entry_json" \
    --arg key "$([[ ${IMAGE_AS_CMD:-0} == 1 ]] && echo Cmd || echo Entrypoint)" \
    '{architecture:$arch, os:"linux", created:"1970-01-01T00:00:00Z",
      config:({User:$user, Env:["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
              WorkingDir:"/"} + {($key):$entry}),
      rootfs:{type:"layers", diff_ids:[$diff]},
      history:[{created:"1970-01-01T00:00:00Z", created_by:"hack/images.sh (rootfs layer, no registry)"}]}' \
    | tr -d '\n' >"${work}/config.json"
  cfg_digest=$(sha256_of "${work}/config.json")
  cfg_size=$(stat -c %s "${work}/config.json")
  mv "${work}/config.json" "${work}/blobs/sha256/${cfg_digest}"

  jq -cnS --arg cd "sha256:${cfg_digest}" --argjson cs "$cfg_size" \
    --arg ld "sha256:${layer_digest}" --argjson ls "$layer_size" \
    '{schemaVersion:2, mediaType:"application/vnd.oci.image.manifest.v1+json",
      config:{mediaType:"application/vnd.oci.image.config.v1+json", digest:$cd, size:$cs},
      layers:[{mediaType:"application/vnd.oci.image.layer.v1.tar+gzip", digest:$ld, size:$ls}]}' \
    | tr -d '\n' >"${work}/manifest.oci"
  man_digest=$(sha256_of "${work}/manifest.oci")
  man_size=$(stat -c %s "${work}/manifest.oci")
  mv "${work}/manifest.oci" "${work}/blobs/sha256/${man_digest}"

  # index.json: io.containerd.image.name is what `ctr images import` names the image.
  jq -cn --arg md "sha256:${man_digest}" --argjson ms "$man_size" --arg arch "$arch" \
    --arg full "$full" --arg tag "$tag" \
    '{schemaVersion:2, mediaType:"application/vnd.oci.image.index.v1+json",
      manifests:[{mediaType:"application/vnd.oci.image.manifest.v1+json", digest:$md, size:$ms,
        platform:{architecture:$arch, os:"linux"},
        annotations:{"io.containerd.image.name":$full, "org.opencontainers.image.ref.name":$tag}}]}' \
    >"${work}/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}' >"${work}/oci-layout"
  # manifest.json: the docker-archive view of the same blobs (docker load, kind load).
  jq -cn --arg c "blobs/sha256/${cfg_digest}" --arg l "blobs/sha256/${layer_digest}" --arg full "$full" \
    '[{Config:$c, RepoTags:[$full], Layers:[$l]}]' >"${work}/manifest.json"

  mkdir -p "$(dirname "$out")"
  tar --create --file "${out}.tmp" --directory "$work" --format=gnu --numeric-owner --owner=0 --group=0 \
    --mtime=@0 oci-layout index.json manifest.json blobs
  mv "${out}.tmp" "$out"
  rm -rf "$work"
  log "image ${full} -> ${out} ($(du -h "$out" | cut -f1), manifest sha256:${man_digest:0:12})"
}

# base_rootfs DIR: the minimum a non-root Linux program expects to find.
base_rootfs() {
  local root=$1
  mkdir -p "${root}/etc" "${root}/tmp" "${root}/usr/local/bin" "${root}/etc/ssl/certs"
  chmod 1777 "${root}/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
    >"${root}/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"${root}/etc/group"
  printf 'hosts: files dns\n' >"${root}/etc/nsswitch.conf"
  if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
    cp /etc/ssl/certs/ca-certificates.crt "${root}/etc/ssl/certs/ca-certificates.crt"
  fi
}

# copy_with_libs ROOT BINARY: the binary into /usr/local/bin, plus everything the dynamic
# loader needs (ldd's list and the PT_INTERP interpreter), at the same absolute paths.
copy_with_libs() {
  local root=$1 bin=$2 lib interp
  [[ -f $bin && -x $bin ]] || die "not an executable file: ${bin}"
  install -m 0755 "$bin" "${root}/usr/local/bin/$(basename "$bin")"
  interp=$(readelf -l "$bin" 2>/dev/null | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
  {
    [[ -n $interp ]] && echo "$interp"
    # ldd lines: "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x..)" or "/lib64/ld-linux... (0x..)"
    ldd "$bin" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' || true
  } | sort -u | while read -r lib; do
    mkdir -p "${root}$(dirname "$lib")"
    cp -L "$lib" "${root}${lib}"
  done
}

# build_rootfs_image NAME:TAG BINARY...: prints the tarball path.
build_rootfs_image() {
  local ref=$1 root out safe
  shift
  (($# > 0)) || die "usage: images.sh build-rootfs-image NAME:TAG BINARY [BINARY...]"
  root=$(mktemp -d)
  base_rootfs "$root"
  local b
  for b in "$@"; do copy_with_libs "$root" "$b"; done
  safe=$(normalize_ref "$ref" | tr '/:' '__')
  out=${IMAGE_OUT:-${RAFTKV_CACHE_DIR}/images/project/${safe}.tar}
  write_image_tar "$root" "$ref" "$out" "65532:65532" "/usr/local/bin/$(basename "$1")"
  rm -rf "$root"
  echo "$out"
}

# build_dir_image NAME:TAG ROOTDIR ENTRYPOINT [USER]: prints the tarball path.
build_dir_image() {
  local ref=$1 root=$2 entry=$3 user=${4:-65532:65532} out safe
  safe=$(normalize_ref "$ref" | tr '/:' '__')
  out=${IMAGE_OUT:-${RAFTKV_CACHE_DIR}/images/project/${safe}.tar}
  write_image_tar "$root" "$ref" "$out" "$user" "$entry"
  echo "$out"
}

ctr_k8s() { ctr --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }

import_images() {
  [[ -S $CONTAINERD_SOCK ]] || die "no containerd at ${CONTAINERD_SOCK}: run hack/local-cluster.sh up first"
  local t
  for t in "$@"; do
    [[ -f $t ]] || die "no such tarball: ${t}"
    ctr_k8s images import --no-unpack=false "$t" >&2
  done
}

images_main() {
  local cmd=${1:-help}
  shift || true
  case $cmd in
    build-rootfs-image) build_rootfs_image "$@" ;;
    build-dir-image) build_dir_image "$@" ;;
    import) import_images "$@" ;;
    load)
      local tarball
      tarball=$(build_rootfs_image "$@")
      import_images "$tarball"
      ;;
    list) ctr_k8s images list -q ;;
    *)
      sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
      [[ $cmd == help || $cmd == -h || $cmd == --help ]] || exit 2
      ;;
  esac
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  images_main "$@"
fi
