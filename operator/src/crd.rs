//! The `RaftCluster` custom resource (`raftkv.dev/v1alpha1`): spec, status and the
//! CRD generator. Every bound a user can hit lives in the schema (ranges, patterns,
//! CEL rules), so the API server refuses a bad spec with a message naming the field.

// `printcolumn(type_ = ...)` repeats per column by design of kube's derive.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use serde::{Deserialize, Serialize};

mod backup;
pub use backup::*;

/// API group of every raftkv resource, label and annotation.
pub const GROUP: &str = "raftkv.dev";
/// Annotation that stops every action on a cluster (status still updates).
pub const PAUSED_ANNOTATION: &str = "raftkv.dev/paused";
/// Annotation copied onto the pods' template: changing it rolls every pod (one at a
/// time, leader last), like `kubectl rollout restart`. Any value, e.g. a timestamp.
pub const RESTARTED_AT_ANNOTATION: &str = "raftkv.dev/restartedAt";
/// The way out of a lost quorum: names the surviving voter pod that becomes the
/// one voter of a new cluster with its own committed state. Acts only when no
/// leader exists and fewer than a quorum of voters is up; the operator removes it
/// as it acts (docs/operations.md, "A majority of volumes lost").
pub const FORCE_NEW_CLUSTER_ANNOTATION: &str = "raftkv.dev/force-new-cluster";
/// Renews the operator-managed leaf certificates (nodes, `-client`, `-admin`)
/// once per new value, e.g. a timestamp; the value handled is kept in the node
/// Secret and in `status.certificates.renewRequest`. The CA is never replaced.
pub const RENEW_CERTIFICATES_ANNOTATION: &str = "raftkv.dev/renew-certificates";
/// Pod label kept current by the operator: `leader`, `follower` or `learner`.
pub const ROLE_LABEL: &str = "raftkv.dev/role";
/// `"true"` on a pod the client and read Services may route to; the operator sets
/// `"false"` before the member leaves the membership (planner `drain`).
pub const SERVING_LABEL: &str = "raftkv.dev/serving";
/// When the operator set a pod's `raftkv.dev/serving` label to `false` (Unix
/// ms): the drain waits a grace after it (`planner::drain`).
pub const SERVING_STOPPED_ANNOTATION: &str = "raftkv.dev/serving-stopped-at-ms";

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
    /// elections whenever one heartbeat is late (raft-node's own rule, see
    /// [`super::node_defaults`]).
    pub const ELECTION_TO_HEARTBEAT_RATIO_MIN: u32 = 3;
    /// Longest label value and DNS label Kubernetes accepts.
    pub const DNS_LABEL_MAX: usize = 63;
    /// Longest `controller-revision-hash` suffix the StatefulSet controller appends:
    /// `rand.SafeEncodeString(fmt.Sprint(fnv32))` of a `uint32`, at most 10 digits
    /// (k8s.io/kubernetes pkg/controller/history `HashControllerRevision`).
    pub const REVISION_HASH_MAX_LEN: usize = 10;
    /// Longest RaftCluster name. The longest name or label derived from it is the
    /// read replicas' pods' `controller-revision-hash` label,
    /// `<name>-read-<hash>`; it must fit in [`DNS_LABEL_MAX`].
    /// (`resources::tests::every_derived_name_fits_at_the_longest_cluster_name` builds
    /// every derived name and checks this is the tight bound.)
    pub const NAME_MAX_LEN: usize = DNS_LABEL_MAX - "-read-".len() - REVISION_HASH_MAX_LEN;
}

/// raft-node's defaults of the timings a RaftCluster may leave unset: the CEL rules
/// evaluate an absent field as this value, exactly as the node will.
///
/// Copied from `node/src/config.rs` (`NodeArgs`' `default_value_t`): the operator
/// cannot depend on raftkv-node. `tests::node_defaults_and_rule_match_node_config_rs`
/// reads that file and fails when a default or the node's timing check changes.
pub mod node_defaults {
    /// `RAFT_HEARTBEAT_MS`.
    pub const HEARTBEAT_MS: u32 = 50;
    /// `RAFT_ELECTION_TIMEOUT_MIN_MS`.
    pub const ELECTION_TIMEOUT_MIN_MS: u32 = 200;
    /// `RAFT_ELECTION_TIMEOUT_MAX_MS`.
    pub const ELECTION_TIMEOUT_MAX_MS: u32 = 400;
}

/// The CEL rules of the spec that need more than a bound, built from the constants
/// above so the schema and [`RaftTimings::check`] say the same thing.
pub mod rules {
    use kube::core::{Message, Rule};

    use super::limits::{ELECTION_TO_HEARTBEAT_RATIO_MIN as RATIO, NAME_MAX_LEN};
    use super::node_defaults::*;

    /// `metadata.name` fits every derived name (root-level rule: `self` is the object).
    pub fn name_length() -> Rule {
        Rule::new(format!("size(self.metadata.name) <= {NAME_MAX_LEN}")).message(Message::Message(format!(
            "metadata.name must be at most {NAME_MAX_LEN} characters: the longest name derived \
             from it, the read replicas' controller-revision-hash label <name>-read-<10-character hash>, \
             must fit in 63"
        )))
    }

    /// `metadata.name` names Services (`<name>`, `<name>-peer`, `<name>-read`): a DNS-1035 label.
    pub fn name_dns_label() -> Rule {
        Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message(
            "metadata.name must be a DNS-1035 label (lowercase letters, digits and '-', \
             starting with a letter, no '.'): it names the cluster's Services",
        )
    }

    /// `storage.storageClassName` never changes: the members' volumes were made by it.
    pub fn storage_class_immutable() -> Rule {
        Rule::new(
            "has(self.storageClassName) == has(oldSelf.storageClassName) && \
             (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)",
        )
        .message(
            "storage.storageClassName is immutable: the members' PersistentVolumeClaims were created from it",
        )
    }

    /// `storage.size` is a Kubernetes quantity (checked at creation too: the claim
    /// templates and the shrink rule need one).
    pub fn storage_size_is_a_quantity() -> Rule {
        Rule::new("!has(self.size) || isQuantity(string(self.size))")
            .message("storage.size must be a quantity such as 1Gi or 500Mi")
    }

    /// `storage.size` may grow, never shrink (Kubernetes cannot shrink a volume).
    pub fn storage_never_shrinks() -> Rule {
        Rule::new(
            "!has(self.size) || !has(oldSelf.size) || \
             quantity(string(self.size)).compareTo(quantity(string(oldSelf.size))) >= 0",
        )
        .message(
            "storage.size may grow but never shrink: Kubernetes cannot shrink a PersistentVolumeClaim",
        )
    }

    /// Pod labels/annotations may not use the operator's key prefixes: its selectors
    /// (`app.kubernetes.io/`) and its own keys (`raftkv.dev/role`, `restartedAt`, ...).
    pub fn pod_metadata_keys(field: &str) -> Rule {
        Rule::new(
            "self.all(k, !k.startsWith('app.kubernetes.io/') && !k.startsWith('raftkv.dev/'))",
        )
        .message(Message::Message(format!(
            "{field} may not use the app.kubernetes.io/ or raftkv.dev/ prefixes: \
                 the operator's selectors and role labels use them"
        )))
    }

    /// TLS cannot be switched on or off under a running cluster: members with
    /// and without TLS cannot talk to each other.
    pub fn tls_enabled_immutable() -> Rule {
        Rule::new("self.enabled == oldSelf.enabled").message(
            "tls.enabled is immutable: members with and without TLS cannot reach each other, \
             so a cluster keeps the setting it was created with",
        )
    }

    /// Bring-your-own node certificates need the operator's admin certificate too.
    pub fn tls_operator_secret_with_secret_name() -> Rule {
        Rule::new("has(self.secretName) == has(self.operatorSecretName)").message(
            "tls.secretName and tls.operatorSecretName go together: with your own node \
             certificate Secret the operator needs an admin client certificate from the same CA \
             (operatorSecretName) to call the nodes",
        )
    }

    /// `self.<field>` or, when absent, raft-node's default.
    fn or_default(field: &str, default: u32) -> String {
        format!("(has(self.{field}) ? self.{field} : {default})")
    }

    fn heartbeat() -> String {
        or_default("heartbeatMs", HEARTBEAT_MS)
    }
    fn min() -> String {
        or_default("electionTimeoutMinMs", ELECTION_TIMEOUT_MIN_MS)
    }
    fn max() -> String {
        or_default("electionTimeoutMaxMs", ELECTION_TIMEOUT_MAX_MS)
    }

    /// raft-node: `election_timeout_ms_min >= 3 * heartbeat_interval_ms`.
    ///
    /// The message is static: a `messageExpression` printing the values (`string(int)`
    /// concatenations) exceeds the API server's CEL cost budget, and the CRD is refused.
    pub fn election_min_vs_heartbeat() -> Rule {
        Rule::new(format!("{} >= {RATIO} * {}", min(), heartbeat())).message(Message::Message(
            format!(
                "electionTimeoutMinMs must be at least {RATIO} times heartbeatMs; {}",
                defaults_note()
            ),
        ))
    }

    /// raft-node: `election_timeout_ms_max > election_timeout_ms_min`.
    pub fn election_max_vs_min() -> Rule {
        Rule::new(format!("{} > {}", max(), min())).message(Message::Message(format!(
            "electionTimeoutMaxMs must be greater than electionTimeoutMinMs; {}",
            defaults_note()
        )))
    }

    /// The defaults, in the refusal.
    fn defaults_note() -> String {
        format!(
            "an unset field takes the raft-node default (heartbeatMs {HEARTBEAT_MS}, \
             electionTimeoutMinMs {ELECTION_TIMEOUT_MIN_MS}, electionTimeoutMaxMs {ELECTION_TIMEOUT_MAX_MS})"
        )
    }
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
    validation = rules::name_length(),
    validation = rules::name_dns_label(),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".spec.replicas",
        description = "Desired voters (spec.replicas)"
    ),
    printcolumn(
        name = "Voters",
        type_ = "integer",
        json_path = ".status.replicas",
        description = "Voters in the cluster's Raft membership"
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
    /// Container image of raft-node. Default: the operator's own node image (its
    /// `--default-node-image`; the Helm chart sets raft-node at the operator's tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,
    /// Image pull policy of the raft-node containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// Persistent volume of every member. `size` may grow (the operator expands each
    /// member's PersistentVolumeClaim; the storage class must allow expansion), never
    /// shrink; `storageClassName` is immutable.
    #[serde(default)]
    #[x_kube(validation = rules::storage_size_is_a_quantity())]
    #[x_kube(validation = rules::storage_class_immutable())]
    #[x_kube(validation = rules::storage_never_shrinks())]
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
    /// Pod topology spread constraints. Default: voters spread over zones
    /// (`topology.kubernetes.io/zone`) and nodes (`kubernetes.io/hostname`), skew 1,
    /// `ScheduleAnyway`, so no zone or node holds a quorum when the cluster has room
    /// to avoid it. Set to `[]` for none; when set, it applies to voters and read
    /// replicas alike.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
    /// PriorityClass of the pods (e.g. one that preempts batch work: a voter that
    /// cannot be scheduled costs the cluster a share of its fault tolerance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub priority_class_name: Option<String>,
    /// Secrets to pull the raft-node image with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// ServiceAccount the pods run as. Default: the namespace's `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub service_account_name: Option<String>,
    /// Extra labels on the pods (at most 64: a bound keeps the CEL rule's cost low).
    /// The `app.kubernetes.io/` and `raftkv.dev/` prefixes are the operator's (its selectors and role labels). Changing them restarts
    /// the pods, one at a time, like any pod template change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = rules::pod_metadata_keys("podLabels"))]
    #[schemars(extend("maxProperties" = 64))]
    pub pod_labels: Option<BTreeMap<String, String>>,
    /// Extra annotations on the pods (`raftkv.dev/` is the operator's). Changing them
    /// restarts the pods, one at a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = rules::pod_metadata_keys("podAnnotations"))]
    #[schemars(extend("maxProperties" = 64))]
    pub pod_annotations: Option<BTreeMap<String, String>>,
    /// What happens to the members' PVCs. Default: keep on cluster deletion, delete on scale-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc_retention_policy: Option<PvcRetentionPolicy>,
    /// Scheduled backups to an object store (each one a RaftClusterBackup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSpec>,
    /// How the cluster gets its first state (default: empty). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = backup::rules::bootstrap_immutable())]
    pub bootstrap: Option<BootstrapSpec>,
    /// TLS on the client and peer ports, with certificates the operator makes
    /// and renews (default), or brought in Secrets (`secretName`).
    #[serde(default)]
    #[x_kube(validation = rules::tls_enabled_immutable())]
    #[x_kube(validation = rules::tls_operator_secret_with_secret_name())]
    pub tls: TlsSpec,
    /// Who may reach the client and metrics ports (the `<name>-peer`
    /// NetworkPolicy; the peer port is always the cluster's own pods only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<NetworkPolicySpec>,
}

/// Sources of the client and metrics ports, as NetworkPolicy peers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Who may connect to the client port. Default: the pods of the cluster's
    /// namespace. The operator's namespace is always added (it calls every
    /// member). Example: `[{namespaceSelector: {matchLabels: {team: payments}}}]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_from: Option<Vec<NetworkPolicyPeer>>,
    /// Who may scrape the metrics port. Default: any source. Example:
    /// `[{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}}]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_from: Option<Vec<NetworkPolicyPeer>>,
}

/// TLS of a cluster (docs/security.md, "Kubernetes").
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// Mutual TLS between members, server TLS and client certificates on the
    /// client port. Default true; immutable.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Whether clients must present a certificate (`Required`, default) or may
    /// use KV and Status without one (`Optional`). Admin calls always need one.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// Bring your own node certificate: a Secret with `ca.crt`, `tls.crt` and
    /// `tls.key` (e.g. written by cert-manager). The certificate needs the URI
    /// SAN `raftkv://<namespace>/<name>/peer/<any>` and the DNS names
    /// `*.<name>-peer.<namespace>.svc` (and `.svc.cluster.local`). The operator
    /// then makes no CA and no client Secrets. Needs `operatorSecretName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: Option<String>,
    /// With `secretName`: a Secret with `ca.crt`, `tls.crt`, `tls.key` holding an
    /// admin client certificate (URI SAN `raftkv://<namespace>/<name>/client/admin/<any>`)
    /// the operator calls the nodes with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub operator_secret_name: Option<String>,
    /// Lifetime of the leaf certificates the operator issues, e.g. `2160h` (the
    /// default, 90 days). At least 1h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(s|m|h))+$"))]
    pub certificate_lifetime: Option<String>,
    /// Renew a leaf certificate when this little of its lifetime is left.
    /// Default: a third of the lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(s|m|h))+$"))]
    pub renew_before: Option<String>,
}

fn default_true() -> bool {
    true
}

impl Default for TlsSpec {
    fn default() -> Self {
        TlsSpec {
            enabled: true,
            client_auth: ClientAuth::Required,
            secret_name: None,
            operator_secret_name: None,
            certificate_lifetime: None,
            renew_before: None,
        }
    }
}

/// Client certificates on the client port (raft-node `--client-auth`).
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
pub enum ClientAuth {
    #[default]
    Required,
    Optional,
}

impl ClientAuth {
    /// raft-node's `RAFT_CLIENT_AUTH` value.
    pub fn node_value(self) -> &'static str {
        match self {
            ClientAuth::Required => "required",
            ClientAuth::Optional => "optional",
        }
    }
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
    validation = rules::election_min_vs_heartbeat(),
    validation = rules::election_max_vs_min(),
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
    /// A volume expansion in progress (`spec.storage.size` grew); absent once every
    /// member's volume has the size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageStatus>,
    /// The highest commit index any member of the cluster reported: what a
    /// forced new cluster compares its survivor with to say what may be lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub highest_commit: Option<IndexMark>,
    /// The last forced new cluster (`raftkv.dev/force-new-cluster`): pods that
    /// still report the cluster it left behind are never members again; the
    /// operator deletes their PVCs and pods so they rejoin empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forced_new_cluster: Option<ForcedNewCluster>,
    /// The backup this cluster was bootstrapped from (`spec.bootstrap.fromBackup`),
    /// once its first pod accepted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreStatus>,
    /// The last successful backup and the next scheduled one (written by the
    /// backup schedule under its own field manager).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupStatus>,
    /// The certificates the operator manages (absent without TLS or with
    /// `tls.secretName`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificates: Option<CertificatesStatus>,
}

/// The operator-managed leaf certificates.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificatesStatus {
    /// RFC 3339 expiry of the node certificate now in the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// RFC 3339 time the leaf certificates were last issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_issued: Option<String>,
    /// The last `raftkv.dev/renew-certificates` value acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_request: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForcedNewCluster {
    /// The surviving pod that became the one voter of a new cluster.
    pub pod: String,
    /// The cluster it left behind.
    pub from_cluster_id: String,
    /// RFC 3339 time of the step.
    pub time: String,
}

/// A commit index of one cluster (indexes of different clusters do not compare).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IndexMark {
    pub cluster_id: String,
    pub commit_index: u64,
}

/// Progress of growing the members' volumes to `spec.storage.size`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageStatus {
    /// The size being grown to.
    pub size: String,
    /// Volumes whose capacity has reached `size`.
    pub resized: i32,
    /// Member volumes in all.
    pub volumes: i32,
    /// Which volumes are still growing, and why they wait (the PVCs' conditions).
    pub message: String,
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
    /// Raft node ID, decimal (a string: IDs are random 53-bit numbers).
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

    /// The raft-node image: `spec.image`, else the operator's default.
    pub fn image_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.image.as_deref().unwrap_or(default)
    }
}

impl RaftTimings {
    /// `(heartbeat, election timeout min, max)` in ms as raft-node will run them:
    /// an unset field is the node's default.
    pub fn effective(&self) -> (u32, u32, u32) {
        use node_defaults::*;
        (
            self.heartbeat_ms.unwrap_or(HEARTBEAT_MS),
            self.election_timeout_min_ms
                .unwrap_or(ELECTION_TIMEOUT_MIN_MS),
            self.election_timeout_max_ms
                .unwrap_or(ELECTION_TIMEOUT_MAX_MS),
        )
    }

    /// The schema's timing rules ([`rules::election_min_vs_heartbeat`],
    /// [`rules::election_max_vs_min`]) in Rust, term for term; the tests hold both to
    /// raft-node's own check.
    pub fn check(&self) -> Result<(), String> {
        let (hb, min, max) = self.effective();
        let (hb, min, max) = (u64::from(hb), u64::from(min), u64::from(max));
        if min < u64::from(limits::ELECTION_TO_HEARTBEAT_RATIO_MIN) * hb {
            return Err(format!(
                "electionTimeoutMinMs ({min} ms) must be at least 3 times heartbeatMs ({hb} ms)"
            ));
        }
        if max <= min {
            return Err(format!(
                "electionTimeoutMaxMs ({max} ms) must be greater than electionTimeoutMinMs ({min} ms)"
            ));
        }
        Ok(())
    }
}

/// The RaftClusterBackup CRD as YAML, exactly as committed in
/// `crds/raftclusterbackup.yaml`.
pub fn backup_crd_yaml() -> String {
    let crd = RaftClusterBackup::crd();
    let body = serde_yaml::to_string(&crd).expect("a CRD always serializes");
    format!(
        "# Generated by `raft-operator crd --kind raft-cluster-backup`; do not edit.\n\
         # Regenerate: cargo run -p raft-operator -- crd --kind raft-cluster-backup \
         --output crds/raftclusterbackup.yaml \
         --output charts/raft-operator/files/crds/raftclusterbackup.yaml\n{body}"
    )
}

/// The CRD as YAML, exactly as committed in `crds/raftcluster.yaml`.
pub fn crd_yaml() -> String {
    let crd = RaftCluster::crd();
    let body = serde_yaml::to_string(&crd).expect("a CRD always serializes");
    format!(
        "# Generated by `raft-operator crd`; do not edit.\n\
         # Regenerate: cargo run -p raft-operator -- crd --output crds/raftcluster.yaml \
         --output charts/raft-operator/files/crds/raftcluster.yaml\n{body}"
    )
}

#[cfg(test)]
mod tests {
    use super::node_defaults::*;
    use super::*;

    /// raft-node's timing check, copied from `Limits::validate` in node/src/config.rs
    /// (the lines `node_defaults_and_rule_match_node_config_rs` finds there verbatim).
    fn node_accepts(heartbeat: u64, min: u64, max: u64) -> bool {
        let (heartbeat_interval_ms, election_timeout_ms_min, election_timeout_ms_max) =
            (heartbeat, min, max);
        if heartbeat_interval_ms == 0 {
            return false;
        }
        if election_timeout_ms_min < 3 * heartbeat_interval_ms {
            return false;
        }
        if election_timeout_ms_max <= election_timeout_ms_min {
            return false;
        }
        true
    }

    const NODE_CONFIG: &str = include_str!("../../node/src/config.rs");

    /// The number after `needle` in node/src/config.rs.
    fn number_after(needle: &str) -> u32 {
        let at = NODE_CONFIG
            .find(needle)
            .unwrap_or_else(|| panic!("node/src/config.rs no longer contains {needle:?}"));
        let digits: String = NODE_CONFIG[at + needle.len()..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '_')
            .filter(|c| *c != '_')
            .collect();
        digits
            .parse()
            .unwrap_or_else(|e| panic!("no number after {needle:?}: {e}"))
    }

    #[test]
    fn node_defaults_and_rule_match_node_config_rs() {
        // The flags' defaults (what a pod without RAFT_* variables runs with)...
        for (env, ours) in [
            ("RAFT_HEARTBEAT_MS", HEARTBEAT_MS),
            ("RAFT_ELECTION_TIMEOUT_MIN_MS", ELECTION_TIMEOUT_MIN_MS),
            ("RAFT_ELECTION_TIMEOUT_MAX_MS", ELECTION_TIMEOUT_MAX_MS),
        ] {
            let node = number_after(&format!("env = \"{env}\", default_value_t = "));
            assert_eq!(
                node, ours,
                "raft-node's default of {env} changed: update crd::node_defaults"
            );
        }
        // ...and `Limits::default()`, which must agree with them.
        for (field, ours) in [
            ("heartbeat_interval_ms: ", HEARTBEAT_MS),
            ("election_timeout_ms_min: ", ELECTION_TIMEOUT_MIN_MS),
            ("election_timeout_ms_max: ", ELECTION_TIMEOUT_MAX_MS),
        ] {
            let default_impl = &NODE_CONFIG[NODE_CONFIG
                .find("impl Default for Limits")
                .expect("node's Limits::default")..];
            let at = default_impl.find(field).expect("field in Limits::default");
            let n: u32 = default_impl[at + field.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .expect("a number");
            assert_eq!(
                n, ours,
                "Limits::default().{field} changed: update crd::node_defaults"
            );
        }
        // The node's timing check, as copied into `node_accepts` above.
        for line in [
            "if self.heartbeat_interval_ms == 0 {",
            "if self.election_timeout_ms_min < 3 * self.heartbeat_interval_ms {",
            "if self.election_timeout_ms_max <= self.election_timeout_ms_min {",
        ] {
            assert!(
                NODE_CONFIG.contains(line),
                "raft-node's timing check changed (no {line:?} in node/src/config.rs): \
                 update node_accepts, RaftTimings::check and crd::rules"
            );
        }
    }

    /// Every combination of set and unset fields over the interesting values (each
    /// bound, one below, one above) within the schema's ranges: the operator refuses
    /// exactly what raft-node would refuse at startup.
    #[test]
    fn timing_rules_accept_exactly_what_the_node_accepts() {
        let heartbeats = [
            None,
            Some(10),
            Some(49),
            Some(50),
            Some(51),
            Some(66),
            Some(67),
            Some(100),
            Some(133),
            Some(134),
            Some(200),
            Some(5000),
        ];
        let mins = [
            None,
            Some(30),
            Some(149),
            Some(150),
            Some(151),
            Some(199),
            Some(200),
            Some(201),
            Some(399),
            Some(400),
            Some(401),
            Some(402),
            Some(60000),
        ];
        let maxes = [
            None,
            Some(31),
            Some(150),
            Some(151),
            Some(200),
            Some(201),
            Some(399),
            Some(400),
            Some(401),
            Some(402),
            Some(120000),
        ];
        let (mut refused, mut accepted) = (0, 0);
        for hb in heartbeats {
            for min in mins {
                for max in maxes {
                    let t = RaftTimings {
                        heartbeat_ms: hb,
                        election_timeout_min_ms: min,
                        election_timeout_max_ms: max,
                        snapshot_threshold: None,
                    };
                    let (h, lo, hi) = t.effective();
                    let node = node_accepts(h.into(), lo.into(), hi.into());
                    assert_eq!(
                        t.check().is_ok(),
                        node,
                        "{t:?}: operator {:?}, node accepts: {node}",
                        t.check()
                    );
                    if node { accepted += 1 } else { refused += 1 }
                }
            }
        }
        assert!(
            accepted > 100 && refused > 100,
            "the grid exercises both sides"
        );
        // The issue's single-field specs.
        for (t, what) in [
            (
                RaftTimings {
                    heartbeat_ms: Some(500),
                    ..Default::default()
                },
                "3 times heartbeatMs (500 ms)",
            ),
            (
                RaftTimings {
                    election_timeout_min_ms: Some(30),
                    ..Default::default()
                },
                "(30 ms) must be at least 3 times heartbeatMs (50 ms)",
            ),
            (
                RaftTimings {
                    election_timeout_max_ms: Some(100),
                    ..Default::default()
                },
                "electionTimeoutMaxMs (100 ms) must be greater than electionTimeoutMinMs (200 ms)",
            ),
        ] {
            let e = t.check().unwrap_err();
            assert!(e.contains(what), "{e}");
        }
    }

    /// The CEL rules are the terms `check` evaluates: an absent field is the default.
    #[test]
    fn cel_timing_rules_use_the_node_defaults() {
        assert_eq!(
            rules::election_min_vs_heartbeat().rule,
            "(has(self.electionTimeoutMinMs) ? self.electionTimeoutMinMs : 200) >= 3 * (has(self.heartbeatMs) ? self.heartbeatMs : 50)"
        );
        assert_eq!(
            rules::election_max_vs_min().rule,
            "(has(self.electionTimeoutMaxMs) ? self.electionTimeoutMaxMs : 400) > (has(self.electionTimeoutMinMs) ? self.electionTimeoutMinMs : 200)"
        );
        assert_eq!(rules::name_length().rule, "size(self.metadata.name) <= 47");
    }
}
