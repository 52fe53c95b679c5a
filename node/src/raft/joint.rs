//! A joint configuration left behind (issue 11, hole 1). openraft proposes the
//! second, uniform configuration of a change from the future that asked for
//! the change; if that future is dropped (a caller's deadline) or the leader
//! dies between the two phases, the cluster stays joint and every later change
//! is refused. A leader that finds a committed joint configuration with no
//! change of its own running finishes it; this is the decision.

use std::collections::BTreeSet;

use crate::NodeId;

/// The voter set that finishes the joint configuration `configs` (whose entry
/// is at `membership_index`), if it is joint and committed: its last (new)
/// configuration. `None` when there is nothing to finish, or the joint entry
/// is not committed yet (the change that proposed it is still running).
pub fn finish_target(
    configs: &[BTreeSet<NodeId>],
    membership_index: u64,
    committed: u64,
) -> Option<BTreeSet<NodeId>> {
    if configs.len() > 1 && membership_index <= committed {
        configs.last().cloned()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Against the definition: finished exactly when joint and committed,
        /// and then towards the new (last) configuration, never the old one.
        #[test]
        fn only_a_committed_joint_config_is_finished_towards_its_new_voters(
            configs in prop::collection::vec(prop::collection::btree_set(1u64..=7, 1..=5), 1..=2),
            index in 0u64..10,
            committed in 0u64..10,
        ) {
            let got = finish_target(&configs, index, committed);
            if configs.len() == 2 && index <= committed {
                prop_assert_eq!(got, Some(configs[1].clone()));
            } else {
                prop_assert_eq!(got, None);
            }
        }
    }
}
