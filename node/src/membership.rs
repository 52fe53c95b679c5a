//! Membership changes the node runs on behalf of a caller, detached from it:
//! openraft proposes the second phase of a joint change from the future that
//! asked for the change, so a caller that goes away (a deadline, an operator
//! stopped mid-change) must not take that future with it. And, on the leader,
//! [`finish_left_joint`] completes a committed joint configuration nobody is
//! finishing (its caller's leader died between the two phases).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use openraft::ChangeMembers;
use openraft::error::{ClientWriteError, RaftError};
use tracing::Instrument;

use crate::node::Node;
use crate::raft::joint;
use crate::typ::ClientWriteResponse;
use crate::{NodeId, NodeInfo};

pub type ChangeResult =
    Result<ClientWriteResponse, RaftError<NodeId, ClientWriteError<NodeId, NodeInfo>>>;

/// Runs `change` (`kind` names it in traces) to the end in its own task, in
/// the caller's span; the caller may stop waiting, the change goes on.
pub async fn change(
    node: &Arc<Node>,
    kind: &'static str,
    change: ChangeMembers<NodeId, NodeInfo>,
    retain: bool,
) -> ChangeResult {
    let node = node.clone();
    let task = async move {
        let _running = node.begin_membership_change();
        node.links()
            .membership_change(kind, node.raft().change_membership(change, retain))
            .await
    };
    match tokio::spawn(task.instrument(tracing::Span::current())).await {
        Ok(r) => r,
        // Only a panic ends the task early.
        Err(e) => {
            tracing::error!("membership change task failed: {e}");
            Err(RaftError::Fatal(openraft::error::Fatal::Panicked))
        }
    }
}

/// On the leader, until `stop`: whenever the membership is a committed joint
/// configuration and no change of this node is running, propose its new
/// configuration (removed voters stay as learners: nothing is dropped that a
/// later, explicit removal could not drop).
pub async fn finish_left_joint(node: Arc<Node>, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    let mut metrics = node.raft().metrics();
    // A change in flight commits its joint entry and proposes the next one
    // within a few heartbeats; wait this long before deciding it was abandoned.
    let grace = Duration::from_millis(2 * node.limits().election_timeout_ms_max);
    loop {
        let m = metrics.borrow_and_update().clone();
        let target = if m.state.is_leader() && !node.membership_change_running() {
            let membership = m.membership_config.membership();
            let index = m.membership_config.log_id().map_or(0, |l| l.index);
            joint::finish_target(membership.get_joint_config(), index, node.commit_index(&m))
        } else {
            None
        };
        if let Some(voters) = target {
            tokio::select! {
                _ = tokio::time::sleep(grace) => {}
                _ = &mut stop => return,
            }
            let now = node.metrics();
            let still = now.state.is_leader()
                && !node.membership_change_running()
                && now.membership_config.log_id() == m.membership_config.log_id();
            if still {
                finish(&node, voters).await;
            }
            continue;
        }
        tokio::select! {
            r = metrics.changed() => if r.is_err() { return },
            _ = &mut stop => return,
        }
    }
}

async fn finish(node: &Arc<Node>, voters: BTreeSet<NodeId>) {
    tracing::warn!(voters = ?voters, "finishing a joint configuration that no change is completing");
    match change(
        node,
        "finish_joint",
        ChangeMembers::ReplaceAllVoters(voters),
        true,
    )
    .await
    {
        Ok(r) => tracing::info!(index = r.log_id.index, "joint configuration finished"),
        Err(e) => tracing::warn!("finishing the joint configuration failed (retried): {e}"),
    }
}
