//! The voters' PodDisruptionBudget, from the quorum.
//!
//! A voluntary disruption (a drain's eviction) may take down exactly as many voters
//! as the current membership survives: the healthy voters minus a quorum, in every
//! configuration (both during a joint change), never below 0. A fixed
//! `maxUnavailable: 1` is wrong both ways: five voters survive two, and a cluster with
//! one voter already down survives none.
//!
//! The PodDisruptionBudget controller only counts Ready pods: `disruptionsAllowed =
//! Ready pods − minAvailable`. So the budget is rendered as a `minAvailable` that
//! turns the Ready count at observation time into exactly [`Budget::allowed`]
//! evictions, and stays safe when pods become Ready before the next reconcile
//! re-renders it (see [`voter_budget`]). Unready pods may always be evicted
//! (`unhealthyPodEvictionPolicy: AlwaysAllow`): a healthy voter here is always a
//! Ready pod, so evicting an unready one never takes a healthy voter away, and a
//! crash-looping member does not block a node drain.

use std::collections::BTreeSet;

use super::observed::{ClusterView, NodeId, Set};

/// Size of a majority of `n` voters.
pub fn quorum(n: usize) -> usize {
    n / 2 + 1
}

/// How many of the `healthy` voters may be taken down while every configuration
/// keeps a quorum of healthy voters (`configs`: one normally, two in a joint change).
/// 0 when there is no configuration or a quorum is already lost.
pub fn disruptions_allowed(configs: &[BTreeSet<NodeId>], healthy: &BTreeSet<NodeId>) -> u32 {
    configs
        .iter()
        .map(|c| {
            let up = c.intersection(healthy).count();
            // An empty configuration has no quorum: nothing may go.
            if c.is_empty() {
                0
            } else {
                up.saturating_sub(quorum(c.len()))
            }
        })
        .min()
        .unwrap_or(0) as u32
}

/// One pod of the voters' StatefulSet, as the budget sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BudgetPod {
    /// Counted Ready by the PodDisruptionBudget controller (Ready, not terminating).
    pub ready: bool,
    /// The voter of the membership this pod runs, if it runs one.
    pub voter: Option<NodeId>,
    /// A healthy member (reachable, in contact with the leader, caught up).
    pub healthy: bool,
}

/// The voters' disruption budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Budget {
    /// Voters that may be down by choice right now.
    pub allowed: u32,
    /// The PDB's `minAvailable`.
    pub min_available: u32,
}

/// The budget of `configs` given the voters' pods.
///
/// Healthy voters are those whose pod is also Ready (what the PDB controller counts).
/// `minAvailable = Ready − allowed + held`, where `held` are the unready pods that may
/// become Ready without raising `allowed` by one each before the next reconcile:
/// pods that run no voter, the first `quorum − healthy` voters to return while a
/// quorum is short, and every unready pod during a joint change (or without a
/// membership), where one more healthy voter need not raise the minimum over the
/// configurations. `disruption_properties` checks every eviction sequence this
/// admits keeps a quorum.
pub fn budget(configs: &[BTreeSet<NodeId>], pods: &[BudgetPod]) -> Budget {
    let healthy: BTreeSet<NodeId> = pods
        .iter()
        .filter(|p| p.ready && p.healthy)
        .filter_map(|p| p.voter)
        .collect();
    let allowed = disruptions_allowed(configs, &healthy);
    let ready = pods.iter().filter(|p| p.ready).count() as u32;
    let unready = || pods.iter().filter(|p| !p.ready);
    let held = match configs {
        [config] if !config.is_empty() => {
            let returning = unready()
                .filter(|p| p.voter.is_some_and(|id| config.contains(&id)))
                .count();
            let others = unready().count() - returning;
            let short = quorum(config.len()).saturating_sub(config.intersection(&healthy).count());
            others + returning.min(short)
        }
        _ => unready().count(),
    } as u32;
    Budget {
        allowed,
        min_available: ready - allowed + held,
    }
}

/// The voters' budget of this reconcile: the leader's membership and the voters'
/// pods (no leader: nothing may go).
pub fn voter_budget(view: &ClusterView) -> Budget {
    let configs: Vec<BTreeSet<NodeId>> = view
        .membership
        .map(|m| {
            m.configs
                .iter()
                .map(|c| c.iter().copied().collect())
                .collect()
        })
        .unwrap_or_default();
    let pods: Vec<BudgetPod> = view
        .obs
        .pods
        .iter()
        .filter(|p| p.set == Set::Voters)
        .map(|p| {
            let id = p.node.as_ref().map(|n| n.node_id);
            BudgetPod {
                ready: p.ready && !p.terminating,
                voter: id.filter(|id| configs.iter().any(|c| c.contains(id))),
                healthy: id.is_some_and(|id| view.is_healthy(id)),
            }
        })
        .collect();
    budget(&configs, &pods)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[u64]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }
    fn pod(ready: bool, voter: Option<u64>) -> BudgetPod {
        BudgetPod {
            ready,
            voter,
            healthy: ready,
        }
    }

    #[test]
    fn three_voters_allow_one_and_none_once_one_is_down() {
        let c = [set(&[1, 2, 3])];
        let all = [pod(true, Some(1)), pod(true, Some(2)), pod(true, Some(3))];
        assert_eq!(
            budget(&c, &all),
            Budget {
                allowed: 1,
                min_available: 2
            }
        );
        // One evicted, its pod back but not Ready yet: the PDB admits nothing (2 − 2),
        // and its return raises the budget to 1 again (3 − 2) before any re-render.
        let one_down = [pod(false, Some(1)), pod(true, Some(2)), pod(true, Some(3))];
        assert_eq!(
            budget(&c, &one_down),
            Budget {
                allowed: 0,
                min_available: 2
            }
        );
    }

    #[test]
    fn five_voters_allow_two() {
        let c = [set(&[1, 2, 3, 4, 5])];
        let pods: Vec<_> = (1..=5).map(|i| pod(true, Some(i))).collect();
        assert_eq!(budget(&c, &pods).allowed, 2);
        assert_eq!(budget(&c, &pods).min_available, 3);
    }

    #[test]
    fn a_ready_but_lagging_voter_does_not_count() {
        let c = [set(&[1, 2, 3])];
        let mut lagging = pod(true, Some(3));
        lagging.healthy = false;
        let pods = [pod(true, Some(1)), pod(true, Some(2)), lagging];
        assert_eq!(
            budget(&c, &pods),
            Budget {
                allowed: 0,
                min_available: 3
            }
        );
    }

    #[test]
    fn no_membership_allows_nothing() {
        let pods = [pod(true, None), pod(false, None)];
        assert_eq!(
            budget(&[], &pods),
            Budget {
                allowed: 0,
                min_available: 2
            }
        );
    }
}
