//! The order of decisions. Each returns the first thing to do; `safety::check` then
//! has the last word on it.

use std::collections::BTreeSet;

use super::observed::{ClusterView, NodeId, PodState, Role, Set, fmt_id, pod_name};
use super::{ChangeKind, DeleteReason, Intent, NewMember, Step};
use crate::crd::Phase;

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Take this step.
    Act(Step, Intent),
    /// Something is in progress that needs no action now.
    Wait(Intent, String),
    /// A safety rule or a missing precondition stops progress.
    Blocked(Intent, String),
    /// Paused by annotation while a step was due: what that step would do.
    Paused(String),
    /// Everything matches the spec.
    Idle,
}

pub fn decide(view: &ClusterView) -> Outcome {
    if !view.initialized {
        return bootstrap(view);
    }
    let Some((_, leader)) = view.leader else {
        return Outcome::Wait(
            Intent::Recover,
            "no leader: waiting for an election (a quorum of voters must be up)".into(),
        );
    };
    let m = view.membership.expect("the leader reports a membership");
    if m.joint || m.configs.len() > 1 || !view.membership_committed {
        return Outcome::Wait(
            Intent::Recover,
            format!(
                "membership change at log index {} in flight (commit index {})",
                m.log_index, leader.commit_index
            ),
        );
    }
    let obs = view.obs;
    let n = obs.spec.replicas;
    let voters_sts = obs.voters_sts.as_ref().map(|s| s.replicas).unwrap_or(0);
    if voters_sts < n {
        return Outcome::Act(
            Step::ScaleStatefulSet {
                set: Set::Voters,
                replicas: n,
            },
            Intent::ScaleOut,
        );
    }
    if let Some(o) = voter_changes(view) {
        return o;
    }
    if let Some(o) = stale_learners(view) {
        return o;
    }
    if voters_sts > n {
        return Outcome::Act(
            Step::ScaleStatefulSet {
                set: Set::Voters,
                replicas: n,
            },
            Intent::ScaleIn,
        );
    }
    if let Some(o) = read_replicas(view) {
        return o;
    }
    if let Some(o) = auto_replace(view) {
        return o;
    }
    if let Some(o) = rolling_update(view) {
        return o;
    }
    Outcome::Idle
}

/// Initialize once, when every initial voter is up and uninitialized.
fn bootstrap(view: &ClusterView) -> Outcome {
    let obs = view.obs;
    let n = obs.spec.replicas;
    let sts = obs.voters_sts.as_ref().map(|s| s.replicas).unwrap_or(0);
    if sts < n {
        return Outcome::Act(
            Step::ScaleStatefulSet {
                set: Set::Voters,
                replicas: n,
            },
            Intent::Bootstrap,
        );
    }
    if let Some(source) = &obs.spec.from_backup {
        return restore(view, source);
    }
    let mut members = Vec::new();
    let mut missing = Vec::new();
    for ordinal in 0..n {
        let name = pod_name(&obs.name, Set::Voters, ordinal);
        match view.pod_named(&name).and_then(|p| p.node.as_ref()) {
            Some(node) if node.role == Role::Uninitialized && !node.cluster_id.is_empty() => {
                missing.push(name)
            }
            Some(node) if node.role == Role::Uninitialized => members.push(NewMember {
                node_id: node.node_id,
                name,
            }),
            _ => missing.push(name),
        }
    }
    if !missing.is_empty() {
        return Outcome::Wait(
            Intent::Bootstrap,
            format!("waiting for {} to report Status", missing.join(", ")),
        );
    }
    let pod = members[0].name.clone();
    Outcome::Act(Step::Initialize { pod, members }, Intent::Bootstrap)
}

/// A cluster that starts from a backup: the backup goes to the first voter's
/// pod, once, and never to a pod of a cluster that existed (a cluster whose
/// every volume was lost later is not silently rolled back to its first
/// backup). The other voters join the restored node as learners by the
/// ordinary path once it reports its cluster. Never `Initialize`: an empty
/// cluster is not what the spec asks for.
fn restore(view: &ClusterView, source: &str) -> Outcome {
    let obs = view.obs;
    let pod = pod_name(&obs.name, Set::Voters, 0);
    if let Some(done) = &obs.previous_restore {
        return Outcome::Wait(
            Intent::Bootstrap,
            format!(
                "{} accepted {} at {}; waiting for it to restart as the new cluster's first voter (if every volume was lost since, restore into a new RaftCluster)",
                done.pod, done.source, done.time
            ),
        );
    }
    if let Some(id) = &obs.previous_cluster_id {
        return Outcome::Blocked(
            Intent::Bootstrap,
            format!(
                "cluster {id} existed and no member reports it: a backup is restored only into a new RaftCluster"
            ),
        );
    }
    match view.pod_named(&pod).and_then(|p| p.node.as_ref()) {
        Some(node) if node.role == Role::Uninitialized && node.cluster_id.is_empty() => {
            Outcome::Act(
                Step::Restore {
                    pod,
                    source: source.to_string(),
                },
                Intent::Bootstrap,
            )
        }
        _ => Outcome::Wait(
            Intent::Bootstrap,
            format!("waiting for {pod} to report Status (it receives {source})"),
        ),
    }
}

/// The voter set the spec asks for, slot by slot (`<name>-0 .. <name>-(n-1)`), and
/// the one change (learner add, handoff, or joint change) that moves toward it.
fn voter_changes(view: &ClusterView) -> Option<Outcome> {
    let obs = view.obs;
    let m = view.membership?;
    let (_, leader) = view.leader?;
    let n = obs.spec.replicas;
    let voters = m.voter_ids();

    let mut target: BTreeSet<NodeId> = BTreeSet::new();
    let mut adds: Vec<NewMember> = Vec::new();
    let mut pending: Vec<String> = Vec::new();
    let mut foreign: Vec<String> = Vec::new();
    for ordinal in 0..n {
        let name = pod_name(&obs.name, Set::Voters, ordinal);
        let current = m.voters.iter().find(|v| v.name == name).map(|v| v.node_id);
        let reported = view
            .pod_named(&name)
            .filter(|p| !p.terminating)
            .and_then(|p| p.node.as_ref());
        match reported {
            Some(node) if !node.cluster_id.is_empty() && node.cluster_id != leader.cluster_id => {
                foreign.push(name);
                target.extend(current);
            }
            Some(node) if voters.contains(&node.node_id) => {
                target.insert(node.node_id);
            }
            Some(node) => {
                target.insert(node.node_id);
                adds.push(NewMember {
                    node_id: node.node_id,
                    name,
                });
            }
            None => match current {
                Some(id) => {
                    target.insert(id);
                }
                None => pending.push(name),
            },
        }
    }
    // Voters whose name is not one of our voter pods are never touched.
    for v in &m.voters {
        let ours = super::observed::parse_pod_name(&obs.name, &v.name)
            .is_some_and(|(set, _)| set == Set::Voters);
        if !ours {
            target.insert(v.node_id);
        }
    }
    let removes: Vec<NodeId> = voters.difference(&target).copied().collect();
    let intent = match (adds.is_empty(), removes.is_empty()) {
        (false, false) => Intent::Replace,
        (false, true) => Intent::ScaleOut,
        (true, false) => Intent::ScaleIn,
        (true, true) => {
            if !foreign.is_empty() {
                return Some(Outcome::Blocked(
                    Intent::Replace,
                    format!(
                        "{} report another cluster ID (e.g. a volume of the cluster a raftkv.dev/force-new-cluster left behind): they never join with that data; delete their PVCs and pods to let them rejoin empty",
                        foreign.join(", ")
                    ),
                ));
            }
            if !pending.is_empty() {
                return Some(Outcome::Wait(
                    Intent::ScaleOut,
                    format!("waiting for {} to report Status", pending.join(", ")),
                ));
            }
            return None;
        }
    };
    if !pending.is_empty() && intent != Intent::ScaleIn {
        return Some(Outcome::Wait(
            intent,
            format!("waiting for {} to report Status", pending.join(", ")),
        ));
    }
    // Learners first.
    let learners = m.learner_ids();
    if let Some(new) = adds.iter().find(|a| !learners.contains(&a.node_id)) {
        return Some(Outcome::Act(
            Step::AddLearner {
                member: new.clone(),
            },
            intent,
        ));
    }
    if let Some(slow) = adds.iter().find(|a| !view.is_healthy(a.node_id)) {
        let lag = view
            .lag(slow.node_id)
            .map_or("unknown".to_string(), |l| l.to_string());
        return Some(Outcome::Wait(
            intent,
            format!(
                "learner {} ({}) catching up, lag {lag}",
                fmt_id(slow.node_id),
                slow.name
            ),
        ));
    }
    let now = view.obs.now_ms;
    let stable_for = |name: &str| {
        view.pod_named(name)
            .filter(|p| p.ready)
            .and_then(|p| p.ready_since_ms)
            .map(|since| now - since)
    };
    if let Some(new) = adds.iter().find(|a| {
        stable_for(&a.name).is_none_or(|ms| ms < super::limits::PROMOTION_STABILIZATION_MS)
    }) {
        let ready = stable_for(&new.name).map_or("not ready".to_string(), |ms| {
            format!("ready for {} ms", ms.max(0))
        });
        return Some(Outcome::Wait(
            intent,
            format!(
                "learner {} ({}) caught up, stabilizing ({ready}, promoted after {} ms)",
                fmt_id(new.node_id),
                new.name,
                super::limits::PROMOTION_STABILIZATION_MS
            ),
        ));
    }
    // Hand leadership off before the leader leaves.
    if removes.contains(&leader.node_id) {
        let staying: Vec<NodeId> = voters
            .intersection(&target)
            .copied()
            .filter(|id| view.is_healthy(*id))
            .collect();
        let best = staying
            .iter()
            .min_by_key(|id| (view.lag(**id).unwrap_or(u64::MAX), **id));
        return Some(match best {
            Some(target) => Outcome::Act(
                Step::TransferLeader {
                    from: leader.node_id,
                    target: *target,
                },
                intent,
            ),
            None => Outcome::Blocked(
                intent,
                "the leader must leave but no healthy voter can take over".into(),
            ),
        });
    }
    let kind = match intent {
        Intent::Replace => ChangeKind::Replace,
        Intent::ScaleOut => ChangeKind::Promote,
        _ => ChangeKind::Remove,
    };
    Some(Outcome::Act(
        Step::ChangeMembership {
            voters: target.into_iter().collect(),
            kind,
            added: adds.iter().map(|a| a.node_id).collect(),
            removed: removes,
        },
        intent,
    ))
}

/// Learners that no pod stands for any more: on a voter pod beyond the spec, on a
/// read pod beyond the spec, or whose pod now reports a different node ID.
fn stale_learners(view: &ClusterView) -> Option<Outcome> {
    let obs = view.obs;
    let m = view.membership?;
    for l in &m.learners {
        let Some((set, ordinal)) = super::observed::parse_pod_name(&obs.name, &l.name) else {
            continue;
        };
        let wanted = match set {
            Set::Voters => obs.spec.replicas,
            Set::Read => obs.spec.read_replicas,
        };
        let replaced = view
            .pod_named(&l.name)
            .and_then(|p| p.node.as_ref())
            .is_some_and(|n| n.node_id != l.node_id);
        if ordinal >= wanted || replaced {
            let intent = match (set, replaced) {
                (_, true) => Intent::Replace,
                (Set::Voters, false) => Intent::ScaleIn,
                (Set::Read, false) => Intent::ReadReplicas,
            };
            return Some(Outcome::Act(
                Step::RemoveLearner {
                    node_id: l.node_id,
                    name: l.name.clone(),
                },
                intent,
            ));
        }
    }
    None
}

/// Grow the read replicas' StatefulSet, add its pods as learners, shrink it once
/// the learners beyond the spec are gone.
fn read_replicas(view: &ClusterView) -> Option<Outcome> {
    let obs = view.obs;
    let m = view.membership?;
    let r = obs.spec.read_replicas;
    let sts = obs.read_sts.as_ref().map(|s| s.replicas).unwrap_or(0);
    if sts < r {
        return Some(Outcome::Act(
            Step::ScaleStatefulSet {
                set: Set::Read,
                replicas: r,
            },
            Intent::ReadReplicas,
        ));
    }
    for ordinal in 0..r {
        let name = pod_name(&obs.name, Set::Read, ordinal);
        let Some(node) = view
            .pod_named(&name)
            .filter(|p| !p.terminating)
            .and_then(|p| p.node.as_ref())
        else {
            continue;
        };
        let (_, leader) = view.leader?;
        if !node.cluster_id.is_empty() && node.cluster_id != leader.cluster_id {
            continue;
        }
        if !m.contains(node.node_id) {
            return Some(Outcome::Act(
                Step::AddLearner {
                    member: NewMember {
                        node_id: node.node_id,
                        name,
                    },
                },
                Intent::ReadReplicas,
            ));
        }
    }
    if sts > r {
        return Some(Outcome::Act(
            Step::ScaleStatefulSet {
                set: Set::Read,
                replicas: r,
            },
            Intent::ReadReplicas,
        ));
    }
    None
}

/// Opt-in: delete the pod and PVC of a member unavailable for longer than `after`.
fn auto_replace(view: &ClusterView) -> Option<Outcome> {
    let obs = view.obs;
    let after = obs.spec.auto_replace_after_ms?;
    let m = view.membership?;
    for member in m.voters.iter().chain(&m.learners) {
        let Some(pod) = view.pod_named(&member.name) else {
            continue;
        };
        if pod.ready || pod.terminating || view.is_healthy(member.node_id) {
            continue;
        }
        let Some(since) = pod.not_ready_since_ms else {
            continue;
        };
        // The pod already reports a new node: the replacement is underway.
        if pod
            .node
            .as_ref()
            .is_some_and(|n| n.node_id != member.node_id)
        {
            continue;
        }
        if obs.now_ms - since >= after {
            return Some(Outcome::Act(
                Step::DeletePod {
                    pod: pod.name.clone(),
                    delete_pvc: true,
                    reason: DeleteReason::AutoReplace,
                },
                Intent::AutoReplace,
            ));
        }
    }
    None
}

/// OnDelete rolling update: unhealthy outdated pods first, then followers, the leader
/// last after a handoff, then read replicas; one pod at a time, each waited on.
fn rolling_update(view: &ClusterView) -> Option<Outcome> {
    let obs = view.obs;
    let voters = obs.voters_sts.as_ref()?;
    let revision = voters.update_revision.as_deref()?;
    let voter_pods: Vec<&PodState> = obs.pods.iter().filter(|p| p.set == Set::Voters).collect();
    let outdated = |p: &&PodState| p.revision.as_deref().is_some_and(|r| r != revision);
    let mut stale: Vec<&PodState> = voter_pods.iter().copied().filter(outdated).collect();
    if !stale.is_empty() {
        if voter_pods.iter().any(|p| p.terminating) {
            return Some(Outcome::Wait(
                Intent::Update,
                "a voter pod is terminating".into(),
            ));
        }
        let leader_id = view.leader_id();
        let is_leader = |p: &PodState| {
            p.node
                .as_ref()
                .is_some_and(|n| Some(n.node_id) == leader_id)
        };
        let healthy =
            |p: &PodState| p.ready && p.node.as_ref().is_some_and(|n| view.is_healthy(n.node_id));
        // Unhealthy outdated pods roll first: they are down anyway.
        if let Some(p) = stale.iter().find(|p| !healthy(p) && !is_leader(p)) {
            return Some(delete_for_update(p));
        }
        if let Some(p) = voter_pods.iter().find(|p| !healthy(p)) {
            return Some(Outcome::Wait(
                Intent::Update,
                format!("waiting for {} to be ready and caught up", p.name),
            ));
        }
        stale.sort_by_key(|p| std::cmp::Reverse(p.ordinal));
        if let Some(p) = stale.iter().find(|p| !is_leader(p)) {
            return Some(delete_for_update(p));
        }
        // Only the leader is outdated: hand off to an up-to-date healthy voter.
        let from = leader_id?;
        let target = voter_pods
            .iter()
            .filter(|p| !outdated(p) && healthy(p))
            .filter_map(|p| p.node.as_ref().map(|n| n.node_id))
            .find(|id| view.membership.is_some_and(|m| m.voter_ids().contains(id)));
        return Some(match target {
            Some(target) => Outcome::Act(Step::TransferLeader { from, target }, Intent::Update),
            None => Outcome::Blocked(
                Intent::Update,
                "no up-to-date healthy voter can take over leadership".into(),
            ),
        });
    }
    // Every voter runs the new revision, but the last one restarted (usually the old
    // leader) is not back yet: the update is still in progress, not a degradation. A
    // pod whose container cannot run is not "coming back": that is Degraded.
    if obs.previous_phase == Some(Phase::Updating)
        && let Some(p) = voter_pods.iter().find(|p| {
            p.revision.as_deref() == Some(revision)
                && p.failing.is_none()
                && !(p.ready && p.node.as_ref().is_some_and(|n| view.is_healthy(n.node_id)))
        })
    {
        return Some(Outcome::Wait(
            Intent::Update,
            format!(
                "waiting for {} to be ready and caught up after its update",
                p.name
            ),
        ));
    }
    let read_revision = obs.read_sts.as_ref()?.update_revision.as_deref()?;
    let read_pods: Vec<&PodState> = obs.pods.iter().filter(|p| p.set == Set::Read).collect();
    if read_pods.iter().any(|p| p.terminating || !p.ready) {
        let stale_read = read_pods
            .iter()
            .any(|p| p.revision.as_deref().is_some_and(|r| r != read_revision));
        return stale_read.then(|| {
            Outcome::Wait(
                Intent::Update,
                "waiting for read replicas to be ready".into(),
            )
        });
    }
    read_pods
        .iter()
        .filter(|p| p.revision.as_deref().is_some_and(|r| r != read_revision))
        .max_by_key(|p| p.ordinal)
        .map(|p| delete_for_update(p))
}

fn delete_for_update(p: &PodState) -> Outcome {
    Outcome::Act(
        Step::DeletePod {
            pod: p.name.clone(),
            delete_pvc: false,
            reason: DeleteReason::RollingUpdate,
        },
        Intent::Update,
    )
}
