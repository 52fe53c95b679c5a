//! Storage counters (process-wide atomics) for the metrics exporter, and the
//! one place every fsync goes through (so it is counted, timed, and subject
//! to fault injection).

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use super::options::FsyncFaults;

/// Process-wide storage counters. Read them with [`stats`].
#[derive(Debug, Default)]
pub struct StorageStats {
    fsyncs: AtomicU64,
    fsync_nanos_total: AtomicU64,
    fsync_nanos_max: AtomicU64,
    fsync_failures: AtomicU64,
    log_batches: AtomicU64,
    log_requests: AtomicU64,
    log_bytes: AtomicU64,
}

/// A plain copy of [`StorageStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageStatsSnapshot {
    /// fsync/fdatasync calls (log, snapshots, identity, directories).
    pub fsyncs: u64,
    pub fsync_nanos_total: u64,
    pub fsync_nanos_max: u64,
    pub fsync_failures: u64,
    /// Group commits of the log writer (one fsync each when fsync is on).
    pub log_batches: u64,
    /// Requests (append/vote/purge/truncate) those group commits carried.
    pub log_requests: u64,
    /// Bytes written to log segments.
    pub log_bytes: u64,
}

static STATS: StorageStats = StorageStats {
    fsyncs: AtomicU64::new(0),
    fsync_nanos_total: AtomicU64::new(0),
    fsync_nanos_max: AtomicU64::new(0),
    fsync_failures: AtomicU64::new(0),
    log_batches: AtomicU64::new(0),
    log_requests: AtomicU64::new(0),
    log_bytes: AtomicU64::new(0),
};

/// The process-wide storage counters.
pub fn stats() -> &'static StorageStats {
    &STATS
}

impl StorageStats {
    pub fn snapshot(&self) -> StorageStatsSnapshot {
        StorageStatsSnapshot {
            fsyncs: self.fsyncs.load(Relaxed),
            fsync_nanos_total: self.fsync_nanos_total.load(Relaxed),
            fsync_nanos_max: self.fsync_nanos_max.load(Relaxed),
            fsync_failures: self.fsync_failures.load(Relaxed),
            log_batches: self.log_batches.load(Relaxed),
            log_requests: self.log_requests.load(Relaxed),
            log_bytes: self.log_bytes.load(Relaxed),
        }
    }

    pub(crate) fn record_batch(&self, requests: u64, bytes: u64) {
        self.log_batches.fetch_add(1, Relaxed);
        self.log_requests.fetch_add(requests, Relaxed);
        self.log_bytes.fetch_add(bytes, Relaxed);
    }
}

/// Upper bounds of the fsync latency histogram buckets, in nanoseconds:
/// 50 µs doubling to ~3.3 s; a last, unbounded bucket follows.
pub const FSYNC_BUCKET_BOUNDS_NANOS: [u64; 17] = {
    let mut b = [0u64; 17];
    let mut i = 0;
    while i < 17 {
        b[i] = 50_000 << i;
        i += 1;
    }
    b
};

/// Per-bucket fsync counts (not cumulative); index 17 is above the last bound.
static FSYNC_BUCKETS: [AtomicU64; 18] = [const { AtomicU64::new(0) }; 18];

/// fsync latency counts per bucket of [`FSYNC_BUCKET_BOUNDS_NANOS`] (plus
/// the overflow bucket), for the metrics exporter.
pub fn fsync_histogram() -> [u64; 18] {
    std::array::from_fn(|i| FSYNC_BUCKETS[i].load(Relaxed))
}

/// How a file is synced: `data` = fdatasync (contents, size), otherwise fsync.
pub(crate) fn sync_file(file: &File, data_only: bool, faults: &FsyncFaults) -> io::Result<()> {
    // Timed from before an injected delay: a drill with the fsync knob must
    // look like a slow disk in the fsync histogram (the guide found it did not).
    let start = Instant::now();
    if faults.is_on() {
        if faults.delay_ppm > 0 && rand::random_range(0..1_000_000) < faults.delay_ppm {
            std::thread::sleep(faults.delay);
        }
        let broken = faults
            .fail_after
            .is_some_and(|n| STATS.fsyncs.load(Relaxed) >= n);
        if broken || (faults.fail_ppm > 0 && rand::random_range(0..1_000_000) < faults.fail_ppm) {
            STATS.fsync_failures.fetch_add(1, Relaxed);
            return Err(io::Error::other(
                "injected fsync failure (storage fsync_faults)",
            ));
        }
    }
    let r = if data_only {
        file.sync_data()
    } else {
        file.sync_all()
    };
    let nanos = start.elapsed().as_nanos() as u64;
    STATS.fsyncs.fetch_add(1, Relaxed);
    STATS.fsync_nanos_total.fetch_add(nanos, Relaxed);
    STATS.fsync_nanos_max.fetch_max(nanos, Relaxed);
    let bucket = FSYNC_BUCKET_BOUNDS_NANOS.partition_point(|b| *b < nanos);
    FSYNC_BUCKETS[bucket].fetch_add(1, Relaxed);
    if r.is_err() {
        STATS.fsync_failures.fetch_add(1, Relaxed);
    }
    r
}
