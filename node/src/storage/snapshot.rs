//! Snapshot files: the state machine serialized with its metadata.
//!
//! ```text
//! snapshots/<last index + 1, 20 digits>-<unique>.snap
//!
//! offset  size  field
//!      0     8  magic "raftkvsn"
//!      8     4  format, u32 little-endian
//!     12     4  crc32c of the body
//!     16     8  body length, u64 little-endian
//!     24     n  body: postcard of (SnapshotMeta, KvStore, SessionTable)
//! ```
//!
//! Format 2 added the client session table (exactly-once writes; it is
//! replicated state, so a member that installs a snapshot must answer retries
//! as the others do). Format 1 files (no table) are still read, with an empty
//! table: they were written before any entry could carry a session.
//!
//! The same bytes are the snapshot data openraft sends to a lagging member,
//! which verifies them before installing. Files are written atomically (tmp,
//! fsync, rename, fsync dir); once a new one is in place the older ones are
//! deleted, so the directory holds one snapshot (plus, briefly, a `.tmp`).

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{Error, Result};
use super::fsutil::{create_dir_durable, sync_dir, write_atomic};
use super::options::FsyncFaults;
use crate::kv::{CommandResult, KvStore, SessionTable};
use crate::typ::SnapshotMeta;

/// The session table as the state machine keeps it.
pub(crate) type Sessions = SessionTable<CommandResult>;

const MAGIC: [u8; 8] = *b"raftkvsn";
/// The format written.
const FORMAT: u32 = 2;
/// Before the session table.
const FORMAT_V1: u32 = 1;
const PREFIX_BYTES: usize = 24;

#[derive(Serialize)]
struct BodyRef<'a> {
    meta: &'a SnapshotMeta,
    kv: &'a KvStore,
    sessions: &'a Sessions,
}

#[derive(Deserialize)]
struct Body {
    meta: SnapshotMeta,
    kv: KvStore,
    sessions: Sessions,
}

#[derive(Deserialize)]
struct BodyV1 {
    meta: SnapshotMeta,
    kv: KvStore,
}

/// Serializes a snapshot (CPU only; call it off the async runtime).
pub(crate) fn encode(meta: &SnapshotMeta, kv: &KvStore, sessions: &Sessions) -> Vec<u8> {
    let mut buf = vec![0u8; PREFIX_BYTES];
    buf = postcard::to_extend(&BodyRef { meta, kv, sessions }, buf)
        .expect("postcard encoding to a Vec cannot fail");
    let body_len = (buf.len() - PREFIX_BYTES) as u64;
    let crc = crc32c::crc32c(&buf[PREFIX_BYTES..]);
    buf[0..8].copy_from_slice(&MAGIC);
    buf[8..12].copy_from_slice(&FORMAT.to_le_bytes());
    buf[12..16].copy_from_slice(&crc.to_le_bytes());
    buf[16..24].copy_from_slice(&body_len.to_le_bytes());
    buf
}

/// Verifies the framing and checksum of snapshot bytes; `what` names the
/// source in errors (a file path, or "received snapshot").
pub(crate) fn verify(bytes: &[u8], what: &Path) -> Result<()> {
    if bytes.len() < PREFIX_BYTES {
        return Err(Error::corrupt(
            what,
            bytes.len() as u64,
            "snapshot shorter than its header",
        ));
    }
    if bytes[0..8] != MAGIC {
        return Err(Error::corrupt(what, 0, "not a raftkv snapshot (bad magic)"));
    }
    let format = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    if format != FORMAT && format != FORMAT_V1 {
        return Err(Error::corrupt(
            what,
            8,
            format!("unknown snapshot format {format}"),
        ));
    }
    let crc = u32::from_le_bytes(bytes[12..16].try_into().unwrap());
    let len = u64::from_le_bytes(bytes[16..24].try_into().unwrap());
    if len != (bytes.len() - PREFIX_BYTES) as u64 {
        return Err(Error::corrupt(
            what,
            16,
            format!(
                "snapshot body is {} bytes, header says {len}",
                bytes.len() - PREFIX_BYTES
            ),
        ));
    }
    if crc32c::crc32c(&bytes[PREFIX_BYTES..]) != crc {
        return Err(Error::corrupt(
            what,
            PREFIX_BYTES as u64,
            "snapshot checksum mismatch",
        ));
    }
    Ok(())
}

/// Verifies and deserializes snapshot bytes (either format).
pub(crate) fn decode(bytes: &[u8], what: &Path) -> Result<(SnapshotMeta, KvStore, Sessions)> {
    verify(bytes, what)?;
    let undecodable = |e: postcard::Error| {
        Error::corrupt(
            what,
            PREFIX_BYTES as u64,
            format!("undecodable snapshot: {e}"),
        )
    };
    let body = &bytes[PREFIX_BYTES..];
    if u32::from_le_bytes(bytes[8..12].try_into().unwrap()) == FORMAT_V1 {
        let v1: BodyV1 = postcard::from_bytes(body).map_err(undecodable)?;
        return Ok((v1.meta, v1.kv, Sessions::default()));
    }
    let b: Body = postcard::from_bytes(body).map_err(undecodable)?;
    Ok((b.meta, b.kv, b.sessions))
}

/// The snapshot directory.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotDir {
    pub dir: PathBuf,
    pub faults: FsyncFaults,
}

impl SnapshotDir {
    pub fn open(dir: &Path, faults: FsyncFaults) -> Result<SnapshotDir> {
        create_dir_durable(dir)?;
        Ok(SnapshotDir {
            dir: dir.to_path_buf(),
            faults,
        })
    }

    /// Snapshot files, the newest (highest last index, then name) last.
    fn list(&self) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(|e| Error::io("list", &self.dir, e))? {
            let entry = entry.map_err(|e| Error::io("list", &self.dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".snap") {
                out.push(entry.path());
            } else if name.ends_with(".tmp") {
                // A write interrupted by a crash.
                let p = entry.path();
                fs::remove_file(&p).map_err(|e| Error::io("delete", &p, e))?;
            }
        }
        out.sort();
        Ok(out)
    }

    /// Loads the newest snapshot, deleting older ones.
    pub fn load_latest(&self) -> Result<Option<(PathBuf, SnapshotMeta, KvStore, Sessions)>> {
        let mut files = self.list()?;
        let Some(latest) = files.pop() else {
            return Ok(None);
        };
        let bytes = fs::read(&latest).map_err(|e| Error::io("read", &latest, e))?;
        let (meta, kv, sessions) = decode(&bytes, &latest)?;
        self.delete(&files)?;
        Ok(Some((latest, meta, kv, sessions)))
    }

    /// Writes `bytes` as the snapshot `meta` durably, then deletes all older
    /// snapshot files. Returns the new file's path.
    pub fn write(&self, meta: &SnapshotMeta, unique: u64, bytes: &[u8]) -> Result<PathBuf> {
        let order = meta.last_log_id.map_or(0, |l| l.index + 1);
        let path = self.dir.join(format!("{order:020}-{unique:020}.snap"));
        write_atomic(&path, bytes, &self.faults)?;
        let others: Vec<PathBuf> = self.list()?.into_iter().filter(|p| *p != path).collect();
        self.delete(&others)?;
        Ok(path)
    }

    fn delete(&self, files: &[PathBuf]) -> Result<()> {
        for f in files {
            fs::remove_file(f).map_err(|e| Error::io("delete old snapshot", f, e))?;
        }
        if !files.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::{Command, WriteSession, apply_logged};

    fn meta() -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: None,
            last_membership: Default::default(),
            snapshot_id: "t".to_string(),
        }
    }

    #[test]
    fn the_session_table_round_trips_and_format_1_still_reads() {
        let mut kv = KvStore::new();
        let mut sessions = Sessions::default();
        let cmd = Command::WithSession {
            session: WriteSession {
                client_id: 7,
                seq: 1,
                first_incomplete: 1,
            },
            at_ms: 1_000,
            write: Box::new(Command::Put {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
            }),
        };
        apply_logged(&mut kv, &mut sessions, cmd);
        assert_eq!(sessions.len(), 1);
        let what = Path::new("test");
        let (_, kv2, sessions2) = decode(&encode(&meta(), &kv, &sessions), what).unwrap();
        assert_eq!((kv2, sessions2), (kv.clone(), sessions));

        // A format 1 file, as the previous build wrote it.
        #[derive(Serialize)]
        struct V1<'a> {
            meta: &'a SnapshotMeta,
            kv: &'a KvStore,
        }
        let m = meta();
        let mut old = vec![0u8; PREFIX_BYTES];
        old = postcard::to_extend(&V1 { meta: &m, kv: &kv }, old).unwrap();
        let len = (old.len() - PREFIX_BYTES) as u64;
        let crc = crc32c::crc32c(&old[PREFIX_BYTES..]);
        old[0..8].copy_from_slice(&MAGIC);
        old[8..12].copy_from_slice(&FORMAT_V1.to_le_bytes());
        old[12..16].copy_from_slice(&crc.to_le_bytes());
        old[16..24].copy_from_slice(&len.to_le_bytes());
        let (_, kv1, sessions1) = decode(&old, what).unwrap();
        assert_eq!(kv1, kv);
        assert!(sessions1.is_empty());

        let mut future = old.clone();
        future[8..12].copy_from_slice(&3u32.to_le_bytes());
        let e = decode(&future, what).unwrap_err().to_string();
        assert!(e.contains("unknown snapshot format 3"), "{e}");
    }
}
