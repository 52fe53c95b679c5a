//! Members leave the Services before they leave the membership.
//!
//! A member about to be removed still passes its readiness probe until the kubelet
//! next probes it (seconds) and then the probe's failure threshold; during that
//! window the client and read Services keep sending it requests it can no longer
//! answer well (a removed learner refuses bounded reads once its last leader contact
//! ages past the bound). So before a step that removes a member whose pod stays up,
//! the planner first sets the pod's `raftkv.dev/serving` label to `false` (both
//! Services select `serving=true`), then waits until no EndpointSlice of either
//! Service lists the pod, and only then removes it. A label, not a readiness gate:
//! it takes effect at once, needs no kubelet round trip, and a new pod serves by
//! default (the StatefulSet template carries `serving=true`) without waiting for
//! the operator.

use super::decide::Outcome;
use super::observed::{ClusterView, NodeId, PodState};
use super::{Intent, Step};

/// The pods that stop being members with `step` while they keep running: the pod
/// still reports the node ID being removed (a replaced member's pod reports its new
/// node, and stays in the Services).
pub fn leaving_pods<'a>(step: &Step, view: &ClusterView<'a>) -> Vec<&'a PodState> {
    let removed: Vec<NodeId> = match step {
        Step::RemoveLearner { node_id, .. } => vec![*node_id],
        Step::ChangeMembership { removed, .. } => removed.clone(),
        _ => return Vec::new(),
    };
    let Some(m) = view.membership else {
        return Vec::new();
    };
    removed
        .iter()
        .filter_map(|id| {
            let pod = view.pod_named(m.name_of(*id)?)?;
            let same_node = pod.node.as_ref().is_none_or(|n| n.node_id == *id);
            (same_node && !pod.terminating).then_some(pod)
        })
        .collect()
}

/// What to do instead of `step` while a leaving pod may still receive client
/// traffic: stop it serving, then wait for the EndpointSlices. `None`: go ahead.
pub fn before_removal(step: &Step, intent: Intent, view: &ClusterView) -> Option<Outcome> {
    let leaving = leaving_pods(step, view);
    let labelled: Vec<String> = leaving
        .iter()
        .filter(|p| p.serving != Some(false))
        .map(|p| p.name.clone())
        .collect();
    if !labelled.is_empty() {
        return Some(Outcome::Act(Step::StopServing { pods: labelled }, intent));
    }
    let listed: Vec<&str> = leaving
        .iter()
        .filter(|p| p.in_services)
        .map(|p| p.name.as_str())
        .collect();
    if !listed.is_empty() {
        return Some(Outcome::Wait(
            intent,
            format!(
                "waiting for {} to leave the Services' EndpointSlices before {}",
                listed.join(", "),
                super::status::step_message(step)
            ),
        ));
    }
    let now = view.obs.now_ms;
    let in_grace: Vec<&str> = leaving
        .iter()
        .filter(|p| {
            p.serving_stopped_ms
                .is_some_and(|t| now - t < super::limits::DRAIN_GRACE_MS)
        })
        .map(|p| p.name.as_str())
        .collect();
    if !in_grace.is_empty() {
        return Some(Outcome::Wait(
            intent,
            format!(
                "{} left the Services' EndpointSlices; waiting {} s after it stopped serving \
                 (kube-proxy catching up) before {}",
                in_grace.join(", "),
                super::limits::DRAIN_GRACE_MS / 1000,
                super::status::step_message(step)
            ),
        ));
    }
    None
}

/// Pods whose `raftkv.dev/serving` label must become `"true"`: pods from before
/// the label existed (so an operator upgrade does not empty the Services), and
/// pods drained for a removal that is no longer wanted (the spec grew back). Never
/// one of `leaving`, the pods the step decided this time removes.
pub fn to_restore(view: &ClusterView, leaving: &[&PodState]) -> Vec<String> {
    let obs = view.obs;
    let leaving: Vec<&str> = leaving.iter().map(|p| p.name.as_str()).collect();
    obs.pods
        .iter()
        .filter(|p| !p.terminating)
        .filter(|p| match p.serving {
            None => true,
            Some(true) => false,
            Some(false) => p.ordinal < obs.spec.wanted(p.set),
        })
        .filter(|p| !leaving.contains(&p.name.as_str()))
        .map(|p| p.name.clone())
        .collect()
}
