//! The storage error type: one enum for opening, recovery and I/O.

use std::io;
use std::path::PathBuf;

use openraft::StorageIOError;
use openraft::storage::SnapshotSignature;

use crate::typ::{NodeId, StorageError};

/// Everything that can go wrong in the node's storage. Messages name the file
/// (and for corruption the byte offset), so an operator can act on them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("corrupt data in {} at byte offset {offset}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("invalid storage options: {0}")]
    InvalidOptions(String),
    #[error(
        "data directory {} holds Raft data but no identity file; refusing to start with a new node ID \
         (a node that lost its identity must join as a new member with an empty data directory)",
        dir.display()
    )]
    IdentityMissing { dir: PathBuf },
    #[error(
        "data directory {} has the identity of a member of cluster {cluster_id:?} but no Raft log; \
         refusing to start (the node lost its state and must not vote under its old ID: \
         remove it from the cluster and start it with an empty data directory)",
        dir.display()
    )]
    StateLost { dir: PathBuf, cluster_id: String },
    #[error("data directory belongs to cluster {have:?}, refusing to join cluster {want:?}")]
    ClusterIdMismatch { have: String, want: String },
    #[error("invalid cluster id {0:?}: must be 1..=128 printable ASCII characters")]
    InvalidClusterId(String),
    #[error("data directory {} is in use by another process", path.display())]
    Locked { path: PathBuf },
    #[error("the log writer has stopped after an earlier error: {0}")]
    WriterStopped(String),
    #[error("state invariant violated: {0}")]
    Invariant(String),
}

/// The name the task spec uses for errors of [`super::open`].
pub type OpenError = Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        Error::Corrupt {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }
}

// Conversions into openraft's error type, by what was being done.
pub(crate) fn write_logs(e: &Error) -> StorageError {
    StorageIOError::write_logs(e).into()
}
pub(crate) fn read_logs(e: &Error) -> StorageError {
    StorageIOError::read_logs(e).into()
}
pub(crate) fn write_vote(e: &Error) -> StorageError {
    StorageIOError::write_vote(e).into()
}
pub(crate) fn write_snapshot(sig: Option<SnapshotSignature<NodeId>>, e: &Error) -> StorageError {
    StorageIOError::write_snapshot(sig, e).into()
}
pub(crate) fn read_snapshot(sig: Option<SnapshotSignature<NodeId>>, e: &Error) -> StorageError {
    StorageIOError::read_snapshot(sig, e).into()
}
