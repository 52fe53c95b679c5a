//! The kube-runtime controller: a thin shell around observe -> plan -> execute.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::utils::Predicate;
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Client, ResourceExt};
use tracing::Instrument;

pub use crate::context::{Context, NodeAddressing};
use crate::crd::{RaftCluster, RaftClusterBackup, SCHEDULED_LABEL};
use crate::events::EventRecorder;
use crate::metrics::Metrics;
use crate::planner::{self, limits};
use crate::resources::{APP_NAME, MANAGED_BY};
use crate::{Error, Result, execute, expand, observe};

/// Settings of [`run`].
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// Watch one namespace, or all when `None`.
    pub namespace: Option<String>,
    pub node_addressing: NodeAddressing,
    /// Reporting instance in Events (the pod name in-cluster).
    pub instance: String,
    pub default_node_image: String,
    /// See `Context::operator_namespace`.
    pub operator_namespace: Option<String>,
}

fn api<K>(client: &Client, ns: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the controller until shutdown (SIGTERM/ctrl-c).
pub async fn run(client: Client, config: ControllerConfig, metrics: Arc<Metrics>) {
    let reporter = Reporter {
        controller: MANAGED_BY.into(),
        instance: Some(config.instance.clone()),
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: EventRecorder::new(client.clone(), reporter),
        metrics,
        node_addressing: config.node_addressing,
        default_node_image: config.default_node_image.clone(),
        operator_credentials: Default::default(),
        operator_namespace: config.operator_namespace.clone(),
    });
    let ns = &config.namespace;
    let owned = watcher::Config::default().labels(&format!(
        "app.kubernetes.io/name={APP_NAME},app.kubernetes.io/managed-by={MANAGED_BY}"
    ));
    let pods = watcher::Config::default().labels(&format!("app.kubernetes.io/name={APP_NAME}"));
    // Reconcile on spec (generation) and annotation (pause) changes only: the
    // operator's own status writes change every member's applied index and must
    // not trigger the next reconcile. Pods, owned objects and requeues still do.
    let (reader, writer) = reflector::store();
    let clusters = watcher(api::<RaftCluster>(&client, ns), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(
            predicates::generation.combine(predicates::annotations),
            Default::default(),
        );
    // RaftClusterBackups: their own controller (it takes the backups); the
    // scheduled ones, owned by their cluster, also wake the cluster's reconcile
    // so status.backup follows them.
    let backups = crate::backup::controller::run(ctx.clone(), config.namespace.clone());
    let scheduled = watcher::Config::default().labels(&format!("{SCHEDULED_LABEL}=true"));
    let clusters = Controller::for_stream(clusters, reader)
        .owns(api::<StatefulSet>(&client, ns), owned.clone())
        .owns(api::<Service>(&client, ns), owned.clone())
        .owns(api::<PodDisruptionBudget>(&client, ns), owned.clone())
        .owns(api::<RaftClusterBackup>(&client, ns), scheduled)
        // A deleted or edited certificate Secret is made again at once.
        .owns(api::<Secret>(&client, ns), owned)
        .watches(api::<Pod>(&client, ns), pods, |pod: Pod| {
            let instance = pod.labels().get("app.kubernetes.io/instance")?.clone();
            Some(ObjectRef::<RaftCluster>::new(&instance).within(&pod.namespace()?))
        })
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => tracing::debug!(object = %obj.name, "reconciled"),
                // Requeues and watch events of a RaftCluster deleted meanwhile.
                Err(e) if already_deleted(&e) => {
                    tracing::debug!(error = %e, "reconcile skipped: object already deleted")
                }
                Err(e) => tracing::warn!(error = %e, "reconcile failed"),
            }
        });
    tokio::join!(clusters, backups);
}

// The span name is in telemetry::NEVER_ROOT: reconciles are not traces, steps are.
#[tracing::instrument(
    name = "reconcile",
    skip(rc, ctx),
    fields(cluster = %rc.name_any(), namespace = rc.namespace())
)]
async fn reconcile(rc: Arc<RaftCluster>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_started();
    if rc.metadata.deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove what we own; the
        // StatefulSets' PVC retention policy decides about the volumes.
        return Ok(Action::await_change());
    }
    // A cluster whose pods were made before TLS existed stays plaintext
    // (certificates::tls_enabled); the rest of the reconcile sees that.
    let rc = match crate::certificates::ensure::plaintext_from_before_tls(&rc, &ctx).await? {
        true => {
            let mut legacy = (*rc).clone();
            legacy.spec.tls.enabled = false;
            Arc::new(legacy)
        }
        false => rc,
    };
    // Certificates first: the pods mount the node Secret, and the operator
    // calls the nodes with its own admin certificate. Renewal runs even while
    // paused: an expiring certificate must not wait for someone to unpause.
    let certs = match crate::certificates::ensure::ensure(&rc, &ctx).await {
        Ok(c) => c,
        Err(e) => {
            // Said where people look (kubectl describe), not only in the log: a
            // cluster whose certificates cannot be made or renewed will stop.
            if !e.is_not_found() {
                let ev = planner::PlannedEvent {
                    reason: e.failure_reason().into(),
                    action: "IssueCertificates".into(),
                    note: e.user_message(),
                    warning: true,
                    related: None,
                };
                if let Err(p) = execute::publish(&rc, &ctx, &ev).await {
                    tracing::warn!(error = %p, "cannot publish event");
                }
            }
            return Err(e);
        }
    };
    if let Some(ev) = &certs.event
        && let Err(e) = execute::publish(&rc, &ctx, ev).await
    {
        tracing::warn!(error = %e, "cannot publish event");
    }
    let obs = observe::observe(&rc, &ctx, certs.node_tls.as_ref()).await?;
    let plan = planner::plan(&obs.observed);

    let mut result = Ok(());
    let mut step_trace = None;
    // What was being done when `result` became an error (the failure Event's action).
    let mut doing = "Apply".to_string();
    if !obs.observed.paused {
        // Labels first: a pod from before the Services selected
        // `raftkv.dev/serving=true` gets the label before the selector changes.
        doing = "LabelPods".into();
        result = execute::apply_labels(&rc, &ctx, &plan).await;
        if result.is_ok() {
            doing = "Apply".into();
            result = execute::apply_owned(&rc, &ctx, &plan).await;
        }

        if result.is_ok() {
            if let Some(ev) = &plan.event {
                doing.clone_from(&ev.action);
            }
            let span = step_span(&rc, plan.step.as_ref());
            result = execute::run_step(&rc, &ctx, &obs, &plan)
                .instrument(span.clone())
                .await;
            step_trace = sampled_trace_id(&span);
        }
    }
    let mut status = plan.status.clone();
    // A volume that cannot grow (e.g. its StorageClass does not allow expansion) is
    // reported in status.storage and a Warning Event; it never blocks membership steps.
    let mut grow_failure = None;
    if result.is_ok()
        && !obs.observed.paused
        && let Err(e) = expand::grow_pvcs(&rc, &ctx, &plan).await
    {
        tracing::warn!(error = %e, "cannot grow volumes");
        let message = e.user_message();
        if let Some(storage) = &mut status.storage {
            storage.message = format!("{}; cannot grow: {message}", storage.message);
        }
        grow_failure = Some(planner::PlannedEvent {
            reason: "VolumeExpansionFailed".into(),
            action: "GrowVolumes".into(),
            note: message,
            warning: true,
            related: None,
        });
    }
    let mut failure_event = None;
    if let Err(e) = &result {
        status.last_membership_change = obs.observed.previous_membership_change.clone();
        // A forced new cluster or a restore that failed left nothing behind
        // (a restore refused by the node is tried again).
        status.forced_new_cluster = obs.observed.previous_forced.clone();
        status.restore = obs.observed.previous_restore.clone();
        status.conditions.retain(|c| c.type_ != "ForcedNewCluster");
        status.conditions.extend(
            obs.observed
                .previous_conditions
                .iter()
                .filter(|c| c.type_ == "ForcedNewCluster")
                .cloned(),
        );
        // The API server's or the node's own words, in status and a Warning Event.
        failure_event = Some(planner::record_failure(
            &mut status,
            &obs.observed.previous_conditions,
            obs.observed.now_ms,
            &doing,
            e.failure_reason(),
            &e.user_message(),
        ));
    } else if let (Some(change), Some(step)) = (&mut status.last_membership_change, &plan.step)
        && step.is_membership_action()
    {
        change.trace_id = step_trace.clone();
    }
    // A step that ran is counted and announced even when the status write after it
    // fails (its error is returned last); a step that failed reports its own error.
    let written = execute::write_status(&rc, &ctx, &status).await;
    // Scheduled backups run whatever the step did: a cluster in trouble needs them most.
    let backup_requeue = if crate::backup::scheduler::applies(&rc) {
        match crate::backup::scheduler::reconcile(&rc, &ctx).await {
            Ok(wait) => wait,
            Err(e) => {
                tracing::warn!(error = %e, "backup schedule failed");
                None
            }
        }
    } else {
        None
    };

    if let Err(e) = result {
        if e.is_not_found() {
            // Usually the RaftCluster (or its namespace) deleted meanwhile.
            tracing::debug!(error = %e, step = ?plan.step, "step failed: not found");
        } else {
            tracing::warn!(error = %e, step = ?plan.step, "step failed");
        }
        if let Err(w) = &written {
            tracing::warn!(error = %w, "cannot write status");
        }
        if let Some(ev) = &failure_event
            && !e.is_not_found()
            && let Err(p) = execute::publish(&rc, &ctx, ev).await
        {
            tracing::warn!(error = %p, "cannot publish event");
        }
        return Err(e);
    }
    if let Some(step) = &plan.step {
        Metrics::count(&ctx.metrics.steps, "kind", step.kind());
        if step.is_membership_action()
            && let Some(ev) = &plan.event
        {
            Metrics::count(&ctx.metrics.membership_changes, "kind", &ev.reason);
        }
    }
    if let Some((reason, message)) = &plan.blocked {
        Metrics::count(&ctx.metrics.blocked, "reason", reason);
        tracing::info!(%reason, %message, "step blocked");
    }
    let mut event = plan.event.clone();
    if let (Some(ev), Some(id)) = (&mut event, &step_trace) {
        ev.note = format!("{} (trace {id})", ev.note);
    }
    if let Some(ev) = &event
        && (plan.step.is_some() || plan.blocked.is_some())
        && let Err(e) = execute::publish(&rc, &ctx, ev).await
    {
        tracing::warn!(error = %e, "cannot publish event");
    }
    // Warnings about the cluster itself (e.g. `ZoneRisk` appearing), whatever the step.
    for ev in plan.warnings.iter().chain(&grow_failure) {
        if let Err(e) = execute::publish(&rc, &ctx, ev).await {
            tracing::warn!(error = %e, "cannot publish event");
        }
    }
    written?;
    let secs = if plan.busy {
        limits::REQUEUE_BUSY_SECS
    } else {
        limits::REQUEUE_IDLE_SECS
    };
    let requeue = Duration::from_secs(secs);
    Ok(Action::requeue(
        backup_requeue.map_or(requeue, |b| b.min(requeue)),
    ))
}

/// The error says the RaftCluster is gone: a requeue or event of a deleted object
/// (`ObjectNotFound` from the store, or a 404 from the API server). Nobody can act on
/// it, so it is not logged as an error.
fn already_deleted<Q: std::error::Error>(e: &kube::runtime::controller::Error<Error, Q>) -> bool {
    use kube::runtime::controller::Error as E;
    match e {
        E::ObjectNotFound(_) => true,
        E::ReconcilerFailed(err, _) => err.is_not_found(),
        _ => false,
    }
}

/// The root span of one step. A step, not a reconcile, starts a trace: most
/// reconciles only observe (a Status call to every member every few seconds), and
/// as roots they would spend the per-process trace rate limit on noise, so the one
/// reconcile that adds or removes a member could go unsampled. A step's trace runs
/// from here through the Cluster RPC to the nodes committing the new configuration.
fn step_span(rc: &RaftCluster, step: Option<&planner::Step>) -> tracing::Span {
    let Some(step) = step else {
        return tracing::Span::none();
    };
    let span = tracing::info_span!(
        parent: None,
        "raftcluster.step",
        otel.name = format!("raftcluster.{}", step.kind()),
        raftkv.step.kind = step.kind(),
        raftkv.cluster = %rc.name_any(),
        k8s.namespace.name = rc.namespace(),
        trace_id = tracing::field::Empty,
    );
    // The step's logs carry its trace ID; the reconcile's logs are its parent in the
    // log context only.
    span.follows_from(tracing::Span::current());
    if let Some(id) = sampled_trace_id(&span) {
        span.record("trace_id", tracing::field::display(&id));
    }
    span
}

/// The span's OpenTelemetry trace ID, if the trace is sampled (exported).
fn sampled_trace_id(span: &tracing::Span) -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    (sc.is_valid() && sc.is_sampled()).then(|| sc.trace_id().to_string())
}

fn error_policy(_rc: Arc<RaftCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    Metrics::count(&ctx.metrics.errors, "error", error.metric_label());
    Action::requeue(Duration::from_secs(5))
}

#[cfg(test)]
mod tests;
