//! The pre-vote (Raft thesis §9.6) as pure decisions: whether a voter grants a
//! pre-vote, and whether a candidate won its pre-vote round. The driver that
//! asks and campaigns is `raft::election`; the peer handler is `raft::server`.
//!
//! Refusing a pre-vote never affects safety, only when an election may start;
//! granting one too easily lets a node that cannot hear the leader unseat it.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::NodeId;
use crate::raft::quorum;
use crate::typ::LogId;

/// The wire message (inside the peer envelope).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreVoteRequest {
    /// The candidate's last log id: a voter only supports a candidate whose log
    /// is at least as up to date as its own (the same rule as the real vote).
    pub last_log_id: Option<LogId>,
}

/// What a voter knows of itself when a pre-vote request arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoterState {
    pub is_leader: bool,
    /// It campaigns as a leader-transfer target on the leader's behalf.
    pub transfer_campaign: bool,
    /// Time since it last heard from a leader or granted a vote (`None`: never).
    pub quiet_for: Option<Duration>,
    /// The leader lease: the election timeout max (openraft refuses real votes
    /// within it too).
    pub lease: Duration,
    /// Time since this process started. A restarted voter has no leader
    /// contact in memory; it must not take that for a dead leader.
    pub since_start: Duration,
}

/// Grant only if this voter has no live leader (it is not the leader, nor a
/// transfer target campaigning for it, has run for at least a lease, and has
/// neither heard from a leader nor granted a vote within the lease) and the
/// candidate's log is at least as up to date as ours. `mine` is `None` when our
/// own log could not be read: then nothing is granted.
pub fn grant(state: &VoterState, mine: Option<Option<LogId>>, req: &PreVoteRequest) -> bool {
    if state.is_leader || state.transfer_campaign {
        return false;
    }
    if state.since_start < state.lease {
        return false;
    }
    if state.quiet_for.is_some_and(|quiet| quiet < state.lease) {
        return false;
    }
    match mine {
        Some(mine) => req.last_log_id.as_ref() >= mine.as_ref(),
        None => false,
    }
}

/// A pre-vote round is won when the voters that granted it, with the candidate
/// itself, form a majority of every active configuration.
pub fn won(configs: &[BTreeSet<NodeId>], me: NodeId, granted: &BTreeSet<NodeId>) -> bool {
    let mut yes = granted.clone();
    yes.insert(me);
    quorum::is_joint_majority(configs, &yes)
}

#[cfg(test)]
mod tests {
    use openraft::CommittedLeaderId;
    use proptest::prelude::*;

    use super::*;

    fn log_id(term: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, 0), index)
    }

    fn idle() -> VoterState {
        VoterState {
            is_leader: false,
            transfer_campaign: false,
            quiet_for: None,
            lease: Duration::from_millis(400),
            since_start: Duration::from_secs(60),
        }
    }

    #[test]
    fn a_voter_with_a_live_leader_refuses() {
        let req = PreVoteRequest {
            last_log_id: Some(log_id(5, 100)),
        };
        let mine = Some(Some(log_id(5, 100)));
        assert!(grant(&idle(), mine, &req));
        let heard = VoterState {
            quiet_for: Some(Duration::from_millis(100)),
            ..idle()
        };
        assert!(
            !grant(&heard, mine, &req),
            "heard a leader within the lease"
        );
        let expired = VoterState {
            quiet_for: Some(Duration::from_millis(400)),
            ..idle()
        };
        assert!(grant(&expired, mine, &req));
        let leader = VoterState {
            is_leader: true,
            ..idle()
        };
        assert!(!grant(&leader, mine, &req));
        let target = VoterState {
            transfer_campaign: true,
            ..idle()
        };
        assert!(!grant(&target, mine, &req));
        // Hole 2 of issue 11: a voter that just (re)started knows no leader yet;
        // it waits out one lease before it supports anyone.
        let fresh = VoterState {
            since_start: Duration::from_millis(399),
            ..idle()
        };
        assert!(
            !grant(&fresh, mine, &req),
            "refused within a lease of starting"
        );
        let settled = VoterState {
            since_start: Duration::from_millis(400),
            ..idle()
        };
        assert!(grant(&settled, mine, &req));
        assert!(!grant(&idle(), None, &req), "unreadable log: no grant");
    }

    proptest! {
        /// The log rule, against the definition of "at least as up to date"
        /// (Raft §5.4.1): a higher last term wins, equal terms compare indexes.
        #[test]
        fn grants_only_a_candidate_at_least_as_up_to_date(
            ct in 0u64..4, ci in 0u64..6, mt in 0u64..4, mi in 0u64..6,
            c_empty: bool, m_empty: bool,
        ) {
            let cand = (!c_empty).then(|| log_id(ct, ci));
            let mine = (!m_empty).then(|| log_id(mt, mi));
            let up_to_date = match (cand, mine) {
                (_, None) => true,
                (None, Some(_)) => false,
                (Some(_), Some(_)) => (ct, ci) >= (mt, mi),
            };
            let got = grant(&idle(), Some(mine), &PreVoteRequest { last_log_id: cand });
            prop_assert_eq!(got, up_to_date);
        }
    }

    #[test]
    fn a_round_needs_a_joint_majority_counting_the_candidate() {
        let configs = [BTreeSet::from([1, 2, 3])];
        assert!(!won(&configs, 1, &BTreeSet::new()));
        assert!(won(&configs, 1, &BTreeSet::from([2])));
        let joint = [BTreeSet::from([1, 2, 3]), BTreeSet::from([3, 4, 5])];
        assert!(!won(&joint, 1, &BTreeSet::from([2])));
        assert!(won(&joint, 1, &BTreeSet::from([2, 4, 5])));
    }
}
