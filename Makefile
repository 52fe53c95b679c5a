# Front door. Everything here is a thin wrapper around a script in hack/.
.PHONY: help up down status test lint rust-test e2e chart-lint images

help:
	@echo "make up          local Kubernetes + operator + example RaftCluster (hack/up.sh; root)"
	@echo "make down        tear the local Kubernetes down (hack/local-cluster.sh down)"
	@echo "make status      what the local cluster runs"
	@echo "make test        everything .ci/run runs (lint, cargo tests, e2e)"
	@echo "make lint        rustfmt + clippy"
	@echo "make rust-test   cargo test --workspace"
	@echo "make e2e         the end-to-end suite on a fresh local cluster (KEEP_CLUSTER=1 keeps it)"
	@echo "make chart-lint  helm lint + helm template of charts/raft-operator"

up:
	hack/up.sh

down:
	hack/local-cluster.sh down

status:
	hack/local-cluster.sh status

test:
	hack/test.sh all

lint:
	hack/test.sh lint

rust-test:
	hack/test.sh rust

e2e:
	hack/e2e.sh

chart-lint:
	hack/e2e/chart-lint.sh
