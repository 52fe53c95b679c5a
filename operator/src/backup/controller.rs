//! The `RaftClusterBackup` controller: takes each backup once, writes its
//! status, announces it with an Event and counts it.
//!
//! One backup of a cluster at a time (in this process; with leader election
//! only one operator acts): a second one waits `Pending`. A backup is final
//! once `Succeeded` or `Failed`; a `Running` one that this process is not
//! running was interrupted (the operator restarted) and is marked `Failed`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use raftkv_backup::store;

use super::destination::{object_name, resolve};
use super::take::take;
use crate::context::{Context, NodeAddressing};
use crate::crd::{BackupPhase, RaftCluster, RaftClusterBackup, RaftClusterBackupStatus};
use crate::node_client::Target;
use crate::resources::{CLIENT_PORT, FIELD_MANAGER, instance_selector, pod_dns};
use crate::{Error, Result};

/// How often a backup waiting for another backup of its cluster looks again.
const WAIT_REQUEUE: Duration = Duration::from_secs(5);

/// The controller's state: the shared context, and which backup runs for
/// which cluster.
pub struct BackupContext {
    pub ctx: Arc<Context>,
    /// (namespace, cluster) -> the RaftClusterBackup being taken.
    running: Mutex<BTreeMap<(String, String), String>>,
}

/// Releases a cluster's claim when the backup ends, however it ends.
struct Claim<'a> {
    bctx: &'a BackupContext,
    key: (String, String),
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.bctx
            .running
            .lock()
            .expect("not poisoned")
            .remove(&self.key);
    }
}

impl BackupContext {
    pub fn new(ctx: Arc<Context>) -> Self {
        BackupContext {
            ctx,
            running: Mutex::default(),
        }
    }

    /// Claims the cluster for `backup`; `Err(other)` if `other` runs.
    fn claim(&self, ns: &str, cluster: &str, backup: &str) -> Result<Claim<'_>, String> {
        let key = (ns.to_string(), cluster.to_string());
        let mut running = self.running.lock().expect("not poisoned");
        if let Some(other) = running.get(&key) {
            return Err(other.clone());
        }
        running.insert(key.clone(), backup.to_string());
        Ok(Claim { bctx: self, key })
    }
}

/// Runs the controller until shutdown.
pub async fn run(ctx: Arc<Context>, namespace: Option<String>) {
    let client = ctx.client.clone();
    let api: Api<RaftClusterBackup> = match &namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let bctx = Arc::new(BackupContext::new(ctx));
    Controller::new(api, watcher::Config::default())
        .shutdown_on_signal()
        .run(reconcile, error_policy, bctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "backup reconcile failed");
            }
        })
        .await;
}

fn error_policy(_b: Arc<RaftClusterBackup>, error: &Error, bctx: Arc<BackupContext>) -> Action {
    crate::metrics::Metrics::count(&bctx.ctx.metrics.errors, "error", error.metric_label());
    Action::requeue(Duration::from_secs(10))
}

fn now() -> String {
    Timestamp::now().to_string()
}

#[tracing::instrument(name = "backup", skip(b, bctx), fields(backup = %b.name_any(), namespace = b.namespace()))]
async fn reconcile(b: Arc<RaftClusterBackup>, bctx: Arc<BackupContext>) -> Result<Action> {
    if b.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = b
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = b.name_any();
    let cluster = b.spec.cluster.clone();
    let status = b.status.clone().unwrap_or_default();
    if let Some(BackupPhase::Succeeded | BackupPhase::Failed) = status.phase {
        return Ok(Action::await_change());
    }
    let claim = match bctx.claim(&ns, &cluster, &name) {
        Ok(c) => c,
        Err(other) if other == name => return Ok(Action::await_change()),
        Err(other) => {
            let message = format!("waiting for backup {other} of RaftCluster {cluster} to finish");
            if status.phase != Some(BackupPhase::Pending)
                || status.message.as_deref() != Some(&message)
            {
                let pending = RaftClusterBackupStatus {
                    phase: Some(BackupPhase::Pending),
                    message: Some(message),
                    ..Default::default()
                };
                write_status(&b, &bctx.ctx, &pending).await?;
            }
            return Ok(Action::requeue(WAIT_REQUEUE));
        }
    };
    if status.phase == Some(BackupPhase::Running) {
        // Claimed just now, so no task of this process was taking it.
        let message = "interrupted: the operator stopped while taking this backup; \
                       apply a new RaftClusterBackup to retry";
        return fail(&b, &bctx.ctx, status, message).await;
    }
    let outcome = run_one(&b, &bctx.ctx, &ns, &cluster, &name).await;
    drop(claim);
    outcome
}

/// Resolves the cluster and the destination, then takes the backup.
async fn run_one(
    b: &RaftClusterBackup,
    ctx: &Context,
    ns: &str,
    cluster: &str,
    name: &str,
) -> Result<Action> {
    let base = RaftClusterBackupStatus::default();
    let rcs: Api<RaftCluster> = Api::namespaced(ctx.client.clone(), ns);
    let Some(rc) = rcs.get_opt(cluster).await? else {
        return fail(
            b,
            ctx,
            base,
            &format!("RaftCluster {cluster} not found in namespace {ns}"),
        )
        .await;
    };
    let Some(spec) = b
        .spec
        .destination
        .clone()
        .or_else(|| rc.spec.backup.as_ref().map(|s| s.destination.clone()))
    else {
        let message = format!(
            "no destination: set spec.destination, or spec.backup.destination on RaftCluster {cluster}"
        );
        return fail(b, ctx, base, &message).await;
    };
    let dest = match resolve(&ctx.client, ns, &spec).await {
        Ok(d) => d,
        Err(message) => return fail(b, ctx, base, &message).await,
    };
    let opened = match store::open(&dest) {
        Ok(s) => s,
        Err(e) => return fail(b, ctx, base, &e.to_string()).await,
    };
    let tls = crate::certificates::ensure::node_tls_for(&rc, ctx).await?;
    let addrs = member_addrs(&rc, ctx, ns, tls).await?;
    let key = object_name(ns, cluster, name);
    let running = RaftClusterBackupStatus {
        phase: Some(BackupPhase::Running),
        start_time: Some(now()),
        location: Some(dest.to_string()),
        message: Some(format!("streaming from RaftCluster {cluster}")),
        ..Default::default()
    };
    write_status(b, ctx, &running).await?;
    let start = Instant::now();
    tracing::info!(%cluster, %key, destination = %dest, "backup started");
    match take(&addrs, &opened, &key).await {
        Ok((summary, object_key)) => {
            let elapsed = start.elapsed();
            let duration =
                humantime::format_duration(Duration::from_millis(elapsed.as_millis() as u64))
                    .to_string();
            let done = RaftClusterBackupStatus {
                phase: Some(BackupPhase::Succeeded),
                object_key: Some(object_key.clone()),
                size: Some(summary.bytes),
                revision: Some(summary.header.revision),
                log_index: Some(summary.header.log_index),
                keys: Some(summary.header.keys),
                cluster_id: Some(summary.header.cluster_id.clone()),
                completion_time: Some(now()),
                duration: Some(duration.clone()),
                message: Some(format!(
                    "{} keys at revision {} stored in {dest}",
                    summary.header.keys, summary.header.revision
                )),
                ..running
            };
            write_status(b, ctx, &done).await?;
            let m = &ctx.metrics.backup;
            m.count(ns, cluster, "succeeded");
            let labels = super::metrics::cluster(ns, cluster);
            m.last_success
                .get_or_create(&labels)
                .set(Timestamp::now().as_millisecond() as f64 / 1000.0);
            m.last_size.get_or_create(&labels).set(summary.bytes as f64);
            m.last_duration
                .get_or_create(&labels)
                .set(elapsed.as_secs_f64());
            let note = format!(
                "backup of {cluster} stored as {object_key}: {} bytes, {} keys at revision {} (log index {}), in {duration}",
                summary.bytes,
                summary.header.keys,
                summary.header.revision,
                summary.header.log_index
            );
            tracing::info!(%cluster, %object_key, bytes = summary.bytes, "backup succeeded");
            announce(b, ctx, false, "BackupSucceeded", &note).await;
            // status.backup of the cluster, now rather than at its next reconcile.
            if let Err(e) = super::scheduler::reconcile(&rc, ctx).await {
                tracing::warn!(error = %e, "cannot update the cluster's backup status");
            }
            Ok(Action::await_change())
        }
        Err(message) => fail(b, ctx, running, &message).await,
    }
}

/// Client addresses of the cluster's pods, the leader's first.
async fn member_addrs(
    rc: &RaftCluster,
    ctx: &Context,
    ns: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Vec<Target>> {
    let cluster = rc.name_any();
    let selector = instance_selector(&cluster)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let list = pods.list(&ListParams::default().labels(&selector)).await?;
    let leader = rc.status.as_ref().and_then(|s| s.leader.clone());
    let mut addrs: Vec<(bool, String, String)> = list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let pod = p.metadata.name.clone()?;
            let ip = p.status.as_ref()?.pod_ip.clone()?;
            let host = match ctx.node_addressing {
                NodeAddressing::PodDns => pod_dns(&pod, &cluster, ns),
                NodeAddressing::PodIp => ip,
            };
            Some((
                leader.as_deref() != Some(pod.as_str()),
                format!("{host}:{CLIENT_PORT}"),
                pod,
            ))
        })
        .collect();
    addrs.sort();
    Ok(addrs
        .into_iter()
        .map(|(_, addr, pod)| Target {
            addr,
            // Verified for the pod's DNS name, which the node certificate
            // lists by wildcard, whether dialed by name or IP.
            tls: tls
                .clone()
                .map(|c| (c, crate::certificates::pod_server_name(&pod, &cluster, ns))),
        })
        .collect())
}

/// Marks the backup Failed with `message`, announces and counts it.
async fn fail(
    b: &RaftClusterBackup,
    ctx: &Context,
    from: RaftClusterBackupStatus,
    message: &str,
) -> Result<Action> {
    let ns = b.namespace().unwrap_or_default();
    tracing::warn!(cluster = %b.spec.cluster, %message, "backup failed");
    let failed = RaftClusterBackupStatus {
        phase: Some(BackupPhase::Failed),
        completion_time: Some(now()),
        message: Some(message.to_string()),
        ..from
    };
    write_status(b, ctx, &failed).await?;
    ctx.metrics.backup.count(&ns, &b.spec.cluster, "failed");
    let note = format!("backup of {} failed: {message}", b.spec.cluster);
    announce(b, ctx, true, "BackupFailed", &note).await;
    Ok(Action::await_change())
}

/// One Event on the RaftClusterBackup, its cluster related.
async fn announce(b: &RaftClusterBackup, ctx: &Context, warning: bool, reason: &str, note: &str) {
    let event = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: "Backup".into(),
        secondary: Some(ObjectReference {
            api_version: Some(RaftCluster::api_version(&()).into()),
            kind: Some("RaftCluster".into()),
            name: Some(b.spec.cluster.clone()),
            namespace: b.namespace(),
            ..Default::default()
        }),
    };
    if let Err(e) = ctx.recorder.publish(&event, &b.object_ref(&())).await {
        tracing::warn!(error = %e, "cannot publish event");
    }
}

/// Server-side apply of the whole status.
async fn write_status(
    b: &RaftClusterBackup,
    ctx: &Context,
    status: &RaftClusterBackupStatus,
) -> Result<()> {
    let ns = b
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<RaftClusterBackup> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = serde_json::json!({
        "apiVersion": RaftClusterBackup::api_version(&()),
        "kind": "RaftClusterBackup",
        "status": status,
    });
    api.patch_status(
        &b.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests;
