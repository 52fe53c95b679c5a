//! The files of a forced new cluster (`Cluster/ForceNewCluster`), inside the
//! data directory. The driver is `crate::force_new_cluster`; this module only
//! names the files and performs the steps that touch them.
//!
//! ```text
//! <data-dir>/
//!   FORCE_NEW_CLUSTER        the request (JSON): written by the RPC, removed last
//!   force-new-cluster.rkv    this node's committed state as a backup file
//! ```
//!
//! Both names are ignored by the restore's "is the directory empty" check,
//! so the old state can be cleared around them and the ordinary restore
//! path can run on the directory.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::{Error, Result};
use super::fsutil::{sync_dir, write_atomic};
use super::options::FsyncFaults;
use crate::NodeId;

pub use super::{FORCE_MARKER_FILE as MARKER_FILE, FORCE_STATE_FILE as STATE_FILE};

/// What the RPC asked for; the rebuild checks it against the data it finds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForceRequest {
    /// The cluster the data directory belonged to when the RPC was accepted.
    pub cluster_id: String,
    /// The node ID it had then (it never serves under it again).
    pub node_id: NodeId,
    /// The highest index this node knew committed when it accepted (its
    /// in-memory commit index or its applied index): the log's own record of
    /// the commit index is written lazily and may trail it.
    pub commit_index: u64,
    pub requested_at_unix_ms: u64,
}

/// Writes the request marker (atomically, durably).
pub fn mark(dir: &Path, req: &ForceRequest, faults: &FsyncFaults) -> Result<()> {
    let json = serde_json::to_vec_pretty(req).expect("serializes");
    write_atomic(&dir.join(MARKER_FILE), &json, faults)
}

/// Writes the committed state (a backup file's bytes) atomically, durably.
pub fn write_state(dir: &Path, bytes: &[u8], faults: &FsyncFaults) -> Result<()> {
    write_atomic(&dir.join(STATE_FILE), bytes, faults)
}

/// The pending request, if any.
pub fn pending(dir: &Path) -> Result<Option<ForceRequest>> {
    let path = dir.join(MARKER_FILE);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::corrupt(&path, e.column() as u64, format!("{e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", &path, e)),
    }
}

/// Removes everything in `dir` but the marker, the state file and the
/// entries a restore ignores anyway. Repeating it is harmless.
pub fn clear_old_state(dir: &Path) -> Result<()> {
    for name in super::restore::contents(dir)? {
        let p = dir.join(&name);
        let r = if p.is_dir() {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        };
        r.map_err(|e| Error::io("remove", &p, e))?;
    }
    sync_dir(dir)
}

/// The last step: the marker goes first (a crash after it leaves only a
/// stray state file, which [`remove_stray_state`] deletes on the next start;
/// the other order would leave a marker pointing at state already gone).
pub fn finish(dir: &Path) -> Result<()> {
    let marker = dir.join(MARKER_FILE);
    fs::remove_file(&marker).map_err(|e| Error::io("remove", &marker, e))?;
    sync_dir(dir)?;
    remove_stray_state(dir)
}

/// Deletes a state file left without its marker (see [`finish`]).
pub fn remove_stray_state(dir: &Path) -> Result<()> {
    let state = dir.join(STATE_FILE);
    match fs::remove_file(&state) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", &state, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> ForceRequest {
        ForceRequest {
            cluster_id: "c-old".into(),
            node_id: 7,
            commit_index: 12,
            requested_at_unix_ms: 1,
        }
    }

    #[test]
    fn the_marker_round_trips_and_a_torn_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(pending(dir.path()).unwrap(), None);
        mark(dir.path(), &req(), &FsyncFaults::default()).unwrap();
        assert_eq!(pending(dir.path()).unwrap(), Some(req()));
        fs::write(dir.path().join(MARKER_FILE), b"{\"cluster").unwrap();
        let e = pending(dir.path()).unwrap_err().to_string();
        assert!(e.contains(MARKER_FILE), "{e}");
    }

    #[test]
    fn clearing_keeps_only_the_marker_and_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        mark(d, &req(), &FsyncFaults::default()).unwrap();
        fs::write(d.join(STATE_FILE), b"state").unwrap();
        fs::write(d.join("identity.json"), b"{}").unwrap();
        fs::create_dir_all(d.join("log/sub")).unwrap();
        fs::create_dir(d.join("lost+found")).unwrap();
        clear_old_state(d).unwrap();
        clear_old_state(d).unwrap();
        let mut left: Vec<String> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, vec![MARKER_FILE, STATE_FILE, "lost+found"]);

        finish(d).unwrap();
        assert!(!d.join(MARKER_FILE).exists());
        assert!(!d.join(STATE_FILE).exists());
    }
}
