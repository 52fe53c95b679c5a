//! Durable storage of a node, all inside its data directory:
//!
//! ```text
//! <data-dir>/
//!   LOCK            exclusive lock: one process per data directory
//!   identity.json   node ID and cluster ID (identity.rs)
//!   log/            the Raft log, vote, committed and purge records (log.rs)
//!   snapshots/      state machine snapshots (snapshot.rs)
//! ```

mod error;
mod fsutil;
mod identity;
mod options;
mod stats;

pub use error::{Error, OpenError, Result};
pub use identity::IdentityStore;
pub use options::{FsyncFaults, StorageOptions};
pub use stats::{StorageStats, StorageStatsSnapshot, stats};

pub(crate) const IDENTITY_FILE: &str = "identity.json";
pub(crate) const LOCK_FILE: &str = "LOCK";
pub(crate) const LOG_DIR: &str = "log";
pub(crate) const SNAPSHOT_DIR: &str = "snapshots";
