//! Every bound and knob of the storage, in one place (STYLE.md item 8).

use std::time::Duration;

use super::error::{Error, Result};

/// Bounds and knobs of the node's storage. `Default` is the production
/// configuration; [`StorageOptions::validate`] runs at [`super::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageOptions {
    /// Soft size of a log segment file. Purge deletes whole segments only, so
    /// this is the granularity of reclaiming disk after a snapshot; larger
    /// segments mean fewer files and fewer directory fsyncs, smaller ones
    /// reclaim disk sooner. A segment may exceed it by one append request (a
    /// request is never split across segments).
    pub segment_bytes_max: u64,
    /// Upper bound on the bytes one group commit writes before its fsync. A
    /// larger batch amortizes the fsync over more appends; it also delays the
    /// acknowledgement of the first append in the batch by the write time of
    /// the rest.
    pub batch_bytes_max: usize,
    /// Upper bound on the append/vote/purge/truncate requests one group
    /// commit takes from the queue (same trade-off as `batch_bytes_max`).
    pub batch_requests_max: usize,
    /// Capacity of the queue in front of the log writer thread, in requests.
    /// A full queue makes `append` wait (backpressure) instead of buffering
    /// without bound.
    pub queue_requests_max: usize,
    /// Bytes of recently appended log entries kept in memory, so replication
    /// of fresh entries needs no disk read. Entries older than this are read
    /// from their segment file. Costs this much memory per node at most
    /// (8 MiB holds thousands of typical entries, which is all a follower
    /// that keeps up ever asks for; a lagging one reads the files).
    pub log_cache_bytes_max: usize,
    /// Largest single record (one log entry or a vote); a length field above
    /// this is treated as corruption at recovery. Must exceed the largest
    /// entry a command can produce (key + value limits + framing).
    pub record_bytes_max: u32,
    /// fsync after every batch. `false` ONLY for a labelled benchmark: without
    /// it an acknowledged write can be lost on power failure (docs/design.md
    /// invariant 4). No test may turn it off.
    pub fsync: bool,
    /// Fault injection for fsync; off by default, logs loudly when on.
    pub fsync_faults: FsyncFaults,
}

/// Fault injection for fsync (docs/design.md: off by default, loud when on).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsyncFaults {
    /// Fraction of fsyncs that fail, in parts per million. A failed fsync
    /// stops the log writer: every later write fails (the node must restart
    /// and recover from disk, as after fsyncgate).
    pub fail_ppm: u32,
    /// Fraction of fsyncs that are delayed by `delay`, in parts per million.
    pub delay_ppm: u32,
    /// How long a delayed fsync sleeps before it runs.
    pub delay: Duration,
    /// Every fsync after the first this many of the process fails: a disk that
    /// breaks while the node runs (a test of what a fatal storage error does).
    pub fail_after: Option<u64>,
}

impl FsyncFaults {
    pub fn is_on(&self) -> bool {
        self.fail_ppm > 0
            || (self.delay_ppm > 0 && !self.delay.is_zero())
            || self.fail_after.is_some()
    }
}

/// Bytes of a record header (see `record.rs`).
pub(crate) const RECORD_HEADER_BYTES: usize = 16;

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            segment_bytes_max: 64 * 1024 * 1024,
            batch_bytes_max: 4 * 1024 * 1024,
            batch_requests_max: 1024,
            queue_requests_max: 1024,
            log_cache_bytes_max: 8 * 1024 * 1024,
            record_bytes_max: 16 * 1024 * 1024,
            fsync: true,
            fsync_faults: FsyncFaults::default(),
        }
    }
}

impl StorageOptions {
    /// Checks the bounds against each other; called by [`super::open`].
    pub fn validate(&self) -> Result<()> {
        let fail = |m: String| Err(Error::InvalidOptions(m));
        if self.segment_bytes_max < 64 * 1024 {
            return fail(format!(
                "segment_bytes_max {} is below 64 KiB",
                self.segment_bytes_max
            ));
        }
        if self.segment_bytes_max > 4 * 1024 * 1024 * 1024 {
            return fail(format!(
                "segment_bytes_max {} is above 4 GiB",
                self.segment_bytes_max
            ));
        }
        if self.batch_bytes_max == 0 || self.batch_requests_max == 0 || self.queue_requests_max == 0
        {
            return fail(
                "batch_bytes_max, batch_requests_max and queue_requests_max must be positive"
                    .into(),
            );
        }
        if (self.record_bytes_max as usize) < 2 * 1024 * 1024 {
            // kv::KvLimits allows 1 MiB values and 4 KiB keys; leave room for framing.
            return fail(format!(
                "record_bytes_max {} is below 2 MiB",
                self.record_bytes_max
            ));
        }
        if self.record_bytes_max as u64 + RECORD_HEADER_BYTES as u64 > self.segment_bytes_max {
            return fail("record_bytes_max must fit in a segment".into());
        }
        if self.fsync_faults.fail_ppm > 1_000_000 || self.fsync_faults.delay_ppm > 1_000_000 {
            return fail("fsync fault rates are parts per million (<= 1000000)".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_options_are_valid_and_durable() {
        let o = StorageOptions::default();
        o.validate().unwrap();
        assert!(o.fsync);
        assert!(!o.fsync_faults.is_on());
        let bad = StorageOptions {
            segment_bytes_max: 1,
            ..StorageOptions::default()
        };
        assert!(bad.validate().is_err());
    }
}
