//! Leader transfer (Raft thesis §3.10), built on openraft 0.9 which has none:
//! the leader refuses new writes, waits until the target holds every entry,
//! stops heartbeats and sends it `TimeoutNow`; the target campaigns (through
//! `trigger().elect()`, bypassing the pre-vote it would not win while the
//! others' leases on the old leader last).
//!
//! [`choose_target`] is the pure decision; [`hand_off`] (leader side) and
//! [`campaign`] (target side) carry it out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::Status;

use crate::NodeId;
use crate::node::{Node, matched_index};
use crate::peer::envelope;

/// Where leadership goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The leader was asked to transfer to itself: nothing to do.
    Stay,
    To(NodeId),
}

/// Why a transfer cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("a membership change is in progress; transfer leadership after it completes")]
    JointConfig,
    #[error("there is no other voter to hand leadership to")]
    NoOtherVoter,
    #[error("node {0} is not a voter; only voters can lead")]
    NotAVoter(NodeId),
}

/// The target of a transfer asked of leader `me`: `requested` (0 = any), or
/// else the other voter holding the most of the log (the fastest to catch up,
/// ties to the highest ID). Refused during a joint configuration (the target's
/// standing in the new config would be unclear) and to non-voters.
pub fn choose_target(
    me: NodeId,
    voters: &[NodeId],
    joint: bool,
    matched: impl Fn(NodeId) -> u64,
    requested: NodeId,
) -> Result<Target, Refusal> {
    if joint {
        return Err(Refusal::JointConfig);
    }
    let target = if requested == 0 {
        voters
            .iter()
            .copied()
            .filter(|v| *v != me)
            // max_by_key keeps the last maximum: ties go to the highest ID.
            .max_by_key(|v| matched(*v))
            .ok_or(Refusal::NoOtherVoter)?
    } else {
        requested
    };
    if target == me {
        return Ok(Target::Stay);
    }
    if !voters.contains(&target) {
        return Err(Refusal::NotAVoter(target));
    }
    Ok(Target::To(target))
}

/// Leader side: hands leadership to `requested` (0 = the best voter).
/// Returns (previous leader, new leader, term).
pub async fn hand_off(node: &Node, requested: NodeId) -> Result<(NodeId, NodeId, u64), Status> {
    let me = node.id();
    let m = node.metrics();
    if !m.state.is_leader() {
        return Err(Status::failed_precondition("not the leader"));
    }
    let membership = m.membership_config.membership();
    let mut voters: Vec<NodeId> = membership.voter_ids().collect();
    voters.sort_unstable();
    let joint = crate::raft::quorum::is_joint(membership.get_joint_config());
    let target = match choose_target(me, &voters, joint, |id| matched_index(&m, id), requested) {
        Ok(Target::Stay) => return Ok((me, me, m.current_term)),
        Ok(Target::To(t)) => t,
        Err(refusal) => return Err(Status::failed_precondition(refusal.to_string())),
    };
    let target_info = membership.get_node(&target).cloned().unwrap_or_default();
    let limits = node.limits();

    let _transferring = node.begin_transfer();
    // Heartbeats back on however this ends (they are stopped below).
    let _heartbeats = HeartbeatGuard(node);
    let deadline = Instant::now() + limits.transfer_timeout;
    // Let the target receive every entry we have.
    let mut metrics = node.raft().metrics();
    loop {
        let m = metrics.borrow_and_update().clone();
        let last = m.last_log_index.unwrap_or(0);
        let target_matched = matched_index(&m, target);
        if target_matched >= last {
            break;
        }
        if tokio::time::timeout_at(deadline.into(), metrics.changed())
            .await
            .is_err()
        {
            return Err(Status::deadline_exceeded(format!(
                "node {target} did not catch up ({target_matched} of {last}) in time"
            )));
        }
    }
    // Stop heartbeats so the other followers' leader leases expire and they
    // will vote. (openraft never campaigns on its own here: elections go
    // through the pre-vote in raft::election, which skips a transferring node.)
    node.raft().runtime_config().heartbeat(false);
    let net = node.net();
    let mut client = net
        .side_client(&target_info.peer_addr)
        .map_err(Status::internal)?;
    let req = net.request(
        target,
        envelope::encode(&m.current_term)?,
        limits.peer_rpc_timeout,
    );
    client.timeout_now(req).await.map_err(|s| {
        Status::unavailable(format!(
            "node {target} refused to campaign: {}",
            s.message()
        ))
    })?;
    loop {
        let m = metrics.borrow_and_update().clone();
        if let Some(l) = m.current_leader
            && l != me
        {
            return Ok((me, l, m.current_term));
        }
        if tokio::time::timeout_at(deadline.into(), metrics.changed())
            .await
            .is_err()
        {
            return Err(Status::deadline_exceeded(format!(
                "node {target} did not take over leadership within {:?}",
                limits.transfer_timeout
            )));
        }
    }
}

/// Restores heartbeats when a transfer ends, however it ends.
struct HeartbeatGuard<'a>(&'a Node);

impl Drop for HeartbeatGuard<'_> {
    fn drop(&mut self) {
        self.0.raft().runtime_config().heartbeat(true);
    }
}

/// Target side, after `TimeoutNow` from `from` at `old_term`: campaign until a
/// leader other than the old one is in place, or the transfer times out.
pub async fn campaign(node: Arc<Node>, old_term: u64, from: NodeId) {
    let limits = node.limits().clone();
    let deadline = Instant::now() + limits.transfer_timeout;
    // Retry at heartbeat pace: the first attempts may be refused while the
    // other followers' leases on the old leader run out.
    let retry = Duration::from_millis(limits.heartbeat_interval_ms);
    let _campaign = node.begin_transfer_campaign();
    while Instant::now() < deadline {
        let m = node.metrics();
        if m.current_term > old_term && m.current_leader.is_some() && m.current_leader != Some(from)
        {
            tracing::info!(leader = ?m.current_leader, term = m.current_term, "leader transfer done");
            return;
        }
        if !m.state.is_candidate() {
            let _ = node.raft().trigger().elect().await;
        }
        tokio::time::sleep(retry).await;
    }
    tracing::warn!("leader transfer: no new leader before the deadline");
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Against brute force: with no request, the target is another voter,
        /// no other voter holds more of the log, and among equals it has the
        /// highest ID.
        #[test]
        fn the_best_caught_up_voter_is_chosen(
            matched in prop::collection::btree_map(1u64..=7, 0u64..10, 1..=7),
            me_pick in 0usize..7,
        ) {
            let voters: Vec<NodeId> = matched.keys().copied().collect();
            let me = voters[me_pick % voters.len()];
            let got = choose_target(me, &voters, false, |id| matched[&id], 0);
            let others: BTreeMap<NodeId, u64> =
                matched.iter().filter(|(id, _)| **id != me).map(|(a, b)| (*a, *b)).collect();
            match got {
                Err(Refusal::NoOtherVoter) => prop_assert!(others.is_empty()),
                Ok(Target::To(t)) => {
                    prop_assert!(t != me);
                    let best = others.values().copied().max().unwrap();
                    prop_assert_eq!(matched[&t], best);
                    let highest = others.iter().rev().find(|(_, m)| **m == best).map(|(id, _)| *id);
                    prop_assert_eq!(Some(t), highest);
                }
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
    }

    #[test]
    fn refusals_name_their_reason() {
        let voters = [1, 2, 3];
        let m = |_| 0;
        assert_eq!(
            choose_target(1, &voters, true, m, 2),
            Err(Refusal::JointConfig)
        );
        assert_eq!(
            choose_target(1, &voters, false, m, 9),
            Err(Refusal::NotAVoter(9))
        );
        assert_eq!(
            choose_target(1, &[1], false, m, 0),
            Err(Refusal::NoOtherVoter)
        );
        assert_eq!(choose_target(1, &voters, false, m, 1), Ok(Target::Stay));
        assert_eq!(choose_target(1, &voters, false, m, 3), Ok(Target::To(3)));
    }
}
