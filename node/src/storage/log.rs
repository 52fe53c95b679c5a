//! The durable Raft log (entries, vote, committed, purge, truncate): a
//! segmented write-ahead log with group commit.
//!
//! # Why our own log (and not sled or RocksDB)
//!
//! - RocksDB needs a C++ toolchain and minutes of compile time on every clean
//!   build of a 2-core machine; sled is unmaintained and its durability
//!   semantics are its own.
//! - Group commit must be under our control: openraft hands us appends and a
//!   callback, and the throughput target is met only if many concurrent
//!   appends share one fsync. Here a dedicated writer thread drains every
//!   queued request, writes them with one `write`, fsyncs once, and then
//!   completes all their callbacks.
//! - Exact torn-write semantics: we decide, and test at every byte offset,
//!   what recovery does with a torn last record (drop it) versus corruption of
//!   acknowledged data (refuse to start, naming file and offset).
//!
//! # Files
//!
//! `log/<seq>.seg`, `seq` = 20-digit segment number. A segment is a sequence
//! of records (framing and checksum in `record.rs`). Each segment starts with
//! a `SegmentHeader` record and a checkpoint: the vote, committed and purge
//! state at the moment it was created. Records are appended only to the
//! newest segment; when it exceeds `segment_bytes_max` the writer fsyncs it
//! and starts the next one. Every `open` starts a new segment, so a file whose
//! tail was truncated at recovery is never written again.
//!
//! Truncation and purge are records too (logical): recovery replays all
//! segments in order and applies them. Purge also deletes whole segments that
//! hold only purged entries, after the purge record is fsynced; the
//! checkpoint at the head of each later segment keeps the vote alive when the
//! segment that held it is deleted.
//!
//! # Memory
//!
//! Per log entry between the purge point and the end of the log, the index
//! keeps its leader id and file location (40 bytes). Recently appended entries
//! are also kept whole, up to `log_cache_bytes_max`, so replication of fresh
//! entries reads no file; older ones are read from their segment (off the
//! async runtime). Entries not yet written are always in that cache.
//!
//! # Group commit and ordering
//!
//! All writes go through one bounded queue to one writer thread, so they
//! reach the disk in the order openraft issued them (openraft requires vote
//! and log I/O to be serialized). `append` updates the in-memory index before
//! it queues (entries are readable when `append` returns, as openraft
//! requires) and its callback is completed after the fsync. `save_vote` and
//! `truncate` wait for their fsync. `purge` and `save_committed` do not wait:
//! losing either in a crash is harmless (purge is redone by openraft; a lower
//! committed only means less is re-applied at startup). The committed record
//! never causes an fsync of its own: it rides with the next durable write.
//!
//! # Recovery
//!
//! Every record's checksum is verified. A bad record in any segment but the
//! last is corruption. In the last segment a bad record at offset X with no
//! valid record after it is a *torn tail* (a write that was never
//! acknowledged: `kill -9` during a `write`, or power loss before the fsync);
//! the segment is truncated at X and recovery goes on. If any valid record
//! follows X, the node refuses to start with an error naming the file and
//! the offset: dropping the rest could lose acknowledged entries. (Power loss
//! can, in principle, leave a hole inside the last, unacknowledged group
//! commit; the error then says the next valid record is of the same group
//! commit. We still refuse rather than guess: the safe way out is replacing
//! the member, which gets a new ID.)

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::{Bound, RangeBounds};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{CommittedLeaderId, OptionalSend, RaftLogReader};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::error::{self as err, Error, Result};
use super::fsutil::{create_dir_durable, sync_dir};
use super::options::StorageOptions;
use super::record::{self, FLAG_BATCH_END, HEADER, Header, Kind};
use super::stats::{stats, sync_file};
use crate::typ::{Entry, LogId, NodeId, StorageError, TypeConfig, Vote};

const SEGMENT_MAGIC: u64 = u64::from_be_bytes(*b"raftkvlg");
const SEGMENT_FORMAT: u32 = 1;
/// Slot location marker for an entry the writer has not written yet.
const PENDING: u64 = u64::MAX;

#[derive(Debug, Serialize, Deserialize)]
struct SegmentHeader {
    magic: u64,
    format: u32,
    seq: u64,
}

pub(crate) fn segment_name(seq: u64) -> String {
    format!("{seq:020}.seg")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Where one log entry is.
#[derive(Debug, Clone, Copy)]
struct Slot {
    leader: CommittedLeaderId<NodeId>,
    /// Segment number, or `PENDING` (then `off` is the append request id).
    seg: u64,
    off: u64,
    /// Bytes of the record (header + payload).
    size: u32,
}

/// The in-memory state of the log, shared by the API and the writer.
#[derive(Debug, Default)]
struct Index {
    /// Log index of `slots[0]`.
    first: u64,
    slots: VecDeque<Slot>,
    /// Whole entries for the last `cache.len()` slots.
    cache: VecDeque<Entry>,
    cache_bytes: usize,
    purged: Option<LogId>,
    vote: Option<Vote>,
    committed: Option<LogId>,
    /// Open segment files for reads, by segment number.
    segments: BTreeMap<u64, Arc<File>>,
    /// Set when the writer failed; every later write fails with it.
    failed: Option<String>,
}

impl Index {
    fn end(&self) -> u64 {
        self.first + self.slots.len() as u64
    }

    fn cache_first(&self) -> u64 {
        self.end() - self.cache.len() as u64
    }

    fn last_log_id(&self) -> Option<LogId> {
        match self.slots.back() {
            Some(s) => Some(LogId {
                leader_id: s.leader,
                index: self.end() - 1,
            }),
            None => self.purged,
        }
    }

    /// Whether entry `idx` is covered by the purge (and so by a snapshot).
    fn is_purged(&self, idx: u64) -> bool {
        self.purged.as_ref().is_some_and(|p| idx <= p.index)
    }

    /// Adds the entry at `log_id`; an index inside the log implicitly
    /// truncates from there (what an explicit truncate followed by the append
    /// would do). `entry` is `None` at recovery (nothing is cached then).
    /// The caller skips purged entries (see `append`).
    fn push(&mut self, log_id: &LogId, slot: Slot, entry: Option<Entry>) -> Result<(), String> {
        let idx = log_id.index;
        assert!(!self.is_purged(idx), "push of purged entry {idx}");
        if self.slots.is_empty() {
            self.first = idx;
        } else {
            if idx > self.end() {
                return Err(format!(
                    "entry {idx} leaves a hole after {}",
                    self.end() - 1
                ));
            }
            if idx < self.end() {
                self.truncate_from(idx);
                if self.slots.is_empty() {
                    self.first = idx;
                }
            }
        }
        self.slots.push_back(slot);
        match entry {
            Some(e) => {
                self.cache.push_back(e);
                self.cache_bytes += slot.size as usize;
            }
            None => assert!(self.cache.is_empty(), "uncached entry after cached ones"),
        }
        Ok(())
    }

    fn truncate_from(&mut self, idx: u64) {
        while self.end() > idx {
            let Some(slot) = self.slots.pop_back() else {
                break;
            };
            if self.cache.pop_back().is_some() {
                self.cache_bytes -= slot.size as usize;
            }
        }
        if self.slots.is_empty() {
            self.first = idx;
        }
    }

    fn purge_upto(&mut self, upto: &LogId) {
        if self.purged.as_ref().is_some_and(|p| p.index >= upto.index) {
            return;
        }
        self.purged = Some(*upto);
        while !self.slots.is_empty() && self.first <= upto.index {
            let cached = self.cache.len() == self.slots.len();
            let slot = self.slots.pop_front().expect("non-empty");
            if cached {
                self.cache.pop_front();
                self.cache_bytes -= slot.size as usize;
            }
            self.first += 1;
        }
        if self.slots.is_empty() {
            self.first = upto.index + 1;
        }
    }

    /// Drops cached entries (oldest first) above the bound, never one that
    /// is not written yet.
    fn evict(&mut self, cache_bytes_max: usize) {
        while self.cache_bytes > cache_bytes_max && !self.cache.is_empty() {
            let i = (self.cache_first() - self.first) as usize;
            let slot = self.slots[i];
            if slot.seg == PENDING {
                break;
            }
            self.cache.pop_front();
            self.cache_bytes -= slot.size as usize;
        }
    }

    /// `purged < first entry ≤ last entry`; committed is not checked against
    /// the log (after a snapshot install it may be beyond the last entry).
    fn validate(&self) -> Result<(), String> {
        if let (Some(p), Some(_)) = (&self.purged, self.slots.front())
            && self.first <= p.index
        {
            return Err(format!(
                "first entry {} is not above the purged index {}",
                self.first, p.index
            ));
        }
        if self.cache.len() > self.slots.len() {
            return Err("more cached entries than entries".into());
        }
        Ok(())
    }
}

/// One request to the writer thread.
enum Req {
    Append {
        id: u64,
        first: u64,
        buf: Vec<u8>,
        cb: LogFlushed<TypeConfig>,
    },
    Vote {
        vote: Vote,
        done: oneshot::Sender<Result<(), String>>,
    },
    Truncate {
        since: u64,
        done: oneshot::Sender<Result<(), String>>,
    },
    Purge {
        upto: LogId,
    },
    Committed {
        committed: Option<LogId>,
    },
}

impl Req {
    fn bytes(&self) -> usize {
        match self {
            Req::Append { buf, .. } => buf.len(),
            _ => HEADER + 32,
        }
    }

    fn complete(self, r: &Result<(), String>) {
        match self {
            Req::Append { cb, .. } => cb.log_io_completed(r.clone().map_err(io::Error::other)),
            Req::Vote { done, .. } | Req::Truncate { done, .. } => {
                let _ = done.send(r.clone());
            }
            Req::Purge { .. } | Req::Committed { .. } => {}
        }
    }
}

/// The Raft log store. Cheap to clone; all clones share one log and one
/// writer thread, which stops when the last clone is dropped (after
/// finishing what was queued).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

struct Inner {
    // Field order matters: `tx` is dropped first, so the writer sees the
    // queue close, and then `_writer` joins it.
    tx: mpsc::Sender<Req>,
    _writer: JoinOnDrop,
    index: Arc<Mutex<Index>>,
    next_req: AtomicU64,
    opts: StorageOptions,
    dir: PathBuf,
}

struct JoinOnDrop(Option<std::thread::JoinHandle<()>>);

impl Drop for JoinOnDrop {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            let _ = h.join();
        }
    }
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("dir", &self.inner.dir)
            .finish()
    }
}

impl LogStore {
    /// Recovers the log in `dir` (created if missing) and starts its writer
    /// thread. Blocking file I/O: call it before serving, or in
    /// `spawn_blocking`.
    pub fn open(dir: &Path, opts: &StorageOptions) -> Result<LogStore> {
        create_dir_durable(dir)?;
        let rec = recover(dir, opts)?;
        let Recovered { index, segs } = rec;
        index.validate().map_err(Error::Invariant)?;
        let index = Arc::new(Mutex::new(index));
        let next_seq = segs.back().map_or(1, |s| s.seq + 1);
        let (vote, committed, purged) = {
            let i = index.lock();
            (i.vote, i.committed, i.purged)
        };
        let mut writer = Writer {
            dir: dir.to_path_buf(),
            opts: opts.clone(),
            index: index.clone(),
            active: None,
            active_seq: next_seq - 1,
            active_size: 0,
            active_base: 0,
            segs,
            batch: 0,
            buf: Vec::with_capacity(64 * 1024),
            rec_offs: Vec::new(),
            locs: Vec::new(),
            vote,
            committed,
            committed_written: committed,
            purged,
            failed: None,
        };
        writer.roll()?;
        writer.flush(true)?;
        let (tx, rx) = mpsc::channel(opts.queue_requests_max);
        let handle = std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::io("spawn log writer thread for", dir, e))?;
        Ok(LogStore {
            inner: Arc::new(Inner {
                tx,
                _writer: JoinOnDrop(Some(handle)),
                index,
                next_req: AtomicU64::new(1),
                opts: opts.clone(),
                dir: dir.to_path_buf(),
            }),
        })
    }

    /// (purged, last log id, committed) as recovered or as of now.
    pub fn recovered_state(&self) -> (Option<LogId>, Option<LogId>, Option<LogId>) {
        let ix = self.inner.index.lock();
        (ix.purged, ix.last_log_id(), ix.committed)
    }

    // The error type is openraft's, dictated by the storage traits.
    #[allow(clippy::result_large_err)]
    fn check_failed(&self) -> Result<(), StorageError> {
        if let Some(f) = &self.inner.index.lock().failed {
            return Err(err::write_logs(&Error::WriterStopped(f.clone())));
        }
        Ok(())
    }

    async fn send(&self, req: Req) -> Result<(), StorageError> {
        self.inner
            .tx
            .send(req)
            .await
            .map_err(|_| err::write_logs(&Error::WriterStopped("log writer thread is gone".into())))
    }

    /// Reads entries `[lo, hi)` that exist; cached ones from memory, the
    /// rest from their segments on a blocking thread.
    async fn read_range(&self, lo: u64, hi: u64) -> Result<Vec<Entry>, StorageError> {
        let mut disk: Vec<DiskRead> = Vec::new();
        let cached: Vec<Entry>;
        {
            let ix = self.inner.index.lock();
            let lo = lo.max(ix.first);
            let hi = hi.min(ix.end());
            if lo >= hi {
                return Ok(Vec::new());
            }
            let cf = ix.cache_first();
            for i in lo..hi.min(cf) {
                let slot = ix.slots[(i - ix.first) as usize];
                assert_ne!(slot.seg, PENDING, "an unwritten entry must be cached");
                let file = ix.segments.get(&slot.seg).cloned().ok_or_else(|| {
                    err::read_logs(&Error::Invariant(format!(
                        "segment {} of entry {i} is not open",
                        slot.seg
                    )))
                })?;
                disk.push(DiskRead {
                    file,
                    seg: slot.seg,
                    off: slot.off,
                    size: slot.size,
                    index: i,
                });
            }
            let from = (lo.max(cf) - cf) as usize;
            let to = (hi.max(cf) - cf) as usize;
            cached = ix.cache.range(from..to.max(from)).cloned().collect();
        }
        if disk.is_empty() {
            return Ok(cached);
        }
        let dir = self.inner.dir.clone();
        let max = self.inner.opts.record_bytes_max;
        let mut out = tokio::task::spawn_blocking(move || read_entries(&dir, &disk, max))
            .await
            .map_err(|e| err::read_logs(&Error::Invariant(format!("log read task failed: {e}"))))?
            .map_err(|e| err::read_logs(&e))?;
        out.extend(cached);
        Ok(out)
    }
}

/// Where to read one entry that is not cached.
struct DiskRead {
    file: Arc<File>,
    seg: u64,
    off: u64,
    size: u32,
    index: u64,
}

fn read_entries(dir: &Path, disk: &[DiskRead], max: u32) -> Result<Vec<Entry>> {
    let mut out = Vec::with_capacity(disk.len());
    let mut buf = Vec::new();
    for d in disk {
        let path = || dir.join(segment_name(d.seg));
        buf.resize(d.size as usize, 0);
        d.file
            .read_exact_at(&mut buf, d.off)
            .map_err(|e| Error::io("read log entry from", path(), e))?;
        // Pair assertion: the record verifies after the read as it did before the write.
        let (h, payload) =
            record::parse(&buf, max).map_err(|e| Error::corrupt(path(), d.off, e.to_string()))?;
        if h.kind != Kind::Entry {
            return Err(Error::corrupt(
                path(),
                d.off,
                format!("expected an entry record, found {:?}", h.kind),
            ));
        }
        let entry: Entry = postcard::from_bytes(payload)
            .map_err(|e| Error::corrupt(path(), d.off, e.to_string()))?;
        if entry.log_id.index != d.index {
            return Err(Error::corrupt(
                path(),
                d.off,
                format!("expected entry {}, found {}", d.index, entry.log_id),
            ));
        }
        out.push(entry);
    }
    Ok(out)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let lo = match range.start_bound() {
            Bound::Included(&x) => x,
            Bound::Excluded(&x) => x.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let hi = match range.end_bound() {
            Bound::Included(&x) => x.saturating_add(1),
            Bound::Excluded(&x) => x,
            Bound::Unbounded => u64::MAX,
        };
        self.read_range(lo, hi).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let ix = self.inner.index.lock();
        Ok(LogState {
            last_purged_log_id: ix.purged,
            last_log_id: ix.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.check_failed()?;
        let (done, rx) = oneshot::channel();
        self.send(Req::Vote { vote: *vote, done }).await?;
        let r = rx
            .await
            .unwrap_or_else(|_| Err("log writer thread is gone".into()));
        r.map_err(|e| err::write_vote(&Error::WriterStopped(e)))?;
        self.inner.index.lock().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.inner.index.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.check_failed()?;
        self.inner.index.lock().committed = committed;
        self.send(Req::Committed { committed }).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.inner.index.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.check_failed()?;
        let id = self.inner.next_req.fetch_add(1, Ordering::Relaxed);
        let mut buf = Vec::new();
        let mut items: Vec<(Entry, u32)> = Vec::new();
        for e in entries {
            let off = record::encode(&mut buf, Kind::Entry, &e);
            let size = (buf.len() - off) as u32;
            if size as usize - HEADER > self.inner.opts.record_bytes_max as usize {
                return Err(err::write_logs(&Error::Invariant(format!(
                    "log entry {} is {size} bytes, above record_bytes_max",
                    e.log_id
                ))));
            }
            items.push((e, size));
        }
        let mut first = u64::MAX;
        {
            let mut ix = self.inner.index.lock();
            // Check before changing anything: the entries are contiguous and
            // do not leave a hole after the log.
            let mut expect = None;
            for (e, _) in &items {
                let idx = e.log_id.index;
                if expect.is_some_and(|x| x != idx)
                    || (expect.is_none() && !ix.slots.is_empty() && idx > ix.end())
                {
                    return Err(err::write_logs(&Error::Invariant(format!(
                        "append of entry {idx} leaves a hole (log ends before {})",
                        expect.unwrap_or(ix.end())
                    ))));
                }
                expect = Some(idx + 1);
            }
            // Entries already covered by the purge (hence by a snapshot) are
            // dropped; they can only be a prefix of a contiguous batch.
            let mut skip_bytes = 0usize;
            for (e, size) in items {
                if ix.is_purged(e.log_id.index) {
                    skip_bytes += size as usize;
                    continue;
                }
                first = first.min(e.log_id.index);
                let slot = Slot {
                    leader: e.log_id.leader_id,
                    seg: PENDING,
                    off: id,
                    size,
                };
                let log_id = e.log_id;
                ix.push(&log_id, slot, Some(e))
                    .map_err(|m| err::write_logs(&Error::Invariant(format!("append: {m}"))))?;
            }
            buf.drain(..skip_bytes);
        }
        // Sent even when empty, so the callback completes in order with earlier appends.
        self.send(Req::Append {
            id,
            first,
            buf,
            cb: callback,
        })
        .await
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.check_failed()?;
        self.inner.index.lock().truncate_from(log_id.index);
        let (done, rx) = oneshot::channel();
        self.send(Req::Truncate {
            since: log_id.index,
            done,
        })
        .await?;
        let r = rx
            .await
            .unwrap_or_else(|_| Err("log writer thread is gone".into()));
        r.map_err(|e| err::write_logs(&Error::WriterStopped(e)))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.check_failed()?;
        self.inner.index.lock().purge_upto(&log_id);
        self.send(Req::Purge { upto: log_id }).await
    }
}

// ---------------------------------------------------------------- writer

#[derive(Debug, Clone, Copy)]
struct SegMeta {
    seq: u64,
    /// Highest entry index written to the segment.
    max_index: Option<u64>,
}

struct Writer {
    dir: PathBuf,
    opts: StorageOptions,
    index: Arc<Mutex<Index>>,
    active: Option<Arc<File>>,
    active_seq: u64,
    /// Bytes written to the active segment.
    active_size: u64,
    /// Bytes of its header and checkpoint (a segment with only these is empty).
    active_base: u64,
    /// All live segments, oldest first; the last is the active one.
    segs: VecDeque<SegMeta>,
    /// Group-commit sequence number of the records being written.
    batch: u32,
    /// Records not yet written, and their offsets in `buf`.
    buf: Vec<u8>,
    rec_offs: Vec<usize>,
    /// (index, request id, segment, offset) of entries written in this batch.
    locs: Vec<(u64, u64, u64, u64)>,
    // What the checkpoint of a new segment records.
    vote: Option<Vote>,
    committed: Option<LogId>,
    committed_written: Option<LogId>,
    purged: Option<LogId>,
    failed: Option<String>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Req>) {
        let mut reqs: Vec<Req> = Vec::with_capacity(self.opts.batch_requests_max);
        while let Some(first) = rx.blocking_recv() {
            let mut bytes = first.bytes();
            reqs.push(first);
            while reqs.len() < self.opts.batch_requests_max && bytes < self.opts.batch_bytes_max {
                match rx.try_recv() {
                    Ok(r) => {
                        bytes += r.bytes();
                        reqs.push(r);
                    }
                    Err(_) => break,
                }
            }
            self.process(&mut reqs);
        }
        tracing::debug!(dir = %self.dir.display(), "log writer stopped");
    }

    fn process(&mut self, reqs: &mut Vec<Req>) {
        let result = match &self.failed {
            Some(f) => Err(f.clone()),
            None => self.write_batch(reqs).map_err(|e| e.to_string()),
        };
        if let Err(e) = &result
            && self.failed.is_none()
        {
            tracing::error!(error = %e, "raft log write failed; the log refuses further writes");
            self.failed = Some(e.clone());
            self.index.lock().failed = Some(e.clone());
        }
        if result.is_ok() {
            let mut ix = self.index.lock();
            for &(index, id, seg, off) in &self.locs {
                if index < ix.first || index >= ix.end() {
                    continue;
                }
                let i = (index - ix.first) as usize;
                let slot = &mut ix.slots[i];
                if slot.seg == PENDING && slot.off == id {
                    slot.seg = seg;
                    slot.off = off;
                }
            }
            ix.evict(self.opts.log_cache_bytes_max);
        }
        self.locs.clear();
        let purge = reqs.iter().any(|r| matches!(r, Req::Purge { .. }));
        for r in reqs.drain(..) {
            r.complete(&result);
        }
        if purge
            && result.is_ok()
            && let Err(e) = self.delete_purged_segments()
        {
            // Not fatal: the segments are retried at the next purge.
            tracing::warn!(error = %e, "deleting purged log segments failed");
        }
    }

    fn write_batch(&mut self, reqs: &mut [Req]) -> Result<()> {
        let mut durable = false;
        for req in reqs.iter_mut() {
            match req {
                Req::Append { id, first, buf, .. } => {
                    durable = true;
                    if buf.is_empty() {
                        continue;
                    }
                    self.write_committed_if_changed();
                    let pending = self.active_size + self.buf.len() as u64;
                    if pending > self.active_base
                        && pending + buf.len() as u64 > self.opts.segment_bytes_max
                    {
                        self.roll()?;
                    }
                    let base = self.active_size + self.buf.len() as u64;
                    let mut pos = 0;
                    let mut index = *first;
                    while pos < buf.len() {
                        let len = record::record_len(&buf[pos..]);
                        self.rec_offs.push(self.buf.len() + pos);
                        self.locs
                            .push((index, *id, self.active_seq, base + pos as u64));
                        index += 1;
                        pos += len;
                    }
                    assert_eq!(pos, buf.len(), "append buffer holds whole records");
                    self.buf.extend_from_slice(buf);
                    let meta = self.segs.back_mut().expect("an active segment");
                    meta.max_index = Some(meta.max_index.map_or(index - 1, |m| m.max(index - 1)));
                }
                Req::Vote { vote, .. } => {
                    durable = true;
                    self.vote = Some(*vote);
                    self.push_record(Kind::Vote, vote);
                }
                Req::Truncate { since, .. } => {
                    durable = true;
                    let since = *since;
                    self.push_record(Kind::Truncate, &since);
                }
                Req::Purge { upto } => {
                    durable = true;
                    if self.purged.is_none_or(|p| p.index < upto.index) {
                        self.purged = Some(*upto);
                    }
                    let upto = *upto;
                    self.push_record(Kind::Purge, &upto);
                }
                Req::Committed { committed } => {
                    // Written with the next durable write, never fsynced on its own.
                    self.committed = *committed;
                }
            }
        }
        if durable {
            self.write_committed_if_changed();
            let bytes = self.buf.len() as u64;
            self.flush(true)?;
            stats().record_batch(reqs.len() as u64, bytes);
            // Memory follows data, not load: give back what one huge batch grew.
            if self.buf.capacity() > 2 * self.opts.batch_bytes_max {
                self.buf.shrink_to(self.opts.batch_bytes_max);
            }
        }
        Ok(())
    }

    fn write_committed_if_changed(&mut self) {
        if self.committed != self.committed_written {
            let c = self.committed;
            self.push_record(Kind::Committed, &c);
            self.committed_written = c;
        }
    }

    fn push_record<T: Serialize>(&mut self, kind: Kind, payload: &T) {
        let off = record::encode(&mut self.buf, kind, payload);
        self.rec_offs.push(off);
    }

    /// Seals and writes the buffered records; with `sync`, fsyncs and ends
    /// the group commit.
    fn flush(&mut self, sync: bool) -> Result<()> {
        let path = self.dir.join(segment_name(self.active_seq));
        if !self.buf.is_empty() {
            let n = self.rec_offs.len();
            for (i, &off) in self.rec_offs.iter().enumerate() {
                let flags = if sync && i + 1 == n {
                    FLAG_BATCH_END
                } else {
                    0
                };
                record::seal(&mut self.buf[off..], flags, self.batch);
            }
            let file = self.active.as_ref().expect("an active segment");
            file.write_all_at(&self.buf, self.active_size)
                .map_err(|e| Error::io("write", &path, e))?;
            self.active_size += self.buf.len() as u64;
            self.buf.clear();
            self.rec_offs.clear();
            if sync {
                if self.opts.fsync {
                    sync_file(file, true, &self.opts.fsync_faults)
                        .map_err(|e| Error::io("fsync", &path, e))?;
                }
                self.batch = self.batch.wrapping_add(1);
            }
        }
        Ok(())
    }

    /// Ends the active segment (written and fsynced) and starts the next one
    /// with a header and a checkpoint of vote, committed and purge.
    fn roll(&mut self) -> Result<()> {
        if self.active.is_some() {
            self.flush(true)?;
        }
        let seq = self.active_seq + 1;
        let path = self.dir.join(segment_name(seq));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io("create", &path, e))?;
        sync_dir(&self.dir)?;
        let file = Arc::new(file);
        self.active = Some(file.clone());
        self.active_seq = seq;
        self.active_size = 0;
        self.segs.push_back(SegMeta {
            seq,
            max_index: None,
        });
        self.index.lock().segments.insert(seq, file);
        self.push_record(
            Kind::SegmentHeader,
            &SegmentHeader {
                magic: SEGMENT_MAGIC,
                format: SEGMENT_FORMAT,
                seq,
            },
        );
        if let Some(v) = self.vote {
            self.push_record(Kind::Vote, &v);
        }
        let c = self.committed;
        self.push_record(Kind::Committed, &c);
        self.committed_written = c;
        if let Some(p) = self.purged {
            self.push_record(Kind::Purge, &p);
        }
        self.active_base = self.buf.len() as u64;
        Ok(())
    }

    /// Deletes the oldest segments whose entries are all purged (never the
    /// active one). Runs after the purge record is fsynced.
    fn delete_purged_segments(&mut self) -> Result<()> {
        let Some(purged) = self.purged else {
            return Ok(());
        };
        let mut deleted = false;
        while self.segs.len() > 1 {
            let front = self.segs[0];
            if front.max_index.is_some_and(|m| m > purged.index) {
                break;
            }
            let path = self.dir.join(segment_name(front.seq));
            fs::remove_file(&path).map_err(|e| Error::io("delete purged segment", &path, e))?;
            self.index.lock().segments.remove(&front.seq);
            self.segs.pop_front();
            deleted = true;
            tracing::debug!(segment = %path.display(), "deleted purged log segment");
        }
        if deleted {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

// -------------------------------------------------------------- recovery

struct Recovered {
    index: Index,
    segs: VecDeque<SegMeta>,
}

fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let mut seqs = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))? {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        match parse_segment_name(&name) {
            Some(seq) => seqs.push(seq),
            None => {
                tracing::warn!(file = %entry.path().display(), "ignoring unknown file in the log directory")
            }
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

fn recover(dir: &Path, opts: &StorageOptions) -> Result<Recovered> {
    let seqs = list_segments(dir)?;
    let mut index = Index::default();
    let mut segs = VecDeque::new();
    for (i, &seq) in seqs.iter().enumerate() {
        let path = dir.join(segment_name(seq));
        let is_last = i + 1 == seqs.len();
        let mut data = fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
        let mut pos = 0usize;
        let mut prev: Option<Header> = None;
        let mut max_index = None;
        while pos < data.len() {
            match record::parse(&data[pos..], opts.record_bytes_max) {
                Ok((h, payload)) => {
                    replay(&mut index, &path, seq, pos, h, payload, &mut max_index)?;
                    prev = Some(h);
                    pos += HEADER + h.len as usize;
                }
                Err(invalid) => {
                    if !is_last {
                        return Err(Error::corrupt(
                            &path,
                            pos as u64,
                            format!("{invalid} (not the last segment)"),
                        ));
                    }
                    if let Some((later, same_commit)) =
                        valid_record_after(&data, pos, prev, opts.record_bytes_max)
                    {
                        let hint = if same_commit {
                            " of the same group commit (a write torn by power loss, or corruption)"
                        } else {
                            " of a later group commit, so this record was acknowledged"
                        };
                        return Err(Error::corrupt(
                            &path,
                            pos as u64,
                            format!(
                                "{invalid}; a valid record{hint} follows at byte offset {later}"
                            ),
                        ));
                    }
                    tracing::warn!(
                        file = %path.display(),
                        offset = pos,
                        dropped_bytes = data.len() - pos,
                        "dropping a torn tail of the log ({invalid}); it was never acknowledged"
                    );
                    truncate_file(&path, pos as u64, opts)?;
                    data.truncate(pos);
                    break;
                }
            }
        }
        if pos == 0 {
            // Only possible for the last segment: created, but its header never made it.
            fs::remove_file(&path).map_err(|e| Error::io("delete empty segment", &path, e))?;
            sync_dir(dir)?;
            continue;
        }
        let file = File::open(&path).map_err(|e| Error::io("open", &path, e))?;
        index.segments.insert(seq, Arc::new(file));
        segs.push_back(SegMeta { seq, max_index });
    }
    Ok(Recovered { index, segs })
}

fn replay(
    index: &mut Index,
    path: &Path,
    seq: u64,
    pos: usize,
    h: Header,
    payload: &[u8],
    max_index: &mut Option<u64>,
) -> Result<()> {
    let corrupt = |m: String| Error::corrupt(path, pos as u64, m);
    let decode_err = |e: postcard::Error| corrupt(format!("undecodable {:?} record: {e}", h.kind));
    if (pos == 0) != (h.kind == Kind::SegmentHeader) {
        return Err(corrupt(format!(
            "a segment must start with its header, found {:?} at {pos}",
            h.kind
        )));
    }
    match h.kind {
        Kind::SegmentHeader => {
            let sh: SegmentHeader = postcard::from_bytes(payload).map_err(decode_err)?;
            if sh.magic != SEGMENT_MAGIC || sh.format != SEGMENT_FORMAT || sh.seq != seq {
                return Err(corrupt(format!(
                    "segment header {sh:?} does not match segment {seq}"
                )));
            }
        }
        Kind::Entry => {
            let (log_id, _) = postcard::take_from_bytes::<LogId>(payload).map_err(decode_err)?;
            let slot = Slot {
                leader: log_id.leader_id,
                seg: seq,
                off: pos as u64,
                size: (HEADER + payload.len()) as u32,
            };
            if !index.is_purged(log_id.index) {
                index.push(&log_id, slot, None).map_err(corrupt)?;
            }
            *max_index = Some(max_index.map_or(log_id.index, |m: u64| m.max(log_id.index)));
        }
        Kind::Vote => index.vote = Some(postcard::from_bytes(payload).map_err(decode_err)?),
        Kind::Committed => index.committed = postcard::from_bytes(payload).map_err(decode_err)?,
        Kind::Purge => {
            let upto: LogId = postcard::from_bytes(payload).map_err(decode_err)?;
            index.purge_upto(&upto);
        }
        Kind::Truncate => {
            let since: u64 = postcard::from_bytes(payload).map_err(decode_err)?;
            index.truncate_from(since);
        }
    }
    Ok(())
}

/// The first valid record after the bad one at `pos`: its offset, and
/// whether it belongs to the group commit the bad record was part of.
fn valid_record_after(
    data: &[u8],
    pos: usize,
    prev: Option<Header>,
    max: u32,
) -> Option<(usize, bool)> {
    let batch = prev.map(|h| {
        if h.batch_end() {
            h.batch.wrapping_add(1)
        } else {
            h.batch
        }
    });
    let mut p = pos + 1;
    while p + HEADER <= data.len() {
        if let Ok((h, _)) = record::parse(&data[p..], max) {
            return Some((p, batch.is_none_or(|b| b == h.batch)));
        }
        p += 1;
    }
    None
}

fn truncate_file(path: &Path, len: u64, opts: &StorageOptions) -> Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io("open", path, e))?;
    f.set_len(len).map_err(|e| Error::io("truncate", path, e))?;
    sync_file(&f, false, &opts.fsync_faults).map_err(|e| Error::io("fsync", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip() {
        assert_eq!(parse_segment_name(&segment_name(42)), Some(42));
        assert_eq!(parse_segment_name("42.seg"), None);
        assert_eq!(parse_segment_name("00000000000000000042.tmp"), None);
    }
}
