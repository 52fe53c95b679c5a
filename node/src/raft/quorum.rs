//! Joint-majority counting, the one rule every quorum decision here uses (the
//! commit index a leader reports, a pre-vote's outcome, whether a joint
//! configuration is in progress). During a joint change (Raft §6) a decision
//! needs a majority of *every* active configuration, old and new.

use std::collections::BTreeSet;

use crate::NodeId;

/// True when `yes` holds a strict majority of every configuration in `configs`.
/// No configuration at all is never a quorum.
pub fn is_joint_majority(configs: &[BTreeSet<NodeId>], yes: &BTreeSet<NodeId>) -> bool {
    !configs.is_empty()
        && configs
            .iter()
            .all(|c| 2 * c.iter().filter(|v| yes.contains(v)).count() > c.len())
}

/// The highest log index a joint majority has matched: for each configuration
/// the largest index held by a majority of its voters, then the smallest of
/// those. `matched(id)` is what voter `id` is known to hold (0 if unknown).
pub fn committed_index(configs: &[BTreeSet<NodeId>], matched: impl Fn(NodeId) -> u64) -> u64 {
    configs
        .iter()
        .map(|voters| {
            let mut idx: Vec<u64> = voters.iter().map(|v| matched(*v)).collect();
            // Descending: the value at position len/2 is held by len/2+1 voters.
            idx.sort_unstable_by(|a, b| b.cmp(a));
            idx.get(voters.len() / 2).copied().unwrap_or(0)
        })
        .min()
        .unwrap_or(0)
}

/// True while a joint configuration (old and new voter sets) is active.
pub fn is_joint(configs: &[BTreeSet<NodeId>]) -> bool {
    configs.len() > 1
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// Brute force: the largest candidate index such that the voters holding
    /// at least it form a majority of every configuration.
    fn committed_oracle(configs: &[BTreeSet<NodeId>], matched: &BTreeMap<NodeId, u64>) -> u64 {
        let mut best = 0;
        for &candidate in matched.values() {
            let holders: BTreeSet<NodeId> = matched
                .iter()
                .filter(|(_, m)| **m >= candidate)
                .map(|(id, _)| *id)
                .collect();
            if is_joint_majority(configs, &holders) {
                best = best.max(candidate);
            }
        }
        best
    }

    fn majority_oracle(config: &BTreeSet<NodeId>, yes: &BTreeSet<NodeId>) -> bool {
        let n = config.len();
        let granted = config.intersection(yes).count();
        // Enumerated, not divided: the smallest majority of n is floor(n/2)+1.
        (0..=n).filter(|k| k * 2 > n).any(|k| granted >= k)
    }

    fn configs_strategy() -> impl Strategy<Value = (Vec<BTreeSet<NodeId>>, BTreeMap<NodeId, u64>)> {
        let ids = 1u64..=7;
        (
            prop::collection::vec(prop::collection::btree_set(ids.clone(), 1..=5), 1..=2),
            prop::collection::btree_map(ids, 0u64..20, 7..=7),
        )
    }

    proptest! {
        #[test]
        fn committed_index_is_the_highest_index_a_joint_majority_holds(
            (configs, matched) in configs_strategy()
        ) {
            let got = committed_index(&configs, |id| matched.get(&id).copied().unwrap_or(0));
            prop_assert_eq!(got, committed_oracle(&configs, &matched));
        }

        #[test]
        fn joint_majority_needs_a_majority_of_every_config(
            configs in prop::collection::vec(prop::collection::btree_set(1u64..=7, 1..=5), 1..=2),
            yes in prop::collection::btree_set(1u64..=7, 0..=7),
        ) {
            let expect = configs.iter().all(|c| majority_oracle(c, &yes));
            prop_assert_eq!(is_joint_majority(&configs, &yes), expect);
        }
    }

    #[test]
    fn a_joint_change_needs_both_sides() {
        let old = BTreeSet::from([1, 2, 3]);
        let new = BTreeSet::from([3, 4, 5]);
        let both = [old.clone(), new.clone()];
        assert!(is_joint(&both));
        // A majority of the old voters alone is not enough.
        assert!(!is_joint_majority(&both, &BTreeSet::from([1, 2, 3])));
        assert!(is_joint_majority(&both, &BTreeSet::from([1, 2, 4, 5])));
        assert!(!is_joint_majority(&[], &BTreeSet::from([1])));
    }
}
