//! The state machine: KV semantics against a model, snapshots, the reader API.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, Membership, RaftSnapshotBuilder};
use proptest::prelude::*;
use raftkv_node::kv::{Command, CommandResult, Expect, KeyValue, KvStore, prefix_end};
use raftkv_node::storage::{self, AppliedState, Error, StorageOptions};
use raftkv_node::typ::{Entry, LogId, StoredMembership};

fn log_id(index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn entry(index: u64, cmd: Command) -> Entry {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(cmd),
    }
}

fn put(k: &str, v: &str) -> Command {
    Command::Put {
        key: k.into(),
        value: v.into(),
    }
}

fn membership_entry(index: u64) -> Entry {
    let m = Membership::new(vec![BTreeSet::from([1, 2, 3])], None);
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Membership(m),
    }
}

#[tokio::test]
async fn snapshot_build_install_and_restart_round_trip() {
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let a = storage::open(a_dir.path(), StorageOptions::default()).unwrap();
    let mut sm_a = a.state_machine.clone();
    let reader_a = a.state_machine.reader();
    let mut watch = reader_a.subscribe();

    let mut entries = vec![membership_entry(1)];
    for i in 0..100u64 {
        entries.push(entry(2 + i, put(&format!("k{i:03}"), &format!("v{i}"))));
    }
    entries.push(entry(
        102,
        Command::Delete {
            key: b"k050".to_vec(),
        },
    ));
    sm_a.apply(entries).await.unwrap();
    assert_eq!(
        reader_a.applied(),
        AppliedState {
            index: 102,
            revision: 101
        }
    );
    assert!(watch.has_changed().unwrap());
    assert_eq!(
        *watch.borrow_and_update(),
        AppliedState {
            index: 102,
            revision: 101
        }
    );

    let snap = sm_a
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert_eq!(snap.meta.last_log_id, Some(log_id(102)));
    // Apply goes on after the snapshot; the snapshot does not see it.
    sm_a.apply([entry(103, put("late", "x"))]).await.unwrap();

    let b = storage::open(b_dir.path(), StorageOptions::default()).unwrap();
    let mut sm_b = b.state_machine.clone();
    let reader_b = sm_b.reader();
    let mut data = sm_b.begin_receiving_snapshot().await.unwrap();
    *data = *sm_a.get_current_snapshot().await.unwrap().unwrap().snapshot;
    sm_b.install_snapshot(&snap.meta, data).await.unwrap();
    assert_eq!(
        reader_b.applied(),
        AppliedState {
            index: 102,
            revision: 101
        }
    );
    assert_eq!(reader_b.get(b"k007").unwrap().value, b"v7");
    assert_eq!(reader_b.get(b"k050"), None);
    assert_eq!(reader_b.get(b"late"), None);
    let (applied, membership) = sm_b.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(102)));
    assert_eq!(
        membership,
        StoredMembership::new(
            Some(log_id(1)),
            Membership::new(vec![BTreeSet::from([1, 2, 3])], None)
        )
    );
    let (all_a, _) = reader_a.range(b"k", Some(b"l"), 0);
    let (all_b, _) = reader_b.range(b"k", Some(b"l"), 0);
    assert_eq!(all_a, all_b);
    assert_eq!(all_b.len(), 99);

    // After a restart, B comes back from its snapshot file.
    let meta = sm_b.get_current_snapshot().await.unwrap().unwrap().meta;
    drop((b, sm_b, reader_b));
    let b = storage::open(b_dir.path(), StorageOptions::default()).unwrap();
    let mut sm_b = b.state_machine.clone();
    assert_eq!(sm_b.applied_state().await.unwrap().0, Some(log_id(102)));
    assert_eq!(sm_b.reader().get(b"k099").unwrap().value, b"v99");
    assert_eq!(
        sm_b.get_current_snapshot().await.unwrap().unwrap().meta,
        meta
    );
    // Exactly one snapshot file is kept.
    let files = std::fs::read_dir(b_dir.path().join("snapshots"))
        .unwrap()
        .count();
    assert_eq!(files, 1);
}

#[tokio::test]
async fn a_corrupted_snapshot_is_refused_on_install_and_on_open() {
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let a = storage::open(a_dir.path(), StorageOptions::default()).unwrap();
    let mut sm_a = a.state_machine.clone();
    sm_a.apply([entry(1, put("a", "1"))]).await.unwrap();
    let snap = sm_a
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let mut bytes = snap.snapshot.into_inner();
    let n = bytes.len();
    bytes[n - 1] ^= 0xff;

    let b = storage::open(b_dir.path(), StorageOptions::default()).unwrap();
    let mut sm_b = b.state_machine.clone();
    let e = sm_b
        .install_snapshot(&snap.meta, Box::new(std::io::Cursor::new(bytes)))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("checksum"), "{e}");
    assert_eq!(sm_b.reader().get(b"a"), None);

    // On disk: flip a byte of A's snapshot file, then reopen A.
    drop((a, sm_a));
    let path = std::fs::read_dir(a_dir.path().join("snapshots"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut file = std::fs::read(&path).unwrap();
    file[30] ^= 1;
    std::fs::write(&path, file).unwrap();
    let e = storage::open(a_dir.path(), StorageOptions::default()).unwrap_err();
    assert!(
        matches!(&e, Error::Corrupt { path: p, .. } if *p == path),
        "{e}"
    );
}

// ------------------------------------------------------------ model test

/// The simplest model of the store: a BTreeMap and a counter.
#[derive(Default)]
struct Model {
    map: BTreeMap<Vec<u8>, KeyValue>,
    revision: u64,
}

impl Model {
    fn apply(&mut self, cmd: &Command) -> CommandResult {
        match cmd {
            Command::Put { key, value } => {
                let kv = self.write(key, value);
                CommandResult::Put {
                    kv,
                    revision: self.revision,
                }
            }
            Command::Delete { key } => {
                let deleted = self.map.remove(key).is_some();
                self.revision += deleted as u64;
                CommandResult::Delete {
                    deleted,
                    revision: self.revision,
                }
            }
            Command::CompareAndSwap { key, value, expect } => {
                let cur = self.map.get(key).cloned();
                let ok = match expect {
                    Expect::Value(v) => cur.as_ref().is_some_and(|c| &c.value == v),
                    Expect::Absent => cur.is_none(),
                    Expect::Revision(r) => cur.as_ref().map_or(0, |c| c.mod_revision) == *r,
                };
                if ok {
                    let kv = self.write(key, value);
                    CommandResult::Swapped {
                        kv,
                        revision: self.revision,
                    }
                } else {
                    CommandResult::CompareFailed {
                        current: cur.as_ref().map(raftkv_node::kv::KeyMeta::of),
                        revision: self.revision,
                    }
                }
            }
            // The model has no sessions: the property feeds plain writes.
            Command::WithSession { write, .. } => self.apply(write),
            Command::Batch(writes) => {
                CommandResult::Batch(writes.iter().map(|w| self.apply(w)).collect())
            }
        }
    }

    fn write(&mut self, key: &[u8], value: &[u8]) -> KeyValue {
        self.revision += 1;
        let prev = self.map.get(key);
        let kv = KeyValue {
            key: key.to_vec(),
            value: value.to_vec(),
            create_revision: prev.map_or(self.revision, |p| p.create_revision),
            mod_revision: self.revision,
            version: prev.map_or(1, |p| p.version + 1),
        };
        self.map.insert(key.to_vec(), kv.clone());
        kv
    }

    fn range(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> (Vec<KeyValue>, bool) {
        if end.is_some_and(|e| e <= start) {
            return (vec![], false);
        }
        let upper = end.map_or(Bound::Unbounded, |e| Bound::Excluded(e.to_vec()));
        let all: Vec<KeyValue> = self
            .map
            .range((Bound::Included(start.to_vec()), upper))
            .map(|(_, v)| v.clone())
            .collect();
        if limit != 0 && all.len() > limit {
            (all[..limit].to_vec(), true)
        } else {
            (all, false)
        }
    }
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    // A small alphabet so keys collide and prefixes overlap.
    proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(0xffu8)], 1..4)
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(0u8..3, 0..3)
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        (key(), value()).prop_map(|(key, value)| Command::Put { key, value }),
        key().prop_map(|key| Command::Delete { key }),
        (key(), value(), value()).prop_map(|(key, value, v)| Command::CompareAndSwap {
            key,
            value,
            expect: Expect::Value(v)
        }),
        (key(), value()).prop_map(|(key, value)| Command::CompareAndSwap {
            key,
            value,
            expect: Expect::Absent
        }),
        (key(), value(), 0u64..6).prop_map(|(key, value, r)| Command::CompareAndSwap {
            key,
            value,
            expect: Expect::Revision(r)
        }),
    ]
}

proptest! {
    #[test]
    fn kv_store_matches_the_model(cmds in proptest::collection::vec(command(), 1..60),
                                  start in key(), end in proptest::option::of(key()), limit in 0usize..5) {
        let mut store = KvStore::new();
        let mut owned = KvStore::new();
        let mut model = Model::default();
        for cmd in &cmds {
            let want = model.apply(cmd);
            prop_assert_eq!(&store.apply(cmd), &want, "command {:?}", cmd);
            prop_assert_eq!(&owned.apply_owned(cmd.clone()), &want, "command {:?}", cmd);
            prop_assert_eq!(store.revision(), model.revision);
        }
        prop_assert_eq!(store.range(&start, end.as_deref(), limit), model.range(&start, end.as_deref(), limit));
        let end = prefix_end(&start);
        prop_assert_eq!(store.range(&start, end.as_deref(), 0), model.range(&start, end.as_deref(), 0));
        for (k, v) in &model.map {
            prop_assert_eq!(store.get(k), Some(v.clone()));
        }
        prop_assert_eq!(store.len(), model.map.len());
        prop_assert_eq!(&owned, &store);
    }
}
