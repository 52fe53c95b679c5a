//! Property tests: over generated cluster states (at most 7 members), no step the
//! planner returns breaks a safety rule, as judged by a brute-force oracle that
//! shares no code with `planner::safety`.

use std::collections::BTreeSet;

use proptest::prelude::*;
use raft_operator::planner::sim::Sim;
use raft_operator::planner::{DeleteReason, NodeId, Observed, Role, Step, plan};

/// Brute force: some subset of `config`, all healthy, is a strict majority of it.
fn oracle_quorum(config: &BTreeSet<NodeId>, healthy: &BTreeSet<NodeId>) -> bool {
    let members: Vec<NodeId> = config.iter().copied().collect();
    (0u32..(1 << members.len())).any(|mask| {
        let subset: Vec<NodeId> = (0..members.len())
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| members[i])
            .collect();
        subset.iter().all(|id| healthy.contains(id)) && 2 * subset.len() > members.len()
    })
}

struct Facts {
    leader: Option<NodeId>,
    voters: BTreeSet<NodeId>,
    learners: BTreeSet<NodeId>,
    healthy: BTreeSet<NodeId>,
    in_flight: bool,
    any_membership: bool,
}

fn facts(obs: &Observed) -> Facts {
    let nodes: Vec<_> = obs
        .pods
        .iter()
        .filter_map(|p| p.node.as_ref().map(|n| (p, n)))
        .collect();
    let leader = nodes
        .iter()
        .filter(|(_, n)| n.role == Role::Leader)
        .max_by_key(|(_, n)| n.term)
        .map(|(_, n)| *n);
    let membership = leader
        .and_then(|l| l.membership.clone())
        .unwrap_or_default();
    let voters: BTreeSet<NodeId> = membership.configs.iter().flatten().copied().collect();
    let learners = membership.learners.iter().map(|m| m.node_id).collect();
    let mut healthy = BTreeSet::new();
    if let Some(l) = leader {
        for (pod, n) in &nodes {
            let lag = if n.node_id == l.node_id {
                Some(0)
            } else {
                l.progress
                    .iter()
                    .find(|(id, _)| *id == n.node_id)
                    .map(|p| p.1)
            };
            let member = matches!(n.role, Role::Leader | Role::Follower | Role::Learner);
            if !pod.terminating && member && n.healthy && lag.is_some_and(|lag| lag <= 64) {
                healthy.insert(n.node_id);
            }
        }
    }
    Facts {
        leader: leader.map(|l| l.node_id),
        in_flight: leader.is_none_or(|l| {
            membership.joint
                || membership.configs.len() > 1
                || membership.log_index > l.commit_index
        }),
        any_membership: nodes.iter().any(|(_, n)| {
            !n.cluster_id.is_empty() || n.membership.as_ref().is_some_and(|m| !m.voters.is_empty())
        }),
        voters,
        learners,
        healthy,
    }
}

/// Every rule, checked against the oracle. Returns a description of the violation.
fn violation(obs: &Observed, step: &Step) -> Option<String> {
    let f = facts(obs);
    let membership_step = !matches!(
        step,
        Step::ScaleStatefulSet { .. } | Step::Initialize { .. }
    );
    if membership_step && f.in_flight {
        return Some("acted while a membership change was in flight".into());
    }
    match step {
        Step::Initialize { .. } if f.any_membership => {
            Some("initialized while a member reports a membership".into())
        }
        Step::ChangeMembership { voters, .. } => {
            let new: BTreeSet<NodeId> = voters.iter().copied().collect();
            if !oracle_quorum(&f.voters, &f.healthy) {
                return Some("old config has no healthy quorum".into());
            }
            if !oracle_quorum(&new, &f.healthy) {
                return Some("new config has no healthy quorum".into());
            }
            if !f.leader.is_some_and(|l| new.contains(&l)) {
                return Some("change removes the leader".into());
            }
            new.difference(&f.voters)
                .find(|id| !f.learners.contains(id) || !f.healthy.contains(id))
                .map(|id| format!("promotes {id} which is not a caught-up learner"))
        }
        Step::RemoveLearner { node_id, .. } if f.voters.contains(node_id) => {
            Some("RemoveLearner on a voter".into())
        }
        Step::TransferLeader { target, .. }
            if !f.voters.contains(target) || !f.healthy.contains(target) =>
        {
            Some("transfer to an unhealthy or non-voter".into())
        }
        Step::DeletePod { pod, reason, .. } => {
            let p = obs.pods.iter().find(|p| &p.name == pod)?;
            let id = p.node.as_ref().map(|n| n.node_id);
            if id.is_some() && id == f.leader {
                return Some("deleted the leader's pod".into());
            }
            let mut healthy = f.healthy.clone();
            if let Some(id) = id {
                healthy.remove(&id);
            }
            if !oracle_quorum(&f.voters, &healthy) {
                return Some("deleting the pod leaves no healthy quorum".into());
            }
            if *reason == DeleteReason::AutoReplace {
                let after = obs.spec.auto_replace_after_ms?;
                let since = p.not_ready_since_ms?;
                if obs.now_ms - since < after {
                    return Some("auto-replaced too early".into());
                }
            }
            None
        }
        _ => None,
    }
}

#[derive(Debug, Clone)]
struct Scenario {
    voters: u32,
    down: Vec<bool>,
    lagging: Vec<bool>,
    lost: Vec<bool>,
    leader: usize,
    joint: bool,
    spec_replicas: u32,
    read_replicas: u32,
    auto_replace: bool,
    elapsed_ms: i64,
    new_revision: bool,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (1u32..=7).prop_flat_map(|voters| {
        let n = voters as usize;
        (
            Just(voters),
            proptest::collection::vec(prop::bool::weighted(0.25), n),
            proptest::collection::vec(prop::bool::weighted(0.2), n),
            proptest::collection::vec(prop::bool::weighted(0.15), n),
            0..n,
            prop::bool::weighted(0.1),
            1u32..=7,
            0u32..=2,
            any::<bool>(),
            0i64..200_000,
            any::<bool>(),
        )
            .prop_map(
                |(voters, down, lagging, lost, leader, joint, spec, read, auto, elapsed, rev)| {
                    Scenario {
                        voters,
                        down,
                        lagging,
                        lost,
                        leader,
                        joint,
                        spec_replicas: spec,
                        read_replicas: read,
                        auto_replace: auto,
                        elapsed_ms: elapsed,
                        new_revision: rev,
                    }
                },
            )
    })
}

fn build(s: &Scenario) -> Sim {
    let mut sim = Sim::running("demo", s.voters);
    sim.leader = Some(sim.id_of(&format!("demo-{}", s.leader)));
    for i in 0..s.voters as usize {
        let pod = format!("demo-{i}");
        if s.lost[i] {
            sim.pod_lost_volume(&pod);
        } else if s.down[i] {
            sim.pod_down(&pod);
        } else if s.lagging[i] {
            sim.pods.get_mut(&pod).unwrap().lag = 1_000;
        }
    }
    sim.joint = s.joint;
    sim.spec.replicas = s.spec_replicas;
    sim.spec.read_replicas = s.read_replicas;
    sim.spec.auto_replace_after_ms = s.auto_replace.then_some(60_000);
    if s.new_revision {
        sim.revision = "r2".into();
    }
    sim.now_ms += s.elapsed_ms;
    sim
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// No single step the planner returns breaks a safety rule.
    #[test]
    fn no_planned_step_violates_a_safety_rule(s in scenario()) {
        let sim = build(&s);
        let obs = sim.observe();
        if let Some(step) = plan(&obs).step {
            let v = violation(&obs, &step);
            prop_assert!(v.is_none(), "{:?} for {:?}: {}", step, s, v.unwrap());
        }
    }

    /// Following the planner step by step (faults stay in place) never breaks a rule.
    #[test]
    fn no_step_sequence_violates_a_safety_rule(s in scenario()) {
        let mut sim = build(&s);
        for _ in 0..40 {
            let obs = sim.observe();
            let p = plan(&obs);
            let Some(step) = p.step else { break };
            let v = violation(&obs, &step);
            prop_assert!(v.is_none(), "{:?} for {:?}: {}", step, s, v.unwrap());
            sim.apply(&step);
            sim.elect();
        }
    }

    /// A healthy cluster always converges to the spec.
    #[test]
    fn healthy_cluster_converges_to_any_spec(voters in 1u32..=7, spec in 1u32..=7, read in 0u32..=3) {
        let mut sim = Sim::running("demo", voters);
        sim.spec.replicas = spec;
        sim.spec.read_replicas = read;
        sim.settle(60);
        prop_assert!(sim.step().step.is_none(), "not settled: {}", sim.describe());
        prop_assert_eq!(sim.voters.len(), spec as usize);
        prop_assert_eq!(sim.learners.len(), read as usize);
        prop_assert_eq!(sim.voters_sts, Some(spec));
    }
}

#[test]
fn oracle_quorum_agrees_with_hand_counted_cases() {
    let set = |v: &[u64]| v.iter().copied().collect::<BTreeSet<_>>();
    assert!(oracle_quorum(&set(&[1, 2, 3]), &set(&[1, 2])));
    assert!(!oracle_quorum(&set(&[1, 2, 3]), &set(&[1])));
    assert!(!oracle_quorum(&set(&[1, 2, 3, 4]), &set(&[1, 2])));
    assert!(!oracle_quorum(&set(&[]), &set(&[1])));
}
