//! The PodDisruptionBudgets: the voters' from the quorum (`planner::disruption`), the
//! read replicas' a fixed one at a time.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{labels::owned_meta, read_name, set_selector};
use crate::crd::{COMPONENT_READ, COMPONENT_VOTER, RaftCluster};
use crate::planner::Set;
use crate::planner::disruption::Budget;

/// Unready pods may always be evicted: they hold no healthy voter (the budget counts
/// only Ready ones), and a crash-looping member must not block a node drain.
const UNHEALTHY_POD_EVICTION_POLICY: &str = "AlwaysAllow";

fn pdb(rc: &RaftCluster, name: String, component: &str, set: Set) -> PodDisruptionBudget {
    let cluster = rc.metadata.name.clone().unwrap_or_default();
    PodDisruptionBudget {
        metadata: owned_meta(rc, name, component),
        spec: Some(PodDisruptionBudgetSpec {
            selector: Some(LabelSelector {
                match_labels: Some(set_selector(&cluster, set)),
                ..Default::default()
            }),
            unhealthy_pod_eviction_policy: Some(UNHEALTHY_POD_EVICTION_POLICY.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `<name>`: the voters may go down by choice (drains, evictions) only as far as the
/// membership survives, as the planner computed it this reconcile.
pub fn pod_disruption_budget(rc: &RaftCluster, budget: &Budget) -> PodDisruptionBudget {
    let cluster = rc.metadata.name.clone().unwrap_or_default();
    let mut out = pdb(rc, cluster, COMPONENT_VOTER, Set::Voters);
    if let Some(spec) = &mut out.spec {
        spec.min_available = Some(IntOrString::Int(budget.min_available as i32));
    }
    out
}

/// `<name>-read`: read replicas hold no quorum; one at a time keeps most of the read
/// capacity through a drain.
pub fn read_pod_disruption_budget(rc: &RaftCluster) -> PodDisruptionBudget {
    let cluster = rc.metadata.name.clone().unwrap_or_default();
    let mut out = pdb(rc, read_name(&cluster), COMPONENT_READ, Set::Read);
    if let Some(spec) = &mut out.spec {
        spec.max_unavailable = Some(IntOrString::Int(1));
    }
    out
}
