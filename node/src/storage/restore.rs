//! Restore: an empty data directory becomes the one voter of a new cluster
//! holding a given key-value state (`raft-node --restore FILE`).
//!
//! What is written, in order, each step durable before the next:
//!
//! 1. `RESTORING` (marks an unfinished restore: a plain start refuses the
//!    directory, and a repeated `--restore` clears it and starts over);
//! 2. the identity (a new random node ID) and an empty log, as any first start;
//! 3. a snapshot at log index 0, term 0 (where openraft's own `initialize`
//!    puts the first membership) holding the state and a membership of this
//!    node alone as voter; openraft starts from it as from a cluster that was
//!    just initialized, and the node elects itself;
//! 4. the new cluster ID;
//! 5. `restored.json` (which backup, by checksum), then `RESTORING` is removed.
//!
//! A repeated `--restore` of the same backup on the finished directory (a pod
//! restarted with the same arguments) changes nothing and starts the node as
//! it is; any other non-empty directory is refused.

use std::fs;
use std::path::Path;

use openraft::{CommittedLeaderId, Membership};
use serde::{Deserialize, Serialize};

use super::error::{Error, Result};
use super::fsutil::{create_dir_durable, sync_dir, write_atomic};
use super::options::StorageOptions;
use super::snapshot::{self, SnapshotDir};
use super::{IDENTITY_FILE, SNAPSHOT_DIR};
use crate::kv::KvStore;
use crate::typ::{LogId, NodeId, NodeInfo, SnapshotMeta, StoredMembership};

pub(crate) const RESTORING_FILE: &str = "RESTORING";
pub(crate) const RESTORED_FILE: &str = "restored.json";
/// Entries of a data directory that do not make it non-empty (a fresh ext4
/// volume holds `lost+found`; a forced new cluster restores around its own
/// request and state files, `force.rs`).
const IGNORED: &[&str] = &[
    "lost+found",
    super::FORCE_MARKER_FILE,
    super::FORCE_STATE_FILE,
    super::RESTORE_PENDING_FILE,
];

/// Which backup a data directory was restored from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreSource {
    /// The backup file's whole-file checksum (crc32c).
    pub checksum: u32,
    /// The cluster the backup was taken from.
    pub source_cluster_id: String,
    pub revision: u64,
    pub keys: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RestoredFile {
    source: RestoreSource,
    node_id: NodeId,
    cluster_id: String,
}

/// What [`restore`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restored {
    /// The directory now holds the new cluster.
    New { node_id: NodeId, cluster_id: String },
    /// It already held it (the same backup restored before): nothing written.
    Already { node_id: NodeId, cluster_id: String },
}

/// Whether `dir` finished a restore (of any backup): its state is a restored
/// cluster's, not an uninitialized node's to clear.
pub fn is_restored(dir: &Path) -> bool {
    dir.join(RESTORED_FILE).exists()
}

/// Restores `kv` into the data directory `dir` as the state of a new
/// one-voter cluster whose only member is this node, described by `me`.
/// Blocking file I/O.
pub fn restore(
    dir: &Path,
    opts: StorageOptions,
    source: &RestoreSource,
    kv: KvStore,
    me: NodeInfo,
) -> Result<Restored> {
    opts.validate()?;
    let restored_path = dir.join(RESTORED_FILE);
    match fs::read(&restored_path) {
        Ok(bytes) => {
            let done: RestoredFile = serde_json::from_slice(&bytes)
                .map_err(|e| Error::corrupt(&restored_path, e.column() as u64, format!("{e}")))?;
            if done.source != *source {
                return Err(Error::Invariant(format!(
                    "data directory {} was restored from another backup ({:?}); a restore needs an empty data directory",
                    dir.display(),
                    done.source
                )));
            }
            // A restore that stopped after its last step but before removing
            // its marker is finished.
            let marker = dir.join(RESTORING_FILE);
            if marker.exists() {
                fs::remove_file(&marker).map_err(|e| Error::io("remove", &marker, e))?;
                sync_dir(dir)?;
            }
            return Ok(Restored::Already {
                node_id: done.node_id,
                cluster_id: done.cluster_id,
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("read", &restored_path, e)),
    }
    create_dir_durable(dir)?;
    let entries = contents(dir)?;
    if entries.iter().any(|n| n == RESTORING_FILE) {
        tracing::warn!(dir = %dir.display(), "clearing an interrupted restore");
        for name in &entries {
            let p = dir.join(name);
            let r = if p.is_dir() {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
            r.map_err(|e| Error::io("remove", &p, e))?;
        }
        sync_dir(dir)?;
    } else if !entries.is_empty() {
        return Err(Error::Invariant(format!(
            "data directory {} is not empty (it holds {}); a restore needs an empty data directory",
            dir.display(),
            entries.join(", ")
        )));
    }
    let faults = opts.fsync_faults;
    write_atomic(&dir.join(RESTORING_FILE), b"", &faults)?;

    let storage = super::open_restoring(dir, opts)?;
    let node_id = storage.identity.node_id();
    let log_id = LogId::new(CommittedLeaderId::new(0, 0), 0);
    let membership = Membership::new(
        vec![[node_id].into_iter().collect()],
        [(node_id, me)]
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>(),
    );
    let meta = SnapshotMeta {
        last_log_id: Some(log_id),
        last_membership: StoredMembership::new(Some(log_id), membership),
        snapshot_id: format!("restore-{:08x}", source.checksum),
    };
    let snapshots = SnapshotDir::open(&dir.join(SNAPSHOT_DIR), faults)?;
    // No sessions: a restored cluster is a new history; a client of the old
    // one must not expect its retries to be recognized there.
    let bytes = snapshot::encode(&meta, &kv, &snapshot::Sessions::default());
    drop(kv);
    snapshots.write(&meta, 0, &bytes)?;
    let cluster_id = super::identity::new_cluster_id();
    storage.identity.set_cluster_id(&cluster_id)?;
    let done = RestoredFile {
        source: source.clone(),
        node_id,
        cluster_id: cluster_id.clone(),
    };
    let json = serde_json::to_vec_pretty(&done).expect("serializes");
    write_atomic(&restored_path, &json, &faults)?;
    let marker = dir.join(RESTORING_FILE);
    fs::remove_file(&marker).map_err(|e| Error::io("remove", &marker, e))?;
    sync_dir(dir)?;
    debug_assert!(dir.join(IDENTITY_FILE).exists());
    tracing::info!(node_id, cluster_id, dir = %dir.display(), "restored a backup as a new cluster");
    Ok(Restored::New {
        node_id,
        cluster_id,
    })
}

/// Names in `dir`, without the ignored ones.
pub(super) fn contents(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))? {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !IGNORED.contains(&name.as_str()) {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::Command;

    fn source(checksum: u32) -> RestoreSource {
        RestoreSource {
            checksum,
            source_cluster_id: "old".into(),
            revision: 2,
            keys: 1,
        }
    }

    fn store() -> KvStore {
        let mut kv = KvStore::new();
        kv.apply(&Command::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        });
        kv.apply(&Command::Put {
            key: b"k".to_vec(),
            value: b"w".to_vec(),
        });
        kv
    }

    fn me() -> NodeInfo {
        NodeInfo {
            client_addr: "127.0.0.1:1".into(),
            peer_addr: "127.0.0.1:2".into(),
            name: "n".into(),
        }
    }

    #[test]
    fn an_empty_directory_becomes_a_one_voter_cluster_with_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("data");
        let r = restore(&d, StorageOptions::default(), &source(1), store(), me()).unwrap();
        let Restored::New {
            node_id,
            cluster_id,
        } = r
        else {
            panic!("{r:?}")
        };
        let s = super::super::open(&d, StorageOptions::default()).unwrap();
        assert_eq!(s.identity.node_id(), node_id);
        assert_eq!(s.identity.cluster_id(), Some(cluster_id.clone()));
        let meta = s.state_machine.current_snapshot_meta().unwrap();
        assert_eq!(meta.last_log_id.map(|l| l.index), Some(0));
        let voters: Vec<NodeId> = meta.last_membership.membership().voter_ids().collect();
        assert_eq!(voters, vec![node_id]);
        let reader = s.state_machine.reader();
        let kv = reader.get(b"k").unwrap();
        assert_eq!(
            (kv.value.as_slice(), kv.mod_revision, kv.version),
            (&b"w"[..], 2, 2)
        );
        assert_eq!(reader.applied().revision, 2);
        drop(s);

        // The same backup again: nothing changes. Another one: refused.
        let again = restore(&d, StorageOptions::default(), &source(1), store(), me()).unwrap();
        assert_eq!(
            again,
            Restored::Already {
                node_id,
                cluster_id
            }
        );
        let e = restore(&d, StorageOptions::default(), &source(2), store(), me()).unwrap_err();
        assert!(e.to_string().contains("another backup"), "{e}");
    }

    #[test]
    fn a_directory_with_data_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x"), b"keep").unwrap();
        std::fs::create_dir(dir.path().join("lost+found")).unwrap();
        let e = restore(
            dir.path(),
            StorageOptions::default(),
            &source(1),
            store(),
            me(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("is not empty (it holds x)"), "{e}");
        assert_eq!(std::fs::read(dir.path().join("x")).unwrap(), b"keep");
        // lost+found alone does not count.
        std::fs::remove_file(dir.path().join("x")).unwrap();
        restore(
            dir.path(),
            StorageOptions::default(),
            &source(1),
            store(),
            me(),
        )
        .unwrap();
    }

    #[test]
    fn an_interrupted_restore_blocks_a_plain_start_and_is_redone() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // What a crash after step 2 leaves: the marker, an identity, a log.
        write_atomic(&d.join(RESTORING_FILE), b"", &Default::default()).unwrap();
        drop(super::super::open_restoring(d, StorageOptions::default()).unwrap());
        let e = super::super::open(d, StorageOptions::default()).unwrap_err();
        assert!(e.to_string().contains("unfinished restore"), "{e}");
        let r = restore(d, StorageOptions::default(), &source(1), store(), me()).unwrap();
        assert!(matches!(r, Restored::New { .. }), "{r:?}");
        assert!(!d.join(RESTORING_FILE).exists());
        let s = super::super::open(d, StorageOptions::default()).unwrap();
        assert!(s.identity.cluster_id().is_some());
    }
}
