//! Says so when the disk is too slow for the Raft timings (issue 11, hole 7).
//!
//! A follower answers an AppendEntries only once the entries are fsynced, and
//! a vote only once the vote is. The leader waits for an answer as long as the
//! peer has recently needed (`peer::rto`, at most the peer RPC timeout), and a
//! node's election clock stands still while its own disk holds a leader's or a
//! candidate's message (`raft::contact`), so a disk slower than the heartbeat
//! slows commits and elections down by its fsync time; one slower than half
//! the peer RPC timeout stops them, as every disk did before the fix at the
//! default timings. Nothing in the Raft messages says why; this check does,
//! in the log, with what to change.

use std::time::Duration;

use super::stats::StorageStatsSnapshot;

/// How often the mean fsync time is compared with the timings.
pub const CHECK_EVERY: Duration = Duration::from_secs(10);

/// The warning for one window between two snapshots of the storage counters,
/// if the disk was too slow in it. Pure: the caller logs it.
pub fn warning(
    before: &StorageStatsSnapshot,
    after: &StorageStatsSnapshot,
    heartbeat: Duration,
    peer_rpc_timeout: Duration,
) -> Option<String> {
    let n = after.fsyncs.checked_sub(before.fsyncs)?;
    if n == 0 {
        return None;
    }
    let nanos = after
        .fsync_nanos_total
        .checked_sub(before.fsync_nanos_total)?;
    let mean = Duration::from_nanos(nanos / n);
    // Under load an answer waits for the fsync in flight and then its own.
    let answer = mean * 2;
    if answer <= heartbeat {
        return None;
    }
    let what = if answer > peer_rpc_timeout {
        format!(
            "answers to AppendEntries and votes can take longer than the peer RPC timeout ({} ms): \
             with a quorum of disks like this the cluster can neither commit nor elect a leader",
            peer_rpc_timeout.as_millis()
        )
    } else {
        "every commit and every election waits for it: the cluster works, but slower".to_string()
    };
    Some(format!(
        "the disk is slower than the Raft timings: fsyncs took {} ms on average over the last {n}; \
         an answer can wait for two of them (heartbeat {} ms); {what}. Use a faster disk",
        mean.as_millis(),
        heartbeat.as_millis(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(fsyncs: u64, total_ms: u64) -> StorageStatsSnapshot {
        StorageStatsSnapshot {
            fsyncs,
            fsync_nanos_total: total_ms * 1_000_000,
            ..Default::default()
        }
    }

    const HB: Duration = Duration::from_millis(50);
    const RPC: Duration = Duration::from_secs(2);

    #[test]
    fn a_disk_well_faster_than_the_heartbeat_is_fine() {
        assert_eq!(warning(&snap(10, 100), &snap(20, 300), HB, RPC), None);
        // No fsync in the window: nothing to judge.
        assert_eq!(warning(&snap(10, 100), &snap(10, 100), HB, RPC), None);
    }

    #[test]
    fn a_disk_slower_than_half_the_heartbeat_is_named_with_its_consequence() {
        let w = warning(&snap(0, 0), &snap(10, 300), HB, RPC).unwrap();
        assert!(
            w.contains("fsyncs took 30 ms on average over the last 10"),
            "{w}"
        );
        assert!(w.contains("the cluster works, but slower"), "{w}");
        // 300 ms fsyncs (the fault suite's fsync-stall): slower, not stopped.
        let w = warning(&snap(0, 0), &snap(10, 3_000), HB, RPC).unwrap();
        assert!(w.contains("the cluster works, but slower"), "{w}");
        let w = warning(&snap(0, 0), &snap(10, 11_000), HB, RPC).unwrap();
        assert!(w.contains("can neither commit nor elect"), "{w}");
    }

    #[test]
    fn counters_that_went_backwards_are_ignored() {
        assert_eq!(warning(&snap(20, 500), &snap(10, 100), HB, RPC), None);
    }
}
