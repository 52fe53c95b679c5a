#!/usr/bin/env bash
# The guide's experiments (docs/raft-through-traces.md), one after the other, each
# against its own `raft-node local` cluster and a Jaeger on loopback; every claim the
# guide makes is checked (`claim` in hack/guide/lib.sh) and a failed one fails the run.
#
#   hack/guide.sh            full runs; rewrites the pictures in docs/guide/
#   hack/guide.sh --short    CI: shorter runs, pictures to a temp dir (hack/test.sh guide)
#   hack/guide.sh --short election minority    only these experiments
#
# Needs raft-node and raftctl built (cargo build -p raftkv-node -p raftctl --bin raft-node --bin raftctl),
# jq, curl and a Jaeger v2 binary (hack/local-cluster.sh build builds it; GUIDE_JAEGER
# points at another). Ports: GUIDE_PORT_BASE (default 27100) .. +43.
set -euo pipefail
cd "$(dirname "$0")/.."

ALL=(write-path election follower-catch-up minority read-scaling fencing-lock replace-node compare-faults sampling)
flags=()
names=()
for a in "$@"; do
  case $a in
    --short) flags+=(--short) ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "usage: hack/guide.sh [--short] [experiment...]" >&2; exit 2 ;;
    *) [[ -x hack/guide/$a.sh ]] || { echo "no experiment hack/guide/$a.sh (have: ${ALL[*]})" >&2; exit 2; }; names+=("$a") ;;
  esac
done
((${#names[@]})) || names=("${ALL[@]}")

logs="$(mktemp -d "${TMPDIR:-/tmp}/raftkv-guide-logs.XXXXXX")"
failed=()
summary=()
start=$SECONDS
for n in "${names[@]}"; do
  t0=$SECONDS
  printf '=== %s\n' "$n"
  if hack/guide/"$n".sh "${flags[@]}" >"$logs/$n.log" 2>&1; then
    result=ok
  else
    result=FAILED
    failed+=("$n")
    tail -30 "$logs/$n.log" | sed 's/^/    /'
  fi
  grep -E '^(ok|FAIL) ' "$logs/$n.log" || true
  summary+=("$(printf '%-18s %-6s %4ss  %s claims' "$n" "$result" $((SECONDS - t0)) "$(grep -c '^ok ' "$logs/$n.log" || true)")")
done
echo
printf '%s\n' "${summary[@]}"
echo "guide: ${#names[@]} experiments in $((SECONDS - start))s"
if ((${#failed[@]})); then
  echo "error: the guide no longer matches what raftkv does in: ${failed[*]} (see the FAIL lines above; logs: $logs)" >&2
  exit 1
fi
rm -rf "$logs"
