//! The reconcile planner: a pure function from what was observed to the next step.
//!
//! `plan(&Observed) -> Plan` has no client, no clock and no randomness. It returns at
//! most one [`Step`], the status to write and an optional Event. Every step passes
//! [`safety::check`] before it is returned; a step the rules refuse becomes a
//! `*Blocked` condition and Event instead.

mod decide;
pub mod disruption;
mod drain;
pub mod observed;
pub mod placement;
pub mod recovery;
pub mod safety;
#[doc(hidden)]
pub mod sim;
mod status;
#[cfg(test)]
mod tests;
pub mod volumes;

pub use observed::*;
pub use status::record_failure;

use crate::crd::RaftClusterStatus;

/// Bounds of the planner, in one place.
pub mod limits {
    /// "In sync" (docs/design.md, "Caught up: two meanings"): at most this many
    /// entries behind the leader. Stricter than the node's own "caught up for
    /// promotion" (1,000), which it enforces on every promotion.
    /// Small enough that promoting it does not stall commits, large enough that a
    /// member under steady write load still counts as caught up.
    pub const IN_SYNC_LAG_MAX: u64 = 64;
    /// A caught-up learner is promoted only after its pod has been Ready (the node's
    /// own health check: a member in contact with the leader and caught up) this
    /// long, like autopilot's server stabilization time. Costs this much per scale-out
    /// or replacement; saves promoting a node that flaps.
    pub const PROMOTION_STABILIZATION_MS: i64 = 10_000;
    /// After a leaving pod stopped serving and no EndpointSlice lists it, the
    /// drain still waits until this long after it stopped serving: every
    /// node's kube-proxy programs the Service from the EndpointSlices on its
    /// own schedule, so connections can still reach the pod for a moment (the
    /// e2e saw bounded reads routed to a removed learner on a busy machine).
    pub const DRAIN_GRACE_MS: i64 = 5_000;
    /// Requeue while something is in progress (seconds).
    pub const REQUEUE_BUSY_SECS: u64 = 3;
    /// Requeue when everything is settled (seconds).
    pub const REQUEUE_IDLE_SECS: u64 = 60;
    /// A StatefulSet's `FailedCreate` Event older than this no longer explains missing
    /// pods (the controller repeats it on each retry, backing off up to ~5 min).
    pub const CREATE_FAILURE_RECENT_MS: i64 = 10 * 60 * 1000;
}

/// One member in a membership request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMember {
    pub node_id: NodeId,
    /// The pod name; also where the node is reached.
    pub name: String,
}

/// What a voter change does, for its Event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Promote,
    Remove,
    Replace,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteReason {
    RollingUpdate,
    AutoReplace,
    /// It reports the cluster a forced new cluster left behind.
    AbandonedCluster,
}

/// The one action of a reconcile.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Bootstrap: `Initialize` sent to `pod` with all initial voters.
    Initialize {
        pod: String,
        members: Vec<NewMember>,
    },
    /// `AddLearner` through the leader.
    AddLearner { member: NewMember },
    /// One joint-consensus `ChangeMembership` through the leader.
    ChangeMembership {
        voters: Vec<NodeId>,
        kind: ChangeKind,
        added: Vec<NodeId>,
        removed: Vec<NodeId>,
    },
    /// `RemoveMember` of a learner through the leader.
    RemoveLearner { node_id: NodeId, name: String },
    /// `TransferLeader` sent to the leader.
    TransferLeader { from: NodeId, target: NodeId },
    /// Set a StatefulSet's replicas.
    ScaleStatefulSet { set: Set, replicas: u32 },
    /// Set `raftkv.dev/serving=false` on pods about to leave the membership, so the
    /// client and read Services stop routing to them first (see `drain`).
    StopServing { pods: Vec<String> },
    /// Delete a pod (and, for autoReplace, its PVC first).
    DeletePod {
        pod: String,
        delete_pvc: bool,
        reason: DeleteReason,
    },
    /// `ForceNewCluster` sent to `pod` (the `raftkv.dev/force-new-cluster`
    /// annotation, removed first): it becomes the one voter of a new cluster.
    ForceNewCluster {
        pod: String,
        /// The cluster the pod reported: the node refuses if it changed.
        cluster_id: String,
        /// What may be lost, for the Warning Event and the condition.
        note: String,
    },
    /// Bootstrap from a backup (`spec.bootstrap.fromBackup`): the backup streamed
    /// to `pod` (`Cluster/Restore`), which restarts as the one voter of a new
    /// cluster holding it; the other voters join it as learners afterwards.
    Restore {
        pod: String,
        /// The backup, described.
        source: String,
    },
}

impl Step {
    /// Bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Initialize { .. } => "initialize",
            Step::AddLearner { .. } => "add_learner",
            Step::ChangeMembership { .. } => "change_membership",
            Step::RemoveLearner { .. } => "remove_learner",
            Step::TransferLeader { .. } => "transfer_leader",
            Step::ScaleStatefulSet { .. } => "scale_statefulset",
            Step::DeletePod { .. } => "delete_pod",
            Step::StopServing { .. } => "stop_serving",
            Step::ForceNewCluster { .. } => "force_new_cluster",
            Step::Restore { .. } => "restore",
        }
    }

    /// Changes Raft membership or leadership (counts as a membership action).
    pub fn is_membership_action(&self) -> bool {
        matches!(
            self,
            Step::Initialize { .. }
                | Step::AddLearner { .. }
                | Step::ChangeMembership { .. }
                | Step::RemoveLearner { .. }
                | Step::TransferLeader { .. }
                | Step::ForceNewCluster { .. }
                | Step::Restore { .. }
        )
    }
}

/// Which operation a step or a wait belongs to (phase and blocked reasons).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intent {
    Bootstrap,
    ScaleOut,
    ScaleIn,
    Replace,
    ReadReplicas,
    AutoReplace,
    Update,
    Recover,
    ForceNewCluster,
}

impl Intent {
    pub fn blocked_reason(self) -> &'static str {
        match self {
            Intent::Bootstrap => "BootstrapBlocked",
            Intent::ScaleOut => "ScaleOutBlocked",
            Intent::ScaleIn => "ScaleInBlocked",
            Intent::Replace => "ReplaceBlocked",
            Intent::ReadReplicas => "ReadReplicasBlocked",
            Intent::AutoReplace => "AutoReplaceBlocked",
            Intent::Update => "UpdateBlocked",
            Intent::Recover => "NoLeader",
            Intent::ForceNewCluster => "ForceNewClusterRefused",
        }
    }
}

/// An Event to emit on the RaftCluster (after the step succeeded, or when blocked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedEvent {
    /// CamelCase reason, e.g. `MemberPromoted`.
    pub reason: String,
    /// Action verb, e.g. `ChangeMembership`.
    pub action: String,
    pub note: String,
    pub warning: bool,
    /// The object the action concerned (the Event's `related`): (kind, name).
    /// It also keeps kube's Event aggregation from folding distinct actions together.
    pub related: Option<(&'static str, String)>,
}

/// The result of planning one reconcile.
#[derive(Clone, Debug)]
pub struct Plan {
    pub step: Option<Step>,
    /// Why nothing (or this) is happening: `(reason, message)`.
    pub blocked: Option<(String, String)>,
    /// Replicas the voters' StatefulSet must have after this reconcile.
    pub voters_replicas: u32,
    /// Replicas the read replicas' StatefulSet must have after this reconcile.
    pub read_replicas: u32,
    /// `raftkv.dev/role` labels to set: (pod, role).
    pub labels: Vec<(String, String)>,
    /// The voters' PodDisruptionBudget: as many voters down as the quorum survives.
    pub disruption: disruption::Budget,
    /// PersistentVolumeClaims to grow to `spec.storage.size`.
    pub grow_pvcs: Vec<String>,
    /// The claim size each existing StatefulSet keeps (voters, read replicas): its
    /// volumeClaimTemplate is immutable. `None`: not created yet, `spec.storage.size`.
    pub claim_sizes: (Option<String>, Option<String>),
    /// Pods whose `raftkv.dev/serving` label goes back to `"true"`.
    pub serve_again: Vec<String>,
    pub status: RaftClusterStatus,
    pub event: Option<PlannedEvent>,
    /// Warning Events about the cluster rather than a step (e.g. `ZoneRisk` when it
    /// appears), published whatever the step.
    pub warnings: Vec<PlannedEvent>,
    /// Something is in progress, or a member is not healthy: look again soon. A member
    /// coming back (a restarted pod whose name resolves again, a wiped pod that now
    /// answers) raises no Kubernetes event the controller would see, so only polling
    /// notices it.
    pub busy: bool,
}

/// Decide the next step. Pure: same input, same plan.
pub fn plan(obs: &Observed) -> Plan {
    let view = ClusterView::new(obs);
    // The force-new-cluster annotation, while present, decides alone: nothing
    // else should change the cluster while someone asks to rebuild it.
    let mut outcome = recovery::decide(&view).unwrap_or_else(|| decide::decide(&view));
    if let decide::Outcome::Act(step, intent) = &outcome
        && let Err(blocked) = safety::check(step, &view)
    {
        outcome = decide::Outcome::Blocked(*intent, blocked.0);
    }
    let mut leaving = Vec::new();
    if let decide::Outcome::Act(step, intent) = &outcome {
        leaving = drain::leaving_pods(step, &view);
        if let Some(first) = drain::before_removal(step, *intent, &view) {
            outcome = first;
        }
    }
    let serve_again = drain::to_restore(&view, &leaving);
    if obs.paused
        && let decide::Outcome::Act(step, _) = &outcome
    {
        outcome = decide::Outcome::Paused(status::step_message(step));
    }

    let (mut voters_replicas, mut read_replicas) = current_replicas(&view);
    if let decide::Outcome::Act(Step::ScaleStatefulSet { set, replicas }, _) = &outcome {
        match set {
            Set::Voters => voters_replicas = *replicas,
            Set::Read => read_replicas = *replicas,
        }
    }
    let labels = status::role_labels(&view);
    let disruption = disruption::voter_budget(&view);
    let (zone_risk, zone_event) =
        placement::condition(&placement::placement(&view), &obs.previous_conditions);
    let (mut status, event, blocked) = status::build(&view, &outcome, vec![zone_risk]);
    let volumes = obs
        .pvcs
        .as_deref()
        .map(|pvcs| volumes::expansion(&obs.spec.storage_size, pvcs))
        .unwrap_or_default();
    status.storage = volumes.status;
    status.highest_commit = recovery::highest_commit(&view);
    let warnings = zone_event.into_iter().collect();
    let busy = !matches!(outcome, decide::Outcome::Idle | decide::Outcome::Paused(_))
        || status.phase == Some(crate::crd::Phase::Degraded);
    let step = match outcome {
        decide::Outcome::Act(step, _) => Some(step),
        _ => None,
    };
    Plan {
        step,
        blocked,
        voters_replicas,
        read_replicas,
        labels,
        disruption,
        grow_pvcs: volumes.patch,
        claim_sizes: (
            obs.voters_sts.as_ref().and_then(|s| s.claim_size.clone()),
            obs.read_sts.as_ref().and_then(|s| s.claim_size.clone()),
        ),
        serve_again,
        status,
        event,
        warnings,
        busy,
    }
}

/// StatefulSet replicas to keep when this reconcile does not change them. A missing
/// StatefulSet starts at the desired size only while the cluster is not initialized
/// (bootstrap); later a missing one is recreated at the size of the membership.
fn current_replicas(view: &ClusterView) -> (u32, u32) {
    let obs = view.obs;
    let voters = match &obs.voters_sts {
        Some(sts) => sts.replicas,
        None if !view.initialized => obs.spec.replicas,
        None => view
            .membership
            .map(|m| m.voter_ids().len() as u32)
            .unwrap_or(obs.spec.replicas),
    };
    let read = obs.read_sts.as_ref().map(|s| s.replicas).unwrap_or(0);
    (voters, read)
}
