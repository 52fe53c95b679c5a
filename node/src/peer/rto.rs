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

use std::time::{Duration, Instant};

/// How fast the memory of a slow answer fades: halved every this long. Per
/// answer would be too fast: a slow disk answers a heartbeat that carries no
/// entries at once, and a few of those made the leader forget the 400 ms
/// answers of the entries between them.
const HALF_LIFE: Duration = Duration::from_secs(5);

/// What one peer's recent AppendEntries answers say about it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rto {
    /// The slowest recent answer (or deadline missed: the answer would have
    /// been slower than that) and when; it fades with [`HALF_LIFE`].
    peak: Option<(Duration, Instant)>,
}

impl Rto {
    /// The deadline of the next AppendEntries: `base` is what openraft asked
    /// for (the heartbeat interval), `cap` the peer RPC timeout (a heartbeat
    /// above it, up to 5 s in the RaftCluster spec, is kept). Twice the
    /// recent peak: a missed deadline doubles the next one.
    pub fn deadline(&self, base: Duration, cap: Duration, now: Instant) -> Duration {
        let seen = self.peak(now).map_or(base, |p| (p * 2).max(base));
        seen.min(cap.max(base))
    }

    /// The slowest recent answer as of `now`, faded.
    fn peak(&self, now: Instant) -> Option<Duration> {
        let (latency, at) = self.peak?;
        let halvings = now.saturating_duration_since(at).as_secs_f64() / HALF_LIFE.as_secs_f64();
        Some(latency.mul_f64(0.5f64.powf(halvings)))
    }

    fn saw(&mut self, took: Duration, now: Instant) {
        if self.peak(now).is_none_or(|p| took >= p) {
            self.peak = Some((took, now));
        }
    }

    /// An answer came `latency` after the request left; it is `now`.
    pub fn answered(&mut self, latency: Duration, now: Instant) {
        self.saw(latency, now);
    }

    /// No answer within `deadline`: the peer needs longer than that. A quick
    /// answer to an empty heartbeat afterwards does not undo it (the slow
    /// part is the disk, which a heartbeat does not touch).
    pub fn timed_out(&mut self, deadline: Duration, now: Instant) {
        self.saw(deadline, now);
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
        let t0 = Instant::now();
        assert_eq!(r.deadline(HB, CAP, t0), HB);
        for i in 0..10 {
            r.answered(ms(2), t0 + ms(50 * i));
        }
        assert_eq!(r.deadline(HB, CAP, t0 + ms(500)), HB);
    }

    #[test]
    fn a_peer_behind_a_slow_link_is_waited_for_after_a_few_timeouts() {
        // Every answer takes 300 ms: 50, 100 and 200 ms deadlines miss it,
        // the fourth (400 ms) gets it, and from then on it is waited for.
        let mut r = Rto::default();
        let mut now = Instant::now();
        let mut missed = 0;
        loop {
            let d = r.deadline(HB, CAP, now);
            now += d.min(ms(300));
            if d >= ms(300) {
                r.answered(ms(300), now);
                break;
            }
            r.timed_out(d, now);
            missed += 1;
        }
        assert_eq!(missed, 3);
        for _ in 0..100 {
            assert!(r.deadline(HB, CAP, now) >= ms(600));
            now += ms(300);
            r.answered(ms(300), now);
        }
    }

    #[test]
    fn quick_heartbeat_answers_between_slow_appends_do_not_hide_the_disk() {
        // A 400 ms disk answers entries in 400 ms and an empty heartbeat at
        // once; 50 ms apart, the heartbeats must not bring the deadline down.
        let mut r = Rto::default();
        let t0 = Instant::now();
        r.answered(ms(400), t0);
        for i in 1..=20 {
            r.answered(ms(1), t0 + ms(50 * i));
        }
        assert!(r.deadline(HB, CAP, t0 + ms(1000)) >= ms(600));
    }

    #[test]
    fn a_quick_heartbeat_answer_after_timeouts_keeps_the_backoff() {
        let mut r = Rto::default();
        let t0 = Instant::now();
        for d in [50, 100, 200, 400] {
            assert_eq!(r.deadline(HB, CAP, t0), ms(d));
            r.timed_out(ms(d), t0);
        }
        r.answered(ms(1), t0);
        assert_eq!(r.deadline(HB, CAP, t0), ms(800));
    }

    #[test]
    fn the_deadline_never_exceeds_the_cap_and_recovers_when_the_peer_does() {
        let mut r = Rto::default();
        let t0 = Instant::now();
        for _ in 0..40 {
            let d = r.deadline(HB, CAP, t0);
            r.timed_out(d, t0);
        }
        assert_eq!(r.deadline(HB, CAP, t0), CAP);
        // A heartbeat above the cap is openraft's own timeout: kept.
        assert_eq!(r.deadline(ms(5000), CAP, t0), ms(5000));
        r.answered(ms(1500), t0);
        assert_eq!(r.deadline(HB, CAP, t0), CAP);
        // Fast answers again: the slow peak fades back to the heartbeat.
        for i in 1..=60 {
            r.answered(ms(1), t0 + Duration::from_secs(i));
        }
        assert_eq!(r.deadline(HB, CAP, t0 + Duration::from_secs(60)), HB);
    }
}
