//! Observe one RaftCluster: its StatefulSets and pods, and every pod's own `Status`
//! over gRPC (concurrently, with short timeouts). Builds the planner's input.

use std::collections::{BTreeMap, BTreeSet};

use futures::future::join_all;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Node, PersistentVolumeClaim, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};

use crate::context::{Context, NodeAddressing};
use crate::crd::{
    FORCE_NEW_CLUSTER_ANNOTATION, PAUSED_ANNOTATION, ROLE_LABEL, RaftCluster, SERVING_LABEL,
    SERVING_STOPPED_ANNOTATION,
};
use crate::planner::limits::CREATE_FAILURE_RECENT_MS;
use crate::planner::placement::ZONE_LABEL;
use crate::planner::volumes::{PvcState, quantity_bytes};
use crate::planner::{DesiredSpec, Observed, PodState, Set, StsState, parse_pod_name};
use crate::resources::{CLIENT_PORT, DATA_VOLUME, instance_selector, pod_dns, read_name};
use crate::{Error, Result, node_client};

/// What one reconcile saw, plus how to reach each pod.
pub struct Observation {
    pub observed: Observed,
    /// Pod name -> its client listener, as this operator reaches it.
    pub addrs: BTreeMap<String, node_client::Target>,
}

/// `tls`: the operator's client configuration for this cluster's nodes
/// (`certificates::ensure`), `None` for plaintext.
pub async fn observe(
    rc: &RaftCluster,
    ctx: &Context,
    tls: Option<&std::sync::Arc<rustls::ClientConfig>>,
) -> Result<Observation> {
    let name = rc
        .metadata
        .name
        .clone()
        .ok_or(Error::MissingField("metadata.name"))?;
    let ns = rc
        .metadata
        .namespace
        .clone()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);

    let voters_sts = sts_api.get_opt(&name).await?;
    let read_sts = sts_api.get_opt(&read_name(&name)).await?;
    let selector = instance_selector(&name)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let pods = pod_api
        .list(&ListParams::default().labels(&selector))
        .await?;

    // Which pods the client and read Services route to right now: a member leaves
    // them before it leaves the membership (planner `drain`).
    let slices: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &ns);
    let slices = slices
        .list(&ListParams::default().labels(&format!(
            "kubernetes.io/service-name in ({name},{})",
            read_name(&name)
        )))
        .await?;
    let routed = routed_pods(&slices.items);

    let mut addrs = BTreeMap::new();
    // Pod name -> the node it is scheduled on (its zone is the placement's input).
    let mut node_of = BTreeMap::new();
    let mut states = Vec::new();
    for pod in &pods.items {
        let Some(pod_name) = pod.metadata.name.clone() else {
            continue;
        };
        let Some((set, ordinal)) = parse_pod_name(&name, &pod_name) else {
            continue;
        };
        let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
        let addr = match ctx.node_addressing {
            NodeAddressing::PodDns => Some(pod_dns(&pod_name, &name, &ns)),
            NodeAddressing::PodIp => ip.clone(),
        };
        // A pod without an IP has no running node to ask.
        if let (Some(addr), Some(_)) = (addr, ip) {
            addrs.insert(
                pod_name.clone(),
                node_client::Target {
                    addr: format!("{addr}:{CLIENT_PORT}"),
                    // Verified for its DNS name, which the node certificate
                    // lists by wildcard, whether dialed by name or IP.
                    tls: tls.map(|c| {
                        (
                            c.clone(),
                            crate::certificates::pod_server_name(&pod_name, &name, &ns),
                        )
                    }),
                },
            );
        }
        if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) {
            node_of.insert(pod_name.clone(), node);
        }
        let mut state = pod_state(pod, pod_name, set, ordinal);
        state.in_services = routed.contains(&state.name);
        states.push(state);
    }
    let replies = join_all(states.iter().map(|p| {
        let addr = addrs.get(&p.name).cloned();
        async move {
            let addr = addr?;
            match node_client::status(&addr).await {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::debug!(pod = %p.name, error = %e, "node status unavailable");
                    None
                }
            }
        }
    }))
    .await;
    for (state, reply) in states.iter_mut().zip(replies) {
        if !state.terminating {
            state.node = reply;
        }
    }
    // No pod scheduled yet: no node to ask about.
    let zones = if node_of.is_empty() {
        Ok(BTreeMap::new())
    } else {
        node_zones(ctx).await
    };
    let nodes_unreadable = match zones {
        Ok(zones) => {
            for state in &mut states {
                state.zone = node_of.get(&state.name).and_then(|n| zones.get(n).cloned());
            }
            None
        }
        Err(e) => {
            tracing::debug!(error = %e, "cannot read nodes: placement unknown");
            Some(e.user_message())
        }
    };

    // Pods the StatefulSet controller cannot create show only in its Events.
    let now_ms = Timestamp::now().as_millisecond();
    let mut sts_states = Vec::new();
    for (set, sts) in [(Set::Voters, voters_sts), (Set::Read, read_sts)] {
        let Some(sts) = sts else {
            sts_states.push(None);
            continue;
        };
        let mut state = sts_state(&sts);
        let present = states.iter().filter(|p| p.set == set).count() as u32;
        if state.replicas > present {
            let sts_name = sts.metadata.name.clone().unwrap_or_default();
            let events: Api<CoreEvent> = Api::namespaced(ctx.client.clone(), &ns);
            let selector = format!(
                "involvedObject.kind=StatefulSet,involvedObject.name={sts_name},reason=FailedCreate"
            );
            match events.list(&ListParams::default().fields(&selector)).await {
                Ok(list) => state.create_failure = latest_create_failure(&list.items, now_ms),
                Err(e) => tracing::debug!(error = %e, "cannot list the StatefulSet's Events"),
            }
        }
        sts_states.push(Some(state));
    }
    let read_sts = sts_states.pop().flatten();
    let voters_sts = sts_states.pop().flatten();

    let status = rc.status.clone().unwrap_or_default();
    // The PVCs only matter while the spec's size differs from a claim template (grown)
    // or an expansion is still reported in status.
    let desired = quantity_bytes(&rc.spec.storage.size.0);
    let grown = [&voters_sts, &read_sts]
        .into_iter()
        .flatten()
        .any(|s| s.claim_size.as_deref().and_then(quantity_bytes) != desired);
    let pvcs = if grown || status.storage.is_some() {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
        let list = api.list(&ListParams::default().labels(&selector)).await?;
        Some(list.items.iter().filter_map(pvc_state).collect())
    } else {
        None
    };
    let auto_replace_after_ms = rc
        .spec
        .auto_replace
        .as_ref()
        .filter(|a| a.enabled)
        .map(|a| {
            humantime::parse_duration(&a.after)
                .map(|d| d.as_millis() as i64)
                .map_err(|e| Error::InvalidSpec(format!("spec.autoReplace.after: {e}")))
        })
        .transpose()?;
    let observed = Observed {
        name,
        generation: rc.metadata.generation,
        spec: DesiredSpec {
            replicas: rc.spec.replicas.max(0) as u32,
            read_replicas: rc.spec.read_replicas.max(0) as u32,
            auto_replace_after_ms,
            storage_size: rc.spec.storage.size.0.clone(),
            from_backup: rc
                .spec
                .bootstrap
                .as_ref()
                .and_then(|b| b.from_backup.as_ref())
                .map(|f| f.describe()),
        },
        paused: rc
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(PAUSED_ANNOTATION))
            .is_some_and(|v| v == "true"),
        now_ms,
        voters_sts,
        read_sts,
        pods: states,
        previous_conditions: status.conditions,
        previous_membership_change: status.last_membership_change,
        previous_phase: status.phase,
        pvcs,
        nodes_unreadable,
        force_new_cluster: rc
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(FORCE_NEW_CLUSTER_ANNOTATION))
            .map(|v| v.trim().to_string()),
        previous_highest_commit: status.highest_commit,
        previous_forced: status.forced_new_cluster,
        previous_restore: status.restore,
        previous_cluster_id: status.cluster_id,
    };
    Ok(Observation { observed, addrs })
}

/// Node name -> its `topology.kubernetes.io/zone` label (nodes without one are left
/// out). Metadata only: labels are all the placement needs. Needs `list` on nodes,
/// which a namespaced install does not grant: the caller reports placement unknown.
async fn node_zones(ctx: &Context) -> Result<BTreeMap<String, String>> {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let list = nodes.list_metadata(&ListParams::default()).await?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|n| {
            let zone = n.metadata.labels.as_ref()?.get(ZONE_LABEL)?.clone();
            Some((n.metadata.name?, zone))
        })
        .collect())
}

fn sts_state(sts: &StatefulSet) -> StsState {
    StsState {
        replicas: sts
            .spec
            .as_ref()
            .and_then(|s| s.replicas)
            .unwrap_or(1)
            .max(0) as u32,
        update_revision: sts.status.as_ref().and_then(|s| s.update_revision.clone()),
        create_failure: None,
        claim_size: sts
            .spec
            .as_ref()
            .and_then(|s| s.volume_claim_templates.as_ref())
            .and_then(|t| {
                t.iter()
                    .find(|c| c.metadata.name.as_deref() == Some(DATA_VOLUME))
            })
            .and_then(|c| c.spec.as_ref()?.resources.as_ref()?.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .map(|q| q.0.clone()),
    }
}

/// Conditions of a PVC that explain a volume not yet grown.
const RESIZE_CONDITIONS: [&str; 4] = [
    "Resizing",
    "FileSystemResizePending",
    "ControllerResizeError",
    "NodeResizeError",
];

/// A member's data PVC (`data-<pod>`), as the expansion decision sees it.
pub fn pvc_state(pvc: &PersistentVolumeClaim) -> Option<PvcState> {
    let name = pvc.metadata.name.clone()?;
    if !name.starts_with(&format!("{DATA_VOLUME}-")) {
        return None;
    }
    let storage = |m: Option<
        &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >| { m.and_then(|m| m.get("storage")).map(|q| q.0.clone()) };
    let status = pvc.status.as_ref();
    Some(PvcState {
        name,
        requested: storage(
            pvc.spec
                .as_ref()
                .and_then(|s| s.resources.as_ref())
                .and_then(|r| r.requests.as_ref()),
        ),
        capacity: storage(status.and_then(|s| s.capacity.as_ref())),
        condition: status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| {
                c.iter()
                    .find(|c| RESIZE_CONDITIONS.contains(&c.type_.as_str()) && c.status == "True")
            })
            .map(|c| (c.type_.clone(), c.message.clone().unwrap_or_default())),
    })
}

/// The message of the newest `FailedCreate` Event, if it is recent (the StatefulSet
/// controller repeats it on every retry while the pod cannot be created).
pub fn latest_create_failure(events: &[CoreEvent], now_ms: i64) -> Option<String> {
    let last_seen = |e: &CoreEvent| {
        e.series
            .as_ref()
            .and_then(|s| s.last_observed_time.as_ref().map(|t| t.0))
            .or(e.last_timestamp.as_ref().map(|t| t.0))
            .or(e.event_time.as_ref().map(|t| t.0))
            .map(|t| t.as_millisecond())
    };
    events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("FailedCreate"))
        .filter_map(|e| Some((last_seen(e)?, e)))
        .filter(|(t, _)| now_ms - t <= CREATE_FAILURE_RECENT_MS)
        .max_by_key(|(t, _)| *t)
        .and_then(|(_, e)| e.message.clone())
}

/// Waiting reasons of a container that cannot run without someone's help.
const FAILING_REASONS: [&str; 7] = [
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// Longest excerpt of a container's message kept in status.
const FAILURE_MESSAGE_MAX: usize = 300;

/// Why the pod's container cannot run, if it cannot: the waiting reason and the last
/// line the node logged before it exited (`FallbackToLogsOnError`), else the
/// kubelet's message.
pub fn pod_failing(pod: &Pod) -> Option<String> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    statuses.iter().find_map(|c| {
        let waiting = c.state.as_ref()?.waiting.as_ref()?;
        let reason = waiting.reason.as_deref()?;
        if !FAILING_REASONS.contains(&reason) {
            return None;
        }
        let terminated = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
        let last_line = terminated
            .and_then(|t| t.message.as_deref())
            .and_then(|m| m.lines().rev().map(str::trim).find(|l| !l.is_empty()));
        let detail = match (last_line, terminated) {
            (Some(line), _) => line.to_string(),
            (None, Some(t)) => format!(
                "exited with code {} ({})",
                t.exit_code,
                t.reason.as_deref().unwrap_or("no reason")
            ),
            (None, None) => waiting.message.clone().unwrap_or_default(),
        };
        let mut detail: String = detail.chars().take(FAILURE_MESSAGE_MAX).collect();
        if detail.is_empty() {
            detail = "no message".into();
        }
        Some(format!("{reason}: {detail}"))
    })
}

/// Pods an EndpointSlice lists as ready (an endpoint without conditions is ready).
pub fn routed_pods(slices: &[EndpointSlice]) -> BTreeSet<String> {
    slices
        .iter()
        .flat_map(|s| &s.endpoints)
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
        .filter_map(|e| e.target_ref.as_ref())
        .filter(|r| r.kind.as_deref() == Some("Pod"))
        .filter_map(|r| r.name.clone())
        .collect()
}

fn pod_state(pod: &Pod, name: String, set: Set, ordinal: u32) -> PodState {
    let ready_cond = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    let ready = ready_cond.is_some_and(|c| c.status == "True");
    let not_ready_since_ms = if ready {
        None
    } else {
        ready_cond
            .and_then(|c| c.last_transition_time.as_ref())
            .or(pod.metadata.creation_timestamp.as_ref())
            .map(|t| t.0.as_millisecond())
    };
    let ready_since_ms = ready_cond
        .filter(|_| ready)
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0.as_millisecond());
    let labels = pod.metadata.labels.as_ref();
    PodState {
        name,
        set,
        ordinal,
        ready,
        not_ready_since_ms,
        ready_since_ms,
        terminating: pod.metadata.deletion_timestamp.is_some(),
        revision: labels.and_then(|l| l.get("controller-revision-hash").cloned()),
        role_label: labels.and_then(|l| l.get(ROLE_LABEL).cloned()),
        serving: labels
            .and_then(|l| l.get(SERVING_LABEL))
            .map(|v| v == "true"),
        serving_stopped_ms: pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(SERVING_STOPPED_ANNOTATION))
            .and_then(|v| v.parse().ok()),
        in_services: false,
        node: None,
        failing: pod_failing(pod),
        zone: None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "demo-0"}, "status": status})).unwrap()
    }

    #[test]
    fn a_crash_looping_pod_reports_the_nodes_last_words() {
        let p = pod(json!({"containerStatuses": [{
            "name": "raft-node", "image": "i", "imageID": "", "ready": false, "restartCount": 4,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 1m20s restarting failed container"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                "message": "starting raft-node\nError: invalid configuration: election timeout min (200 ms) must be at least 3x the heartbeat (500 ms)\n"}},
        }]}));
        assert_eq!(
            pod_failing(&p).as_deref(),
            Some(
                "CrashLoopBackOff: Error: invalid configuration: election timeout min (200 ms) must be at least 3x the heartbeat (500 ms)"
            )
        );
        // Without a message: the exit code.
        let p = pod(json!({"containerStatuses": [{
            "name": "raft-node", "image": "i", "imageID": "", "ready": false, "restartCount": 4,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 2, "reason": "Error"}},
        }]}));
        assert_eq!(
            pod_failing(&p).as_deref(),
            Some("CrashLoopBackOff: exited with code 2 (Error)")
        );
        let p = pod(json!({"containerStatuses": [{
            "name": "raft-node", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"nope\""}},
        }]}));
        assert_eq!(
            pod_failing(&p).as_deref(),
            Some("ImagePullBackOff: Back-off pulling image \"nope\"")
        );
    }

    #[test]
    fn starting_and_running_pods_are_not_failing() {
        for state in [
            json!({"waiting": {"reason": "ContainerCreating"}}),
            json!({"running": {"startedAt": "2025-01-01T00:00:00Z"}}),
        ] {
            let p = pod(json!({"containerStatuses": [{
                "name": "raft-node", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": state,
            }]}));
            assert_eq!(pod_failing(&p), None);
        }
        assert_eq!(pod_failing(&pod(json!({"phase": "Pending"}))), None);
    }

    #[test]
    fn only_ready_pod_endpoints_count_as_routed() {
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "demo-read-abc"}, "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": true},
                 "targetRef": {"kind": "Pod", "name": "demo-read-0"}},
                // Terminating: listed, but not routed to.
                {"addresses": ["10.0.0.2"], "conditions": {"ready": false, "terminating": true},
                 "targetRef": {"kind": "Pod", "name": "demo-read-1"}},
                // No conditions: ready, per the EndpointSlice API.
                {"addresses": ["10.0.0.3"], "targetRef": {"kind": "Pod", "name": "demo-0"}},
                {"addresses": ["10.0.0.4"], "conditions": {"ready": true}},
            ],
        }))
        .unwrap();
        let routed = routed_pods(&[slice]);
        assert_eq!(
            routed.into_iter().collect::<Vec<_>>(),
            ["demo-0", "demo-read-0"]
        );
    }

    #[test]
    fn only_a_recent_failed_create_is_reported() {
        let ev = |msg: &str, last: &str| -> CoreEvent {
            serde_json::from_value(json!({
                "metadata": {"name": msg}, "involvedObject": {}, "reason": "FailedCreate",
                "message": msg, "lastTimestamp": last,
            }))
            .unwrap()
        };
        let now = Timestamp::from_second(1_767_225_600).unwrap(); // 2026-01-01T00:00:00Z
        let events = [
            ev("older", "2025-12-31T23:58:00Z"),
            ev("newest", "2025-12-31T23:59:30Z"),
            ev("stale", "2025-12-31T23:00:00Z"),
        ];
        assert_eq!(
            latest_create_failure(&events, now.as_millisecond()).as_deref(),
            Some("newest")
        );
        assert_eq!(
            latest_create_failure(&events[2..], now.as_millisecond()),
            None
        );
    }
}
