//! `Cluster/Restore`: an uninitialized node becomes the one voter of a NEW
//! cluster holding a backup's state, the backup streamed to it over the
//! network (a RaftCluster's `spec.bootstrap.fromBackup`; `raftctl cluster
//! restore`). docs/operations.md, "Every volume lost", is the runbook.
//!
//! Two halves, on either side of a process restart, as for a forced new
//! cluster (`crate::force_new_cluster`), because the Raft instance of a
//! running node cannot be swapped for a restored one in place:
//!
//! 1. [`accept`] (the RPC): checks the node ([`refusal`], pure), writes the
//!    chunks to `restore-pending.rkv.part` in the data directory, verifies the
//!    whole file (every frame's checksum, the whole-file checksum, the format
//!    version), renames it to `restore-pending.rkv` (durably), replies with
//!    what the file holds and asks the process to exit; its supervisor
//!    (kubelet, a test harness) starts it again. A file that fails is deleted
//!    and the node goes on as it was.
//! 2. [`resume`] (at start, before storage is opened): with the pending file
//!    present, clears the uninitialized node's state and runs the ordinary
//!    restore path on the file (`crate::backup::restore`: new cluster ID, new
//!    node ID), then removes the file. A crash anywhere repeats what is
//!    unfinished: a directory already restored from the file is recognised
//!    (`restored.json`) and only the file is removed.
//!
//! Only a node that belongs to no cluster accepts: restoring over a member's
//! data would throw away a live cluster's state.

use std::path::{Path, PathBuf};

use anyhow::Context;
use futures::{Stream, StreamExt};
use raftkv_backup::{Decoder, Summary};
use raftkv_proto::v1 as pb;
use tokio::io::AsyncWriteExt;
use tonic::Status;

use crate::config::NodeConfig;
use crate::node::Node;
use crate::storage::{self, RESTORE_PENDING_FILE, Restored, StorageOptions};

/// What the RPC's decision looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// This node's cluster ID ("" if it belongs to none).
    pub cluster_id: String,
    /// It holds a membership (initialized, or joined as a learner).
    pub has_membership: bool,
    /// A received backup already waits for the restart.
    pub pending: bool,
}

/// Why the RPC is refused, if it is. Pure.
pub fn refusal(f: &Facts) -> Option<Status> {
    if !f.cluster_id.is_empty() || f.has_membership {
        let id = if f.cluster_id.is_empty() {
            "a cluster".to_string()
        } else {
            format!("cluster {}", f.cluster_id)
        };
        return Some(Status::failed_precondition(format!(
            "this node belongs to {id}: a restore goes to a node that belongs to no cluster (a new, empty one); it would replace the cluster's data"
        )));
    }
    if f.pending {
        return Some(Status::failed_precondition(
            "a received backup is already waiting on this node; it is restored when its process restarts",
        ));
    }
    None
}

fn pending_path(dir: &Path) -> PathBuf {
    dir.join(RESTORE_PENDING_FILE)
}

fn part_path(dir: &Path) -> PathBuf {
    dir.join(format!("{RESTORE_PENDING_FILE}.part"))
}

/// The RPC: decide, receive and verify the file, ask the process to restart.
pub async fn accept<S>(node: &Node, chunks: S) -> Result<pb::RestoreResponse, Status>
where
    S: Stream<Item = Result<pb::BackupChunk, Status>> + Unpin,
{
    let dir = node.config().data_dir.clone();
    let facts = Facts {
        cluster_id: node.cluster_id(),
        has_membership: node
            .with_metrics(|m| m.membership_config.membership().nodes().next().is_some()),
        pending: pending_path(&dir).exists(),
    };
    if let Some(no) = refusal(&facts) {
        tracing::warn!(reason = no.message(), "Restore refused");
        return Err(no);
    }
    let part = part_path(&dir);
    let received = receive(&part, chunks).await;
    let summary = match received {
        Ok(()) => verify(&part).await,
        Err(e) => Err(e),
    };
    let summary = match summary {
        Ok(s) => s,
        Err(e) => {
            let _ = tokio::fs::remove_file(&part).await;
            tracing::warn!(
                reason = e.message(),
                "Restore refused: the backup is not usable"
            );
            return Err(e);
        }
    };
    let pending = pending_path(&dir);
    tokio::fs::rename(&part, &pending)
        .await
        .map_err(|e| Status::internal(format!("cannot rename {}: {e}", part.display())))?;
    sync_dir(&dir).await?;
    tracing::warn!(
        from_cluster = summary.header.cluster_id,
        revision = summary.header.revision,
        keys = summary.header.keys,
        bytes = summary.bytes,
        "RESTORE accepted: this node restarts as the one voter of a new cluster holding the backup's state"
    );
    node.request_restart();
    Ok(pb::RestoreResponse {
        source_cluster_id: summary.header.cluster_id.clone(),
        revision: summary.header.revision,
        keys: summary.header.keys,
        checksum: summary.checksum,
        bytes: summary.bytes,
    })
}

/// Writes the chunks to `part` in order (each must start where the last
/// ended) and fsyncs it.
async fn receive<S>(part: &Path, mut chunks: S) -> Result<(), Status>
where
    S: Stream<Item = Result<pb::BackupChunk, Status>> + Unpin,
{
    let io = |what: &str, e: std::io::Error| {
        Status::internal(format!("cannot {what} {}: {e}", part.display()))
    };
    let mut f = tokio::fs::File::create(part)
        .await
        .map_err(|e| io("create", e))?;
    let mut offset = 0u64;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        if chunk.offset != offset {
            return Err(Status::invalid_argument(format!(
                "chunk at offset {} where {offset} was expected: chunks must arrive in order, without gaps",
                chunk.offset
            )));
        }
        f.write_all(&chunk.data).await.map_err(|e| io("write", e))?;
        offset += chunk.data.len() as u64;
    }
    if offset == 0 {
        return Err(Status::invalid_argument(
            "the backup is empty (no bytes received)",
        ));
    }
    f.sync_all().await.map_err(|e| io("fsync", e))?;
    Ok(())
}

/// Reads the received file back from the disk and verifies all of it.
async fn verify(part: &Path) -> Result<Summary, Status> {
    let p = part.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let f = std::fs::File::open(&p)
            .map_err(|e| Status::internal(format!("cannot open {}: {e}", p.display())))?;
        Decoder::open(std::io::BufReader::with_capacity(1024 * 1024, f))
            .and_then(Decoder::verify)
            .map_err(|e| Status::invalid_argument(format!("not a usable backup: {e}")))
    })
    .await
    .map_err(|e| Status::internal(format!("verifying task: {e}")))?
}

async fn sync_dir(dir: &Path) -> Result<(), Status> {
    let d = tokio::fs::File::open(dir)
        .await
        .map_err(|e| Status::internal(format!("cannot open {}: {e}", dir.display())))?;
    d.sync_all()
        .await
        .map_err(|e| Status::internal(format!("cannot fsync {}: {e}", dir.display())))
}

/// At start: restores a backup received before the last exit (see the
/// module doc). Returns what it did, if there was one. Blocking I/O.
pub fn resume(config: &NodeConfig, opts: StorageOptions) -> anyhow::Result<Option<Restored>> {
    let dir = &config.data_dir;
    let part = part_path(dir);
    if part.exists() {
        // A receive the process did not finish: never verified, never used.
        std::fs::remove_file(&part).with_context(|| format!("removing {}", part.display()))?;
    }
    let file = pending_path(dir);
    if !file.exists() {
        return Ok(None);
    }
    tracing::warn!("a received backup is pending: restoring it as a new cluster");
    if !storage::is_restored(dir) {
        // The uninitialized node's own files (identity, empty log): nothing
        // of any cluster's.
        storage::force::clear_old_state(dir).context("clearing the uninitialized node's state")?;
    }
    let restored = crate::backup::restore(config, &file, opts)
        .context("restoring the received backup as a new cluster")?;
    std::fs::remove_file(&file).with_context(|| format!("removing {}", file.display()))?;
    let d = std::fs::File::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    d.sync_all()
        .with_context(|| format!("fsyncing {}", dir.display()))?;
    Ok(Some(restored))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            cluster_id: String::new(),
            has_membership: false,
            pending: false,
        }
    }

    #[test]
    fn only_a_node_of_no_cluster_without_a_pending_restore_accepts() {
        assert!(refusal(&facts()).is_none());
        let member = refusal(&Facts {
            cluster_id: "c-1".into(),
            ..facts()
        })
        .unwrap();
        assert_eq!(member.code(), tonic::Code::FailedPrecondition);
        assert!(
            member.message().contains("belongs to cluster c-1"),
            "{member:?}"
        );
        // A learner that joined holds a membership before it learns the ID.
        let learner = refusal(&Facts {
            has_membership: true,
            ..facts()
        })
        .unwrap();
        assert!(
            learner.message().contains("belongs to a cluster"),
            "{learner:?}"
        );
        let pending = refusal(&Facts {
            pending: true,
            ..facts()
        })
        .unwrap();
        assert!(pending.message().contains("already waiting"), "{pending:?}");
    }
}
