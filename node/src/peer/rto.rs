//! How long an AppendEntries to one peer may take before the leader gives up
//! on it (issue 11, hole 7): a retransmission timeout per peer, as TCP keeps
//! one.
//!
//! openraft 0.9 gives up after one heartbeat interval (50 ms by default), and
//! a follower answers only once the entries are fsynced: a follower behind a
//! 300 ms link or on a 300 ms disk then never answered in time and never
//! counted. A fixed long timeout would fix that and cost every healthy peer
//! a long stall per lost message (and a partitioned one a long wait after
//! the partition heals). So the deadline follows what the peer has shown:
//! at least openraft's own (the heartbeat), at least twice the slowest recent
//! answer, doubled after each timeout in a row, never above the peer RPC
//! timeout. A healthy peer keeps openraft's 50 ms; a peer whose disk or link
//! becomes slow times out a few times (50, 100, 200, 400 ms...) and is then
//! waited for.

use std::time::Duration;

/// What one peer's recent AppendEntries answers say about it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rto {
    /// The slowest recent answer, decaying by a quarter per answer.
    peak: Option<Duration>,
    /// Timeouts in a row since the last answer.
    timeouts: u32,
}

impl Rto {
    /// The deadline of the next AppendEntries: `base` is what openraft asked
    /// for (the heartbeat interval), `cap` the peer RPC timeout.
    pub fn deadline(&self, base: Duration, cap: Duration) -> Duration {
        let seen = self.peak.map_or(base, |p| (p * 2).max(base));
        let backed_off = seen.saturating_mul(1u32 << self.timeouts.min(16));
        backed_off.min(cap)
    }

    /// An answer came `latency` after the request left.
    pub fn answered(&mut self, latency: Duration) {
        self.timeouts = 0;
        self.peak = Some(match self.peak {
            Some(p) => latency.max(p * 3 / 4),
            None => latency,
        });
    }

    /// The request got no answer within its deadline.
    pub fn timed_out(&mut self) {
        self.timeouts = self.timeouts.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HB: Duration = Duration::from_millis(50);
    const CAP: Duration = Duration::from_secs(2);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_healthy_peer_keeps_openrafts_deadline() {
        let mut r = Rto::default();
        assert_eq!(r.deadline(HB, CAP), HB);
        for _ in 0..10 {
            r.answered(ms(2));
        }
        assert_eq!(r.deadline(HB, CAP), HB);
    }

    #[test]
    fn a_peer_behind_a_slow_link_is_waited_for_after_a_few_timeouts() {
        // Every answer takes 300 ms: 50, 100 and 200 ms deadlines miss it,
        // the fourth (400 ms) gets it, and from then on it is waited for.
        let mut r = Rto::default();
        let mut missed = 0;
        loop {
            let d = r.deadline(HB, CAP);
            if d >= ms(300) {
                r.answered(ms(300));
                break;
            }
            r.timed_out();
            missed += 1;
        }
        assert_eq!(missed, 3);
        for _ in 0..100 {
            assert!(r.deadline(HB, CAP) >= ms(600));
            r.answered(ms(300));
        }
        // A disk whose answers vary (one fsync, or two under load) is waited
        // for at the slow end.
        r.answered(ms(600));
        r.answered(ms(300));
        assert!(r.deadline(HB, CAP) >= ms(900), "{:?}", r.deadline(HB, CAP));
    }

    #[test]
    fn the_deadline_never_exceeds_the_cap_and_recovers_when_the_peer_does() {
        let mut r = Rto::default();
        for _ in 0..40 {
            r.timed_out();
        }
        assert_eq!(r.deadline(HB, CAP), CAP);
        r.answered(ms(1500));
        assert_eq!(r.deadline(HB, CAP), CAP);
        // Fast answers again: the slow peak decays back to the heartbeat.
        for _ in 0..30 {
            r.answered(ms(1));
        }
        assert_eq!(r.deadline(HB, CAP), HB);
    }
}
