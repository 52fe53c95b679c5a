//! Property tests of the voters' disruption budget (`planner::disruption`) against
//! brute force: every subset of voters a drain could take down, and every sequence of
//! evictions the PodDisruptionBudget controller would admit.

use std::collections::BTreeSet;

use proptest::prelude::*;
use raft_operator::planner::NodeId;
use raft_operator::planner::disruption::{BudgetPod, budget, disruptions_allowed};

/// Brute force: `healthy` holds a strict majority of `config` (shares no code with the
/// planner's `quorum`).
fn majority(config: &BTreeSet<NodeId>, healthy: &BTreeSet<NodeId>) -> bool {
    let up = config.iter().filter(|id| healthy.contains(id)).count();
    !config.is_empty() && up * 2 > config.len()
}

/// Brute force: the largest `k` such that taking down ANY `k` voters (every subset of
/// that size, healthy or not) leaves a healthy majority in every configuration; 0 when
/// even taking down none does not.
fn oracle_allowed(configs: &[BTreeSet<NodeId>], healthy: &BTreeSet<NodeId>) -> u32 {
    let voters: Vec<NodeId> = configs
        .iter()
        .flatten()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let survives = |down: &BTreeSet<NodeId>| {
        let left: BTreeSet<NodeId> = healthy.difference(down).copied().collect();
        !configs.is_empty() && configs.iter().all(|c| majority(c, &left))
    };
    let mut best = 0;
    for k in 0..=voters.len() {
        let all_survive = (0u32..(1 << voters.len()))
            .filter(|mask| mask.count_ones() as usize == k)
            .all(|mask| {
                let down = (0..voters.len())
                    .filter(|i| mask & (1 << i) != 0)
                    .map(|i| voters[i])
                    .collect();
                survives(&down)
            });
        if !all_survive {
            break;
        }
        best = k as u32;
    }
    best
}

fn configs_strategy() -> impl Strategy<Value = Vec<BTreeSet<NodeId>>> {
    // Up to 7 voters (IDs 1..=7); one configuration, or two during a joint change.
    let config = proptest::collection::btree_set(1u64..=7, 1..=7);
    prop_oneof![
        config.clone().prop_map(|c| vec![c]),
        (config.clone(), config).prop_map(|(a, b)| vec![a, b]),
        Just(vec![]),
    ]
}

/// A pod of the voters' StatefulSet in the model: the node it runs (maybe no voter:
/// 8 and 9 are learners being added) and whether the operator could identify it.
#[derive(Clone, Debug)]
struct ModelPod {
    runs: Option<NodeId>,
    ready: bool,
    healthy: bool,
    identified: bool,
}

fn pods_strategy() -> impl Strategy<Value = Vec<ModelPod>> {
    proptest::collection::btree_map(
        1u64..=9,
        (any::<bool>(), any::<bool>(), any::<bool>()),
        0..=9,
    )
    .prop_flat_map(|m| {
        let pods: Vec<ModelPod> = m
            .into_iter()
            .map(|(id, (ready, healthy, identified))| ModelPod {
                runs: Some(id),
                ready,
                // A healthy member's pod is Ready (readiness is the node's health check).
                healthy: ready && healthy,
                identified: ready || identified,
            })
            .collect();
        // Plus pods whose node never answered (a brand-new pod).
        (Just(pods), 0usize..=2).prop_map(|(mut pods, fresh)| {
            pods.extend((0..fresh).map(|_| ModelPod {
                runs: None,
                ready: false,
                healthy: false,
                identified: false,
            }));
            pods
        })
    })
}

fn observed(configs: &[BTreeSet<NodeId>], pods: &[ModelPod]) -> Vec<BudgetPod> {
    pods.iter()
        .map(|p| BudgetPod {
            ready: p.ready,
            voter: p
                .runs
                .filter(|id| p.identified && configs.iter().any(|c| c.contains(id))),
            healthy: p.healthy,
        })
        .collect()
}

/// Healthy voters as the truth has it: Ready, healthy, in a configuration.
fn healthy_voters(configs: &[BTreeSet<NodeId>], pods: &[ModelPod]) -> BTreeSet<NodeId> {
    pods.iter()
        .filter(|p| p.ready && p.healthy)
        .filter_map(|p| p.runs)
        .filter(|id| configs.iter().any(|c| c.contains(id)))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// `disruptions_allowed` is exactly the number of voters every configuration
    /// survives losing, whichever they are.
    #[test]
    fn allowed_disruptions_equal_what_every_configuration_survives(
        configs in configs_strategy(),
        healthy in proptest::collection::btree_set(1u64..=7, 0..=7),
    ) {
        prop_assert_eq!(disruptions_allowed(&configs, &healthy), oracle_allowed(&configs, &healthy));
    }

    /// At render time the PDB controller's `disruptionsAllowed` (Ready − minAvailable)
    /// never exceeds the budget's `allowed`, and equals it when every pod is Ready
    /// (unready pods that could turn Ready without adding a healthy voter hold some back).
    #[test]
    fn the_rendered_min_available_admits_the_allowed_disruptions(
        configs in configs_strategy(),
        pods in pods_strategy(),
    ) {
        let b = budget(&configs, &observed(&configs, &pods));
        let ready = pods.iter().filter(|p| p.ready).count() as i64;
        let admitted = (ready - i64::from(b.min_available)).max(0);
        prop_assert!(admitted <= i64::from(b.allowed), "ready {} minAvailable {}", ready, b.min_available);
        if pods.iter().all(|p| p.ready) {
            prop_assert_eq!(admitted, i64::from(b.allowed));
        }
        prop_assert_eq!(b.allowed, oracle_allowed(&configs, &healthy_voters(&configs, &pods)));
    }

    /// No sequence the PDB controller admits loses a quorum before the operator
    /// re-renders the budget: evictions of Ready pods (admitted while Ready −
    /// minAvailable ≥ 1), evictions of unready pods (`AlwaysAllow`) and pods becoming
    /// Ready (a returning voter is healthy again), in any order.
    #[test]
    fn no_admitted_eviction_sequence_loses_a_quorum(
        configs in configs_strategy(),
        mut pods in pods_strategy(),
        events in proptest::collection::vec((any::<bool>(), 0usize..16), 0..12),
    ) {
        let b = budget(&configs, &observed(&configs, &pods));
        for (evict, which) in events {
            if pods.is_empty() {
                break;
            }
            let i = which % pods.len();
            if !evict {
                if !pods[i].ready {
                    pods[i].ready = true;
                    pods[i].healthy = true;
                }
                continue;
            }
            let ready = pods.iter().filter(|p| p.ready).count() as i64;
            let admitted = !pods[i].ready || ready - i64::from(b.min_available) >= 1;
            if !admitted {
                continue;
            }
            let was_ready = pods[i].ready;
            pods.remove(i);
            if was_ready {
                let left = healthy_voters(&configs, &pods);
                prop_assert!(
                    configs.iter().all(|c| majority(c, &left)),
                    "an admitted eviction left {:?} healthy in {:?} (minAvailable {})",
                    left, configs, b.min_available
                );
            }
        }
    }
}
