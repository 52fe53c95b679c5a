use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{labels::owned_meta, set_selector};
use crate::crd::{COMPONENT_VOTER, RaftCluster};
use crate::planner::Set;

/// At most one voter down by choice (drains, evictions).
pub fn pod_disruption_budget(rc: &RaftCluster) -> PodDisruptionBudget {
    let cluster = rc.metadata.name.clone().unwrap_or_default();
    PodDisruptionBudget {
        metadata: owned_meta(rc, cluster.clone(), COMPONENT_VOTER),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(set_selector(&cluster, Set::Voters)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}
