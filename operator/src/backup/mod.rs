//! Backups on Kubernetes: the `RaftClusterBackup` controller (one backup,
//! streamed by the operator from the leader into an object store) and the
//! schedule of `spec.backup` (which backups to create and prune, whether the
//! last success is stale). See docs/design.md, "Backups".
//!
//! | module | what |
//! | --- | --- |
//! | `schedule` | pure: cron slots, due time, interval, staleness, retention |
//! | `destination` | a `BackupDestination` and its Secret as a store destination |
//! | `take` | one backup: the node's stream into the store |
//! | `restore` | `spec.bootstrap.fromBackup`: the stored object into the first pod |
//! | `controller` | the RaftClusterBackup controller |
//! | `scheduler` | `spec.backup` at work in the RaftCluster reconcile |
//! | `metrics` | the `raftkv_operator_backup_*` metrics |

pub mod controller;
pub mod destination;
pub mod metrics;
pub mod restore;
pub mod schedule;
pub mod scheduler;
pub mod take;
