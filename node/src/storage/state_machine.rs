//! The replicated state machine: the KV store in memory, persisted by
//! snapshots (openraft's "persistent snapshot" model).
//!
//! `apply` changes memory only. On restart the state is the latest snapshot,
//! and `applied_state()` reports the snapshot's log id, so openraft re-applies
//! the log after it (entries after the snapshot are never purged, and the
//! committed log id is persisted by the log store so re-application starts at
//! once). Snapshots are built off the hot path: the builder clones the map in
//! O(1) (a persistent `imbl::OrdMap`) under a short read lock and serializes,
//! writes and fsyncs on a blocking thread while apply continues.
//!
//! Readers ([`KvReader`]) share the state through a read-write lock; apply
//! takes the write lock once per batch.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use parking_lot::{Mutex, RwLock};

use super::error::{self as err, Error, Result};
use super::hooks::{NoHooks, StorageHooks};
use super::options::StorageOptions;
use super::snapshot::{self, Sessions, SnapshotDir};
use crate::kv::{
    Command, CommandResult, KeyValue, KvStore, SessionLimits, WatchFilter, WatchHub, Watcher,
    WatchersFull, WriteSession, apply_logged, watch,
};
use crate::typ::{Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};

/// How far the state machine is: published after every apply batch and
/// snapshot install.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppliedState {
    /// Last applied log index (0 if none).
    pub index: u64,
    /// Store revision after it.
    pub revision: u64,
}

#[derive(Debug, Default)]
struct SmState {
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    kv: KvStore,
    /// Client sessions (exactly-once writes): replicated state like `kv`,
    /// saved in snapshots with it.
    sessions: Sessions,
}

impl SmState {
    fn applied(&self) -> AppliedState {
        AppliedState {
            index: self.last_applied.map_or(0, |l| l.index),
            revision: self.kv.revision(),
        }
    }
}

struct Shared {
    state: RwLock<SmState>,
    watch: tokio::sync::watch::Sender<AppliedState>,
    /// The changes apply makes, for `KV/Watch` (kv::watch); idle when nobody
    /// watches.
    watchers: WatchHub,
    snapshots: SnapshotDir,
    /// The current snapshot's metadata and file.
    current: Mutex<Option<(SnapshotMeta, PathBuf)>>,
    /// One snapshot build or install at a time.
    snapshot_io: tokio::sync::Mutex<()>,
    /// Makes snapshot ids and file names unique.
    snapshot_seq: AtomicU64,
    /// Set once by the node before Raft starts ([`StateMachineStore::set_hooks`]).
    hooks: std::sync::OnceLock<Arc<dyn StorageHooks>>,
}

impl Shared {
    fn hooks(&self) -> &dyn StorageHooks {
        match self.hooks.get() {
            Some(h) => h.as_ref(),
            None => &NoHooks,
        }
    }
}

/// The state machine store (openraft `RaftStateMachine`). Cheap to clone.
#[derive(Clone)]
pub struct StateMachineStore {
    shared: Arc<Shared>,
}

/// Read access to the applied KV state for the gRPC layer. Cheap to clone.
#[derive(Clone)]
pub struct KvReader {
    shared: Arc<Shared>,
}

/// The applied state at one moment (see [`KvReader::point_in_time`]).
#[derive(Debug, Clone)]
pub struct PointInTime {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    pub kv: KvStore,
}

/// Builds a snapshot of the state at the moment it was created.
pub struct SnapshotBuilder {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for StateMachineStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachineStore")
            .field("applied", &*self.shared.watch.borrow())
            .finish()
    }
}

impl std::fmt::Debug for KvReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvReader")
            .field("applied", &*self.shared.watch.borrow())
            .finish()
    }
}

impl StateMachineStore {
    /// Installs the node's hooks (once; before Raft starts applying). Returns
    /// false if hooks were already set.
    pub fn set_hooks(&self, hooks: Arc<dyn StorageHooks>) -> bool {
        self.shared.hooks.set(hooks).is_ok()
    }

    /// Loads the latest snapshot in `dir` (created if missing). Blocking I/O.
    pub fn open(dir: &Path, opts: &StorageOptions) -> Result<StateMachineStore> {
        let snapshots = SnapshotDir::open(dir, opts.fsync_faults)?;
        let (state, current) = match snapshots.load_latest()? {
            Some((path, meta, kv, sessions)) => {
                tracing::info!(snapshot = %path.display(), last_log_id = ?meta.last_log_id, keys = kv.len(), sessions = sessions.len(), "loaded snapshot");
                let state = SmState {
                    last_applied: meta.last_log_id,
                    last_membership: meta.last_membership.clone(),
                    kv,
                    sessions,
                };
                (state, Some((meta, path)))
            }
            None => (SmState::default(), None),
        };
        let (watch, _) = tokio::sync::watch::channel(state.applied());
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Ok(StateMachineStore {
            shared: Arc::new(Shared {
                state: RwLock::new(state),
                watch,
                watchers: WatchHub::default(),
                snapshots,
                current: Mutex::new(current),
                snapshot_io: tokio::sync::Mutex::new(()),
                snapshot_seq: AtomicU64::new(seed),
                hooks: std::sync::OnceLock::new(),
            }),
        })
    }

    /// A reader of the applied state.
    pub fn reader(&self) -> KvReader {
        KvReader {
            shared: self.shared.clone(),
        }
    }

    /// The current snapshot's metadata, if any.
    pub fn current_snapshot_meta(&self) -> Option<SnapshotMeta> {
        self.shared.current.lock().as_ref().map(|(m, _)| m.clone())
    }
}

impl KvReader {
    pub fn get(&self, key: &[u8]) -> Option<KeyValue> {
        self.shared.state.read().kv.get(key)
    }

    /// Keys in `[start, end)` (`end == None`: unbounded), at most `limit`
    /// (`0`: no limit; pass a bounded limit on request paths); the flag says
    /// whether more keys exist in the range.
    pub fn range(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> (Vec<KeyValue>, bool) {
        self.shared.state.read().kv.range(start, end, limit)
    }

    /// Like [`KvReader::get`], with the applied state the read saw (read
    /// under one lock, so the revision matches the value).
    pub fn get_at(&self, key: &[u8]) -> (Option<KeyValue>, AppliedState) {
        let s = self.shared.state.read();
        (s.kv.get(key), s.applied())
    }

    /// Like [`KvReader::range`] bounded to `bytes_max` of keys and values,
    /// with the applied state the read saw.
    pub fn range_at(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
        bytes_max: usize,
    ) -> (Vec<KeyValue>, bool, AppliedState) {
        let s = self.shared.state.read();
        let (kvs, more) = s.kv.range_bounded(start, end, limit, bytes_max);
        (kvs, more, s.applied())
    }

    pub fn applied(&self) -> AppliedState {
        *self.shared.watch.borrow()
    }

    /// The stored answer to a retry of a session write that was applied
    /// (see `kv::session`), restored for `cmd`; `None` if there is none.
    pub fn session_replay(&self, session: WriteSession, cmd: &Command) -> Option<CommandResult> {
        let s = self.shared.state.read();
        s.sessions
            .replay(session, cmd.fingerprint(), &SessionLimits::STANDARD)
            .map(|r| r.restore(cmd))
    }

    /// The whole applied state as of now, read under one lock: an O(1) copy
    /// of the map (persistent), for a backup to encode off the lock.
    pub fn point_in_time(&self) -> PointInTime {
        let s = self.shared.state.read();
        PointInTime {
            last_applied: s.last_applied,
            membership: s.last_membership.clone(),
            kv: s.kv.clone(),
        }
    }

    /// Notified after every apply batch and snapshot install.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<AppliedState> {
        self.shared.watch.subscribe()
    }

    /// A watcher of the changes applied after now, from store revision
    /// `from` on (0: from the next one), with the applied state it starts
    /// after. Subscribed under the state's read lock, which apply's write
    /// lock excludes: no change is missed or seen twice.
    pub fn watch(
        &self,
        filter: WatchFilter,
        from: u64,
    ) -> Result<(Watcher, AppliedState), WatchersFull> {
        let s = self.shared.state.read();
        let applied = s.applied();
        let from = from.max(applied.revision + 1);
        let w = self
            .shared
            .watchers
            .subscribe(filter, applied.revision, from)?;
        Ok((w, applied))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    /// In the hooks' snapshot span; the hooks hear of each built snapshot.
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let span = self.shared.hooks().snapshot_build_span();
        let r = tracing::Instrument::instrument(self.build_snapshot_untraced(), span.clone()).await;
        if let Ok(s) = &r {
            let index = s.meta.last_log_id.map_or(0, |l| l.index);
            span.record("raft.index", index);
            self.shared.hooks().snapshot_built(index);
        }
        r
    }
}

impl SnapshotBuilder {
    async fn build_snapshot_untraced(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let shared = self.shared.clone();
        let _io = shared.snapshot_io.lock().await;
        // O(1): the map is persistent; apply goes on with its own copy.
        // The session table is small (bounded) and copied as is.
        let (last_log_id, last_membership, kv, sessions) = {
            let s = shared.state.read();
            (
                s.last_applied,
                s.last_membership.clone(),
                s.kv.clone(),
                s.sessions.clone(),
            )
        };
        let unique = shared.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match &last_log_id {
            Some(l) => format!(
                "{}-{}-{}-{unique}",
                l.leader_id.term, l.leader_id.node_id, l.index
            ),
            None => format!("none-{unique}"),
        };
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
            snapshot_id,
        };
        let dir = shared.snapshots.clone();
        let m = meta.clone();
        let (bytes, path) = tokio::task::spawn_blocking(move || -> Result<(Vec<u8>, PathBuf)> {
            let bytes = snapshot::encode(&m, &kv, &sessions);
            drop(kv);
            let path = dir.write(&m, unique, &bytes)?;
            Ok((bytes, path))
        })
        .await
        .map_err(|e| {
            err::write_snapshot(
                Some(meta.signature()),
                &Error::Invariant(format!("snapshot task: {e}")),
            )
        })?
        .map_err(|e| err::write_snapshot(Some(meta.signature()), &e))?;
        tracing::info!(snapshot = %path.display(), bytes = bytes.len(), last_log_id = ?meta.last_log_id, "built snapshot");
        *shared.current.lock() = Some((meta.clone(), path));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let s = self.shared.state.read();
        Ok((s.last_applied, s.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries = entries.into_iter();
        let mut results = Vec::with_capacity(entries.size_hint().0);
        let applied = {
            let mut s = self.shared.state.write();
            // Nobody can subscribe while the write lock is held.
            let watched = self.shared.watchers.active();
            for entry in entries {
                if let Some(last) = &s.last_applied {
                    assert!(
                        entry.log_id.index > last.index,
                        "apply of {} after {last}",
                        entry.log_id
                    );
                }
                s.last_applied = Some(entry.log_id);
                // A span if this entry belongs to a traced write.
                let _traced = self
                    .shared
                    .hooks()
                    .apply_span(entry.log_id.index)
                    .map(tracing::Span::entered);
                let r = match entry.payload {
                    EntryPayload::Blank => CommandResult::None,
                    EntryPayload::Normal(cmd) if watched => {
                        let SmState { kv, sessions, .. } = &mut *s;
                        let deletes = watch::delete_keys(&cmd);
                        let before = kv.revision();
                        let r = apply_logged(kv, sessions, cmd);
                        self.shared
                            .watchers
                            .publish(watch::changes_of(&deletes, &r, before));
                        r
                    }
                    EntryPayload::Normal(cmd) => {
                        let SmState { kv, sessions, .. } = &mut *s;
                        apply_logged(kv, sessions, cmd)
                    }
                    EntryPayload::Membership(m) => {
                        s.last_membership = StoredMembership::new(Some(entry.log_id), m);
                        CommandResult::None
                    }
                };
                results.push(r);
            }
            s.applied()
        };
        self.shared.watch.send_replace(applied);
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            shared: self.shared.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let shared = self.shared.clone();
        let _io = shared.snapshot_io.lock().await;
        let bytes = snapshot.into_inner();
        let dir = shared.snapshots.clone();
        let want = meta.clone();
        let unique = shared.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let sig = Some(meta.signature());
        let (kv, sessions, path) =
            tokio::task::spawn_blocking(move || -> Result<(KvStore, Sessions, PathBuf)> {
                let what = Path::new("received snapshot");
                let (got, kv, sessions) = snapshot::decode(&bytes, what)?;
                if got.last_log_id != want.last_log_id
                    || got.last_membership != want.last_membership
                {
                    return Err(Error::corrupt(
                        what,
                        0,
                        format!(
                            "snapshot holds {:?}, its metadata says {:?}",
                            got.last_log_id, want.last_log_id
                        ),
                    ));
                }
                let path = dir.write(&want, unique, &bytes)?;
                Ok((kv, sessions, path))
            })
            .await
            .map_err(|e| {
                err::write_snapshot(
                    sig.clone(),
                    &Error::Invariant(format!("snapshot task: {e}")),
                )
            })?
            .map_err(|e| err::write_snapshot(sig.clone(), &e))?;
        let applied = {
            let mut s = shared.state.write();
            s.last_applied = meta.last_log_id;
            s.last_membership = meta.last_membership.clone();
            s.kv = kv;
            s.sessions = sessions;
            // Watchers cannot see the changes up to it one by one: they end.
            shared.watchers.replaced(s.kv.revision());
            s.applied()
        };
        shared.watch.send_replace(applied);
        *shared.current.lock() = Some((meta.clone(), path.clone()));
        tracing::info!(snapshot = %path.display(), last_log_id = ?meta.last_log_id, "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let _io = self.shared.snapshot_io.lock().await;
        let Some((meta, path)) = self.shared.current.lock().clone() else {
            return Ok(None);
        };
        let sig = Some(meta.signature());
        let p = path.clone();
        let bytes = tokio::task::spawn_blocking(move || -> Result<Vec<u8>> {
            let bytes = std::fs::read(&p).map_err(|e| Error::io("read", &p, e))?;
            snapshot::verify(&bytes, &p)?;
            Ok(bytes)
        })
        .await
        .map_err(|e| {
            err::read_snapshot(
                sig.clone(),
                &Error::Invariant(format!("snapshot task: {e}")),
            )
        })?
        .map_err(|e| err::read_snapshot(sig.clone(), &e))?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}
