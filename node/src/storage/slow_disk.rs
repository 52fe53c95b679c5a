//! Says so when the disk is too slow for the Raft timings (issue 11, hole 7).
//!
//! openraft 0.9 gives up on an AppendEntries after one heartbeat interval and
//! on a vote after `election_timeout_min`, and a follower answers either only
//! once its log or vote is fsynced. So when fsyncs take longer than the
//! heartbeat, this node's acknowledgements always arrive too late: as a
//! follower it never counts toward a commit, and when a quorum's disks are
//! that slow the cluster neither commits nor elects. Nothing in the Raft
//! messages says why; this check does, in the log, with what to change.

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
    election_timeout_min: Duration,
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
    if mean * 2 <= heartbeat {
        return None;
    }
    let what = if mean * 2 > election_timeout_min {
        "neither entries nor votes can be acknowledged in time: with a quorum of disks like this the cluster can neither commit nor elect a leader"
    } else {
        "entries cannot be acknowledged in time: this member does not count toward commits"
    };
    Some(format!(
        "the disk is too slow for the Raft timings: fsyncs took {} ms on average over the last {n}; \
         an answer can wait for two of them, and the leader gives up on an AppendEntries after the \
         heartbeat interval ({} ms) and on a vote after the election timeout min ({} ms); {what}. \
         Use a faster disk, or raise the heartbeat above twice the fsync time and the election \
         timeouts with it (RaftCluster spec.raft)",
        mean.as_millis(),
        heartbeat.as_millis(),
        election_timeout_min.as_millis()
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
    const EMIN: Duration = Duration::from_millis(200);

    #[test]
    fn a_disk_well_faster_than_the_heartbeat_is_fine() {
        assert_eq!(warning(&snap(10, 100), &snap(20, 300), HB, EMIN), None);
        // No fsync in the window: nothing to judge.
        assert_eq!(warning(&snap(10, 100), &snap(10, 100), HB, EMIN), None);
    }

    #[test]
    fn a_disk_slower_than_half_the_heartbeat_is_named_with_its_consequence() {
        let w = warning(&snap(0, 0), &snap(10, 300), HB, EMIN).unwrap();
        assert!(
            w.contains("fsyncs took 30 ms on average over the last 10"),
            "{w}"
        );
        assert!(w.contains("does not count toward commits"), "{w}");
        let w = warning(&snap(0, 0), &snap(10, 1_100), HB, EMIN).unwrap();
        assert!(w.contains("can neither commit nor elect"), "{w}");
    }

    #[test]
    fn counters_that_went_backwards_are_ignored() {
        assert_eq!(warning(&snap(20, 500), &snap(10, 100), HB, EMIN), None);
    }
}
