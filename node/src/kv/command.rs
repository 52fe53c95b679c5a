use serde::{Deserialize, Serialize};

use super::session::{SessionRefusal, WriteSession};

/// A mutation proposed through Raft. Applied deterministically by every member.
///
/// Revisions are etcd-style: the store revision grows by one for every
/// mutation that changes the store (a Put, a Delete of an existing key, a
/// successful CompareAndSwap); failed CAS and no-op deletes leave it unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Put {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    Delete {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    CompareAndSwap {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        expect: Expect,
    },
    /// A write applied at most once per (client, seq) (see `kv::session`).
    /// `at_ms` is the proposing leader's wall clock, the only time the
    /// session table knows (so every replica expires sessions alike). The
    /// inner command is never a `WithSession` (refused in apply otherwise).
    /// Added after the others: older log entries decode unchanged.
    WithSession {
        session: WriteSession,
        at_ms: u64,
        write: Box<Command>,
    },
    /// Writes that arrived at the leader together, carried by one entry so
    /// one fsync covers them all (`grpc::batcher`). Applied in order, each
    /// as if it were an entry of its own (sessions included); never nested.
    Batch(Vec<Command>),
}

/// The condition of a CompareAndSwap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expect {
    /// The current value equals this.
    Value(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The key does not exist.
    Absent,
    /// The key's `mod_revision` equals this (0 never matches an existing key).
    Revision(u64),
}

/// A key with its metadata, as stored and as returned to clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    pub create_revision: u64,
    pub mod_revision: u64,
    /// Writes since creation; 1 after the first Put.
    pub version: u64,
}

/// The outcome of applying one log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum CommandResult {
    /// Blank and membership entries.
    #[default]
    None,
    Put {
        kv: KeyValue,
        revision: u64,
    },
    Delete {
        deleted: bool,
        revision: u64,
    },
    /// A CompareAndSwap whose condition held.
    Swapped {
        kv: KeyValue,
        revision: u64,
    },
    /// A CompareAndSwap whose condition did not hold; nothing changed.
    CompareFailed {
        current: Option<KeyMeta>,
        revision: u64,
    },
    /// A session write refused before it was applied (nothing changed).
    Refused(SessionRefusal),
    /// The results of a [`Command::Batch`], in its order.
    Batch(Vec<CommandResult>),
}

/// What a failed comparison reports about the current key: its metadata, not
/// its value (kept small, since session answers are stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyMeta {
    pub create_revision: u64,
    pub mod_revision: u64,
    pub version: u64,
    pub value_len: u64,
}

impl KeyMeta {
    pub fn of(kv: &KeyValue) -> KeyMeta {
        KeyMeta {
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            value_len: kv.value.len() as u64,
        }
    }
}

impl CommandResult {
    /// The form a session keeps: without the key and value, which a retry
    /// carries again (the fingerprint guarantees they are the same) and
    /// [`CommandResult::restore`] puts back.
    pub fn compact(&self) -> CommandResult {
        let mut r = self.clone();
        if let CommandResult::Put { kv, .. } | CommandResult::Swapped { kv, .. } = &mut r {
            kv.key = Vec::new();
            kv.value = Vec::new();
        }
        r
    }

    /// A stored (compact) answer to `write`, as first given.
    pub fn restore(mut self, write: &Command) -> CommandResult {
        if let (
            CommandResult::Put { kv, .. } | CommandResult::Swapped { kv, .. },
            Command::Put { key, value } | Command::CompareAndSwap { key, value, .. },
        ) = (&mut self, write)
        {
            kv.key = key.clone();
            kv.value = value.clone();
        }
        self
    }
}

impl Command {
    pub fn key(&self) -> &[u8] {
        match self {
            Command::Put { key, .. }
            | Command::Delete { key }
            | Command::CompareAndSwap { key, .. } => key,
            Command::WithSession { write, .. } => write.key(),
            Command::Batch(writes) => writes.first().map_or(&[], |w| w.key()),
        }
    }

    /// The write itself, without its session.
    pub fn write(&self) -> &Command {
        match self {
            Command::WithSession { write, .. } => write,
            other => other,
        }
    }

    /// A checksum of the write (not its session): a retry has the same one,
    /// a different write reusing a seq almost surely not. Each field is
    /// length-prefixed so shifting bytes between key and value changes it.
    pub fn fingerprint(&self) -> u32 {
        fn field(crc: u32, bytes: &[u8]) -> u32 {
            let crc = crc32c::crc32c_append(crc, &(bytes.len() as u64).to_le_bytes());
            crc32c::crc32c_append(crc, bytes)
        }
        match self {
            Command::Put { key, value } => field(field(1, key), value),
            Command::Delete { key } => field(2, key),
            Command::CompareAndSwap { key, value, expect } => {
                let crc = field(field(3, key), value);
                match expect {
                    Expect::Value(v) => field(crc32c::crc32c_append(crc, &[0]), v),
                    Expect::Absent => crc32c::crc32c_append(crc, &[1]),
                    Expect::Revision(r) => crc32c::crc32c_append(crc, &r.to_le_bytes()),
                }
            }
            Command::WithSession { write, .. } => write.fingerprint(),
            Command::Batch(writes) => writes.iter().fold(4, |crc, w| {
                crc32c::crc32c_append(crc, &w.fingerprint().to_le_bytes())
            }),
        }
    }

    /// Bytes of keys and values (what a proposal batch is bounded by).
    pub fn payload_bytes(&self) -> usize {
        match self {
            Command::Put { key, value } => key.len() + value.len(),
            Command::Delete { key } => key.len(),
            Command::CompareAndSwap { key, value, expect } => {
                key.len()
                    + value.len()
                    + match expect {
                        Expect::Value(v) => v.len(),
                        _ => 0,
                    }
            }
            Command::WithSession { write, .. } => write.payload_bytes(),
            Command::Batch(writes) => writes.iter().map(Command::payload_bytes).sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_tell_writes_apart_and_ignore_the_session() {
        let put = |k: &str, v: &str| Command::Put {
            key: k.into(),
            value: v.into(),
        };
        assert_eq!(put("a", "b").fingerprint(), put("a", "b").fingerprint());
        assert_ne!(put("ab", "").fingerprint(), put("a", "b").fingerprint());
        assert_ne!(
            put("a", "").fingerprint(),
            Command::Delete { key: b"a".to_vec() }.fingerprint()
        );
        let with = Command::WithSession {
            session: WriteSession {
                client_id: 1,
                seq: 1,
                first_incomplete: 1,
            },
            at_ms: 5,
            write: Box::new(put("a", "b")),
        };
        assert_eq!(with.fingerprint(), put("a", "b").fingerprint());
    }

    #[test]
    fn a_compact_answer_is_restored_from_the_retried_write() {
        let write = Command::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        };
        let full = CommandResult::Put {
            kv: KeyValue {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                create_revision: 1,
                mod_revision: 3,
                version: 2,
            },
            revision: 3,
        };
        let compact = full.compact();
        assert_ne!(compact, full);
        assert_eq!(compact.restore(&write), full);
    }
}
