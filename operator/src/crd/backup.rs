//! Backups in the API: where they go ([`BackupDestination`]), the schedule of a
//! RaftCluster (`spec.backup`, [`BackupSpec`]) and its summary in status
//! ([`BackupStatus`]), and the one-shot `RaftClusterBackup` resource.
//! The operator takes every backup itself (docs/design.md, "Backups").

// `printcolumn(type_ = ...)` repeats per column by design of kube's derive.
#![allow(clippy::duplicated_attributes)]

use kube::core::{Message, Rule};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Bounds of the backup fields, in one place (mirrored by the schema attributes).
pub mod limits {
    /// Retention: at least the last backup is kept; a thousand scheduled backups
    /// are far more than any schedule needs and bound the list the operator reads.
    pub const KEEP_MIN: u32 = 1;
    pub const KEEP_MAX: u32 = 1000;
    /// Default retention when `spec.backup.retention` is unset.
    pub const KEEP_DEFAULT: u32 = 7;
}

/// Keys of the Secret named by `s3.credentialsSecret`.
pub const ACCESS_KEY_ID_KEY: &str = "accessKeyID";
pub const SECRET_ACCESS_KEY_KEY: &str = "secretAccessKey";

/// Label on every RaftClusterBackup: the RaftCluster it backs up.
pub const CLUSTER_LABEL: &str = "raftkv.dev/cluster";
/// Label on the RaftClusterBackups the schedule created (`"true"`); only those
/// are pruned by retention.
pub const SCHEDULED_LABEL: &str = "raftkv.dev/scheduled";
/// Annotation on a scheduled RaftClusterBackup: the schedule's time it stands
/// for (RFC 3339, UTC).
pub const SCHEDULED_AT_ANNOTATION: &str = "raftkv.dev/scheduled-at";

/// The CEL rules of the backup fields.
pub mod rules {
    use super::*;

    /// Exactly one kind of destination.
    pub fn one_destination() -> Rule {
        Rule::new("has(self.s3) != has(self.filesystem)")
            .message("a backup destination sets exactly one of s3 and filesystem")
    }

    /// `fromBackup` names its backup one way: a RaftClusterBackup, or a
    /// destination and a key.
    pub fn one_backup_source() -> Rule {
        Rule::new(
            "has(self.backupName) ? !has(self.destination) && !has(self.key) : has(self.destination) && has(self.key)",
        )
        .message("fromBackup sets either backupName, or both destination and key")
    }

    /// How a cluster began is history: it cannot be changed, added or removed
    /// after creation.
    pub fn bootstrap_immutable() -> Rule {
        Rule::new("self == oldSelf").message(Message::Message(
            "spec.bootstrap cannot change after the RaftCluster is created: create a new RaftCluster to restore another backup"
                .into(),
        ))
    }

    /// A RaftClusterBackup is a record of one backup: its spec never changes.
    pub fn spec_immutable() -> Rule {
        Rule::new("self == oldSelf").message(Message::Message(
            "a RaftClusterBackup's spec cannot change: create a new RaftClusterBackup to take another backup"
                .into(),
        ))
    }
}

/// Where backups go: an S3-compatible bucket or a directory of the operator's pod.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = rules::one_destination())]
pub struct BackupDestination {
    /// An S3-compatible object store (AWS S3, MinIO, SeaweedFS, Ceph RGW, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3BackupDestination>,
    /// A directory in the operator's pod (e.g. a PersistentVolumeClaim mounted
    /// into the operator's Deployment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<FilesystemBackupDestination>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3BackupDestination {
    /// `http://host:port` or `https://host`; omit for AWS S3 itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://[^/\s]+/?$"))]
    pub endpoint: Option<String>,
    /// The bucket (it must exist).
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    /// Keys start with `<prefix>/`; then `<namespace>/<cluster>/<backup>.rkvb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[^/](.*[^/])?$"))]
    pub prefix: Option<String>,
    /// Default `us-east-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub region: Option<String>,
    /// Address buckets as `endpoint/bucket/key` (MinIO, SeaweedFS and most
    /// in-cluster servers need it) instead of `bucket.endpoint/key`.
    #[serde(default)]
    pub force_path_style: bool,
    /// Secret in the same namespace with the keys `accessKeyID` and `secretAccessKey`.
    pub credentials_secret: SecretName,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretName {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FilesystemBackupDestination {
    /// An absolute path of an existing directory in the operator's pod.
    #[schemars(regex(pattern = r"^/"))]
    pub path: String,
}

/// How a new RaftCluster gets its first state (`spec.bootstrap`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapSpec {
    /// Start from a backup instead of empty: the operator streams the object to
    /// the first pod, which verifies it whole (checksums, format version) before
    /// it becomes the one voter of a new cluster (new cluster ID) holding exactly
    /// the backup's state; the other voters then join as learners and are
    /// promoted. Done once: a pod that later loses its volume rejoins empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_backup: Option<FromBackup>,
}

/// The backup a new RaftCluster starts from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = rules::one_backup_source())]
pub struct FromBackup {
    /// A RaftClusterBackup of this namespace that Succeeded. Its object is read
    /// from its `spec.destination`, or, if it took its cluster's, from this
    /// RaftCluster's `spec.backup.destination`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub backup_name: Option<String>,
    /// Or: where the backup is stored ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<BackupDestination>,
    /// ... and its object's whole key there, as a RaftClusterBackup's
    /// `status.objectKey` shows it (the destination's prefix included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub key: Option<String>,
}

impl FromBackup {
    /// Where the backup is, for messages: the key, or the RaftClusterBackup.
    pub fn describe(&self) -> String {
        match (&self.backup_name, &self.key) {
            (Some(b), _) => format!("RaftClusterBackup {b}"),
            (None, Some(k)) => format!("object {k}"),
            (None, None) => "no backup".into(),
        }
    }
}

/// The restore a RaftCluster started from (`status.restore`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStatus {
    /// The pod the backup was streamed to (the new cluster's first voter).
    pub pod: String,
    /// The backup, as `spec.bootstrap.fromBackup` names it.
    pub source: String,
    /// RFC 3339 time the pod accepted the verified backup.
    pub time: String,
}

/// Scheduled backups of a RaftCluster (`spec.backup`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// When to back up: cron syntax, five fields (minute hour day-of-month month
    /// day-of-week), in UTC; e.g. `0 3 * * *`. The operator creates one
    /// RaftClusterBackup `<cluster>-<yyyymmddhhmm>` per time. An invalid schedule
    /// is reported by the `BackupScheduleInvalid` reason of the `BackupStale` condition.
    #[schemars(regex(pattern = r"^\s*\S+(\s+\S+){4}\s*$"))]
    pub schedule: String,
    pub destination: BackupDestination,
    /// How many scheduled backups to keep (older ones are deleted with their
    /// stored files). Default 7.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionSpec>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionSpec {
    /// Successful scheduled backups kept (1..1000).
    #[schemars(range(min = 1, max = 1000))]
    pub keep: u32,
}

impl BackupSpec {
    /// `retention.keep`, or the default.
    pub fn keep(&self) -> u32 {
        self.retention
            .as_ref()
            .map_or(limits::KEEP_DEFAULT, |r| r.keep)
            .clamp(limits::KEEP_MIN, limits::KEEP_MAX)
    }
}

/// The last successful backup of a RaftCluster (`status.backup`), scheduled or not.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    /// RFC 3339 time the last successful backup completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_time: Option<String>,
    /// Its RaftClusterBackup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<String>,
    /// Its key in the object store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_object_key: Option<String>,
    /// Its size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_size: Option<u64>,
    /// The store revision it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_revision: Option<u64>,
    /// How long it took, e.g. `2s 310ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_duration: Option<String>,
    /// RFC 3339 time of the next scheduled backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_scheduled_time: Option<String>,
}

/// One backup of a RaftCluster, taken now (`kubectl apply` one to back up).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "raftkv.dev",
    version = "v1alpha1",
    kind = "RaftClusterBackup",
    namespaced,
    shortname = "rkb",
    status = "RaftClusterBackupStatus",
    derive = "PartialEq",
    doc = "One consistent backup of a RaftCluster, streamed by the operator from the leader to an object store.",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Size",
        type_ = "integer",
        json_path = ".status.size",
        description = "Bytes stored"
    ),
    printcolumn(name = "Revision", type_ = "integer", json_path = ".status.revision"),
    printcolumn(name = "Duration", type_ = "string", json_path = ".status.duration"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = rules::spec_immutable())]
pub struct RaftClusterBackupSpec {
    /// The RaftCluster to back up (same namespace).
    #[schemars(length(min = 1, max = 63))]
    pub cluster: String,
    /// Where to store it. Default: the cluster's `spec.backup.destination`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<BackupDestination>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum BackupPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl BackupPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupPhase::Pending => "Pending",
            BackupPhase::Running => "Running",
            BackupPhase::Succeeded => "Succeeded",
            BackupPhase::Failed => "Failed",
        }
    }
}

/// Written by the operator only.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RaftClusterBackupStatus {
    /// Pending, Running, Succeeded or Failed (final: apply a new object to retry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackupPhase>,
    /// Where it is stored: `s3://bucket/key` or the file's path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Its key in the object store (under the destination's prefix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_key: Option<String>,
    /// Bytes stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The store revision the backup holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// The last log index applied to the backed-up state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_index: Option<u64>,
    /// Keys in the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<u64>,
    /// The Raft cluster ID the backup was taken from.
    #[serde(rename = "clusterID", default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    /// e.g. `2s 310ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Why it failed, or what it waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
