//! The status, conditions, Event and pod role labels a plan writes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use super::decide::Outcome;
use super::observed::{ClusterView, Role, Set, fmt_id};
use super::{ChangeKind, DeleteReason, Intent, PlannedEvent, Step};
use crate::crd::{MemberStatus, MembershipChange, Phase, RaftClusterStatus, voter_selector};

/// `raftkv.dev/role` for every reachable member pod whose label is not current.
pub fn role_labels(view: &ClusterView) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for pod in &view.obs.pods {
        let Some(node) = &pod.node else { continue };
        let role = match node.role {
            Role::Leader => "leader",
            Role::Follower | Role::Candidate => "follower",
            Role::Learner => "learner",
            _ => continue,
        };
        if pod.role_label.as_deref() != Some(role) {
            out.push((pod.name.clone(), role.to_string()));
        }
    }
    out
}

/// What the `Progressing` condition says.
enum Progress {
    /// A step runs, or what it waits for (reason `InProgress`).
    Moving(String),
    /// A safety rule stops the next step: `<Reason>: <why>`.
    Blocked(String),
    /// Paused while a step was due.
    Paused(String),
    /// Nothing to do.
    Settled,
}

/// `(status, reason, message)` of the `Degraded` condition, the first problem found:
/// a blocked step, pods the StatefulSet cannot create, pods that cannot run, then
/// unhealthy voters (expected, and not a degradation, while a planned rolling update
/// restarts them one at a time with a quorum up).
fn degraded_condition(
    view: &ClusterView,
    blocked: Option<&(String, String)>,
    updating: bool,
    quorum_ok: bool,
    healthy: &std::collections::BTreeSet<u64>,
    voters: &std::collections::BTreeSet<u64>,
) -> (bool, String, String) {
    let obs = view.obs;
    if let Some((reason, msg)) = blocked {
        return (true, reason.clone(), msg.clone());
    }
    let not_created: Vec<String> = [
        (obs.name.clone(), &obs.voters_sts),
        (format!("{}-read", obs.name), &obs.read_sts),
    ]
    .into_iter()
    .filter_map(|(name, sts)| {
        let msg = sts.as_ref()?.create_failure.as_ref()?;
        Some(format!("StatefulSet {name} cannot create its pods: {msg}"))
    })
    .collect();
    if !not_created.is_empty() {
        return (true, "PodsNotCreated".into(), not_created.join("; "));
    }
    let mut failing: Vec<_> = obs.pods.iter().filter(|p| p.failing.is_some()).collect();
    failing.sort_by_key(|p| (p.set, p.ordinal));
    if !failing.is_empty() {
        let msg = failing
            .iter()
            .map(|p| format!("{}: {}", p.name, p.failing.as_deref().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join("; ");
        return (true, "PodsFailing".into(), msg);
    }
    let all_healthy = healthy.len() == voters.len() && !voters.is_empty();
    let count = format!("{} of {} voters healthy", healthy.len(), voters.len());
    if view.initialized && !all_healthy {
        if updating && quorum_ok && view.leader.is_some() {
            return (
                false,
                "RollingUpdate".into(),
                format!("{count}: the rolling update restarts one pod at a time"),
            );
        }
        return (true, "MembersUnhealthy".into(), count);
    }
    (false, "Healthy".into(), "no problem found".into())
}

/// `observedGeneration`, and `lastTransitionTime` kept while the status is unchanged.
fn stamp(c: &mut Condition, generation: Option<i64>, previous: &[Condition], now_ms: i64) {
    let now = Time(Timestamp::from_millisecond(now_ms).unwrap_or(Timestamp::UNIX_EPOCH));
    let prev = previous.iter().find(|p| p.type_ == c.type_);
    c.observed_generation = generation;
    c.last_transition_time = match prev {
        Some(p) if p.status == c.status => p.last_transition_time.clone(),
        _ => now,
    };
}

/// A reconcile failed after planning (an apply refused by the API server, a node
/// RPC error): `Degraded=True` with the failure's reason and message, phase
/// `Degraded` once the cluster exists, and the Warning Event that announces it.
pub fn record_failure(
    status: &mut RaftClusterStatus,
    previous: &[Condition],
    now_ms: i64,
    action: &str,
    reason: &str,
    message: &str,
) -> PlannedEvent {
    let generation = status
        .conditions
        .first()
        .and_then(|c| c.observed_generation);
    let mut degraded = cond("Degraded", true, reason, message);
    stamp(&mut degraded, generation, previous, now_ms);
    status.conditions.retain(|c| c.type_ != "Degraded");
    status.conditions.push(degraded);
    if !matches!(
        status.phase,
        Some(Phase::Pending | Phase::Bootstrapping | Phase::Paused)
    ) {
        status.phase = Some(Phase::Degraded);
    }
    PlannedEvent {
        reason: reason.into(),
        action: action.into(),
        note: message.into(),
        warning: true,
        related: None,
    }
}

type Built = (
    RaftClusterStatus,
    Option<PlannedEvent>,
    Option<(String, String)>,
);

/// `extra`: conditions decided elsewhere in the planner (e.g. `ZoneRisk`), stamped here.
pub fn build(view: &ClusterView, outcome: &Outcome, extra: Vec<Condition>) -> Built {
    let obs = view.obs;
    let voters = view.membership.map(|m| m.voter_ids()).unwrap_or_default();
    let healthy = view.healthy_voters();
    let quorum_ok = super::safety::has_quorum(&voters, &healthy);

    let mut members = Vec::new();
    let mut pods: Vec<_> = obs.pods.iter().collect();
    pods.sort_by_key(|p| (p.set, p.ordinal));
    for pod in pods {
        let node = pod.node.as_ref();
        members.push(MemberStatus {
            pod: pod.name.clone(),
            node_id: node.map(|n| fmt_id(n.node_id)),
            role: node.map_or("unreachable", |n| n.role.as_str()).to_string(),
            applied_index: node.map(|n| n.applied_index),
            lag: node.and_then(|n| view.lag(n.node_id)),
            healthy: node.is_some_and(|n| view.is_healthy(n.node_id)),
        });
    }
    // Members no pod reports any more (e.g. a lost volume's old ID).
    if let Some(m) = view.membership {
        for mi in m.voters.iter().chain(&m.learners) {
            if view.pod_of(mi.node_id).is_none() {
                members.push(MemberStatus {
                    pod: mi.name.clone(),
                    node_id: Some(fmt_id(mi.node_id)),
                    role: "missing".into(),
                    applied_index: None,
                    lag: None,
                    healthy: false,
                });
            }
        }
    }

    let read_ready = obs
        .pods
        .iter()
        .filter(|p| p.set == Set::Read)
        .filter_map(|p| p.node.as_ref())
        .filter(|n| n.role == Role::Learner && view.is_healthy(n.node_id))
        .count() as i32;

    let (event, blocked, progress) = match outcome {
        Outcome::Act(step, _) => (
            Some(event_for(view, step)),
            None,
            Progress::Moving(step_message(step)),
        ),
        Outcome::Blocked(intent, msg) => {
            let reason = intent.blocked_reason().to_string();
            let ev = PlannedEvent {
                reason: reason.clone(),
                action: "Plan".into(),
                note: msg.clone(),
                warning: true,
                related: None,
            };
            let progress = Progress::Blocked(format!("{reason}: {msg}"));
            (Some(ev), Some((reason, msg.clone())), progress)
        }
        Outcome::Wait(_, msg) => (None, None, Progress::Moving(msg.clone())),
        Outcome::Paused(next) => (
            None,
            None,
            Progress::Paused(format!(
                "paused by the raftkv.dev/paused annotation; next step when resumed: {next}"
            )),
        ),
        Outcome::Idle => (None, None, Progress::Settled),
    };

    let all_healthy = healthy.len() == voters.len() && !voters.is_empty();
    let updating = matches!(
        outcome,
        Outcome::Act(_, Intent::Update) | Outcome::Wait(Intent::Update, _)
    );
    let degraded = degraded_condition(
        view,
        blocked.as_ref(),
        updating,
        quorum_ok,
        &healthy,
        &voters,
    );
    // Pods that cannot be created or cannot run are a degradation whatever the plan.
    let pods_broken = matches!(degraded.1.as_str(), "PodsNotCreated" | "PodsFailing");
    let phase = if obs.paused {
        Phase::Paused
    } else if !view.initialized {
        if obs.pods.iter().any(|p| p.node.is_some()) {
            Phase::Bootstrapping
        } else {
            Phase::Pending
        }
    } else if view.leader.is_none() || !quorum_ok || blocked.is_some() || pods_broken {
        Phase::Degraded
    } else {
        match outcome {
            Outcome::Act(_, i) | Outcome::Wait(i, _) => match i {
                Intent::ScaleOut | Intent::ScaleIn | Intent::ReadReplicas => Phase::Scaling,
                Intent::Replace | Intent::AutoReplace => Phase::Replacing,
                Intent::Update => Phase::Updating,
                Intent::Bootstrap => Phase::Bootstrapping,
                Intent::Recover if all_healthy => Phase::Running,
                Intent::Recover | Intent::ForceNewCluster => Phase::Degraded,
            },
            _ if all_healthy => Phase::Running,
            _ => Phase::Degraded,
        }
    };

    let mut conditions = vec![
        cond(
            "Available",
            view.leader.is_some() && quorum_ok,
            if view.leader.is_some() && quorum_ok {
                "QuorumHealthy"
            } else {
                "NoQuorum"
            },
            &format!("{} of {} voters healthy", healthy.len(), voters.len()),
        ),
        match &progress {
            Progress::Moving(msg) => cond("Progressing", true, "InProgress", msg),
            Progress::Blocked(msg) => cond("Progressing", false, "Blocked", msg),
            Progress::Paused(msg) => cond("Progressing", false, "Paused", msg),
            Progress::Settled => cond("Progressing", false, "Settled", "nothing in progress"),
        },
        cond("Degraded", degraded.0, &degraded.1, &degraded.2),
    ];
    if obs.paused {
        conditions.push(cond(
            "Paused",
            true,
            "PausedByAnnotation",
            "raftkv.dev/paused is \"true\": no action is taken",
        ));
    }
    conditions.extend(extra);
    conditions.extend(forced_condition(view, outcome));
    for c in &mut conditions {
        stamp(c, obs.generation, &obs.previous_conditions, obs.now_ms);
    }

    let last_membership_change = match (outcome, &event) {
        (Outcome::Act(step, _), Some(ev)) if step.is_membership_action() => {
            Some(MembershipChange {
                kind: ev.reason.clone(),
                message: ev.note.clone(),
                time: Timestamp::from_millisecond(obs.now_ms)
                    .unwrap_or(Timestamp::UNIX_EPOCH)
                    .to_string(),
                trace_id: None,
            })
        }
        _ => obs.previous_membership_change.clone(),
    };

    let leader_pod = view.leader.map(|(p, _)| p.name.clone());
    let status = RaftClusterStatus {
        phase: Some(phase),
        leader: leader_pod,
        term: view.leader.map(|(_, n)| n.term),
        cluster_id: view
            .leader
            .map(|(_, n)| n.cluster_id.clone())
            .filter(|c| !c.is_empty()),
        // Voters in the membership (the VOTERS column), as last reported when no
        // leader answers.
        replicas: view
            .reported_membership()
            .map_or(0, |m| m.voter_ids().len() as i32),
        ready_replicas: healthy.len() as i32,
        read_replicas: read_ready,
        selector: Some(voter_selector(&obs.name)),
        members,
        conditions,
        observed_generation: obs.generation,
        last_membership_change,
        // Set by the planner from the volumes (planner::volumes).
        storage: None,
        // Set by the planner (planner::recovery).
        highest_commit: None,
        // Written by the certificates step under its own field manager
        // (certificates::write_status), so this apply leaves it alone.
        certificates: None,
        forced_new_cluster: match outcome {
            Outcome::Act(
                Step::ForceNewCluster {
                    pod, cluster_id, ..
                },
                _,
            ) => Some(crate::crd::ForcedNewCluster {
                pod: pod.clone(),
                from_cluster_id: cluster_id.clone(),
                time: Timestamp::from_millisecond(obs.now_ms)
                    .unwrap_or(Timestamp::UNIX_EPOCH)
                    .to_string(),
            }),
            _ => obs.previous_forced.clone(),
        },
        restore: match outcome {
            Outcome::Act(Step::Restore { pod, source }, _) => Some(crate::crd::RestoreStatus {
                pod: pod.clone(),
                source: source.clone(),
                time: Timestamp::from_millisecond(obs.now_ms)
                    .unwrap_or(Timestamp::UNIX_EPOCH)
                    .to_string(),
            }),
            _ => obs.previous_restore.clone(),
        },
        // Written by backup::schedule under its own field manager.
        backup: None,
    };
    (status, event, blocked)
}

/// `ForcedNewCluster=True` with what may have been lost: set by the step, then
/// kept as written (it records a data loss; applying the annotation again
/// replaces it).
fn forced_condition(view: &ClusterView, outcome: &Outcome) -> Option<Condition> {
    if let Outcome::Act(Step::ForceNewCluster { note, .. }, _) = outcome {
        return Some(cond("ForcedNewCluster", true, "ForcedNewCluster", note));
    }
    view.obs
        .previous_conditions
        .iter()
        .find(|c| c.type_ == "ForcedNewCluster")
        .cloned()
}

fn cond(type_: &str, status: bool, reason: &str, message: &str) -> Condition {
    Condition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: Time(Timestamp::UNIX_EPOCH),
        observed_generation: None,
    }
}

fn ids(list: &[u64]) -> String {
    list.iter()
        .map(|id| fmt_id(*id))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn step_message(step: &Step) -> String {
    match step {
        Step::Initialize { members, .. } => format!("initializing with {} voters", members.len()),
        Step::AddLearner { member } => format!("adding learner {}", member.name),
        Step::ChangeMembership { voters, .. } => format!("changing voters to [{}]", ids(voters)),
        Step::RemoveLearner { name, .. } => format!("removing learner {name}"),
        Step::TransferLeader { target, .. } => {
            format!("transferring leadership to {}", fmt_id(*target))
        }
        Step::ScaleStatefulSet { set, replicas } => {
            format!("scaling {} StatefulSet to {replicas}", set.as_str())
        }
        Step::DeletePod { pod, .. } => format!("deleting pod {pod}"),
        Step::StopServing { pods } => {
            format!("taking {} out of the Services", pods.join(", "))
        }
        Step::ForceNewCluster { pod, .. } => {
            format!("forcing {pod} to become the one voter of a new cluster")
        }
        Step::Restore { pod, source } => format!("restoring {source} into {pod}"),
    }
}

fn related(view: &ClusterView, step: &Step) -> Option<(&'static str, String)> {
    let pod_of_id = |id: &u64| {
        view.membership
            .and_then(|m| m.name_of(*id))
            .map(str::to_string)
            .or_else(|| view.pod_of(*id).map(|p| p.name.clone()))
    };
    let pod = match step {
        Step::Initialize { pod, .. } => Some(pod.clone()),
        Step::AddLearner { member } => Some(member.name.clone()),
        Step::ChangeMembership { added, removed, .. } => {
            added.iter().chain(removed).find_map(pod_of_id)
        }
        Step::RemoveLearner { name, .. } => Some(name.clone()),
        Step::TransferLeader { target, .. } => pod_of_id(target),
        Step::DeletePod { pod, .. } => Some(pod.clone()),
        Step::StopServing { pods } => pods.first().cloned(),
        Step::ForceNewCluster { pod, .. } | Step::Restore { pod, .. } => Some(pod.clone()),
        Step::ScaleStatefulSet { set, .. } => {
            let name = match set {
                Set::Voters => view.obs.name.clone(),
                Set::Read => format!("{}-read", view.obs.name),
            };
            return Some(("StatefulSet", name));
        }
    };
    pod.map(|p| ("Pod", p))
}

fn event_for(view: &ClusterView, step: &Step) -> PlannedEvent {
    let name_of = |id: u64| {
        view.membership
            .and_then(|m| m.name_of(id))
            .map(str::to_string)
            .or_else(|| view.pod_of(id).map(|p| p.name.clone()))
            .unwrap_or_else(|| "?".into())
    };
    let (reason, action, note) = match step {
        Step::Initialize { members, .. } => (
            "Bootstrapped",
            "Initialize",
            format!(
                "initialized the cluster with voters {}",
                members
                    .iter()
                    .map(|m| format!("{} ({})", fmt_id(m.node_id), m.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        Step::AddLearner { member } => (
            "LearnerAdded",
            "AddLearner",
            format!(
                "added {} ({}) as a learner",
                fmt_id(member.node_id),
                member.name
            ),
        ),
        Step::ChangeMembership {
            voters,
            kind,
            added,
            removed,
        } => {
            let reason = match kind {
                ChangeKind::Promote => "MemberPromoted",
                ChangeKind::Remove => "MemberRemoved",
                ChangeKind::Replace => "MemberReplaced",
            };
            let detail = |list: &[u64]| {
                list.iter()
                    .map(|id| format!("{} ({})", fmt_id(*id), name_of(*id)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            (
                reason,
                "ChangeMembership",
                format!(
                    "joint change to voters [{}]; added [{}], removed [{}]",
                    ids(voters),
                    detail(added),
                    detail(removed)
                ),
            )
        }
        Step::RemoveLearner { node_id, name } => (
            "MemberRemoved",
            "RemoveMember",
            format!("removed learner {} ({name})", fmt_id(*node_id)),
        ),
        Step::TransferLeader { from, target } => (
            "LeaderTransferred",
            "TransferLeader",
            format!(
                "leadership from {} ({}) to {} ({})",
                fmt_id(*from),
                name_of(*from),
                fmt_id(*target),
                name_of(*target)
            ),
        ),
        Step::ScaleStatefulSet { set, replicas } => (
            "StatefulSetScaled",
            "Scale",
            format!("{} StatefulSet scaled to {replicas}", set.as_str()),
        ),
        Step::DeletePod {
            pod,
            delete_pvc,
            reason,
        } => match reason {
            DeleteReason::RollingUpdate => (
                "PodUpdated",
                "DeletePod",
                format!("deleted {pod} to roll it to the new revision"),
            ),
            DeleteReason::AbandonedCluster => (
                "AbandonedMemberWiped",
                "DeletePod",
                format!(
                    "deleted pod {pod} and its PVC: it held data of the cluster a forced new cluster left behind; it rejoins empty"
                ),
            ),
            DeleteReason::AutoReplace => (
                "MemberAutoReplaced",
                "DeletePod",
                format!(
                    "deleted pod {pod}{} after it was unavailable too long; a new member will replace it",
                    if *delete_pvc { " and its PVC" } else { "" }
                ),
            ),
        },
        Step::StopServing { pods } => (
            "MemberDraining",
            "StopServing",
            format!(
                "{} left the client and read Services (raftkv.dev/serving=false) before leaving the membership",
                pods.join(", ")
            ),
        ),
        Step::ForceNewCluster { note, .. } => ("ForcedNewCluster", "ForceNewCluster", note.clone()),
        Step::Restore { pod, source } => (
            "Restoring",
            "Restore",
            format!(
                "streaming {source} to {pod}: it verifies the whole backup, then restarts as the one voter of a new cluster holding it; the other voters join it as learners"
            ),
        ),
    };
    PlannedEvent {
        reason: reason.into(),
        action: action.into(),
        note,
        // Data may be lost: always a Warning.
        warning: matches!(step, Step::ForceNewCluster { .. }),
        related: related(view, step),
    }
}
