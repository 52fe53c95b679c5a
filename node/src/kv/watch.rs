//! Watch: the changes apply makes, handed to the watchers of this member.
//!
//! The state machine asks [`WatchHub::active`] once per apply batch, under its
//! write lock; only when someone watches does it derive the changes of each
//! entry ([`changes_of`], pure) and [`WatchHub::publish`] them. A watcher
//! subscribes under the read lock of the same state ([`WatchHub::subscribe`]),
//! so it sees exactly the changes after the revision it read: none missed,
//! none twice.
//!
//! Bounds ([`WATCHERS_MAX`], [`WATCH_BUFFER_ENTRIES`]): the published entries
//! sit in one ring shared by every watcher (a `tokio::sync::broadcast`); a
//! watcher more than the ring behind ends with [`WatchEnd::Behind`] naming the
//! first revision it did not get, never with a silent gap.

use std::sync::Arc;

use tokio::sync::{Semaphore, broadcast};

use super::{Command, CommandResult, KeyValue};

/// Watchers one member serves at once. Each costs a stream and a cursor into
/// the shared ring (no buffer of its own); the bound keeps a reconnect storm
/// from holding unbounded streams. More are refused (RESOURCE_EXHAUSTED).
pub const WATCHERS_MAX: usize = 256;

/// Applied entries the ring keeps for the slowest watcher. An entry's changes
/// are at most one proposal (1 MiB of writes by default, or one maximal
/// write), so a lagging watcher holds up to this many entries' values in
/// memory; with 100-byte values that is under a megabyte. The values are
/// dropped as soon as every watcher has read them, and nothing is kept when
/// nobody watches.
pub const WATCH_BUFFER_ENTRIES: usize = 256;

/// What a change did to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Put,
    Delete,
}

/// One change to one key, at one store revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    /// Put: the key as written. Delete: the key, `mod_revision` the
    /// deletion's revision, the other fields zero.
    pub kv: KeyValue,
}

impl Change {
    pub fn revision(&self) -> u64 {
        self.kv.mod_revision
    }
}

/// The keys a watcher wants: one key, or a prefix (empty: every key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchFilter {
    Key(Vec<u8>),
    Prefix(Vec<u8>),
}

impl WatchFilter {
    pub fn matches(&self, key: &[u8]) -> bool {
        match self {
            WatchFilter::Key(k) => k.as_slice() == key,
            WatchFilter::Prefix(p) => key.starts_with(p),
        }
    }
}

/// For each write of an entry's command, in apply order, the key a Delete
/// names (a Delete's result does not carry its key). Writes are what
/// `apply_logged` answers one result for: the command itself, or each item of
/// a top-level batch.
pub fn delete_keys(cmd: &Command) -> Vec<Option<Vec<u8>>> {
    fn one(w: &Command) -> Option<Vec<u8>> {
        match w {
            Command::Delete { key } => Some(key.clone()),
            Command::WithSession { write, .. } => match write.as_ref() {
                Command::Delete { key } => Some(key.clone()),
                _ => None,
            },
            _ => None,
        }
    }
    match cmd {
        Command::Batch(writes) => writes.iter().map(one).collect(),
        w => vec![one(w)],
    }
}

/// The changes one applied entry made, in revision order: `keys` from
/// [`delete_keys`] of its command, `result` what apply answered, `before` the
/// store revision before the entry. Every write that changed the store bumped
/// its revision by one, so a result at or below the revision reached so far is
/// a session's replayed answer (applied earlier, even earlier in this batch:
/// nothing changed now); a failed compare, a refused write and a delete of a
/// missing key changed nothing.
pub fn changes_of(keys: &[Option<Vec<u8>>], result: &CommandResult, before: u64) -> Vec<Change> {
    let results: &[CommandResult] = match result {
        CommandResult::Batch(rs) => rs,
        r => std::slice::from_ref(r),
    };
    let mut out = Vec::new();
    let mut reached = before;
    for (i, r) in results.iter().enumerate() {
        match r {
            CommandResult::Put { kv, revision } | CommandResult::Swapped { kv, revision }
                if *revision > reached =>
            {
                reached = *revision;
                out.push(Change {
                    kind: ChangeKind::Put,
                    kv: kv.clone(),
                });
            }
            CommandResult::Delete {
                deleted: true,
                revision,
            } if *revision > reached => {
                reached = *revision;
                let Some(Some(key)) = keys.get(i) else {
                    // apply answered a delete for a write that was not one:
                    // the two walks over the command disagree.
                    unreachable!("a delete result without a delete key at write {i}");
                };
                out.push(Change {
                    kind: ChangeKind::Delete,
                    kv: KeyValue {
                        key: key.clone(),
                        value: Vec::new(),
                        create_revision: 0,
                        mod_revision: *revision,
                        version: 0,
                    },
                });
            }
            _ => {}
        }
    }
    out
}

/// What the ring carries.
#[derive(Debug)]
enum Published {
    /// One entry's changes.
    Changes(Vec<Change>),
    /// The state was replaced by a snapshot at this revision: the changes
    /// up to it were never seen one by one here.
    Replaced { revision: u64 },
}

/// The publishing end, owned by the state machine.
#[derive(Debug)]
pub struct WatchHub {
    tx: broadcast::Sender<Arc<Published>>,
    slots: Arc<Semaphore>,
}

impl Default for WatchHub {
    fn default() -> Self {
        WatchHub {
            tx: broadcast::channel(WATCH_BUFFER_ENTRIES).0,
            slots: Arc::new(Semaphore::new(WATCHERS_MAX)),
        }
    }
}

/// Refused: [`WATCHERS_MAX`] watchers already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this member already serves {WATCHERS_MAX} watchers; watch another member or retry later")]
pub struct WatchersFull;

impl WatchHub {
    /// Whether anyone watches (ask under the state's write lock: nobody can
    /// subscribe while it is held).
    pub fn active(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Hands one entry's changes to the watchers (nothing if there are none).
    pub fn publish(&self, changes: Vec<Change>) {
        if !changes.is_empty() {
            let _ = self.tx.send(Arc::new(Published::Changes(changes)));
        }
    }

    /// The state was replaced by a snapshot: every watcher ends.
    pub fn replaced(&self, revision: u64) {
        let _ = self.tx.send(Arc::new(Published::Replaced { revision }));
    }

    /// A watcher of the changes after `applied` (the store revision read
    /// under the same lock that excludes apply), from revision `from` on
    /// (`from > applied`).
    pub fn subscribe(
        &self,
        filter: WatchFilter,
        applied: u64,
        from: u64,
    ) -> Result<Watcher, WatchersFull> {
        let slot = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| WatchersFull)?;
        Ok(Watcher {
            rx: self.tx.subscribe(),
            filter,
            from,
            seen: applied,
            _slot: slot,
        })
    }
}

/// Why a watch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchEnd {
    /// The watcher fell more than the ring behind: `next` is the first
    /// revision it did not get.
    Behind { next: u64 },
    /// The member installed a snapshot at `revision`.
    Replaced { revision: u64 },
    /// The state machine is gone (the node stops).
    Closed,
}

/// One watcher's cursor.
#[derive(Debug)]
pub struct Watcher {
    rx: broadcast::Receiver<Arc<Published>>,
    filter: WatchFilter,
    from: u64,
    /// The last revision this watcher has looked at.
    seen: u64,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Watcher {
    /// The next changes this watcher wants (never empty), in revision order.
    pub async fn next(&mut self) -> Result<Vec<Change>, WatchEnd> {
        loop {
            let msg = match self.rx.recv().await {
                Ok(m) => m,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    return Err(WatchEnd::Behind {
                        next: self.seen + 1,
                    });
                }
                Err(broadcast::error::RecvError::Closed) => return Err(WatchEnd::Closed),
            };
            match &*msg {
                Published::Replaced { revision } => {
                    return Err(WatchEnd::Replaced {
                        revision: *revision,
                    });
                }
                Published::Changes(changes) => {
                    let wanted: Vec<Change> = changes
                        .iter()
                        .filter(|c| c.revision() >= self.from && self.filter.matches(&c.kv.key))
                        .cloned()
                        .collect();
                    if let Some(last) = changes.last() {
                        debug_assert!(last.revision() > self.seen, "revisions go backwards");
                        self.seen = last.revision();
                    }
                    if !wanted.is_empty() {
                        return Ok(wanted);
                    }
                }
            }
        }
    }

    /// The last revision this watcher has looked at (matching or not).
    pub fn seen(&self) -> u64 {
        self.seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::session::SessionTable;
    use crate::kv::{Expect, KvStore, WriteSession, apply_logged};
    use proptest::prelude::*;

    /// A change as the oracle sees it: kind, key, value (puts), revision.
    type Seen = (ChangeKind, Vec<u8>, Option<Vec<u8>>, u64);

    /// The oracle: apply each write of the entry on its own (as `Batch`
    /// promises) and diff the map before and after it. A write that bumped
    /// the revision changed exactly one key.
    fn oracle(
        kv: &mut KvStore,
        sessions: &mut SessionTable<CommandResult>,
        cmd: Command,
    ) -> Vec<Seen> {
        let writes = match cmd {
            Command::Batch(ws) => ws,
            w => vec![w],
        };
        let mut out = Vec::new();
        for w in writes {
            let before = kv.clone();
            let single = match w {
                // A nested batch is refused as one write.
                Command::Batch(_) => Command::Batch(vec![w]),
                w => w,
            };
            apply_logged(kv, sessions, single);
            if kv.revision() == before.revision() {
                assert_eq!(kv.iter().count(), before.iter().count());
                continue;
            }
            assert_eq!(kv.revision(), before.revision() + 1);
            let mut keys: Vec<Vec<u8>> = kv
                .iter()
                .map(|(k, _)| k.to_vec())
                .chain(before.iter().map(|(k, _)| k.to_vec()))
                .collect();
            keys.sort();
            keys.dedup();
            let changed: Vec<_> = keys
                .into_iter()
                .filter(|k| kv.get(k) != before.get(k))
                .collect();
            assert_eq!(changed.len(), 1, "one key per revision");
            let k = changed[0].clone();
            match kv.get(&k) {
                Some(now) => out.push((ChangeKind::Put, k, Some(now.value), now.mod_revision)),
                None => out.push((ChangeKind::Delete, k, None, kv.revision())),
            }
        }
        out
    }

    fn write() -> impl Strategy<Value = Command> {
        let key = prop::sample::select(vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        let value = prop::sample::select(vec![b"1".to_vec(), b"2".to_vec()]);
        let plain = prop_oneof![
            (key.clone(), value.clone()).prop_map(|(key, value)| Command::Put { key, value }),
            key.clone().prop_map(|key| Command::Delete { key }),
            (key.clone(), value.clone(), value.clone()).prop_map(|(key, value, old)| {
                Command::CompareAndSwap {
                    key,
                    value,
                    expect: Expect::Value(old),
                }
            }),
            (key, value).prop_map(|(key, value)| Command::CompareAndSwap {
                key,
                value,
                expect: Expect::Absent
            }),
        ];
        // A session write with a small seq space: retries replay answers.
        prop_oneof![
            3 => plain.clone(),
            2 => (plain, 1u64..4).prop_map(|(w, seq)| Command::WithSession {
                session: WriteSession { client_id: 7, seq, first_incomplete: 1 },
                at_ms: 1,
                write: Box::new(w),
            }),
        ]
    }

    fn entry() -> impl Strategy<Value = Command> {
        prop_oneof![
            3 => write(),
            1 => prop::collection::vec(write(), 1..5).prop_map(Command::Batch),
            1 => prop::collection::vec(write(), 1..3)
                .prop_map(|ws| Command::Batch(vec![Command::Batch(ws), Command::Delete { key: b"a".to_vec() }])),
        ]
    }

    proptest! {
        #[test]
        fn changes_of_an_entry_are_exactly_the_keys_it_changed(
            entries in prop::collection::vec(entry(), 1..30)
        ) {
            let (mut kv, mut sessions) = (KvStore::new(), SessionTable::default());
            let (mut okv, mut osessions) = (KvStore::new(), SessionTable::default());
            for cmd in entries {
                let expected = oracle(&mut okv, &mut osessions, cmd.clone());
                let keys = delete_keys(&cmd);
                let before = kv.revision();
                let r = apply_logged(&mut kv, &mut sessions, cmd);
                let got: Vec<_> = changes_of(&keys, &r, before)
                    .into_iter()
                    .map(|c| {
                        let value = (c.kind == ChangeKind::Put).then_some(c.kv.value.clone());
                        (c.kind, c.kv.key, value, c.kv.mod_revision)
                    })
                    .collect();
                prop_assert_eq!(got, expected);
                prop_assert_eq!(kv.revision(), okv.revision());
            }
        }
    }

    fn put(key: &str, rev: u64) -> Change {
        Change {
            kind: ChangeKind::Put,
            kv: KeyValue {
                key: key.as_bytes().to_vec(),
                value: b"v".to_vec(),
                create_revision: rev,
                mod_revision: rev,
                version: 1,
            },
        }
    }

    #[tokio::test]
    async fn a_watcher_gets_its_prefix_from_its_start_and_ends_when_behind() {
        let hub = WatchHub::default();
        assert!(!hub.active());
        let mut w = hub
            .subscribe(WatchFilter::Prefix(b"p/".to_vec()), 10, 12)
            .unwrap();
        assert!(hub.active());
        hub.publish(vec![put("p/a", 11), put("q/a", 12)]);
        hub.publish(vec![put("p/b", 13)]);
        // 11 is before the start, q/a outside the prefix.
        assert_eq!(w.next().await.unwrap(), vec![put("p/b", 13)]);
        assert_eq!(w.seen(), 13);
        for r in 14..14 + WATCH_BUFFER_ENTRIES as u64 + 1 {
            hub.publish(vec![put("p/x", r)]);
        }
        assert_eq!(w.next().await, Err(WatchEnd::Behind { next: 14 }));
    }

    #[tokio::test]
    async fn a_snapshot_install_ends_the_watch_and_slots_are_bounded() {
        let hub = WatchHub::default();
        let mut w = hub
            .subscribe(WatchFilter::Key(b"k".to_vec()), 0, 1)
            .unwrap();
        hub.publish(vec![put("kk", 1)]);
        hub.replaced(40);
        assert_eq!(w.next().await, Err(WatchEnd::Replaced { revision: 40 }));
        let mut all = vec![w];
        while all.len() < WATCHERS_MAX {
            all.push(hub.subscribe(WatchFilter::Prefix(vec![]), 0, 1).unwrap());
        }
        assert_eq!(
            hub.subscribe(WatchFilter::Prefix(vec![]), 0, 1)
                .unwrap_err(),
            WatchersFull
        );
        all.pop();
        assert!(hub.subscribe(WatchFilter::Prefix(vec![]), 0, 1).is_ok());
    }
}
