//! The `RaftCluster` custom resource (`raftkv.dev/v1alpha1`): spec, status and the
//! CRD generator. Every bound a user can hit lives in the schema (ranges, patterns,
//! CEL rules), so the API server refuses a bad spec with a message naming the field.

// `printcolumn(type_ = ...)` repeats per column by design of kube's derive.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use serde::{Deserialize, Serialize};

/// API group of every raftkv resource, label and annotation.
pub const GROUP: &str = "raftkv.dev";
/// Annotation that stops every action on a cluster (status still updates).
pub const PAUSED_ANNOTATION: &str = "raftkv.dev/paused";
/// Annotation copied onto the pods' template: changing it rolls every pod (one at a
/// time, leader last), like `kubectl rollout restart`. Any value, e.g. a timestamp.
pub const RESTARTED_AT_ANNOTATION: &str = "raftkv.dev/restartedAt";
/// Pod label kept current by the operator: `leader`, `follower` or `learner`.
pub const ROLE_LABEL: &str = "raftkv.dev/role";

/// `app.kubernetes.io/component` of the voters' pods.
pub const COMPONENT_VOTER: &str = "voter";
/// `app.kubernetes.io/component` of the read replicas' pods.
pub const COMPONENT_READ: &str = "read-replica";

/// Label selector of a cluster's voter pods (the scale subresource's selector).
pub fn voter_selector(cluster: &str) -> String {
    format!(
        "app.kubernetes.io/name=raftkv,app.kubernetes.io/instance={cluster},app.kubernetes.io/component={COMPONENT_VOTER}"
    )
}

/// Bounds of the spec, in one place (mirrored by the schema attributes below).
pub mod limits {
    /// Voters: one is a toy, nine is the most a Raft group should ever need.
    pub const REPLICAS_MIN: i32 = 1;
    pub const REPLICAS_MAX: i32 = 9;
    /// Read replicas are learners: they cost the leader replication bandwidth.
    pub const READ_REPLICAS_MAX: i32 = 16;
    /// The election timeout must stay well above the heartbeat, or followers call
    /// elections whenever one heartbeat is late.
    pub const ELECTION_TO_HEARTBEAT_RATIO_MIN: u32 = 3;
}

/// Desired state of a Raft-replicated KV cluster.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "raftkv.dev",
    version = "v1alpha1",
    kind = "RaftCluster",
    namespaced,
    shortname = "raft",
    status = "RaftClusterStatus",
    derive = "PartialEq",
    doc = "A Raft-replicated key-value cluster: voters, read replicas and their membership.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Voters",
        type_ = "integer",
        json_path = ".spec.replicas",
        description = "Desired voters"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "Healthy, caught-up voters"
    ),
    printcolumn(
        name = "ReadReplicas",
        type_ = "integer",
        json_path = ".spec.readReplicas",
        description = "Desired read replicas (learners)"
    ),
    printcolumn(
        name = "Leader",
        type_ = "string",
        json_path = ".status.leader",
        description = "Pod of the current leader"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RaftClusterSpec {
    /// Number of voting members (1..9). Use an odd number.
    #[schemars(range(min = 1, max = 9))]
    pub replicas: i32,
    /// Number of non-voting read replicas (learners), 0..16.
    #[serde(default)]
    #[schemars(range(min = 0, max = 16))]
    pub read_replicas: i32,
    /// Container image of raft-node.
    #[schemars(length(min = 1))]
    pub image: String,
    /// Image pull policy of the raft-node containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// Persistent volume of every member. Immutable.
    #[serde(default)]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("storage is immutable"))]
    pub storage: StorageSpec,
    /// Compute resources of the raft-node container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Raft timings; unset fields keep raft-node's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft: Option<RaftTimings>,
    /// OpenTelemetry trace export of the nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TracingSpec>,
    /// Replace a member whose pod has been unavailable for a while (opt-in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_replace: Option<AutoReplaceSpec>,
    /// Pod affinity. Default: voters prefer distinct nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Pod tolerations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Pod node selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// What happens to the members' PVCs. Default: keep on cluster deletion, delete on scale-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc_retention_policy: Option<PvcRetentionPolicy>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// Persistent volume claim template of every member.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Requested size, e.g. `1Gi`.
    #[serde(default = "default_storage_size")]
    pub size: Quantity,
    /// Storage class; empty means the cluster's default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

fn default_storage_size() -> Quantity {
    Quantity("1Gi".into())
}

impl Default for StorageSpec {
    fn default() -> Self {
        StorageSpec {
            size: default_storage_size(),
            storage_class_name: None,
        }
    }
}

/// Raft timings, passed to raft-node as `RAFT_*` environment variables.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = kube::core::Rule::new("!has(self.heartbeatMs) || !has(self.electionTimeoutMinMs) || self.electionTimeoutMinMs >= 3 * self.heartbeatMs").message("electionTimeoutMinMs must be at least 3 times heartbeatMs"),
    validation = kube::core::Rule::new("!has(self.electionTimeoutMinMs) || !has(self.electionTimeoutMaxMs) || self.electionTimeoutMaxMs > self.electionTimeoutMinMs").message("electionTimeoutMaxMs must be greater than electionTimeoutMinMs"),
)]
pub struct RaftTimings {
    /// Leader heartbeat interval in milliseconds (10..5000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 5000))]
    pub heartbeat_ms: Option<u32>,
    /// Lower bound of the randomized election timeout in milliseconds (30..60000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 30, max = 60000))]
    pub election_timeout_min_ms: Option<u32>,
    /// Upper bound of the randomized election timeout in milliseconds (31..120000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 31, max = 120000))]
    pub election_timeout_max_ms: Option<u32>,
    /// Log entries since the last snapshot that trigger a new snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 100))]
    pub snapshot_threshold: Option<u64>,
}

/// OpenTelemetry trace export (OTLP).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TracingSpec {
    /// OTLP endpoint, e.g. `http://otel-collector.observability:4317`.
    #[schemars(length(min = 1))]
    pub endpoint: String,
    /// Fraction of new traces sampled (0..1); child spans follow their parent.
    #[serde(default = "default_sampling_ratio")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub sampling_ratio: f64,
}

fn default_sampling_ratio() -> f64 {
    1.0
}

/// Automatic replacement of a member whose pod has been unavailable too long.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoReplaceSpec {
    /// Opt in.
    #[serde(default)]
    pub enabled: bool,
    /// How long a member must be unavailable before it is replaced, e.g. `5m`, `90s`, `1h30m`.
    #[serde(default = "default_auto_replace_after")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub after: String,
}

fn default_auto_replace_after() -> String {
    "5m".into()
}

/// What happens to PVCs (StatefulSet `persistentVolumeClaimRetentionPolicy`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PvcRetentionPolicy {
    /// When the RaftCluster is deleted. Default `Retain`.
    #[serde(default = "retain")]
    pub when_deleted: RetentionAction,
    /// When members are removed by a scale-in. Default `Delete`.
    #[serde(default = "delete")]
    pub when_scaled: RetentionAction,
}

impl Default for PvcRetentionPolicy {
    fn default() -> Self {
        PvcRetentionPolicy {
            when_deleted: RetentionAction::Retain,
            when_scaled: RetentionAction::Delete,
        }
    }
}

fn retain() -> RetentionAction {
    RetentionAction::Retain
}
fn delete() -> RetentionAction {
    RetentionAction::Delete
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum RetentionAction {
    Retain,
    Delete,
}

impl RetentionAction {
    pub fn as_str(self) -> &'static str {
        match self {
            RetentionAction::Retain => "Retain",
            RetentionAction::Delete => "Delete",
        }
    }
}

/// Observed state, written by the operator only.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RaftClusterStatus {
    /// Pending, Bootstrapping, Running, Scaling, Replacing, Updating, Degraded or Paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Pod name of the current leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// Current Raft term.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<u64>,
    /// Cluster ID created at bootstrap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// Voters in the committed membership (scale subresource).
    #[serde(default)]
    pub replicas: i32,
    /// Healthy, caught-up voters.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Learners serving reads.
    #[serde(default)]
    pub read_replicas: i32,
    /// Label selector of the voter pods (scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// One row per member or pod.
    #[serde(default)]
    pub members: Vec<MemberStatus>,
    /// Available, Progressing, Degraded (and Paused when paused).
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The last membership action the operator took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_membership_change: Option<MembershipChange>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum Phase {
    Pending,
    Bootstrapping,
    Running,
    Scaling,
    Replacing,
    Updating,
    Degraded,
    Paused,
}

/// One member (or a pod not yet a member).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    pub pod: String,
    /// Raft node ID, decimal (a string: IDs use all 64 bits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// leader, follower, candidate, learner, uninitialized or unknown.
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_index: Option<u64>,
    /// Entries behind the leader (as the leader reports it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<u64>,
    pub healthy: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MembershipChange {
    /// Event reason, e.g. `MemberPromoted`.
    pub kind: String,
    pub message: String,
    /// RFC 3339 time of the change.
    pub time: String,
    /// OpenTelemetry trace ID of the step, when it was sampled: look it up with
    /// `raftctl trace get <id>` or in the trace viewer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

impl RaftClusterSpec {
    pub fn pvc_retention(&self) -> PvcRetentionPolicy {
        self.pvc_retention_policy.clone().unwrap_or_default()
    }
}

/// The CRD as YAML, exactly as committed in `crds/raftcluster.yaml`.
pub fn crd_yaml() -> String {
    let crd = RaftCluster::crd();
    let body = serde_yaml::to_string(&crd).expect("a CRD always serializes");
    format!(
        "# Generated by `raft-operator crd`; do not edit.\n\
         # Regenerate: cargo run -p raft-operator -- crd --output crds/raftcluster.yaml \
         --output charts/raft-operator/crds/raftcluster.yaml\n{body}"
    )
}
