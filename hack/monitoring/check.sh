#!/usr/bin/env bash
# The monitoring kit's checks (hack/test.sh monitoring; docs/testing.md):
#   1. `promtool check rules` on the chart's rule file and `promtool test rules` on its
#      unit tests (hack/monitoring/tests/*.yaml: each alert firing, and silent in a near miss);
#   2. every PromQL query of the Grafana dashboard parses (as recording rules, by promtool);
#   3. every metric the rules and the dashboard read exists: the node's from a scrape of a
#      real `raft-node` (one TLS node of `raft-node local`), the operator's from its metrics
#      registry (`cargo run --example metric_names`), plus the ALLOWED list below;
#   4. `helm template` with the kit on installs these very files, and without it nothing;
#   5. every alert's runbook_url names a section of docs/operations.md.
#
#   hack/monitoring/check.sh               # all of the above; exit 1 naming what is wrong
#   hack/monitoring/check.sh --self-test   # prove the checks fail on a broken expression,
#                                          # an unknown metric and a weakened alert
#
# Needs promtool (built by hack/local-cluster.sh build, or PROMTOOL=path), helm (the same
# build, or on PATH), cargo, curl, python3 with PyYAML. Ports: MONITORING_PORT_BASE (27300)
# .. +11 on 127.0.0.1.
set -euo pipefail

ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT_DIR"
RULES=charts/raft-operator/files/prometheus/rules.yaml
DASHBOARD=charts/raft-operator/files/grafana/raftkv.json
TESTS_DIR=hack/monitoring/tests
QUERIES=hack/monitoring/queries.py
PORT_BASE=${MONITORING_PORT_BASE:-27300}

# Series no raftkv component exports, one per line, each with why.
ALLOWED='
up  # Prometheus itself: one per scrape target (1 scraped, 0 failed)
# Provided by the backup controller (the operator, once scheduled backups land; #16):
raftkv_operator_backup_last_success_timestamp_seconds
raftkv_operator_backup_interval_seconds
'

die() { echo "error: $*" >&2; exit 1; }
step() { printf -- '--- %s\n' "$*"; }

need_tools() {
  local cache version
  cache=${RAFTKV_CACHE_DIR:-$HOME/.cache/raftkv}
  # shellcheck source=hack/local-cluster/versions.sh
  version=$(source hack/local-cluster/versions.sh && echo "$PROMETHEUS_VERSION")
  PROMTOOL=${PROMTOOL:-${cache}/bin/promtool-${version}/promtool}
  [[ -x $PROMTOOL ]] || die "promtool not found at ${PROMTOOL}: build it with hack/local-cluster.sh build (as root; from source, cached), or set PROMTOOL to a promtool binary"
  HELM=$(ls "${cache}"/bin/helm-*/helm 2>/dev/null | tail -n 1 || true)
  HELM=${HELM:-$(command -v helm || true)}
  [[ -n $HELM ]] || die "helm not found: build it with hack/local-cluster.sh build, or install helm 3"
  command -v curl >/dev/null || die "curl not found: apt-get install curl"
  python3 -c 'import yaml' 2>/dev/null || die "python3 with PyYAML is needed: apt-get install python3-yaml"
}

WORK=$(mktemp -d)
LOCAL_PID=""
cleanup() {
  if [[ -n $LOCAL_PID ]] && kill -0 "$LOCAL_PID" 2>/dev/null; then
    # raft-node local stops its node on SIGTERM (and the node dies with it anyway).
    kill -TERM "$LOCAL_PID" 2>/dev/null || true
    wait "$LOCAL_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# check_rules RULES_FILE TESTS_DIR: promtool's own checks and the unit tests.
check_rules() {
  "$PROMTOOL" check rules "$1"
  "$PROMTOOL" test rules "$2"/*.yaml
}

# check_queries_parse EXPRS_JSON: every expression parses (recorded by a throwaway rule).
check_queries_parse() {
  local out="$WORK/queries-$RANDOM.rules.yaml"
  python3 "$QUERIES" recording-file "$1" "$out" >"$out.sources"
  if ! "$PROMTOOL" check rules "$out"; then
    echo "the failing query_N above, by source:" >&2
    cat "$out.sources" >&2
    return 1
  fi
}

# check_names EXPRS_JSON RULES_FILE KNOWN_FILE...: every metric read exists.
check_names() {
  python3 "$QUERIES" unknown "$@"
}

# wait_for WHAT SECONDS CMD...: polls CMD every half second until it succeeds.
wait_for() {
  local what=$1 deadline=$((SECONDS + $2))
  shift 2
  until "$@"; do
    if ((SECONDS > deadline)) || { [[ -n $LOCAL_PID ]] && ! kill -0 "$LOCAL_PID" 2>/dev/null; }; then
      cat "$WORK/local.out" >&2 2>/dev/null || true
      tail -20 "$WORK/local/node-0.log" >&2 2>/dev/null || true
      die "raft-node local: no ${what} within $2 s"
    fi
    sleep 0.5
  done
}

scraped_with() { # scraped_with PORT PATTERN: one scrape into $WORK/node.metrics holds PATTERN
  curl -fsS "http://127.0.0.1:$1/metrics" -o "$WORK/node.metrics" 2>/dev/null && grep -q "$2" "$WORK/node.metrics"
}

# The node's metric names: one real raft-node (TLS, so the certificate gauge is there),
# scraped after one write through raftctl (a labelled family shows once it has a series).
node_names() {
  local target=${CARGO_TARGET_DIR:-target} metrics_port=$((PORT_BASE + 10))
  cargo build --locked --quiet -p raftkv-node -p raftctl --bin raft-node --bin raftctl
  [[ -x $target/debug/raft-node && -x $target/debug/raftctl ]] || die "raft-node or raftctl not built in ${target}/debug"
  "$target/debug/raft-node" local --nodes 1 --tls --fresh --data-dir "$WORK/local" --base-port "$PORT_BASE" \
    --metrics-base-port "$metrics_port" --no-restart >"$WORK/local.out" 2>&1 &
  LOCAL_PID=$!
  wait_for "raftctl settings printed" 60 grep -q '^export RAFTCTL_KEY=' "$WORK/local.out"
  wait_for "leader on /metrics (port ${metrics_port})" 60 scraped_with "$metrics_port" '^raftkv_raft_role{role="leader"} 1'
  (
    eval "$(grep '^export RAFTCTL_' "$WORK/local.out")"
    "$target/debug/raftctl" put monitoring-check ok >/dev/null
  ) || die "raftctl put to raft-node local failed"
  wait_for "the write on /metrics" 30 scraped_with "$metrics_port" '^raftkv_raft_proposals_total{result="ok"} 1'
  python3 "$QUERIES" known "$WORK/node.metrics"
}

operator_names() {
  cargo run --locked --quiet -p raft-operator --example metric_names >"$WORK/operator.metrics"
  python3 "$QUERIES" known "$WORK/operator.metrics"
}

check_chart() {
  local ns=raftkv-system
  "$HELM" template raft-operator charts/raft-operator --namespace "$ns" \
    --set prometheusRule.enabled=true --set grafanaDashboard.enabled=true \
    --set podMonitor.enabled=true --set serviceMonitor.enabled=true >"$WORK/on.yaml"
  python3 "$QUERIES" chart "$WORK/on.yaml" "$RULES" "$DASHBOARD"
  "$HELM" template raft-operator charts/raft-operator --namespace "$ns" >"$WORK/off.yaml"
  python3 "$QUERIES" chart-off "$WORK/off.yaml"
}

# expect_failure WHAT CMD...: the check must fail; its output is shown only if it passes.
expect_failure() {
  local what=$1
  shift
  if "$@" >"$WORK/self.out" 2>&1; then
    cat "$WORK/self.out" >&2
    die "self-test: the check passed on ${what}"
  fi
  echo "ok: fails on ${what}"
}

self_test() {
  local t="$WORK/self" exprs
  mkdir -p "$t"
  step "self-test: a broken dashboard query is refused"
  python3 "$QUERIES" exprs "$RULES" "$DASHBOARD" >"$t/good.json"
  check_queries_parse "$t/good.json" >/dev/null
  python3 - "$t/good.json" "$t/broken.json" <<'PY'
import json, sys
q = json.load(open(sys.argv[1]))
q.append({"source": "self-test", "expr": "sum by (pod (rate(raftkv_raft_term[5m]))"})
json.dump(q, open(sys.argv[2], "w"))
PY
  expect_failure "an unbalanced parenthesis" check_queries_parse "$t/broken.json"

  step "self-test: an unknown metric name is refused"
  printf 'raftkv_raft_term\nraftkv_raft_role\n' >"$t/known.txt"
  printf '[{"source": "ok", "expr": "max by (pod) (raftkv_raft_term{pod=\\"a\\"}) > on (pod) group_left count(raftkv_raft_role == 1)"}]' >"$t/ok.json"
  check_names "$t/ok.json" "$RULES" "$t/known.txt" >/dev/null
  printf '[{"source": "self-test", "expr": "sum by (pod) (rate(raftkv_raft_terms_total[5m])) > 0"}]' >"$t/unknown.json"
  expect_failure "a misspelt metric" check_names "$t/unknown.json" "$RULES" "$t/known.txt"
  printf '[{"source": "self-test", "expr": "histogram_quantile(0.99, sum by (le) (rate(raftkv_storage_fsync_seconds_bucket{pod=~\\"a|b\\"}[5m])))"}]' >"$t/unknown2.json"
  expect_failure "a metric inside a function call" check_names "$t/unknown2.json" "$RULES" "$t/known.txt"

  step "self-test: the unit tests notice a weakened alert"
  # The same layout as the repository, so the tests' relative rule_files path resolves.
  mkdir -p "$t/repo/$(dirname "$RULES")" "$t/repo/$TESTS_DIR"
  cp "$TESTS_DIR"/*.yaml "$t/repo/$TESTS_DIR/"
  sed 's/for: 5m$/for: 50m/' "$RULES" >"$t/repo/$RULES"
  cmp -s "$RULES" "$t/repo/$RULES" && die "self-test: found no 'for: 5m' to weaken in ${RULES}"
  expect_failure "the 5-minute alerts (RaftOperatorDown, RaftVoterUnhealthy) waiting 50" check_rules "$t/repo/$RULES" "$t/repo/$TESTS_DIR"
  sed 's/ > 2 \* max by/ > 3 * max by/' "$RULES" >"$t/repo/$RULES"
  cmp -s "$RULES" "$t/repo/$RULES" && die "self-test: found no backup threshold to weaken in ${RULES}"
  expect_failure "RaftClusterBackupStale waiting 3 intervals instead of 2" check_rules "$t/repo/$RULES" "$t/repo/$TESTS_DIR"
  sed 's/#raftvoterunhealthy$/#raftvoter-unhealthy/' "$RULES" >"$t/repo/$RULES"
  cmp -s "$RULES" "$t/repo/$RULES" && die "self-test: found no runbook_url to break in ${RULES}"
  expect_failure "a runbook_url naming no section" python3 "$QUERIES" runbooks "$t/repo/$RULES"
  printf 'groups:\n  - name: x\n    rules:\n      - alert: Broken\n        expr: sum(\n' >"$t/repo/$RULES"
  expect_failure "a rule file that does not parse" check_rules "$t/repo/$RULES" "$t/repo/$TESTS_DIR"
  echo "self-test passed"
}

main() {
  local exprs="$WORK/exprs.json"
  step "promtool check rules + promtool test rules ($("$PROMTOOL" --version 2>&1 | head -n 1))"
  check_rules "$RULES" "$TESTS_DIR"
  python3 "$QUERIES" runbooks "$RULES"
  step "dashboard and rule queries parse"
  python3 "$QUERIES" exprs "$RULES" "$DASHBOARD" >"$exprs"
  check_queries_parse "$exprs"
  step "every metric they read exists (a real raft-node's /metrics, the operator's registry)"
  node_names >"$WORK/node-names.txt"
  operator_names >"$WORK/operator-names.txt"
  printf '%s\n' "$ALLOWED" >"$WORK/allowed.txt"
  echo "$(wc -l <"$WORK/node-names.txt") node series names, $(wc -l <"$WORK/operator-names.txt") operator series names"
  check_names "$exprs" "$RULES" "$WORK/node-names.txt" "$WORK/operator-names.txt" "$WORK/allowed.txt"
  step "helm template: the kit installs these files, and is off by default"
  check_chart
  echo "monitoring checks passed"
}

need_tools
case "${1:-}" in
  --self-test) self_test ;;
  "") main ;;
  *) echo "usage: hack/monitoring/check.sh [--self-test]" >&2; exit 2 ;;
esac
