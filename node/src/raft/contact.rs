//! What a follower or learner last heard from a leader: when, and the
//! leader's commit index at that moment. The health check and the pre-vote
//! use the last contact; bounded-staleness reads (`raft::read_index`) use the
//! last contact the leader's quorum *confirmed* ([`crate::raft::lease`]), since
//! a deposed leader keeps sending heartbeats to its minority. Both carry the
//! commit index, so that freshness covers the index lag and not only the time
//! since contact (the lesson of rqlite #1672).

use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::NodeId;
use crate::raft::lease::Arrivals;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contact {
    pub at: Instant,
    pub leader: NodeId,
    pub term: u64,
    /// The leader's commit index carried by that AppendEntries.
    pub leader_commit: u64,
}

#[derive(Debug, Default)]
pub struct LeaderContact {
    last: Mutex<Option<Contact>>,
    /// When this node last granted a vote: a candidate it voted for may be
    /// about to lead, so it refuses pre-votes for a lease as openraft refuses
    /// real votes.
    voted_at: Mutex<Option<Instant>>,
    /// When the current leader's numbered messages arrived.
    arrivals: Mutex<Arrivals>,
    /// The latest contact the leader's quorum confirmed.
    confirmed: Mutex<Option<Contact>>,
    /// A leader's AppendEntries this node is handling (issue 11, hole 7).
    leader_held: Mutex<Held>,
    /// A candidate's vote request this node is handling.
    vote_held: Mutex<Held>,
}

/// Messages this node holds while its own disk makes their sender wait:
/// a follower answers an AppendEntries once the entries are fsynced and a
/// vote once the vote is. The sender is alive and waiting for *us*; the time
/// it waits is not its silence. Without this, a follower whose fsyncs take
/// 300 ms saw its leader's messages 300+ ms apart (openraft sends the next
/// one to a member only after its answer) and campaigned against a healthy
/// leader; a voter persisting a candidate's vote granted pre-votes to others.
#[derive(Debug, Default)]
struct Held {
    count: usize,
    /// When the last one was answered (accepted or granted).
    answered_at: Option<Instant>,
    /// How long the last one was held: for votes, about one fsync of this
    /// node's disk, which the election timeout allows for (`raft::election`).
    last_took: Option<Duration>,
}

/// Which kind of message a [`Hold`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldKind {
    AppendEntries,
    Vote,
}

/// Held until answered: [`Hold::answered`] when it was accepted (its sender
/// was heard then), dropped otherwise.
#[must_use]
pub struct Hold<'a> {
    held: &'a Mutex<Held>,
    since: Instant,
}

impl Hold<'_> {
    pub fn answered(self, at: Instant) {
        self.held.lock().answered_at = Some(at);
    }
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        let mut held = self.held.lock();
        held.count -= 1;
        held.last_took = Some(self.since.elapsed());
    }
}

/// Time since `t`, or zero while a message of that kind is held.
fn silence(now: Instant, held: &Held, heard: Option<Instant>) -> Option<Duration> {
    if held.count > 0 {
        return Some(Duration::ZERO);
    }
    heard
        .max(held.answered_at)
        .map(|t| now.saturating_duration_since(t))
}

impl LeaderContact {
    pub fn record(&self, c: Contact) {
        let mut last = self.last.lock();
        // Never move the commit index backwards within a term (reordered RPCs).
        if let Some(prev) = *last
            && prev.term == c.term
            && prev.leader == c.leader
            && prev.leader_commit > c.leader_commit
        {
            *last = Some(Contact {
                leader_commit: prev.leader_commit,
                ..c
            });
            return;
        }
        *last = Some(c);
    }

    /// Numbered message `seq` of `leader` at `term` arrived at `at`.
    pub fn arrived(&self, leader: NodeId, term: u64, seq: u64, at: Instant) {
        self.arrivals.lock().record(leader, term, seq, at);
    }

    /// The leader says a quorum acknowledged it after it received this node's
    /// answer to message `seq`; it had committed `leader_commit` when it said so.
    pub fn confirm(&self, leader: NodeId, term: u64, seq: u64, leader_commit: u64) {
        let Some(at) = self.arrivals.lock().arrival(leader, term, seq) else {
            return;
        };
        let mut confirmed = self.confirmed.lock();
        // Confirmations can arrive out of order: keep the freshest.
        if confirmed.is_some_and(|c| c.at > at) {
            return;
        }
        *confirmed = Some(Contact {
            at,
            leader,
            term,
            leader_commit,
        });
    }

    /// The latest contact a quorum confirmed: bounded reads trust only this.
    pub fn confirmed(&self) -> Option<Contact> {
        *self.confirmed.lock()
    }

    pub fn voted(&self, at: Instant) {
        *self.voted_at.lock() = Some(at);
    }

    /// When this node last granted a vote.
    pub fn voted_at(&self) -> Option<Instant> {
        *self.voted_at.lock()
    }

    /// Holds a message of `kind` until it is answered (see [`Held`]).
    pub fn hold(&self, kind: HoldKind) -> Hold<'_> {
        let held = match kind {
            HoldKind::AppendEntries => &self.leader_held,
            HoldKind::Vote => &self.vote_held,
        };
        held.lock().count += 1;
        Hold {
            held,
            since: Instant::now(),
        }
    }

    /// How long this node last took to persist a vote (its own campaign's or
    /// one it granted); zero before any.
    pub fn vote_time(&self) -> Duration {
        self.vote_held.lock().last_took.unwrap_or_default()
    }

    /// The election clock: time since this node last heard from a leader or
    /// granted a vote, not counting the time its own disk held a leader's
    /// or a candidate's message (zero while it does).
    pub fn quiet_for(&self, now: Instant) -> Option<Duration> {
        let voted = *self.voted_at.lock();
        let leader = self.age(now);
        let vote = silence(now, &self.vote_held.lock(), voted);
        match (leader, vote) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn last(&self) -> Option<Contact> {
        *self.last.lock()
    }

    /// Time since this node last heard from a leader, not counting the time
    /// its own disk held the leader's message (zero while it does).
    pub fn age(&self, now: Instant) -> Option<Duration> {
        silence(now, &self.leader_held.lock(), self.last().map(|c| c.at))
    }
}

/// A contact from leader 1 at term 2, for tests of what uses contacts.
#[cfg(test)]
pub(crate) fn contact(at: Instant, commit: u64) -> Contact {
    Contact {
        at,
        leader: 1,
        term: 2,
        leader_commit: commit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_index_never_moves_back_within_a_term() {
        let lc = LeaderContact::default();
        let t0 = Instant::now();
        lc.record(contact(t0, 10));
        lc.record(contact(t0 + Duration::from_millis(1), 7));
        let last = lc.last().unwrap();
        assert_eq!(last.leader_commit, 10);
        assert_eq!(last.at, t0 + Duration::from_millis(1));
    }

    /// Issue 11, hole 7: a follower whose disk holds the leader's message
    /// for 300 ms does not count that time as the leader's silence, nor
    /// does a voter persisting a candidate's vote.
    #[test]
    fn time_spent_holding_a_leaders_or_candidates_message_is_not_silence() {
        let lc = LeaderContact::default();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(lc.quiet_for(t0), None);
        lc.record(contact(t0, 1));
        let hold = lc.hold(HoldKind::AppendEntries);
        // The entries' fsync takes 300 ms: no silence meanwhile.
        assert_eq!(lc.age(t0 + ms(300)), Some(Duration::ZERO));
        assert_eq!(lc.quiet_for(t0 + ms(300)), Some(Duration::ZERO));
        hold.answered(t0 + ms(300));
        // The clock restarts at the answer, not at the message's arrival.
        assert_eq!(lc.age(t0 + ms(310)), Some(ms(10)));
        assert_eq!(lc.quiet_for(t0 + ms(310)), Some(ms(10)));
        // A message not accepted (dropped unanswered) stamps nothing.
        drop(lc.hold(HoldKind::AppendEntries));
        assert_eq!(lc.age(t0 + ms(500)), Some(ms(200)));
        // A vote being persisted: quiet for the election, not leader contact.
        let vote = lc.hold(HoldKind::Vote);
        assert_eq!(lc.quiet_for(t0 + ms(900)), Some(Duration::ZERO));
        assert_eq!(lc.age(t0 + ms(900)), Some(ms(600)));
        drop(vote);
        assert_eq!(lc.quiet_for(t0 + ms(900)), Some(ms(600)));
    }

    #[test]
    fn a_confirmation_dates_contact_by_the_arrival_of_the_confirmed_message() {
        let lc = LeaderContact::default();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        lc.arrived(1, 2, 1, t0);
        lc.arrived(1, 2, 2, t0 + ms(50));
        assert_eq!(lc.confirmed(), None);
        lc.confirm(1, 2, 1, 10);
        assert_eq!(lc.confirmed(), Some(contact(t0, 10)));
        // A late confirmation of an older message does not move it back.
        lc.confirm(1, 2, 2, 12);
        lc.confirm(1, 2, 1, 11);
        assert_eq!(lc.confirmed(), Some(contact(t0 + ms(50), 12)));
        // Unknown numbers (another term, forgotten) confirm nothing.
        lc.confirm(1, 3, 2, 99);
        assert_eq!(lc.confirmed().unwrap().leader_commit, 12);
    }
}
