//! What a follower or learner last heard from a leader: when, and the
//! leader's commit index at that moment. Bounded-staleness reads
//! (`raft::read_index`) and the health check use both, so that freshness covers the index lag and not only the
//! time since contact (the lesson of rqlite #1672).

use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::NodeId;

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

    pub fn voted(&self, at: Instant) {
        *self.voted_at.lock() = Some(at);
    }

    /// Time since this node last heard from a leader or granted a vote.
    pub fn quiet_for(&self, now: Instant) -> Option<Duration> {
        let heard = self.last().map(|c| c.at);
        let voted = *self.voted_at.lock();
        heard.max(voted).map(|t| now.saturating_duration_since(t))
    }

    pub fn last(&self) -> Option<Contact> {
        *self.last.lock()
    }

    pub fn age(&self, now: Instant) -> Option<Duration> {
        self.last().map(|c| now.saturating_duration_since(c.at))
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
}
