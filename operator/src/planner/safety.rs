//! The safety rules, in one place. Every step the planner returns has passed
//! [`check`]; nothing else may start a membership change or disrupt a member.
//!
//! 1. One membership change in flight: no change while the configuration is joint or
//!    its entry is not committed.
//! 2. No voter change unless the healthy voters reach a quorum of BOTH the old and the
//!    new configuration.
//! 3. Never remove the leader: leadership is handed off first.
//! 4. Never initialize when any member reports a membership or a cluster ID.
//! 5. Never act on a member that cannot be identified (unreachable, unknown ID),
//!    except through autoReplace's rule: a member unavailable longer than `after`,
//!    while the healthy voters without it still form a quorum.
//! 6. Force a new cluster only on the named surviving voter, only while no leader
//!    exists and fewer than a quorum of voters is up (`recovery`).

use std::collections::BTreeSet;

use super::observed::{ClusterView, NodeId, Role, fmt_id};
use super::{DeleteReason, Step};

/// Why a step may not run now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked(pub String);

/// A strict majority of `config` is healthy. An empty config has no quorum.
pub fn has_quorum(config: &BTreeSet<NodeId>, healthy: &BTreeSet<NodeId>) -> bool {
    let up = config.iter().filter(|id| healthy.contains(id)).count();
    !config.is_empty() && 2 * up > config.len()
}

/// Checks `step` against every rule. `Ok` means it is safe to execute now.
pub fn check(step: &Step, view: &ClusterView) -> Result<(), Blocked> {
    match step {
        Step::Initialize { pod, members } => {
            if let Some(source) = &view.obs.spec.from_backup {
                return Err(Blocked(format!(
                    "the spec starts this cluster from {source}; never initialize it empty"
                )));
            }
            if view.initialized {
                return Err(Blocked(
                    "a member already reports a membership or cluster ID; never initialize twice"
                        .into(),
                ));
            }
            if members.is_empty() {
                return Err(Blocked("no members to initialize".into()));
            }
            for m in members {
                let p = view.pod_named(&m.name);
                let ok = p
                    .and_then(|p| p.node.as_ref())
                    .is_some_and(|n| n.node_id == m.node_id && n.role == Role::Uninitialized);
                if !ok {
                    return Err(Blocked(format!(
                        "pod {} is not an uninitialized node",
                        m.name
                    )));
                }
            }
            if !members.iter().any(|m| &m.name == pod) {
                return Err(Blocked(
                    "initialize must be sent to one of the members".into(),
                ));
            }
            Ok(())
        }
        Step::Restore { pod, .. } => {
            if view.initialized {
                return Err(Blocked(
                    "a member already reports a membership or cluster ID; a backup is restored only into a new cluster"
                        .into(),
                ));
            }
            if view.obs.previous_restore.is_some() || view.obs.previous_cluster_id.is_some() {
                return Err(Blocked(
                    "this RaftCluster was restored or initialized before; never restore twice"
                        .into(),
                ));
            }
            let empty = view
                .pod_named(pod)
                .and_then(|p| p.node.as_ref())
                .is_some_and(|n| n.role == Role::Uninitialized && n.cluster_id.is_empty());
            if !empty {
                return Err(Blocked(format!(
                    "pod {pod} is not an uninitialized node of no cluster"
                )));
            }
            Ok(())
        }
        Step::AddLearner { member } => {
            no_change_in_flight(view)?;
            let identified = view
                .pod_named(&member.name)
                .and_then(|p| p.node.as_ref())
                .is_some_and(|n| n.node_id == member.node_id);
            if !identified {
                return Err(Blocked(format!(
                    "pod {} does not report node {}",
                    member.name,
                    fmt_id(member.node_id)
                )));
            }
            voter_quorum(view, &current_voters(view))
        }
        Step::ChangeMembership { voters, .. } => {
            no_change_in_flight(view)?;
            let old = current_voters(view);
            let new: BTreeSet<NodeId> = voters.iter().copied().collect();
            if new.is_empty() {
                return Err(Blocked("the new configuration has no voter".into()));
            }
            let leader = view
                .leader_id()
                .ok_or_else(|| Blocked("no leader".into()))?;
            if !new.contains(&leader) {
                return Err(Blocked(format!(
                    "the change removes leader {}: transfer leadership first",
                    fmt_id(leader)
                )));
            }
            let m = view.membership.expect("a leader has a membership");
            for id in new.difference(&old) {
                if !m.learner_ids().contains(id) {
                    return Err(Blocked(format!("{} is not a learner yet", fmt_id(*id))));
                }
                if !view.is_healthy(*id) {
                    return Err(Blocked(format!("learner {} is not caught up", fmt_id(*id))));
                }
            }
            let healthy = view.healthy_voters_or_learners();
            quorum_of(&old, &healthy, "old")?;
            quorum_of(&new, &healthy, "new")
        }
        Step::RemoveLearner { node_id, .. } => {
            no_change_in_flight(view)?;
            let m = view.membership.ok_or_else(|| Blocked("no leader".into()))?;
            if m.voter_ids().contains(node_id) {
                return Err(Blocked(format!(
                    "{} is a voter: voters leave through ChangeMembership",
                    fmt_id(*node_id)
                )));
            }
            voter_quorum(view, &current_voters(view))
        }
        Step::TransferLeader { target, .. } => {
            no_change_in_flight(view)?;
            let voters = current_voters(view);
            if !voters.contains(target) || !view.is_healthy(*target) {
                return Err(Blocked(format!(
                    "transfer target {} is not a healthy voter",
                    fmt_id(*target)
                )));
            }
            if Some(*target) == view.leader_id() {
                return Err(Blocked("target is already the leader".into()));
            }
            Ok(())
        }
        Step::DeletePod { pod, reason, .. } => {
            if !view.initialized {
                return Err(Blocked("cluster not initialized".into()));
            }
            no_change_in_flight(view)?;
            let voters = current_voters(view);
            let p = view
                .pod_named(pod)
                .ok_or_else(|| Blocked(format!("pod {pod} does not exist")))?;
            let id = p.node.as_ref().map(|n| n.node_id);
            let id = id.or_else(|| {
                view.membership.and_then(|m| {
                    m.voters
                        .iter()
                        .chain(&m.learners)
                        .find(|mi| &mi.name == pod)
                        .map(|mi| mi.node_id)
                })
            });
            if id.is_some() && id == view.leader_id() {
                return Err(Blocked(format!(
                    "pod {pod} hosts the leader: transfer leadership first"
                )));
            }
            let mut healthy = view.healthy_voters();
            if let Some(id) = id {
                healthy.remove(&id);
            }
            match reason {
                DeleteReason::RollingUpdate => {
                    if p.node.is_none() && p.ready {
                        return Err(Blocked(format!("pod {pod} cannot be identified")));
                    }
                }
                DeleteReason::AbandonedCluster => {
                    let abandoned = view
                        .obs
                        .previous_forced
                        .as_ref()
                        .map(|f| f.from_cluster_id.as_str());
                    let reports = p.node.as_ref().map(|n| n.cluster_id.as_str());
                    if abandoned.is_none() || reports != abandoned {
                        return Err(Blocked(format!(
                            "pod {pod} does not report the cluster a forced new cluster left behind"
                        )));
                    }
                }
                DeleteReason::AutoReplace => {
                    let after = view
                        .obs
                        .spec
                        .auto_replace_after_ms
                        .ok_or_else(|| Blocked("autoReplace is disabled".into()))?;
                    let since = p
                        .not_ready_since_ms
                        .ok_or_else(|| Blocked(format!("pod {pod} has no not-ready time")))?;
                    if p.ready || view.obs.now_ms - since < after {
                        return Err(Blocked(format!(
                            "pod {pod} has not been unavailable for {after} ms"
                        )));
                    }
                    if id.is_some_and(|id| view.is_healthy(id)) {
                        return Err(Blocked(format!("member on pod {pod} is healthy")));
                    }
                }
            }
            if !has_quorum(&voters, &healthy) {
                return Err(Blocked(format!(
                    "only {} of {} voters healthy without pod {pod}",
                    healthy.len(),
                    voters.len()
                )));
            }
            Ok(())
        }
        // Changes who receives client traffic, never the membership.
        Step::ScaleStatefulSet { .. } | Step::StopServing { .. } => Ok(()),
        // Rule 6: only without a leader, and without a quorum of voters up.
        Step::ForceNewCluster { pod, .. } => match super::recovery::refusal(view, pod) {
            Some(why) => Err(Blocked(why)),
            None => Ok(()),
        },
    }
}

fn current_voters(view: &ClusterView) -> BTreeSet<NodeId> {
    view.membership.map(|m| m.voter_ids()).unwrap_or_default()
}

fn no_change_in_flight(view: &ClusterView) -> Result<(), Blocked> {
    let m = view
        .membership
        .ok_or_else(|| Blocked("no leader reports a membership".into()))?;
    if m.joint || m.configs.len() > 1 {
        return Err(Blocked("a joint membership change is in flight".into()));
    }
    if !view.membership_committed {
        return Err(Blocked(
            "the last membership change is not committed yet".into(),
        ));
    }
    Ok(())
}

fn voter_quorum(view: &ClusterView, voters: &BTreeSet<NodeId>) -> Result<(), Blocked> {
    quorum_of(voters, &view.healthy_voters(), "current")
}

fn quorum_of(
    config: &BTreeSet<NodeId>,
    healthy: &BTreeSet<NodeId>,
    which: &str,
) -> Result<(), Blocked> {
    if has_quorum(config, healthy) {
        return Ok(());
    }
    let up = config.iter().filter(|id| healthy.contains(id)).count();
    Err(Blocked(format!(
        "only {up} of {} voters of the {which} configuration healthy",
        config.len()
    )))
}
