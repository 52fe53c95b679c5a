//! The node's identity: its random Raft node ID and, once it has joined or
//! initialized a cluster, the cluster ID (invariant 1 of docs/design.md: a node's Raft
//! ID belongs to its data, not to its pod).
//!
//! Stored as `identity.json` in the data directory, always replaced
//! atomically (tmp + fsync + rename + fsync dir). The identity store also
//! holds an exclusive lock on the data directory (`LOCK`), so two processes
//! never share one data directory.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::error::{Error, Result};
use super::fsutil::{create_dir_durable, write_atomic};
use super::options::FsyncFaults;
use super::{IDENTITY_FILE, LOCK_FILE, LOG_DIR, SNAPSHOT_DIR};

const IDENTITY_FORMAT: u32 = 1;
const CLUSTER_ID_BYTES_MAX: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct IdentityFile {
    format: u32,
    node_id: u64,
    cluster_id: Option<String>,
}

/// Largest node ID handed out: 2^53 - 1, the largest integer every JSON
/// consumer represents exactly.
pub const NODE_ID_MAX: u64 = (1 << 53) - 1;

/// The persisted identity of this node. Cheap to clone; all clones share one
/// state, and every method takes `&self`.
#[derive(Debug, Clone)]
pub struct IdentityStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    node_id: u64,
    cluster_id: Mutex<Option<String>>,
    /// Held for the lifetime of the store: the data directory lock.
    _lock: File,
}

impl IdentityStore {
    /// Opens (or, for an empty data directory, creates) the identity in `dir`.
    ///
    /// Refuses a directory that holds log or snapshot files but no identity
    /// file: a node that lost its identity must never make up a new one for
    /// old data.
    pub fn open(dir: &Path) -> Result<IdentityStore> {
        create_dir_durable(dir)?;
        let lock = lock_dir(dir)?;
        let path = dir.join(IDENTITY_FILE);
        let file = match fs::read(&path) {
            Ok(bytes) => {
                let file: IdentityFile = serde_json::from_slice(&bytes).map_err(|e| {
                    Error::corrupt(&path, e.column() as u64, format!("identity file: {e}"))
                })?;
                if file.format != IDENTITY_FORMAT {
                    return Err(Error::corrupt(
                        &path,
                        0,
                        format!("unknown identity format {}", file.format),
                    ));
                }
                if file.node_id == 0 {
                    return Err(Error::corrupt(&path, 0, "node_id 0 is invalid"));
                }
                file
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if holds_raft_data(dir)? {
                    return Err(Error::IdentityMissing {
                        dir: dir.to_path_buf(),
                    });
                }
                let node_id = loop {
                    // 53 bits: exact in JSON numbers (jq, JavaScript, float64
                    // parsers) while collisions stay out of reach.
                    let id: u64 = rand::random::<u64>() & NODE_ID_MAX;
                    if id != 0 {
                        break id;
                    }
                };
                let file = IdentityFile {
                    format: IDENTITY_FORMAT,
                    node_id,
                    cluster_id: None,
                };
                write_identity(&path, &file)?;
                tracing::info!(node_id, dir = %dir.display(), "created a new node identity");
                file
            }
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        Ok(IdentityStore {
            inner: Arc::new(Inner {
                path,
                node_id: file.node_id,
                cluster_id: Mutex::new(file.cluster_id),
                _lock: lock,
            }),
        })
    }

    /// This node's Raft ID (random, non-zero, at most [`NODE_ID_MAX`], created
    /// with the data directory).
    pub fn node_id(&self) -> u64 {
        self.inner.node_id
    }

    /// The cluster this node belongs to, once it initialized or joined one.
    pub fn cluster_id(&self) -> Option<String> {
        self.inner.cluster_id.lock().clone()
    }

    /// Records the cluster ID durably. Idempotent for the same ID; a
    /// different ID is refused ([`Error::ClusterIdMismatch`]).
    pub fn set_cluster_id(&self, id: &str) -> Result<()> {
        if id.is_empty()
            || id.len() > CLUSTER_ID_BYTES_MAX
            || !id.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(Error::InvalidClusterId(id.to_string()));
        }
        let mut guard = self.inner.cluster_id.lock();
        match guard.as_deref() {
            Some(have) if have == id => return Ok(()),
            Some(have) => {
                return Err(Error::ClusterIdMismatch {
                    have: have.to_string(),
                    want: id.to_string(),
                });
            }
            None => {}
        }
        let file = IdentityFile {
            format: IDENTITY_FORMAT,
            node_id: self.inner.node_id,
            cluster_id: Some(id.to_string()),
        };
        // Blocking file I/O, once per node lifetime; callers on the async
        // runtime may wrap it in spawn_blocking.
        write_identity(&self.inner.path, &file)?;
        *guard = Some(id.to_string());
        tracing::info!(
            node_id = self.inner.node_id,
            cluster_id = id,
            "recorded the cluster id"
        );
        Ok(())
    }
}

/// A random cluster ID (128 bits, hex), created once when a cluster is
/// initialized or restored.
pub fn new_cluster_id() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

fn write_identity(path: &Path, file: &IdentityFile) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(file).expect("identity serializes");
    bytes.push(b'\n');
    write_atomic(path, &bytes, &FsyncFaults::default())
}

fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io("open", &path, e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(fs::TryLockError::WouldBlock) => Err(Error::Locked { path }),
        Err(fs::TryLockError::Error(e)) => Err(Error::io("lock", &path, e)),
    }
}

/// Whether `dir` holds any log segment or snapshot file.
fn holds_raft_data(dir: &Path) -> Result<bool> {
    holds_files(dir, &[LOG_DIR, SNAPSHOT_DIR])
}

/// Whether any of the subdirectories `subs` of `dir` holds a `.seg` or
/// `.snap` file.
pub(crate) fn holds_files(dir: &Path, subs: &[&str]) -> Result<bool> {
    for sub in subs {
        let d = dir.join(sub);
        let rd = match fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("list", &d, e)),
        };
        for entry in rd {
            let entry = entry.map_err(|e| Error::io("list", &d, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".seg") || name.ends_with(".snap") {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let s = IdentityStore::open(dir.path()).unwrap();
            assert_ne!(s.node_id(), 0);
            assert!(s.node_id() <= NODE_ID_MAX, "IDs stay exact in JSON");
            assert_eq!(s.cluster_id(), None);
            s.set_cluster_id("c-1").unwrap();
            s.set_cluster_id("c-1").unwrap();
            let e = s.set_cluster_id("c-2").unwrap_err();
            assert!(matches!(e, Error::ClusterIdMismatch { .. }), "{e}");
            assert!(s.set_cluster_id("").is_err());
            s.node_id()
        };
        let s = IdentityStore::open(dir.path()).unwrap();
        assert_eq!(s.node_id(), id);
        assert_eq!(s.cluster_id().as_deref(), Some("c-1"));
    }

    #[test]
    fn second_open_of_a_locked_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _s = IdentityStore::open(dir.path()).unwrap();
        let e = IdentityStore::open(dir.path()).unwrap_err();
        assert!(matches!(e, Error::Locked { .. }), "{e}");
    }

    #[test]
    fn data_without_identity_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join(LOG_DIR)).unwrap();
        fs::write(
            dir.path().join(LOG_DIR).join("00000000000000000001.seg"),
            b"x",
        )
        .unwrap();
        let e = IdentityStore::open(dir.path()).unwrap_err();
        assert!(matches!(e, Error::IdentityMissing { .. }), "{e}");
        assert!(e.to_string().contains("no identity file"));
    }
}
