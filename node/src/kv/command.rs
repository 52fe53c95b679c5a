use serde::{Deserialize, Serialize};

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
        current: Option<KeyValue>,
        revision: u64,
    },
}

impl Command {
    pub fn key(&self) -> &[u8] {
        match self {
            Command::Put { key, .. }
            | Command::Delete { key }
            | Command::CompareAndSwap { key, .. } => key,
        }
    }
}
