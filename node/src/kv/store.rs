//! The in-memory key-value map and the deterministic apply of a [`Command`].
//!
//! Pure logic, no I/O: the state machine in `storage::state_machine` wraps it
//! with locking, snapshots and the applied log id.
//!
//! The map is an `imbl::OrdMap` (a persistent B-tree): cloning it is O(1) and
//! shares all nodes, so a snapshot can be taken from the apply path without
//! copying the data, and serialized elsewhere while apply keeps mutating its
//! own copy. Keys and values are `Bytes`, so the copy-on-write of a tree node
//! clones reference counts, not the values.

use std::ops::Bound;

use bytes::Bytes;
use imbl::OrdMap;
use serde::{Deserialize, Serialize};

use super::session::{Answer, SessionLimits, SessionRefusal, SessionTable};
use super::{Command, CommandResult, Expect, KeyMeta, KeyValue};

/// What the map holds per key (the key itself is the map key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredValue {
    pub value: Bytes,
    pub create_revision: u64,
    pub mod_revision: u64,
    pub version: u64,
}

/// The KV data with etcd-style revisions (see [`Command`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvStore {
    map: OrdMap<Bytes, StoredValue>,
    /// The store revision: the number of mutations applied so far.
    revision: u64,
}

impl KvStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The store revision (0 for a store that never changed).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get(&self, key: &[u8]) -> Option<KeyValue> {
        self.map.get(key).map(|v| to_key_value(key, v))
    }

    /// Keys in `[start, end)` in key order (`end == None`: no upper bound),
    /// at most `limit` of them (`limit == 0`: no limit, as in etcd; callers on
    /// a request path pass a bounded limit). The flag is true when more keys
    /// in the range exist beyond the returned ones.
    pub fn range(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> (Vec<KeyValue>, bool) {
        self.range_bounded(start, end, limit, usize::MAX)
    }

    /// [`KvStore::range`] that also stops (with `more`) before the keys and
    /// values returned would exceed `bytes_max`; the first pair is always
    /// returned, so a caller paging with `start` always makes progress.
    pub fn range_bounded(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
        bytes_max: usize,
    ) -> (Vec<KeyValue>, bool) {
        if let Some(end) = end
            && end <= start
        {
            return (Vec::new(), false);
        }
        let upper = match end {
            Some(end) => Bound::Excluded(end),
            None => Bound::Unbounded,
        };
        let bounds: (Bound<&[u8]>, Bound<&[u8]>) = (Bound::Included(start), upper);
        let mut out = Vec::new();
        let mut more = false;
        let mut bytes = 0usize;
        for (k, v) in self.map.range::<_, [u8]>(bounds) {
            let size = k.len() + v.value.len();
            if (limit != 0 && out.len() == limit)
                || (!out.is_empty() && bytes.saturating_add(size) > bytes_max)
            {
                more = true;
                break;
            }
            bytes += size;
            out.push(to_key_value(k, v));
        }
        (out, more)
    }

    /// A store holding exactly `entries` at `revision` (a restored backup).
    /// Refuses a shape apply could never produce: keys out of order or
    /// repeated, a key changed after `revision`, a version 0.
    pub fn from_parts(
        revision: u64,
        entries: impl IntoIterator<Item = (Bytes, StoredValue)>,
    ) -> Result<KvStore, String> {
        let mut map = OrdMap::new();
        let mut last: Option<Bytes> = None;
        for (key, v) in entries {
            if last.as_ref().is_some_and(|l| *l >= key) {
                return Err(format!("key {key:?} out of order"));
            }
            if v.version == 0 || v.create_revision > v.mod_revision || v.mod_revision > revision {
                return Err(format!(
                    "key {key:?}: version {}, create_revision {}, mod_revision {} at store revision {revision}",
                    v.version, v.create_revision, v.mod_revision
                ));
            }
            last = Some(key.clone());
            map.insert(key, v);
        }
        Ok(KvStore { map, revision })
    }

    /// Iterates over all keys in order (for snapshots and tests).
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &StoredValue)> {
        self.map.iter()
    }

    /// Applies one command. Deterministic: every member computes the same
    /// result from the same store and command.
    pub fn apply(&mut self, cmd: &Command) -> CommandResult {
        match cmd {
            Command::Put { key, value } => {
                let kv = self.put(key, Bytes::copy_from_slice(value));
                CommandResult::Put {
                    kv,
                    revision: self.revision,
                }
            }
            Command::Delete { key } => {
                let deleted = self.map.remove(key.as_slice()).is_some();
                if deleted {
                    self.revision += 1;
                }
                CommandResult::Delete {
                    deleted,
                    revision: self.revision,
                }
            }
            Command::CompareAndSwap { key, value, expect } => {
                let current = self.map.get(key.as_slice());
                let holds = match (expect, current) {
                    (Expect::Value(v), Some(cur)) => cur.value.as_ref() == v.as_slice(),
                    (Expect::Value(_), None) => false,
                    (Expect::Absent, cur) => cur.is_none(),
                    (Expect::Revision(r), Some(cur)) => cur.mod_revision == *r,
                    // etcd: a missing key compares as mod_revision 0.
                    (Expect::Revision(r), None) => *r == 0,
                };
                if holds {
                    let kv = self.put(key, Bytes::copy_from_slice(value));
                    CommandResult::Swapped {
                        kv,
                        revision: self.revision,
                    }
                } else {
                    let current = current.map(|v| KeyMeta {
                        create_revision: v.create_revision,
                        mod_revision: v.mod_revision,
                        version: v.version,
                        value_len: v.value.len() as u64,
                    });
                    CommandResult::CompareFailed {
                        current,
                        revision: self.revision,
                    }
                }
            }
            // Without de-duplication: the state machine applies logged
            // entries with [`apply_logged`], which keeps the sessions.
            Command::WithSession { write, .. } => self.apply(write),
            Command::Batch(writes) => {
                CommandResult::Batch(writes.iter().map(|w| self.apply(w)).collect())
            }
        }
    }

    /// Like [`KvStore::apply`], taking the command by value so a Put's
    /// value moves into the store without a copy (the state machine's path).
    pub fn apply_owned(&mut self, cmd: Command) -> CommandResult {
        match cmd {
            Command::Put { key, value } => {
                let kv = self.put(&key, Bytes::from(value));
                CommandResult::Put {
                    kv,
                    revision: self.revision,
                }
            }
            other => self.apply(&other),
        }
    }
}

/// Applies one logged command to the store and the session table: a write
/// with a session at most once (`kv::session`), any other as is.
pub fn apply_logged(
    kv: &mut KvStore,
    sessions: &mut SessionTable<CommandResult>,
    cmd: Command,
) -> CommandResult {
    let (session, at_ms, write) = match cmd {
        Command::WithSession {
            session,
            at_ms,
            write,
        } => (session, at_ms, write),
        Command::Batch(writes) => {
            let results = writes
                .into_iter()
                .map(|w| match w {
                    Command::Batch(_) => CommandResult::Refused(SessionRefusal::Invalid(
                        "a batch inside a batch".to_string(),
                    )),
                    w => apply_logged(kv, sessions, w),
                })
                .collect();
            return CommandResult::Batch(results);
        }
        other => return kv.apply_owned(other),
    };
    if matches!(*write, Command::WithSession { .. } | Command::Batch(_)) {
        return CommandResult::Refused(SessionRefusal::Invalid(
            "a session write must hold one plain write".to_string(),
        ));
    }
    let fingerprint = write.fingerprint();
    let limits = SessionLimits::STANDARD;
    // The closure cannot take `write` by value (it is needed to restore a
    // replayed answer), so a fresh Put clones its value once here.
    match sessions.once(session, at_ms, fingerprint, &limits, || {
        kv.apply(&write).compact()
    }) {
        Ok(Answer::Fresh(r) | Answer::Replayed(r)) => r.restore(&write),
        Err(refusal) => CommandResult::Refused(refusal),
    }
}

impl KvStore {
    fn put(&mut self, key: &[u8], value: Bytes) -> KeyValue {
        self.revision += 1;
        let revision = self.revision;
        let (key, stored) = match self.map.get_key_value(key) {
            // Reuse the stored key (a reference count, no allocation).
            Some((k, old)) => (
                k.clone(),
                StoredValue {
                    value,
                    create_revision: old.create_revision,
                    mod_revision: revision,
                    version: old.version + 1,
                },
            ),
            None => (
                Bytes::copy_from_slice(key),
                StoredValue {
                    value,
                    create_revision: revision,
                    mod_revision: revision,
                    version: 1,
                },
            ),
        };
        let kv = to_key_value(&key, &stored);
        self.map.insert(key, stored);
        kv
    }
}

fn to_key_value(key: &[u8], v: &StoredValue) -> KeyValue {
    KeyValue {
        key: key.to_vec(),
        value: v.value.to_vec(),
        create_revision: v.create_revision,
        mod_revision: v.mod_revision,
        version: v.version,
    }
}

/// The smallest key greater than every key that starts with `prefix`, i.e.
/// the exclusive end of a prefix range; `None` when no such key exists
/// (empty prefix or all bytes 0xff): the range is unbounded above.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str, v: &str) -> Command {
        Command::Put {
            key: k.into(),
            value: v.into(),
        }
    }

    #[test]
    fn from_parts_rebuilds_a_store_and_refuses_impossible_shapes() {
        let mut s = KvStore::new();
        s.apply(&put("a", "1"));
        s.apply(&put("b", "2"));
        s.apply(&put("a", "3"));
        s.apply(&Command::Delete { key: b"b".to_vec() });
        let parts = || s.iter().map(|(k, v)| (k.clone(), v.clone()));
        assert_eq!(KvStore::from_parts(s.revision(), parts()).unwrap(), s);
        let e = KvStore::from_parts(2, parts()).unwrap_err();
        assert!(e.contains("mod_revision 3 at store revision 2"), "{e}");
        let twice = parts().chain(parts());
        assert!(
            KvStore::from_parts(4, twice)
                .unwrap_err()
                .contains("out of order")
        );
    }

    #[test]
    fn put_sets_revisions_and_version() {
        let mut s = KvStore::new();
        let r = s.apply(&put("a", "1"));
        let CommandResult::Put { kv, revision } = r else {
            panic!("{r:?}")
        };
        assert_eq!(revision, 1);
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (1, 1, 1));
        s.apply(&put("b", "x"));
        let CommandResult::Put { kv, revision } = s.apply(&put("a", "2")) else {
            panic!()
        };
        assert_eq!(revision, 3);
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (1, 3, 2));
        assert_eq!(s.get(b"a").unwrap().value, b"2");
    }

    #[test]
    fn delete_of_missing_key_keeps_revision() {
        let mut s = KvStore::new();
        s.apply(&put("a", "1"));
        assert_eq!(
            s.apply(&Command::Delete {
                key: b"zz".to_vec()
            }),
            CommandResult::Delete {
                deleted: false,
                revision: 1
            }
        );
        assert_eq!(
            s.apply(&Command::Delete { key: b"a".to_vec() }),
            CommandResult::Delete {
                deleted: true,
                revision: 2
            }
        );
        assert_eq!(s.get(b"a"), None);
        // Recreated key starts a new life.
        let CommandResult::Put { kv, .. } = s.apply(&put("a", "3")) else {
            panic!()
        };
        assert_eq!((kv.create_revision, kv.version), (3, 1));
    }

    #[test]
    fn compare_and_swap_cases() {
        let mut s = KvStore::new();
        let cas = |v: &str, expect: Expect| Command::CompareAndSwap {
            key: b"k".to_vec(),
            value: v.into(),
            expect,
        };
        // Absent holds on a missing key.
        let CommandResult::Swapped { kv, revision } = s.apply(&cas("1", Expect::Absent)) else {
            panic!()
        };
        assert_eq!((revision, kv.version), (1, 1));
        // Absent fails on an existing key, revision unchanged.
        let r = s.apply(&cas("2", Expect::Absent));
        let CommandResult::CompareFailed { current, revision } = r else {
            panic!("{r:?}")
        };
        assert_eq!(revision, 1);
        assert_eq!(current.unwrap().value_len, 1);
        // Value.
        assert!(matches!(
            s.apply(&cas("2", Expect::Value(b"nope".to_vec()))),
            CommandResult::CompareFailed { .. }
        ));
        assert!(matches!(
            s.apply(&cas("2", Expect::Value(b"1".to_vec()))),
            CommandResult::Swapped { revision: 2, .. }
        ));
        // Revision.
        assert!(matches!(
            s.apply(&cas("3", Expect::Revision(1))),
            CommandResult::CompareFailed { revision: 2, .. }
        ));
        assert!(matches!(
            s.apply(&cas("3", Expect::Revision(0))),
            CommandResult::CompareFailed { .. }
        ));
        let r = s.apply(&cas("3", Expect::Revision(2)));
        let CommandResult::Swapped { kv, revision } = r else {
            panic!("{r:?}")
        };
        assert_eq!(
            (revision, kv.create_revision, kv.mod_revision, kv.version),
            (3, 1, 3, 3)
        );
        // Missing key: Value fails, Revision(0) holds (etcd compares a missing key as 0).
        let cas_m = |expect| Command::CompareAndSwap {
            key: b"m".to_vec(),
            value: b"v".to_vec(),
            expect,
        };
        assert!(matches!(
            s.apply(&cas_m(Expect::Value(vec![]))),
            CommandResult::CompareFailed { current: None, .. }
        ));
        assert!(matches!(
            s.apply(&cas_m(Expect::Revision(0))),
            CommandResult::Swapped { revision: 4, .. }
        ));
    }

    #[test]
    fn range_with_limit_reports_more() {
        let mut s = KvStore::new();
        for k in ["a", "b", "c", "d"] {
            s.apply(&put(k, k));
        }
        let keys = |v: Vec<KeyValue>| {
            v.into_iter()
                .map(|kv| String::from_utf8(kv.key).unwrap())
                .collect::<Vec<_>>()
        };
        let (v, more) = s.range(b"b", None, 2);
        assert_eq!(
            (keys(v), more),
            (vec!["b".to_string(), "c".to_string()], true)
        );
        let (v, more) = s.range(b"b", Some(b"d"), 2);
        assert_eq!(
            (keys(v), more),
            (vec!["b".to_string(), "c".to_string()], false)
        );
        let (v, more) = s.range(b"", None, 0);
        assert_eq!((v.len(), more), (4, false));
        let (v, more) = s.range(b"c", Some(b"b"), 10);
        assert_eq!((v.len(), more), (0, false));
    }

    mod batches {
        use proptest::prelude::*;

        use super::super::*;
        use crate::kv::WriteSession;

        fn arb_write() -> impl Strategy<Value = Command> {
            let key = prop::sample::select(vec![b"a".to_vec(), b"b".to_vec()]);
            let value = prop::sample::select(vec![b"1".to_vec(), b"2".to_vec()]);
            let plain = prop_oneof![
                (key.clone(), value.clone()).prop_map(|(key, value)| Command::Put { key, value }),
                key.clone().prop_map(|key| Command::Delete { key }),
                (key, value.clone(), prop::option::of(value)).prop_map(|(key, value, e)| {
                    Command::CompareAndSwap {
                        key,
                        value,
                        expect: e.map_or(Expect::Absent, Expect::Value),
                    }
                }),
            ];
            // Some with a session (two clients, a few seqs: retries happen).
            (plain, prop::option::of((1u64..3, 1u64..4))).prop_map(|(w, s)| match s {
                None => w,
                Some((client_id, seq)) => Command::WithSession {
                    session: WriteSession {
                        client_id,
                        seq,
                        first_incomplete: 1,
                    },
                    at_ms: 1,
                    write: Box::new(w),
                },
            })
        }

        proptest! {
            /// A batch entry is exactly its writes applied one entry each, in
            /// order: same results, same store, same session table.
            #[test]
            fn a_batch_applies_as_its_writes_one_by_one(
                writes in prop::collection::vec(arb_write(), 1..12),
            ) {
                let (mut kv1, mut s1) = (KvStore::new(), SessionTable::default());
                let one_by_one: Vec<CommandResult> = writes
                    .iter()
                    .map(|w| apply_logged(&mut kv1, &mut s1, w.clone()))
                    .collect();
                let (mut kv2, mut s2) = (KvStore::new(), SessionTable::default());
                let batched = apply_logged(&mut kv2, &mut s2, Command::Batch(writes));
                prop_assert_eq!(batched, CommandResult::Batch(one_by_one));
                prop_assert_eq!(kv1, kv2);
                prop_assert_eq!(s1, s2);
            }
        }

        #[test]
        fn a_batch_inside_a_batch_is_refused_and_changes_nothing() {
            let (mut kv, mut s) = (KvStore::new(), SessionTable::default());
            let put = Command::Put {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
            };
            let r = apply_logged(
                &mut kv,
                &mut s,
                Command::Batch(vec![Command::Batch(vec![put.clone()]), put]),
            );
            let CommandResult::Batch(rs) = r else {
                panic!("{r:?}")
            };
            assert!(matches!(rs[0], CommandResult::Refused(_)), "{rs:?}");
            assert!(matches!(rs[1], CommandResult::Put { revision: 1, .. }));
            assert_eq!(kv.revision(), 1);
        }
    }

    #[test]
    fn prefix_end_cases() {
        assert_eq!(prefix_end(b"abc"), Some(b"abd".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }
}
