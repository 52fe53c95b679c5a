//! The committed CRD files must equal what the Rust types generate.

use std::path::Path;

const COPIES: [&str; 2] = [
    "crds/raftcluster.yaml",
    "charts/raft-operator/files/crds/raftcluster.yaml",
];

#[test]
fn committed_crd_files_are_current() {
    let generated = raft_operator::crd::crd_yaml();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for copy in COPIES {
        let committed = std::fs::read_to_string(root.join(copy)).unwrap_or_default();
        assert!(
            committed == generated,
            "{copy} is stale or missing. Regenerate from the repository root with:\n  \
             cargo run -p raft-operator -- crd --output crds/raftcluster.yaml \
             --output charts/raft-operator/files/crds/raftcluster.yaml"
        );
    }
}

const BACKUP_COPIES: [&str; 2] = [
    "crds/raftclusterbackup.yaml",
    "charts/raft-operator/files/crds/raftclusterbackup.yaml",
];

#[test]
fn committed_backup_crd_files_are_current() {
    let generated = raft_operator::crd::backup_crd_yaml();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for copy in BACKUP_COPIES {
        let committed = std::fs::read_to_string(root.join(copy)).unwrap_or_default();
        assert!(
            committed == generated,
            "{copy} is stale or missing. Regenerate from the repository root with:\n  \
             cargo run -p raft-operator -- crd --kind raft-cluster-backup \
             --output crds/raftclusterbackup.yaml \
             --output charts/raft-operator/files/crds/raftclusterbackup.yaml"
        );
    }
}

#[test]
fn backup_crds_carry_their_rules() {
    let backup = raft_operator::crd::backup_crd_yaml();
    for needle in [
        "shortNames:\n    - rkb",
        "spec cannot change: create a new RaftClusterBackup",
        "rule: self == oldSelf",
        "has(self.s3) != has(self.filesystem)",
        "credentialsSecret:",
        "forcePathStyle:",
        "jsonPath: .status.phase",
    ] {
        assert!(
            backup.contains(needle),
            "RaftClusterBackup CRD lacks {needle:?}"
        );
    }
    let cluster = raft_operator::crd::crd_yaml();
    for needle in [
        "schedule:",
        "has(self.s3) != has(self.filesystem)",
        "maximum: 1000.0",
        "lastSuccessTime:",
    ] {
        assert!(cluster.contains(needle), "RaftCluster CRD lacks {needle:?}");
    }
}

#[test]
fn crd_schema_carries_the_validation_rules() {
    let yaml = raft_operator::crd::crd_yaml();
    for needle in [
        "storage.size may grow but never shrink",
        "quantity(string(self.size)).compareTo(quantity(string(oldSelf.size))) >= 0",
        "storage.storageClassName is immutable",
        "isQuantity(string(self.size))",
        "podLabels may not use the app.kubernetes.io/ or raftkv.dev/ prefixes",
        "topologySpreadConstraints:",
        "priorityClassName:",
        "electionTimeoutMinMs must be at least 3 times heartbeatMs; an unset field takes the raft-node default (heartbeatMs 50",
        "(has(self.heartbeatMs) ? self.heartbeatMs : 50)",
        "rule: size(self.metadata.name) <= 47",
        "metadata.name must be at most 47 characters",
        "jsonPath: .status.replicas\n      name: Voters",
        "jsonPath: .spec.replicas\n      name: Desired",
        "maximum: 9.0",
        "minimum: 1.0",
        "maximum: 16.0",
        "shortNames:\n    - raft",
        "specReplicasPath: .spec.replicas",
        "labelSelectorPath: .status.selector",
        "x-kubernetes-list-type: map",
    ] {
        assert!(yaml.contains(needle), "CRD lacks {needle:?}");
    }
}
