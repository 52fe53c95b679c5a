//! Execute a plan: apply the owned objects, keep role labels current, run the one
//! step, and publish its Event. Every write is idempotent, so a reconcile cut short
//! is safe to repeat.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::Context;
use crate::crd::{
    FORCE_NEW_CLUSTER_ANNOTATION, ROLE_LABEL, RaftCluster, SERVING_LABEL,
    SERVING_STOPPED_ANNOTATION,
};
use crate::observe::Observation;
use crate::planner::{NewMember, Plan, PlannedEvent, Set, Step};
use crate::resources::{self, CLIENT_PORT, FIELD_MANAGER, PEER_PORT, pod_dns, pvc_name};
use crate::{Error, Result, node_client};

async fn apply<K>(api: &Api<K>, obj: &K) -> Result<()>
where
    K: Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let name = obj
        .meta()
        .name
        .clone()
        .ok_or(Error::MissingField("metadata.name"))?;
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await?;
    Ok(())
}

/// Services, PodDisruptionBudgets and both StatefulSets at the sizes the plan chose.
pub async fn apply_owned(rc: &RaftCluster, ctx: &Context, plan: &Plan) -> Result<()> {
    let ns = rc
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let svc: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    apply(&svc, &resources::peer_service(rc)).await?;
    apply(&svc, &resources::client_service(rc)).await?;
    apply(&svc, &resources::read_service(rc)).await?;
    let pdb: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &ns);
    apply(
        &pdb,
        &resources::pod_disruption_budget(rc, &plan.disruption),
    )
    .await?;
    apply(&pdb, &resources::read_pod_disruption_budget(rc)).await?;
    let np: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), &ns);
    apply(
        &np,
        &resources::network_policy(rc, ctx.operator_namespace.as_deref()),
    )
    .await?;
    let sts: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let (voters_claim, read_claim) = &plan.claim_sizes;
    apply(
        &sts,
        &resources::statefulset_with_claim_size(
            rc,
            Set::Voters,
            plan.voters_replicas,
            &ctx.default_node_image,
            voters_claim.as_deref(),
        ),
    )
    .await?;
    apply(
        &sts,
        &resources::statefulset_with_claim_size(
            rc,
            Set::Read,
            plan.read_replicas,
            &ctx.default_node_image,
            read_claim.as_deref(),
        ),
    )
    .await?;
    Ok(())
}

pub async fn apply_labels(rc: &RaftCluster, ctx: &Context, plan: &Plan) -> Result<()> {
    for (pod, role) in &plan.labels {
        label_pod(rc, ctx, pod, ROLE_LABEL, role).await?;
    }
    for pod in &plan.serve_again {
        label_pod(rc, ctx, pod, SERVING_LABEL, "true").await?;
    }
    Ok(())
}

async fn label_pod(
    rc: &RaftCluster,
    ctx: &Context,
    pod: &str,
    key: &str,
    value: &str,
) -> Result<()> {
    let ns = rc
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = serde_json::json!({"metadata": {"labels": {key: value}}});
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    pods.patch(pod, &params, &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .or_else(ignore_not_found)
}

/// Sets the pod's `raftkv.dev/serving` label to `false` and records when, in
/// one patch: the drain waits a grace after that time (`planner::drain`).
async fn stop_serving(rc: &RaftCluster, ctx: &Context, pod: &str, now_ms: i64) -> Result<()> {
    let ns = rc
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = serde_json::json!({"metadata": {
        "labels": {SERVING_LABEL: "false"},
        "annotations": {SERVING_STOPPED_ANNOTATION: now_ms.to_string()},
    }});
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    pods.patch(pod, &params, &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .or_else(ignore_not_found)
}

/// Runs the plan's one step, if any.
pub async fn run_step(
    rc: &RaftCluster,
    ctx: &Context,
    obs: &Observation,
    plan: &Plan,
) -> Result<()> {
    let Some(step) = &plan.step else {
        return Ok(());
    };
    let cluster = rc.name_any();
    let ns = rc
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let addr_of = |pod: &str| {
        obs.addrs
            .get(pod)
            .cloned()
            .ok_or_else(|| Error::NodeConnect {
                target: pod.into(),
                message: "pod has no address".into(),
            })
    };
    let leader_addr = || {
        let leader = plan.status.leader.as_deref().ok_or_else(|| {
            Error::QuorumUnsafe("no leader to send a membership change to".into())
        })?;
        addr_of(leader)
    };
    let member = |m: &NewMember| {
        node_client::member(m, &pod_dns(&m.name, &cluster, &ns), CLIENT_PORT, PEER_PORT)
    };
    tracing::info!(step = ?step, "executing");
    match step {
        Step::Initialize { pod, members } => {
            node_client::initialize(&addr_of(pod)?, members.iter().map(member).collect()).await
        }
        Step::AddLearner { member: m } => {
            node_client::add_learner(&leader_addr()?, member(m)).await
        }
        Step::ChangeMembership { voters, .. } => {
            // The plan was computed from the leader's membership as observed:
            // the leader refuses the change if it has moved on since (hole 5
            // of issue 11: an operator paused past its Lease must not apply
            // a change planned from old state).
            let planned_from = crate::planner::ClusterView::new(&obs.observed)
                .membership
                .map(|m| m.log_index);
            node_client::change_membership(&leader_addr()?, voters.clone(), planned_from).await
        }
        Step::RemoveLearner { node_id, .. } => {
            node_client::remove_member(&leader_addr()?, *node_id).await
        }
        Step::TransferLeader { target, .. } => {
            node_client::transfer_leader(&leader_addr()?, *target).await
        }
        // Applied with the StatefulSet in `apply_owned`.
        Step::ScaleStatefulSet { .. } => Ok(()),
        Step::StopServing { pods } => {
            for pod in pods {
                stop_serving(rc, ctx, pod, obs.observed.now_ms).await?;
            }
            Ok(())
        }
        Step::DeletePod {
            pod, delete_pvc, ..
        } => {
            if *delete_pvc {
                let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
                pvcs.delete(&pvc_name(pod), &DeleteParams::default())
                    .await
                    .map(|_| ())
                    .or_else(ignore_not_found)?;
            }
            let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
            pods.delete(pod, &DeleteParams::default())
                .await
                .map(|_| ())
                .or_else(ignore_not_found)
        }
        Step::ForceNewCluster {
            pod, cluster_id, ..
        } => {
            // The annotation goes first: if the call fails, nothing is retried
            // by itself (never automatic); the failure Event says why, and
            // someone applies the annotation again.
            remove_annotation(rc, ctx, FORCE_NEW_CLUSTER_ANNOTATION).await?;
            let r = node_client::force_new_cluster(&addr_of(pod)?, cluster_id).await?;
            tracing::warn!(
                pod,
                node_id = r.node_id,
                cluster_id = r.cluster_id,
                commit_index = r.commit_index,
                last_log_index = r.last_log_index,
                "forced a new cluster: the pod rebuilds itself on its restart"
            );
            Ok(())
        }
        Step::Restore { pod, .. } => {
            let from = rc
                .spec
                .bootstrap
                .as_ref()
                .and_then(|b| b.from_backup.as_ref())
                .ok_or(Error::MissingField("spec.bootstrap.fromBackup"))?;
            // The node's refusal (a damaged file, a pod that belongs to a
            // cluster) is a failed restore, reported as one.
            let r = crate::backup::restore::run(rc, &ctx.client, &ns, from, &addr_of(pod)?)
                .await
                .map_err(|e| match e {
                    Error::NodeRpc { target, status } => Error::Restore(format!(
                        "{target} refused {}: {}",
                        from.describe(),
                        status.message()
                    )),
                    other => other,
                })?;
            tracing::info!(
                pod,
                source_cluster_id = r.source_cluster_id,
                revision = r.revision,
                keys = r.keys,
                bytes = r.bytes,
                "the pod accepted the verified backup; it restarts as the new cluster's first voter"
            );
            let ev = PlannedEvent {
                reason: "Restored".into(),
                action: "Restore".into(),
                note: format!(
                    "{pod} verified {} ({} bytes, checksum {:08x}): {} keys at revision {} of cluster {}; it restarts as the first voter of a new cluster",
                    from.describe(),
                    r.bytes,
                    r.checksum,
                    r.keys,
                    r.revision,
                    r.source_cluster_id
                ),
                warning: false,
                related: None,
            };
            publish(rc, ctx, &ev).await
        }
    }
}

async fn remove_annotation(rc: &RaftCluster, ctx: &Context, key: &str) -> Result<()> {
    let ns = rc
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<RaftCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = serde_json::json!({"metadata": {"annotations": {key: null}}});
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    api.patch(&rc.name_any(), &params, &Patch::Merge(&patch))
        .await?;
    Ok(())
}

fn ignore_not_found(e: kube::Error) -> Result<()> {
    match &e {
        kube::Error::Api(s) if s.code == 404 => Ok(()),
        _ => Err(e.into()),
    }
}

pub async fn publish(rc: &RaftCluster, ctx: &Context, ev: &PlannedEvent) -> Result<()> {
    let event = Event {
        type_: if ev.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: ev.reason.clone(),
        note: Some(ev.note.clone()),
        action: ev.action.clone(),
        secondary: ev.related.as_ref().map(|(kind, name)| ObjectReference {
            api_version: Some(if *kind == "Pod" { "v1" } else { "apps/v1" }.into()),
            kind: Some((*kind).into()),
            name: Some(name.clone()),
            namespace: rc.namespace(),
            ..Default::default()
        }),
    };
    ctx.recorder.publish(&event, &rc.object_ref(&())).await?;
    Ok(())
}

/// Server-side apply of the status, with the operator's one field manager.
pub async fn write_status(
    rc: &RaftCluster,
    ctx: &Context,
    status: &crate::crd::RaftClusterStatus,
) -> Result<()> {
    let ns = rc
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<RaftCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = serde_json::json!({
        "apiVersion": "raftkv.dev/v1alpha1",
        "kind": "RaftCluster",
        "status": status,
    });
    api.patch_status(
        &rc.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}
