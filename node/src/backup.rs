//! Backups: the point-in-time state the Cluster service's `Backup` call
//! streams, and its restore into an empty data directory
//! (`raft-node --restore FILE`). The file format is the `raftkv-backup`
//! crate's; docs/operations.md ("Backups and restore") says what a backup
//! guarantees.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use futures::Stream;
use raftkv_backup::{Decoder, Encoder, EntryRef, Header, Member, Membership, Summary};
use raftkv_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::config::NodeConfig;
use crate::kv::{KvStore, StoredValue};
use crate::node::Node;
use crate::storage::{self, PointInTime, RestoreSource, Restored, StorageOptions};
use crate::{NodeId, NodeInfo};

/// The chunks of one backup, in order.
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::BackupChunk, Status>> + Send>>;

/// On the leader: the state as of a read index confirmed after this call
/// started (so it holds every write acknowledged before), encoded on a
/// blocking thread and streamed as it is encoded. The copy of the store is
/// O(1) (a persistent map): writes go on meanwhile.
pub async fn stream(node: &Node) -> Result<ChunkStream, Status> {
    let index = node.read_index().await?;
    node.wait_applied(index).await?;
    let pit = node.reader().point_in_time();
    let header = header(node.cluster_id(), node.id(), &pit);
    tracing::info!(
        read_index = index,
        log_index = header.log_index,
        revision = header.revision,
        keys = header.keys,
        "streaming a backup"
    );
    let limits = node.limits();
    let (tx, rx) = mpsc::channel(limits.backup_chunks_in_flight);
    let out = Out {
        tx,
        runtime: tokio::runtime::Handle::current(),
        offset: 0,
        chunk_bytes: limits.backup_chunk_bytes,
        stall_max: limits.backup_stall_max,
    };
    tokio::task::spawn_blocking(move || encode(&header, &pit.kv, out));
    Ok(Box::pin(ReceiverStream::new(rx)))
}

/// The header of a backup of `pit`, taken on node `node_id` of `cluster_id`.
pub(crate) fn header(cluster_id: String, node_id: NodeId, pit: &PointInTime) -> Header {
    let m = pit.membership.membership();
    let voters: BTreeSet<NodeId> = m.voter_ids().collect();
    let members = m
        .nodes()
        .map(|(id, n)| Member {
            node_id: *id,
            name: n.name.clone(),
            client_addr: n.client_addr.clone(),
            peer_addr: n.peer_addr.clone(),
            voter: voters.contains(id),
        })
        .collect();
    Header {
        cluster_id,
        node_id,
        created_at_unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        revision: pit.kv.revision(),
        log_index: pit.last_applied.map_or(0, |l| l.index),
        log_term: pit.last_applied.map_or(0, |l| l.leader_id.term),
        keys: pit.kv.len() as u64,
        membership: Membership {
            configs: m
                .get_joint_config()
                .iter()
                .map(|c| c.iter().copied().collect())
                .collect(),
            members,
        },
        server_version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// Where the encoder's bytes go: the response stream, in chunks.
struct Out {
    tx: mpsc::Sender<Result<pb::BackupChunk, Status>>,
    runtime: tokio::runtime::Handle,
    offset: u64,
    chunk_bytes: usize,
    stall_max: Duration,
}

impl Out {
    /// Sends `bytes` in chunks; false once the reader is gone or stalled.
    fn send(&mut self, bytes: Vec<u8>) -> bool {
        let bytes = Bytes::from(bytes);
        let mut start = 0;
        while start < bytes.len() {
            let end = (start + self.chunk_bytes).min(bytes.len());
            let chunk = pb::BackupChunk {
                offset: self.offset,
                data: bytes.slice(start..end),
            };
            let sent = self.runtime.block_on(tokio::time::timeout(
                self.stall_max,
                self.tx.send(Ok(chunk)),
            ));
            match sent {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    tracing::info!(at = self.offset, "backup reader went away");
                    return false;
                }
                Err(_) => {
                    tracing::warn!(at = self.offset, stall_max = ?self.stall_max, "backup reader stalled; abandoning the backup");
                    return false;
                }
            }
            self.offset += (end - start) as u64;
            start = end;
        }
        true
    }

    fn fail(&self, e: impl std::fmt::Display) {
        tracing::error!(error = %e, "backup failed");
        let err = Err(Status::internal(e.to_string()));
        let _ = self
            .runtime
            .block_on(tokio::time::timeout(self.stall_max, self.tx.send(err)));
    }
}

/// Encodes and sends (on a blocking thread); stops early when the reader
/// goes away or stalls.
fn encode(header: &Header, kv: &KvStore, mut out: Out) {
    let (mut enc, first) = Encoder::new(header);
    if !out.send(first) {
        return;
    }
    for (key, v) in kv.iter() {
        let entry = EntryRef {
            key,
            value: &v.value,
            create_revision: v.create_revision,
            mod_revision: v.mod_revision,
            version: v.version,
        };
        match enc.push(entry) {
            Ok(None) => {}
            Ok(Some(frame)) => {
                if !out.send(frame) {
                    return;
                }
            }
            Err(e) => return out.fail(e),
        }
    }
    match enc.finish() {
        Ok(last) => {
            if out.send(last) {
                tracing::info!(bytes = out.offset, "backup streamed");
            }
        }
        Err(e) => out.fail(e),
    }
}

/// The whole backup file of `kv` in memory (for a forced new cluster, whose
/// node holds the store in memory anyway).
pub(crate) fn encode_to_vec(header: &Header, kv: &KvStore) -> anyhow::Result<Vec<u8>> {
    let (mut enc, mut out) = Encoder::new(header);
    for (key, v) in kv.iter() {
        let entry = EntryRef {
            key,
            value: &v.value,
            create_revision: v.create_revision,
            mod_revision: v.mod_revision,
            version: v.version,
        };
        if let Some(frame) = enc.push(entry)? {
            out.extend_from_slice(&frame);
        }
    }
    out.extend_from_slice(&enc.finish()?);
    Ok(out)
}

/// Reads and verifies a backup file completely into a store. Blocking I/O.
pub fn load(path: &Path) -> anyhow::Result<(Summary, KvStore)> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut d = Decoder::open(BufReader::with_capacity(1024 * 1024, f))?;
    let mut entries = Vec::new();
    while let Some(batch) = d.next_batch()? {
        entries.extend(batch.into_iter().map(|e| {
            (
                Bytes::from(e.key),
                StoredValue {
                    value: Bytes::from(e.value),
                    create_revision: e.create_revision,
                    mod_revision: e.mod_revision,
                    version: e.version,
                },
            )
        }));
    }
    let summary = d.summary().expect("the decoder verified the end");
    let kv = KvStore::from_parts(summary.header.revision, entries).map_err(anyhow::Error::msg)?;
    // Pair assertion: what the store holds is what the file announced.
    assert_eq!(kv.len() as u64, summary.header.keys);
    assert_eq!(kv.revision(), summary.header.revision);
    Ok((summary, kv))
}

/// `raft-node --restore FILE`: verifies the whole file first (nothing is
/// written to the data directory for a file that fails), then makes the data
/// directory the one voter of a new cluster with that state. Blocking I/O.
pub fn restore(config: &NodeConfig, file: &Path, opts: StorageOptions) -> anyhow::Result<Restored> {
    let (summary, kv) =
        load(file).with_context(|| format!("refusing to restore {}", file.display()))?;
    let source = RestoreSource {
        checksum: summary.checksum,
        source_cluster_id: summary.header.cluster_id.clone(),
        revision: summary.header.revision,
        keys: summary.header.keys,
    };
    let me = NodeInfo {
        client_addr: config.advertise_client.clone(),
        peer_addr: config.advertise_peer.clone(),
        name: config.name.clone(),
    };
    let r = storage::restore(&config.data_dir, opts, &source, kv, me).with_context(|| {
        format!(
            "restoring {} into {}",
            file.display(),
            config.data_dir.display()
        )
    })?;
    match &r {
        Restored::New {
            node_id,
            cluster_id,
        } => tracing::info!(
            node_id,
            cluster_id,
            from_cluster = summary.header.cluster_id,
            revision = summary.header.revision,
            keys = summary.header.keys,
            "restored a backup: a new one-voter cluster"
        ),
        Restored::Already {
            node_id,
            cluster_id,
        } => tracing::info!(
            node_id,
            cluster_id,
            "this data directory was restored from the same backup before; starting it as it is"
        ),
    }
    Ok(r)
}
