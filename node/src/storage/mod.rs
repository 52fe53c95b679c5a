//! Durable storage of a node, all inside its data directory:
//!
//! ```text
//! <data-dir>/
//!   LOCK            exclusive lock: one process per data directory
//!   identity.json   node ID and cluster ID (identity.rs)
//!   log/            the Raft log, vote, committed and purge records (log.rs)
//!   snapshots/      state machine snapshots (snapshot.rs, state_machine.rs)
//! ```
//!
//! Open everything with [`open`]; it recovers the log (dropping a torn tail,
//! refusing corruption with the file and byte offset), loads the latest
//! snapshot, and checks the invariants between them.

mod error;
pub mod force;
mod fsutil;
mod hooks;
mod identity;
mod log;
mod options;
mod record;
mod restore;
pub mod slow_disk;
mod snapshot;
mod state_machine;
mod stats;

use std::path::Path;

pub use error::{Error, OpenError, Result};
pub use hooks::{NoHooks, StorageHooks};
pub use identity::{IdentityStore, new_cluster_id};
pub use log::LogStore;
pub use options::{FsyncFaults, StorageOptions};
pub use restore::{RestoreSource, Restored, is_restored, restore};
pub use state_machine::{AppliedState, KvReader, PointInTime, SnapshotBuilder, StateMachineStore};
pub use stats::{
    FSYNC_BUCKET_BOUNDS_NANOS, StorageStats, StorageStatsSnapshot, fsync_histogram, stats,
};

pub use crate::kv::prefix_end;
use crate::typ::LogId;

pub(crate) const IDENTITY_FILE: &str = "identity.json";
pub(crate) const LOCK_FILE: &str = "LOCK";
pub(crate) const LOG_DIR: &str = "log";
pub(crate) const SNAPSHOT_DIR: &str = "snapshots";
/// A forced new cluster's request marker and state file (`force.rs`); the
/// restore ignores both when it checks that a directory is empty.
pub const FORCE_MARKER_FILE: &str = "FORCE_NEW_CLUSTER";
pub const FORCE_STATE_FILE: &str = "force-new-cluster.rkv";
/// A verified backup received by `Cluster/Restore`, restored into this
/// directory on the next start (`crate::bootstrap_restore`); ignored by the
/// restore's emptiness check like the two above.
pub const RESTORE_PENDING_FILE: &str = "restore-pending.rkv";

/// A node's opened storage. Hand `log` and `state_machine` to `Raft::new`.
#[derive(Debug, Clone)]
pub struct Storage {
    pub identity: IdentityStore,
    pub log: LogStore,
    pub state_machine: StateMachineStore,
}

/// Opens (creating if empty) the storage in the data directory `dir`.
///
/// Blocking file I/O (recovery reads the whole log once): call it before the
/// node serves, or inside `spawn_blocking`.
pub fn open(dir: &Path, opts: StorageOptions) -> Result<Storage, OpenError> {
    if dir.join(restore::RESTORING_FILE).exists() {
        return Err(Error::Invariant(format!(
            "data directory {} holds an unfinished restore; run `raft-node --restore FILE` again, or empty it",
            dir.display()
        )));
    }
    open_restoring(dir, opts)
}

/// [`open`] without the check for an unfinished restore (for the restore).
fn open_restoring(dir: &Path, opts: StorageOptions) -> Result<Storage, OpenError> {
    opts.validate()?;
    if opts.fsync_faults.is_on() {
        tracing::warn!(
            faults = ?opts.fsync_faults,
            "FSYNC FAULT INJECTION IS ON: fsyncs will fail or stall on purpose; never use this in production"
        );
    }
    if !opts.fsync {
        tracing::warn!(
            "FSYNC IS OFF: acknowledged writes can be lost on power failure (benchmarks only)"
        );
    }
    let identity = IdentityStore::open(dir)?;
    // The first open writes a log segment, and the active segment is never
    // deleted: an identity that belongs to a cluster but has no log lost its
    // Raft state (invariant 1 of docs/design.md: it must never vote under its old ID).
    if let Some(cluster_id) = identity.cluster_id()
        && !identity::holds_files(dir, &[LOG_DIR])?
    {
        return Err(Error::StateLost {
            dir: dir.to_path_buf(),
            cluster_id,
        });
    }
    let log = LogStore::open(&dir.join(LOG_DIR), &opts)?;
    let state_machine = StateMachineStore::open(&dir.join(SNAPSHOT_DIR), &opts)?;
    let (purged, last_log, committed) = log.recovered_state();
    let snapshot = state_machine
        .current_snapshot_meta()
        .and_then(|m| m.last_log_id);
    validate(&LogPointers {
        purged,
        snapshot,
        applied: snapshot,
        committed: None,
        last_log,
    })
    .map_err(Error::Invariant)?;
    tracing::info!(
        dir = %dir.display(),
        node_id = identity.node_id(),
        ?purged, ?snapshot, ?committed, ?last_log,
        "storage opened"
    );
    Ok(Storage {
        identity,
        log,
        state_machine,
    })
}

/// The log pointers whose order [`validate`] checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogPointers {
    pub purged: Option<LogId>,
    pub snapshot: Option<LogId>,
    pub applied: Option<LogId>,
    pub committed: Option<LogId>,
    pub last_log: Option<LogId>,
}

/// `purged ≤ snapshot ≤ applied ≤ committed ≤ last_log`, each where both
/// sides are known (`None` = not known / not checked). `purged ≤ snapshot`
/// is what makes purge safe: entries are only dropped once a snapshot covers
/// them.
pub fn validate(p: &LogPointers) -> Result<(), String> {
    fn le(a: &Option<LogId>, an: &str, b: &Option<LogId>, bn: &str) -> Result<(), String> {
        if let (Some(a), Some(b)) = (a, b)
            && a.index > b.index
        {
            return Err(format!("{an} {a} is beyond {bn} {b}"));
        }
        Ok(())
    }
    if p.purged.is_some() && p.snapshot.is_none() {
        return Err(format!(
            "the log is purged up to {:?} but there is no snapshot",
            p.purged
        ));
    }
    le(&p.purged, "purged", &p.snapshot, "snapshot")?;
    le(&p.snapshot, "snapshot", &p.applied, "applied")?;
    le(&p.applied, "applied", &p.committed, "committed")?;
    le(&p.committed, "committed", &p.last_log, "last log")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use openraft::CommittedLeaderId;

    use super::*;

    fn id(index: u64) -> Option<LogId> {
        Some(LogId::new(CommittedLeaderId::new(1, 1), index))
    }

    #[test]
    fn validate_checks_the_order_of_log_pointers() {
        let ok = LogPointers {
            purged: id(5),
            snapshot: id(7),
            applied: id(9),
            committed: id(9),
            last_log: id(12),
        };
        assert_eq!(validate(&ok), Ok(()));
        assert_eq!(validate(&LogPointers::default()), Ok(()));
        let e = validate(&LogPointers {
            purged: id(8),
            ..ok
        })
        .unwrap_err();
        assert!(e.contains("purged"), "{e}");
        let e = validate(&LogPointers {
            purged: id(1),
            snapshot: None,
            ..ok
        })
        .unwrap_err();
        assert!(e.contains("no snapshot"), "{e}");
        assert!(
            validate(&LogPointers {
                applied: id(6),
                ..ok
            })
            .is_err()
        );
        assert!(
            validate(&LogPointers {
                committed: id(13),
                ..ok
            })
            .is_err()
        );
        assert!(
            validate(&LogPointers {
                committed: id(8),
                ..ok
            })
            .is_err()
        );
    }
}
