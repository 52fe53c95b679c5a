//! The way out of a lost quorum: the `raftkv.dev/force-new-cluster: <pod>`
//! annotation (docs/operations.md, "A majority of volumes lost").
//!
//! Never automatic. The annotation acts only when all of these hold, each
//! checked here from what was observed (pure):
//!
//! 1. it names a voter pod of this cluster (`<name>-<ordinal>`) that is up,
//!    answers Status and belongs to a cluster;
//! 2. no leader is reported;
//! 3. fewer than a quorum of the voters of the last known membership answer
//!    as members of that cluster: a majority that is up can elect a leader,
//!    and forcing then would split the cluster in two, each taking writes.
//!
//! Then the step is `ForceNewCluster` on that pod (its node rebuilds itself as
//! the one voter of a new cluster); the operator removes the annotation as it
//! sends the call, so a stale annotation can never act twice. Otherwise the
//! refusal (reason `ForceNewClusterRefused`) says why, and the annotation
//! stays until someone removes it.

use std::collections::BTreeSet;

use super::Step;
use super::decide::Outcome;
use super::observed::{ClusterView, MembershipView, NodeId, Role, Set, parse_pod_name};
use crate::crd::IndexMark;

/// What forcing on `pod` would leave behind, for the Event and condition.
pub fn loss_note(
    pod: &str,
    cluster_id: &str,
    commit_index: u64,
    highest: Option<&IndexMark>,
) -> String {
    let highest = highest.filter(|m| m.cluster_id == cluster_id);
    let loss = match highest {
        Some(m) if m.commit_index > commit_index => format!(
            "the highest commit index any member reported was {}: up to {} committed entries may be lost",
            m.commit_index,
            m.commit_index - commit_index
        ),
        Some(m) => format!(
            "the highest commit index any member reported was {}: no committed entry the operator saw is lost",
            m.commit_index
        ),
        None => "the highest commit index of the other members is unknown: how many committed entries may be lost is unknown".to_string(),
    };
    format!(
        "forced {pod} to become the one voter of a new cluster from cluster {cluster_id} at its commit index {commit_index}; writes it had not seen committed are lost; {loss}"
    )
}

/// The annotation's decision: `None` without the annotation, else the step to
/// take or why not.
pub fn decide(view: &ClusterView) -> Option<Outcome> {
    let Some(pod) = view.obs.force_new_cluster.as_deref() else {
        return wipe_abandoned(view);
    };
    Some(match refusal(view, pod) {
        Some(why) => Outcome::Blocked(super::Intent::ForceNewCluster, why),
        None => {
            let node = view
                .pod_named(pod)
                .and_then(|p| p.node.as_ref())
                .expect("refusal checked the pod answers");
            Outcome::Act(
                Step::ForceNewCluster {
                    pod: pod.to_string(),
                    cluster_id: node.cluster_id.clone(),
                    note: loss_note(
                        pod,
                        &node.cluster_id,
                        node.commit_index,
                        view.obs.previous_highest_commit.as_ref(),
                    ),
                },
                super::Intent::ForceNewCluster,
            )
        }
    })
}

/// After a forced new cluster, once the new cluster has a leader: a pod that
/// still reports the cluster left behind (its volume survived after all) has
/// its PVC and pod deleted, so it comes back empty and rejoins as a learner.
/// Its data belongs to a history the new cluster does not share; kept, it
/// could even elect a leader of the old cluster with another such pod.
fn wipe_abandoned(view: &ClusterView) -> Option<Outcome> {
    let abandoned = &view.obs.previous_forced.as_ref()?.from_cluster_id;
    let (_, leader) = view.leader?;
    if leader.cluster_id == *abandoned {
        return None;
    }
    let mut pods: Vec<_> = view
        .obs
        .pods
        .iter()
        .filter(|p| !p.terminating)
        .filter(|p| p.node.as_ref().is_some_and(|n| n.cluster_id == *abandoned))
        .collect();
    pods.sort_by_key(|p| (p.set, p.ordinal));
    let pod = pods.first()?;
    Some(Outcome::Act(
        Step::DeletePod {
            pod: pod.name.clone(),
            delete_pvc: true,
            reason: super::DeleteReason::AbandonedCluster,
        },
        super::Intent::Replace,
    ))
}

/// Why forcing a new cluster on `pod` is refused now, if it is. Also the
/// safety rule for the step (`safety::check`).
pub fn refusal(view: &ClusterView, pod: &str) -> Option<String> {
    let obs = view.obs;
    let ours = parse_pod_name(&obs.name, pod).is_some_and(|(set, _)| set == Set::Voters);
    if !ours {
        return Some(format!(
            "raftkv.dev/force-new-cluster names {pod:?}, which is not a voter pod of this cluster ({}-<ordinal>); name the surviving voter pod",
            obs.name
        ));
    }
    let Some(p) = view.pod_named(pod).filter(|p| !p.terminating) else {
        return Some(format!(
            "{pod} does not exist or is terminating; name a surviving voter pod that is up"
        ));
    };
    let Some(node) = &p.node else {
        return Some(format!(
            "{pod} does not answer Status; name a surviving voter pod that is up"
        ));
    };
    if node.cluster_id.is_empty() {
        return Some(format!(
            "{pod} belongs to no cluster (an empty volume): it has nothing to rebuild from; name the pod that kept its data"
        ));
    }
    if let Some((leader_pod, _)) = view.leader {
        return Some(format!(
            "{} leads the cluster: a quorum is up, nothing to force; remove the annotation",
            leader_pod.name
        ));
    }
    let Some(m) = last_membership(view, &node.cluster_id) else {
        return Some(format!("{pod} reports no membership"));
    };
    if !m.voter_ids().contains(&node.node_id) {
        return Some(format!(
            "{pod} (node {}) is not a voter of the last known membership; name a surviving voter",
            node.node_id
        ));
    }
    let up = voters_up(view, &node.cluster_id);
    let configs: Vec<BTreeSet<NodeId>> = if m.configs.is_empty() {
        vec![m.voter_ids()]
    } else {
        m.configs
            .iter()
            .map(|c| c.iter().copied().collect())
            .collect()
    };
    // A strict majority of every config could elect a leader (safety.rs
    // counts quorums the same way; not imported: safety checks this module).
    let majority =
        |c: &BTreeSet<NodeId>| 2 * c.iter().filter(|id| up.contains(id)).count() > c.len();
    if configs.iter().all(majority) {
        let voters = m.voter_ids();
        let n = voters.iter().filter(|v| up.contains(v)).count();
        return Some(format!(
            "{n} of {} voters are up: they can elect a leader; wait for the election, or remove the annotation",
            voters.len()
        ));
    }
    None
}

/// The newest membership reported by a member of `cluster_id`.
fn last_membership<'a>(view: &ClusterView<'a>, cluster_id: &str) -> Option<&'a MembershipView> {
    view.obs
        .pods
        .iter()
        .filter_map(|p| p.node.as_ref())
        .filter(|n| n.cluster_id == cluster_id)
        .filter_map(|n| n.membership.as_ref())
        .filter(|m| !m.is_empty())
        .max_by_key(|m| m.log_index)
}

/// Node IDs that answer as voters of `cluster_id` from pods that are not
/// terminating: the ones that could take part in an election.
fn voters_up(view: &ClusterView, cluster_id: &str) -> BTreeSet<NodeId> {
    view.obs
        .pods
        .iter()
        .filter(|p| !p.terminating)
        .filter_map(|p| p.node.as_ref())
        .filter(|n| n.cluster_id == cluster_id)
        .filter(|n| matches!(n.role, Role::Leader | Role::Follower | Role::Candidate))
        .map(|n| n.node_id)
        .collect()
}

/// The highest commit index seen for the cluster, kept across reconciles:
/// the previous mark, raised by what the members of the same cluster report
/// now. A new cluster ID (a leader of another cluster: after a forced new
/// cluster or a restore) starts a new mark.
pub fn highest_commit(view: &ClusterView) -> Option<IndexMark> {
    let previous = view.obs.previous_highest_commit.as_ref();
    let cluster_id = view
        .leader
        .map(|(_, n)| n.cluster_id.clone())
        .filter(|c| !c.is_empty())
        .or_else(|| previous.map(|m| m.cluster_id.clone()))
        .or_else(|| {
            // No leader and no mark yet: the cluster the reachable members share.
            let ids: BTreeSet<&str> = view
                .obs
                .pods
                .iter()
                .filter_map(|p| p.node.as_ref())
                .map(|n| n.cluster_id.as_str())
                .filter(|c| !c.is_empty())
                .collect();
            (ids.len() == 1).then(|| ids.into_iter().next().unwrap().to_string())
        })?;
    let seen = view
        .obs
        .pods
        .iter()
        .filter_map(|p| p.node.as_ref())
        .filter(|n| n.cluster_id == cluster_id)
        .map(|n| n.commit_index)
        .max();
    let before = previous
        .filter(|m| m.cluster_id == cluster_id)
        .map(|m| m.commit_index);
    let commit_index = seen.max(before)?;
    Some(IndexMark {
        cluster_id,
        commit_index,
    })
}

#[cfg(test)]
mod tests {
    use super::super::Intent;
    use super::super::observed::*;
    use super::*;

    const CLUSTER: &str = "c-old";

    /// What one voter pod looks like in a case.
    #[derive(Clone, Copy, Debug)]
    enum Pod {
        /// Up, a voter of the old cluster, with this role.
        Up(Role),
        /// Pod exists, the node does not answer.
        Silent,
        /// Recreated on an empty volume: answers, no cluster.
        Empty,
        /// No pod at all.
        Gone,
    }

    fn id(ordinal: u32) -> NodeId {
        100 + u64::from(ordinal)
    }

    fn observed(pods: &[Pod], annotation: Option<&str>) -> Observed {
        let n = pods.len() as u32;
        let membership = MembershipView {
            log_index: 5,
            configs: vec![(0..n).map(id).collect()],
            voters: (0..n)
                .map(|o| MemberInfo {
                    node_id: id(o),
                    name: format!("demo-{o}"),
                })
                .collect(),
            learners: vec![],
            joint: false,
        };
        let mut out = Vec::new();
        for (o, kind) in pods.iter().enumerate() {
            let o = o as u32;
            let node = match kind {
                Pod::Gone => continue,
                Pod::Silent => None,
                Pod::Empty => Some(NodeStatus {
                    node_id: 900 + u64::from(o),
                    cluster_id: String::new(),
                    role: Role::Uninitialized,
                    term: 0,
                    leader_id: None,
                    commit_index: 0,
                    applied_index: 0,
                    membership: None,
                    progress: vec![],
                    healthy: false,
                }),
                Pod::Up(role) => Some(NodeStatus {
                    node_id: id(o),
                    cluster_id: CLUSTER.into(),
                    role: *role,
                    term: 3,
                    leader_id: None,
                    commit_index: 40 + u64::from(o),
                    applied_index: 40 + u64::from(o),
                    membership: Some(membership.clone()),
                    progress: vec![],
                    healthy: *role == Role::Leader,
                }),
            };
            out.push(PodState {
                name: format!("demo-{o}"),
                set: Set::Voters,
                ordinal: o,
                ready: node.is_some(),
                not_ready_since_ms: None,
                ready_since_ms: None,
                terminating: false,
                revision: None,
                role_label: None,
                serving: None,
                serving_stopped_ms: None,
                in_services: false,
                node,
                failing: None,
                zone: None,
            });
        }
        Observed {
            name: "demo".into(),
            spec: DesiredSpec {
                replicas: n,
                ..Default::default()
            },
            pods: out,
            force_new_cluster: annotation.map(str::to_string),
            ..Default::default()
        }
    }

    fn outcome(pods: &[Pod], annotation: Option<&str>) -> Option<Outcome> {
        let obs = observed(pods, annotation);
        decide(&ClusterView::new(&obs))
    }

    use Pod::*;
    const F: Pod = Up(Role::Follower);
    const C: Pod = Up(Role::Candidate);
    const L: Pod = Up(Role::Leader);

    #[test]
    fn without_the_annotation_nothing_is_decided() {
        for pods in [&[F, Gone, Gone][..], &[L, F, F], &[F, Silent, Silent]] {
            assert_eq!(outcome(pods, None), None, "{pods:?}");
        }
    }

    /// Every combination of annotation target, leader and voters up: acts
    /// exactly when the named pod answers as a voter of the cluster, no
    /// leader exists, and fewer than a quorum of the voters answer.
    #[test]
    fn acts_only_on_a_reachable_survivor_without_leader_or_quorum() {
        // (pods, annotation, Some(expected refusal fragment) | None = act)
        let cases: &[(&[Pod], &str, Option<&str>)] = &[
            // 1 of 3 up, no leader: act, whatever the others' pods look like.
            (&[F, Gone, Gone], "demo-0", None),
            (&[F, Silent, Silent], "demo-0", None),
            (&[F, Empty, Empty], "demo-0", None),
            (&[C, Empty, Silent], "demo-0", None),
            (&[Empty, Gone, C], "demo-2", None),
            // 2 of 5 up: act on either.
            (&[F, F, Gone, Empty, Silent], "demo-1", None),
            // 2 of 3 up, no leader (mid-election): refused.
            (&[F, F, Gone], "demo-0", Some("2 of 3 voters are up")),
            (&[C, Silent, C], "demo-2", Some("2 of 3 voters are up")),
            (
                &[F, F, F, Gone, Gone],
                "demo-0",
                Some("3 of 5 voters are up"),
            ),
            // A leader: refused.
            (&[L, Gone, Gone], "demo-0", Some("demo-0 leads the cluster")),
            (&[F, L, F], "demo-0", Some("demo-1 leads the cluster")),
            // The wrong pod: another cluster's, a read replica, a name not ours.
            (&[F, Gone, Gone], "other-0", Some("not a voter pod")),
            (&[F, Gone, Gone], "demo-read-0", Some("not a voter pod")),
            (&[F, Gone, Gone], "demo", Some("not a voter pod")),
            // The right name, but not a usable survivor.
            (&[F, Gone, Gone], "demo-1", Some("does not exist")),
            (&[F, Silent, Gone], "demo-1", Some("does not answer")),
            (&[F, Empty, Gone], "demo-1", Some("belongs to no cluster")),
            (&[F, Gone, Gone], "demo-7", Some("does not exist")),
        ];
        for (pods, annotation, refusal) in cases {
            let got = outcome(pods, Some(annotation)).expect("decided");
            match (refusal, &got) {
                (
                    None,
                    Outcome::Act(
                        Step::ForceNewCluster {
                            pod,
                            cluster_id,
                            note,
                        },
                        Intent::ForceNewCluster,
                    ),
                ) => {
                    assert_eq!(pod, annotation);
                    assert_eq!(cluster_id, CLUSTER);
                    assert!(note.contains("unknown"), "{note}");
                }
                (Some(why), Outcome::Blocked(Intent::ForceNewCluster, msg)) => {
                    assert!(msg.contains(why), "{pods:?} {annotation}: {msg}");
                }
                _ => panic!("{pods:?} {annotation}: expected {refusal:?}, got {got:?}"),
            }
        }
    }

    /// The rule against an oracle: over every assignment of up/silent/gone
    /// to up to 5 voters and every target, it acts iff the target is up and
    /// fewer than a majority are up (no leader among them).
    #[test]
    fn acts_iff_the_target_is_up_and_a_majority_is_not() {
        for n in 1..=5usize {
            for mask in 0..3usize.pow(n as u32) {
                let pods: Vec<Pod> = (0..n)
                    .map(|i| match (mask / 3usize.pow(i as u32)) % 3 {
                        0 => F,
                        1 => Silent,
                        _ => Gone,
                    })
                    .collect();
                let up = pods.iter().filter(|p| matches!(p, Up(_))).count();
                for target in 0..n {
                    let name = format!("demo-{target}");
                    let acts = matches!(
                        outcome(&pods, Some(&name)),
                        Some(Outcome::Act(Step::ForceNewCluster { .. }, _))
                    );
                    let oracle = matches!(pods[target], Up(_)) && 2 * up <= n;
                    assert_eq!(acts, oracle, "{pods:?} target {name}");
                }
            }
        }
    }

    /// The whole way out, in the planner's simulator: two of three voters
    /// lost with their volumes (the StatefulSet recreated them empty), the
    /// annotation names the survivor, and the normal path grows the new
    /// cluster back to three voters.
    #[test]
    fn a_forced_survivor_grows_back_to_three_voters_by_the_normal_path() {
        use super::super::sim::Sim;
        let mut sim = Sim::running("demo", 3);
        sim.pod_lost_volume("demo-1");
        sim.pod_lost_volume("demo-2");
        sim.leader = None;
        let plan = sim.step();
        assert!(plan.step.is_none(), "never automatic: {plan:?}");

        sim.force_new_cluster = Some("demo-0".into());
        let plan = sim.step();
        assert!(
            matches!(&plan.step, Some(Step::ForceNewCluster { pod, .. }) if pod == "demo-0"),
            "{plan:?}"
        );
        let ev = plan.event.as_ref().unwrap();
        assert_eq!(ev.reason, "ForcedNewCluster");
        assert!(ev.warning);
        let forced = plan
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "ForcedNewCluster")
            .expect("a condition names what may be lost");
        assert!(forced.message.contains("demo-0"), "{forced:?}");
        assert_eq!(sim.voter_count(), 1);

        let plans = sim.settle(20);
        let kinds: Vec<&str> = plans
            .iter()
            .filter_map(|p| p.step.as_ref().map(Step::kind))
            .collect();
        assert_eq!(kinds, ["add_learner", "add_learner", "change_membership"]);
        assert_eq!(sim.voter_count(), 3);
        assert!(sim.force_new_cluster.is_none(), "the annotation is gone");
    }

    #[test]
    fn pods_of_the_abandoned_cluster_are_wiped_only_under_a_new_leader() {
        use crate::crd::ForcedNewCluster;
        let forced = ForcedNewCluster {
            pod: "demo-0".into(),
            from_cluster_id: CLUSTER.into(),
            time: "t".into(),
        };
        // demo-0 leads a new cluster; demo-1 and demo-2 came back with the
        // old cluster's data and even elected a leader there (demo-1).
        let mut obs = observed(&[L, L, F], None);
        {
            let new = obs.pods[0].node.as_mut().unwrap();
            new.cluster_id = "c-new".into();
            new.term = 1;
            new.membership = Some(MembershipView {
                log_index: 1,
                configs: vec![vec![id(0)]],
                voters: vec![MemberInfo {
                    node_id: id(0),
                    name: "demo-0".into(),
                }],
                learners: vec![],
                joint: false,
            });
        }
        obs.previous_forced = Some(forced.clone());
        let view = ClusterView::new(&obs);
        assert_eq!(view.leader.map(|(p, _)| p.name.as_str()), Some("demo-0"));
        let Some(Outcome::Act(step, _)) = decide(&view) else {
            panic!("expected a step");
        };
        assert_eq!(
            step,
            Step::DeletePod {
                pod: "demo-1".into(),
                delete_pvc: true,
                reason: super::super::DeleteReason::AbandonedCluster
            }
        );
        assert_eq!(super::super::safety::check(&step, &view), Ok(()));
        // Without a leader of the new cluster (the survivor still
        // restarting), nothing is wiped.
        obs.pods[0].node = None;
        assert_eq!(decide(&ClusterView::new(&obs)), None);
        // Without a forced new cluster on record, the same pods are merely
        // foreign: the ordinary planner leaves them alone.
        let mut obs = observed(&[L, F, F], None);
        obs.pods[0].node.as_mut().unwrap().cluster_id = "c-new".into();
        assert_eq!(decide(&ClusterView::new(&obs)), None);
    }

    #[test]
    fn the_note_names_what_may_be_lost() {
        let mark = |c: &str, i| IndexMark {
            cluster_id: c.into(),
            commit_index: i,
        };
        let n = loss_note("demo-0", CLUSTER, 40, Some(&mark(CLUSTER, 55)));
        assert!(n.contains("demo-0"), "{n}");
        assert!(n.contains("commit index 40"), "{n}");
        assert!(
            n.contains("was 55: up to 15 committed entries may be lost"),
            "{n}"
        );
        let n = loss_note("demo-0", CLUSTER, 40, Some(&mark(CLUSTER, 40)));
        assert!(
            n.contains("no committed entry the operator saw is lost"),
            "{n}"
        );
        // A mark of another cluster says nothing about this one.
        let n = loss_note("demo-0", CLUSTER, 40, Some(&mark("c-new", 99)));
        assert!(n.contains("unknown"), "{n}");
    }

    #[test]
    fn the_highest_commit_is_kept_while_members_disappear() {
        let mut obs = observed(&[L, F, F], None);
        let mark = highest_commit(&ClusterView::new(&obs)).unwrap();
        assert_eq!((mark.cluster_id.as_str(), mark.commit_index), (CLUSTER, 42));
        // demo-2 is gone: the mark stays at what it reported.
        obs = observed(&[F, Gone, Gone], None);
        obs.previous_highest_commit = Some(mark.clone());
        assert_eq!(highest_commit(&ClusterView::new(&obs)), Some(mark.clone()));
        // The forced survivor names what it lacks.
        obs.force_new_cluster = Some("demo-0".into());
        let Some(Outcome::Act(Step::ForceNewCluster { note, .. }, _)) =
            decide(&ClusterView::new(&obs))
        else {
            panic!("expected ForceNewCluster");
        };
        assert!(
            note.contains("up to 2 committed entries may be lost"),
            "{note}"
        );
        // A leader of a new cluster starts a new mark.
        let mut new = observed(&[L], None);
        new.pods[0].node.as_mut().unwrap().cluster_id = "c-new".into();
        new.previous_highest_commit = Some(mark);
        let m = highest_commit(&ClusterView::new(&new)).unwrap();
        assert_eq!((m.cluster_id.as_str(), m.commit_index), ("c-new", 40));
    }
}
