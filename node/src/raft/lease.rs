//! The quorum lease: how recently a quorum acknowledged this leader, on the
//! leader's own clock, and how a follower or learner learns a freshness it can
//! trust without synchronized clocks (hole 3 of issue 11).
//!
//! **On the leader**, the lease is the latest time `T` such that a joint
//! majority of voters acknowledged messages the leader sent at or after `T`
//! (the leader counts itself as acknowledging now). It is measured from the
//! send times of acknowledged AppendEntries, never from a metrics snapshot:
//! openraft's `millis_since_quorum_ack` is computed when metrics are published,
//! so a process stopped by SIGSTOP resumes with a snapshot that still says
//! "10 ms ago" (the fault suite's pause nemesis found exactly that). No other
//! leader can have been elected before `T` (its voters would have refused the
//! messages sent after it), so everything committed before `T` is in this
//! leader's commit index once it has applied an entry of its own term.
//!
//! **On a follower**, the time it *received* a message is no proof: a deposed
//! leader cut off from the majority keeps sending heartbeats to its minority.
//! So the leader numbers its messages to each member, and once a quorum
//! acknowledged messages sent *after* it received the member's answer to
//! message `s`, its next message says "confirmed `s`". The member then knows
//! that some time after it received `s` (its own clock) the leader still led,
//! with the commit index the confirming message carries: once applied up to
//! that index, its data is fresh as of the arrival of `s`. The cost is about
//! two heartbeats of freshness.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::NodeId;
use crate::raft::quorum;
use crate::typ::RaftMetrics;

/// How many send times and answers are remembered per member. Confirmation
/// lags by a couple of round trips; older numbers are simply not confirmed.
const REMEMBERED_MAX: usize = 1024;

/// What an outgoing AppendEntries carries for the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stamp {
    /// This message's number for its target (1, 2, ...; 0 means unnumbered).
    pub seq: u64,
    /// The target's latest answered message that a quorum confirmed since (0: none).
    pub confirmed_seq: u64,
}

/// The leader side: send times and answers per member, for one term.
pub struct Lease {
    me: NodeId,
    state: Mutex<LeaderState>,
}

#[derive(Default)]
struct LeaderState {
    term: u64,
    /// When this node first saw `term` (set by `enter`): a leader of `term`
    /// that no quorum has acknowledged yet has been unheard since then.
    entered_at: Option<Instant>,
    /// Voter configurations (two during a joint change), from the latest metrics.
    configs: Vec<BTreeSet<NodeId>>,
    /// `term` when this node leads it and has applied one of its entries, so
    /// its commit index covers everything earlier terms committed.
    serving: bool,
    members: HashMap<NodeId, Member>,
}

#[derive(Default)]
struct Member {
    next_seq: u64,
    /// Messages not yet answered: (seq, sent at), oldest first.
    in_flight: VecDeque<(u64, Instant)>,
    /// The latest send time among the messages the member accepted.
    acked_sent: Option<Instant>,
    /// The member's accepting answers: (seq, received at), oldest first.
    answers: VecDeque<(u64, Instant)>,
    /// Its slowest recent answer (send to answer) and when it came.
    slowest: Option<(Duration, Instant)>,
}

/// How fast the memory of a slow answer fades: halved every this long.
const SLOW_HALF_LIFE: Duration = Duration::from_secs(5);

fn faded(slowest: Option<(Duration, Instant)>, now: Instant) -> Option<Duration> {
    let (took, at) = slowest?;
    let halvings = now.saturating_duration_since(at).as_secs_f64() / SLOW_HALF_LIFE.as_secs_f64();
    Some(took.mul_f64(0.5f64.powf(halvings)))
}

impl Lease {
    pub fn new(me: NodeId) -> Self {
        Lease {
            me,
            state: Mutex::new(LeaderState::default()),
        }
    }

    /// Follows openraft's metrics: the term, the voters, whether this node
    /// leads with an applied entry of its term.
    pub fn observe(&self, m: &RaftMetrics) {
        let leads = m.state.is_leader() && m.current_leader == Some(self.me);
        let applied_own = m.last_applied.map(|l| l.leader_id.term) == Some(m.current_term);
        let mut s = self.state.lock();
        s.enter(m.current_term);
        s.configs = m.membership_config.membership().get_joint_config().clone();
        s.serving = leads && applied_own;
    }

    /// Numbers a message to `target` sent now as leader of `term`.
    pub fn outgoing(&self, target: NodeId, term: u64, now: Instant) -> Stamp {
        let mut s = self.state.lock();
        s.enter(term);
        let quorum = if s.serving {
            s.quorum_time(self.me, now)
        } else {
            None
        };
        let m = s.members.entry(target).or_default();
        m.next_seq += 1;
        let seq = m.next_seq;
        push_bounded(&mut m.in_flight, (seq, now));
        let confirmed_seq = quorum.map_or(0, |t| confirmed(&m.answers, t));
        Stamp { seq, confirmed_seq }
    }

    /// `target` accepted message `seq` of `term` (any answer but a higher vote).
    pub fn answered(&self, target: NodeId, term: u64, seq: u64, now: Instant) {
        let mut s = self.state.lock();
        if s.term != term {
            return;
        }
        let Some(m) = s.members.get_mut(&target) else {
            return;
        };
        while let Some(&(sent_seq, sent_at)) = m.in_flight.front() {
            if sent_seq > seq {
                break;
            }
            m.in_flight.pop_front();
            if sent_seq == seq {
                m.acked_sent = m.acked_sent.max(Some(sent_at));
                push_bounded(&mut m.answers, (seq, now));
                let took = now.saturating_duration_since(sent_at);
                if faded(m.slowest, now).is_none_or(|p| took >= p) {
                    m.slowest = Some((took, now));
                }
            }
        }
    }

    /// How long a quorum of voters recently took to answer (this node counts
    /// as answering at once): the smallest `L` such that the voters whose
    /// slowest recent answer is within `L` form a joint majority. Zero when
    /// no quorum answered yet. A follower answers once its fsync is done, so
    /// on a slow disk even a healthy quorum's acknowledgements are that much
    /// apart; check-quorum allows for it (issue 11, hole 7).
    pub fn quorum_answer_time(&self, term: u64, now: Instant) -> Duration {
        let s = self.state.lock();
        if s.term != term {
            return Duration::ZERO;
        }
        const NEVER: u64 = 0;
        let k = quorum::committed_index(&s.configs, |id| {
            if id == self.me {
                return u64::MAX;
            }
            match s.members.get(&id).map(|m| faded(m.slowest, now)) {
                Some(Some(took)) => u64::MAX - (took.as_nanos().min(u64::MAX as u128 - 1) as u64),
                // Answered, but too long ago to remember how slowly: quick.
                Some(None) if s.members[&id].acked_sent.is_some() => u64::MAX - 1,
                _ => NEVER,
            }
        });
        if k == NEVER {
            return Duration::ZERO;
        }
        Duration::from_nanos(u64::MAX - k)
    }

    /// When `target` last accepted a message of this leader at `term`.
    pub fn last_answer(&self, target: NodeId, term: u64) -> Option<Instant> {
        let s = self.state.lock();
        if s.term != term {
            return None;
        }
        s.members
            .get(&target)
            .and_then(|m| m.answers.back())
            .map(|(_, at)| *at)
    }

    /// How long a quorum has been silent towards this node as leader of
    /// `term`: since the latest quorum acknowledgement, or since the node saw
    /// the term when no quorum ever acknowledged it. `None` when the term is
    /// not the lease's current one. Unlike [`Lease::quorum_age`] this does not
    /// wait for an entry of the term to be applied: it decides whether a
    /// leader should refuse work because nobody answers it (check-quorum).
    pub fn quorum_silence(&self, term: u64, now: Instant) -> Option<Duration> {
        let s = self.state.lock();
        if s.term != term {
            return None;
        }
        let since = s.quorum_time(self.me, now).or(s.entered_at)?;
        Some(now.saturating_duration_since(since))
    }

    /// How long ago a quorum last acknowledged this node as leader of `term`;
    /// `None` when it does not serve that term (not leader, or no entry of its
    /// term applied yet) or no quorum acknowledged it.
    pub fn quorum_age(&self, term: u64, now: Instant) -> Option<Duration> {
        let s = self.state.lock();
        if s.term != term || !s.serving {
            return None;
        }
        s.quorum_time(self.me, now)
            .map(|t| now.saturating_duration_since(t))
    }
}

impl LeaderState {
    /// A new term forgets everything: answers from an old term prove nothing.
    fn enter(&mut self, term: u64) {
        if term != self.term {
            self.term = term;
            self.entered_at = Some(Instant::now());
            self.serving = false;
            self.members.clear();
        }
    }

    fn quorum_time(&self, me: NodeId, now: Instant) -> Option<Instant> {
        quorum_time(&self.configs, now, |id| {
            if id == me {
                Some(now)
            } else {
                self.members.get(&id).and_then(|m| m.acked_sent)
            }
        })
    }
}

/// The latest time `T` such that the voters acknowledged at or after `T` form
/// a joint majority (`acked(id)`: the latest send time `id` acknowledged).
pub fn quorum_time(
    configs: &[BTreeSet<NodeId>],
    now: Instant,
    acked: impl Fn(NodeId) -> Option<Instant>,
) -> Option<Instant> {
    // Times as nanoseconds before `now`, negated into "larger is later" with
    // 0 for never, so the commit-index rule applies unchanged.
    const NEVER: u64 = 0;
    let key = |t: Option<Instant>| match t {
        None => NEVER,
        Some(t) => {
            u64::MAX
                - now
                    .saturating_duration_since(t)
                    .as_nanos()
                    .min(u64::MAX as u128 - 1) as u64
        }
    };
    let k = quorum::committed_index(configs, |id| key(acked(id)));
    (k != NEVER).then(|| now - Duration::from_nanos(u64::MAX - k))
}

/// The latest answer received at or before `t` (0 when none).
pub fn confirmed(answers: &VecDeque<(u64, Instant)>, t: Instant) -> u64 {
    answers
        .iter()
        .rev()
        .find(|(_, at)| *at <= t)
        .map_or(0, |(seq, _)| *seq)
}

fn push_bounded<T>(q: &mut VecDeque<T>, v: T) {
    if q.len() == REMEMBERED_MAX {
        q.pop_front();
    }
    q.push_back(v);
}

/// The member side: when each numbered message of the current leader arrived.
#[derive(Debug, Default)]
pub struct Arrivals {
    leader: NodeId,
    term: u64,
    at: VecDeque<(u64, Instant)>,
}

impl Arrivals {
    pub fn record(&mut self, leader: NodeId, term: u64, seq: u64, at: Instant) {
        if (leader, term) != (self.leader, self.term) {
            *self = Arrivals {
                leader,
                term,
                at: VecDeque::new(),
            };
        }
        push_bounded(&mut self.at, (seq, at));
    }

    /// When message `seq` of `leader` at `term` arrived, if remembered.
    pub fn arrival(&self, leader: NodeId, term: u64, seq: u64) -> Option<Instant> {
        if (leader, term) != (self.leader, self.term) {
            return None;
        }
        self.at
            .iter()
            .rev()
            .find(|(s, _)| *s == seq)
            .map(|(_, at)| *at)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Brute force: among the candidate times, the latest one a joint
    /// majority acknowledged at or after.
    fn quorum_oracle(
        configs: &[BTreeSet<NodeId>],
        acked: &HashMap<NodeId, Option<Instant>>,
    ) -> Option<Instant> {
        acked
            .values()
            .flatten()
            .filter(|&&candidate| {
                let yes: BTreeSet<NodeId> = acked
                    .iter()
                    .filter(|(_, t)| t.is_some_and(|t| t >= candidate))
                    .map(|(id, _)| *id)
                    .collect();
                quorum::is_joint_majority(configs, &yes)
            })
            .max()
            .copied()
    }

    proptest! {
        #[test]
        fn quorum_time_is_the_latest_time_a_joint_majority_acknowledged(
            configs in prop::collection::vec(prop::collection::btree_set(1u64..=6, 1..=5), 1..=2),
            ages in prop::collection::vec(prop::option::of(0u64..50), 6..=6),
        ) {
            let now = Instant::now() + ms(1000);
            let acked: HashMap<NodeId, Option<Instant>> = ages
                .iter()
                .enumerate()
                .map(|(i, a)| (i as NodeId + 1, a.map(|a| now - ms(a))))
                .collect();
            let got = quorum_time(&configs, now, |id| acked.get(&id).copied().flatten());
            prop_assert_eq!(got, quorum_oracle(&configs, &acked));
        }
    }

    fn serving_lease(voters: &[NodeId]) -> Lease {
        let lease = Lease::new(1);
        let mut s = lease.state.lock();
        s.enter(3);
        s.configs = vec![voters.iter().copied().collect()];
        s.serving = true;
        drop(s);
        lease
    }

    #[test]
    fn a_leader_s_lease_ages_from_the_send_time_of_acknowledged_messages() {
        let lease = serving_lease(&[1, 2, 3]);
        let t0 = Instant::now();
        let a = lease.outgoing(2, 3, t0);
        let b = lease.outgoing(3, 3, t0 + ms(5));
        assert_eq!(
            lease.quorum_age(3, t0 + ms(10)),
            None,
            "nobody answered yet"
        );
        lease.answered(2, 3, a.seq, t0 + ms(50));
        // Node 2 accepted a message sent at t0: with the leader, a quorum at t0.
        assert_eq!(lease.quorum_age(3, t0 + ms(60)), Some(ms(60)));
        lease.answered(3, 3, b.seq, t0 + ms(70));
        assert_eq!(lease.quorum_age(3, t0 + ms(70)), Some(ms(65)));
        assert_eq!(lease.last_answer(3, 3), Some(t0 + ms(70)));
        assert_eq!(lease.last_answer(3, 4), None);
        assert_eq!(lease.last_answer(9, 3), None);
        // Stopped for 3 s: the lease is 3 s old, whatever metrics said before.
        assert_eq!(lease.quorum_age(3, t0 + ms(3005)), Some(ms(3000)));
        // Another term knows nothing.
        assert_eq!(lease.quorum_age(4, t0 + ms(70)), None);
    }

    #[test]
    fn the_quorum_answer_time_is_what_the_fastest_majority_needs() {
        let lease = serving_lease(&[1, 2, 3]);
        let t0 = Instant::now();
        assert_eq!(lease.quorum_answer_time(3, t0), Duration::ZERO);
        // Node 2 answers in 300 ms (a slow disk), node 3 in 900 ms.
        let a = lease.outgoing(2, 3, t0);
        let b = lease.outgoing(3, 3, t0);
        lease.answered(2, 3, a.seq, t0 + ms(300));
        lease.answered(3, 3, b.seq, t0 + ms(900));
        // With the leader, node 2 is a majority: its 300 ms, faded by the
        // 600 ms since.
        assert_eq!(
            lease.quorum_answer_time(3, t0 + ms(900)),
            ms(300).mul_f64(0.5f64.powf(0.6 / 5.0))
        );
        // A quick answer does not hide the slow one at once; it fades with time.
        let c = lease.outgoing(2, 3, t0 + ms(900));
        lease.answered(2, 3, c.seq, t0 + ms(901));
        assert_eq!(
            lease.quorum_answer_time(3, t0 + ms(901)),
            ms(300).mul_f64(0.5f64.powf(0.601 / 5.0))
        );
        assert!(lease.quorum_answer_time(3, t0 + ms(60_000)) < ms(2));
        assert_eq!(
            lease.quorum_answer_time(4, t0),
            Duration::ZERO,
            "another term"
        );
    }

    #[test]
    fn answers_of_an_old_term_do_not_count() {
        let lease = serving_lease(&[1, 2, 3]);
        let t0 = Instant::now();
        let a = lease.outgoing(2, 3, t0);
        let _ = lease.outgoing(2, 4, t0 + ms(1));
        lease.answered(2, 3, a.seq, t0 + ms(2));
        assert_eq!(lease.quorum_age(3, t0 + ms(3)), None);
        assert_eq!(lease.quorum_age(4, t0 + ms(3)), None);
    }

    #[test]
    fn a_member_s_answer_is_confirmed_only_by_a_quorum_acknowledging_later_messages() {
        let lease = serving_lease(&[1, 2, 3]);
        let t0 = Instant::now();
        // Learner 9 answers message 1 at t0+10.
        let l1 = lease.outgoing(9, 3, t0);
        lease.answered(9, 3, l1.seq, t0 + ms(10));
        // Voter 2 accepted a message sent before that answer: not enough.
        let v1 = lease.outgoing(2, 3, t0 + ms(5));
        lease.answered(2, 3, v1.seq, t0 + ms(12));
        assert_eq!(lease.outgoing(9, 3, t0 + ms(20)).confirmed_seq, 0);
        // Voter 2 accepted a message sent after it: message 1 is confirmed.
        let v2 = lease.outgoing(2, 3, t0 + ms(21));
        lease.answered(2, 3, v2.seq, t0 + ms(25));
        assert_eq!(lease.outgoing(9, 3, t0 + ms(30)).confirmed_seq, l1.seq);
    }

    #[test]
    fn a_leader_that_has_not_applied_its_own_entry_confirms_nothing() {
        let lease = serving_lease(&[1, 2]);
        lease.state.lock().serving = false;
        let t0 = Instant::now();
        let a = lease.outgoing(2, 3, t0);
        lease.answered(2, 3, a.seq, t0 + ms(1));
        assert_eq!(lease.outgoing(2, 3, t0 + ms(2)).confirmed_seq, 0);
        assert_eq!(lease.quorum_age(3, t0 + ms(2)), None);
    }

    #[test]
    fn arrivals_belong_to_one_leader_and_term() {
        let mut a = Arrivals::default();
        let t0 = Instant::now();
        a.record(1, 3, 1, t0);
        a.record(1, 3, 2, t0 + ms(1));
        assert_eq!(a.arrival(1, 3, 2), Some(t0 + ms(1)));
        assert_eq!(a.arrival(1, 4, 2), None);
        a.record(2, 4, 1, t0 + ms(2));
        assert_eq!(a.arrival(1, 3, 1), None);
        assert_eq!(a.arrival(2, 4, 1), Some(t0 + ms(2)));
    }
}
