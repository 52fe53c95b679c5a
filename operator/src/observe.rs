//! Observe one RaftCluster: its StatefulSets and pods, and every pod's own `Status`
//! over gRPC (concurrently, with short timeouts). Builds the planner's input.

use std::collections::BTreeMap;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};

use crate::controller::{Context, NodeAddressing};
use crate::crd::{PAUSED_ANNOTATION, ROLE_LABEL, RaftCluster};
use crate::planner::{DesiredSpec, Observed, PodState, Set, StsState, parse_pod_name};
use crate::resources::{CLIENT_PORT, instance_selector, pod_dns, read_name};
use crate::{Error, Result, node_client};

/// What one reconcile saw, plus how to reach each pod.
pub struct Observation {
    pub observed: Observed,
    /// Pod name -> `host:port` of its client listener, as this operator reaches it.
    pub addrs: BTreeMap<String, String>,
}

pub async fn observe(rc: &RaftCluster, ctx: &Context) -> Result<Observation> {
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

    let voters_sts = sts_api.get_opt(&name).await?.map(sts_state);
    let read_sts = sts_api.get_opt(&read_name(&name)).await?.map(sts_state);
    let selector = instance_selector(&name)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let pods = pod_api
        .list(&ListParams::default().labels(&selector))
        .await?;

    let mut addrs = BTreeMap::new();
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
            addrs.insert(pod_name.clone(), format!("{addr}:{CLIENT_PORT}"));
        }
        states.push(pod_state(pod, pod_name, set, ordinal));
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

    let status = rc.status.clone().unwrap_or_default();
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
        },
        paused: rc
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(PAUSED_ANNOTATION))
            .is_some_and(|v| v == "true"),
        now_ms: Timestamp::now().as_millisecond(),
        voters_sts,
        read_sts,
        pods: states,
        previous_conditions: status.conditions,
        previous_membership_change: status.last_membership_change,
    };
    Ok(Observation { observed, addrs })
}

fn sts_state(sts: StatefulSet) -> StsState {
    StsState {
        replicas: sts.spec.and_then(|s| s.replicas).unwrap_or(1).max(0) as u32,
        update_revision: sts.status.and_then(|s| s.update_revision),
    }
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
        node: None,
    }
}
