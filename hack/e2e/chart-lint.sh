#!/usr/bin/env bash
# helm lint + helm template of the chart in its main configurations (all namespaces,
# one namespace, everything enabled), and a check that the chart's CRD is the generated one.
# Uses the helm that hack/local-cluster.sh builds, or the one on PATH.
set -euo pipefail
ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT_DIR"
HELM=$(ls "${RAFTKV_CACHE_DIR:-$HOME/.cache/raftkv}"/bin/helm-*/helm 2>/dev/null | tail -n 1 || true)
HELM=${HELM:-$(command -v helm || true)}
[[ -n $HELM ]] || { echo "helm not found: run hack/local-cluster.sh build, or install helm 3" >&2; exit 1; }
chart=charts/raft-operator
"$HELM" lint --strict "$chart"
render() { "$HELM" template raft-operator "$chart" --namespace raftkv-system "$@" >/dev/null; }
render
render --set watchNamespace=apps
render --set tracing.enabled=true --set tracing.endpoint=http://otel:4317 \
  --set serviceMonitor.enabled=true --set networkPolicy.enabled=true --set replicas=1 --set leaderElection.enabled=false \
  --set podMonitor.enabled=true --set prometheusRule.enabled=true --set grafanaDashboard.enabled=true
render --set watchNamespace=apps --set podMonitor.enabled=true --set crds.enabled=false
if render --set replicas=2 --set leaderElection.enabled=false 2>/dev/null; then
  echo "chart accepted 2 replicas without leader election" >&2
  exit 1
fi
diff -u crds/raftcluster.yaml "$chart/files/crds/raftcluster.yaml" || { echo "chart CRD differs from crds/raftcluster.yaml: regenerate" >&2; exit 1; }
echo "chart OK"
