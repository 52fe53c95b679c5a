//! `spec.backup` at work, once per RaftCluster reconcile: creates the
//! RaftClusterBackup of a due time, prunes what retention no longer keeps
//! (stored file first, then the object), and writes `status.backup` and the
//! `BackupStale` condition under its own field manager (the planner's status
//! apply never touches them). The decisions are `schedule`'s pure functions.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use raftkv_backup::store;

use super::destination::resolve;
use super::schedule::{self, BackupRecord};
use crate::context::Context;
use crate::crd::{
    BackupDestination, BackupStatus, CLUSTER_LABEL, RaftCluster, RaftClusterBackup,
    RaftClusterBackupSpec, SCHEDULED_AT_ANNOTATION, SCHEDULED_LABEL,
};
use crate::{Error, Result};

/// The field manager of `status.backup` and the `BackupStale` condition.
pub const FIELD_MANAGER: &str = "raft-operator-backup";
/// The condition's type.
pub const STALE_CONDITION: &str = "BackupStale";
/// The longest a reconcile waits for the next due time (the RaftCluster's own
/// requeue is at most a minute anyway).
const REQUEUE_MAX: Duration = Duration::from_secs(60);

/// A RaftClusterBackup as [`schedule`] sees it.
pub fn record(b: &RaftClusterBackup) -> BackupRecord {
    let status = b.status.clone().unwrap_or_default();
    let scheduled = b.labels().get(SCHEDULED_LABEL).is_some_and(|v| v == "true");
    let created = b
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(Timestamp::UNIX_EPOCH, |t| t.0);
    let at = b
        .annotations()
        .get(SCHEDULED_AT_ANNOTATION)
        .and_then(|a| a.parse().ok())
        .unwrap_or(created);
    BackupRecord {
        name: b.name_any(),
        scheduled,
        at,
        phase: status.phase,
        completed: status.completion_time.and_then(|t| t.parse().ok()),
    }
}

/// What to write and do for one cluster (pure).
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulePlan {
    /// The slot to create a backup for.
    pub create: Option<Timestamp>,
    pub prune: Vec<String>,
    pub status: BackupStatus,
    /// `(status, reason, message)` of `BackupStale`; `None` without a schedule.
    pub stale: Option<(bool, &'static str, String)>,
    pub interval: Option<SignedDuration>,
    pub next: Option<Timestamp>,
}

/// The plan for `rc` given its backups, at `now`.
pub fn plan(rc: &RaftCluster, backups: &[RaftClusterBackup], now: Timestamp) -> SchedulePlan {
    let records: Vec<BackupRecord> = backups.iter().map(record).collect();
    let mut status = BackupStatus::default();
    let last = schedule::last_success(&records);
    if let Some(last) = last
        && let Some(b) = backups.iter().find(|b| b.name_any() == last.name)
    {
        let s = b.status.clone().unwrap_or_default();
        status.last_success_time = s.completion_time;
        status.last_backup = Some(last.name.clone());
        status.last_object_key = s.object_key;
        status.last_size = s.size;
        status.last_revision = s.revision;
        status.last_duration = s.duration;
    }
    let mut out = SchedulePlan {
        create: None,
        prune: Vec::new(),
        status,
        stale: None,
        interval: None,
        next: None,
    };
    let Some(spec) = &rc.spec.backup else {
        return out;
    };
    let since = rc.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    let sched = match schedule::parse(&spec.schedule) {
        Ok(s) => s,
        Err(message) => {
            out.stale = Some((true, "ScheduleInvalid", message));
            return out;
        }
    };
    // A cluster without a leader (still bootstrapping, or without a quorum)
    // cannot serve a backup: its due slot waits until a leader reports, and is
    // taken then if still the latest (a backup created now would only fail).
    let has_leader = rc
        .status
        .as_ref()
        .is_some_and(|s| s.leader.is_some() && s.cluster_id.is_some());
    out.create = schedule::due(&sched, now, since, &records).filter(|_| has_leader);
    out.prune = schedule::prune(&records, spec.keep());
    out.next = sched.next_after(now);
    out.status.next_scheduled_time = out.next.map(|t| t.to_string());
    out.interval = sched.interval(now);
    if let Some(interval) = out.interval {
        let last_time = last.and_then(|l| l.completed);
        let is_stale = schedule::stale(now, last_time, since, interval);
        let twice = humantime::format_duration(Duration::from_secs(
            (interval.as_secs() * i64::from(schedule::limits::STALE_INTERVALS)).max(0) as u64,
        ));
        out.stale = Some(match (is_stale, last_time) {
            (false, _) => (
                false,
                "Fresh",
                format!("the last backup succeeded within {twice}"),
            ),
            (true, Some(t)) => (
                true,
                "LastSuccessTooOld",
                format!(
                    "the last successful backup completed at {t}, more than {twice} ago (twice the schedule's interval)"
                ),
            ),
            (true, None) => (
                true,
                "NoSuccess",
                format!("no backup has succeeded in the {twice} since the cluster was created"),
            ),
        });
    }
    out
}

/// Whether the cluster's reconcile runs [`reconcile`]: it has a schedule, or a
/// `status.backup` to keep current or clear. (A cluster without either costs no
/// API call; its one-shot backups refresh its status as they finish.)
pub fn applies(rc: &RaftCluster) -> bool {
    rc.spec.backup.is_some() || rc.status.as_ref().is_some_and(|s| s.backup.is_some())
}

/// Runs the schedule of `rc` once; how soon to look again. Errors are the
/// API server's or the store's; the caller logs them (a backup schedule never
/// fails the cluster's reconcile).
pub async fn reconcile(rc: &RaftCluster, ctx: &Context) -> Result<Option<Duration>> {
    let ns = rc
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = rc.name_any();
    let api: Api<RaftClusterBackup> = Api::namespaced(ctx.client.clone(), &ns);
    let list = api
        .list(&ListParams::default().labels(&format!("{CLUSTER_LABEL}={name}")))
        .await?;
    let now = Timestamp::now();
    let p = plan(rc, &list.items, now);
    let labels = super::metrics::cluster(&ns, &name);
    match p.interval {
        Some(i) => {
            ctx.metrics
                .backup
                .interval
                .get_or_create(&labels)
                .set(i.as_secs_f64());
        }
        None => ctx.metrics.backup.forget_schedule(&ns, &name),
    }
    if let Some(t) = p
        .status
        .last_success_time
        .as_ref()
        .and_then(|t| t.parse::<Timestamp>().ok())
    {
        ctx.metrics
            .backup
            .last_success
            .get_or_create(&labels)
            .set(t.as_millisecond() as f64 / 1000.0);
    }

    if let (Some(slot), Some(spec)) = (p.create, &rc.spec.backup) {
        create(rc, &api, slot, &spec.destination).await?;
    }
    for victim in &p.prune {
        if let Some(b) = list.items.iter().find(|b| &b.name_any() == victim) {
            prune_one(rc, ctx, &api, b).await;
        }
    }
    write_status(rc, ctx, &p, now).await?;
    Ok(p.next.map(|next| {
        let wait = next.duration_since(now).as_secs().max(1) as u64;
        Duration::from_secs(wait).min(REQUEUE_MAX)
    }))
}

/// Creates the scheduled backup of `slot`, owned by the cluster (an
/// existing one of that name is the same backup: nothing to do).
async fn create(
    rc: &RaftCluster,
    api: &Api<RaftClusterBackup>,
    slot: Timestamp,
    destination: &BackupDestination,
) -> Result<()> {
    let cluster = rc.name_any();
    let name = schedule::backup_name(&cluster, slot);
    let owner = rc
        .controller_owner_ref(&())
        .ok_or(Error::MissingField("metadata.uid"))?;
    let backup = RaftClusterBackup {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: rc.namespace(),
            labels: Some(BTreeMap::from([
                (CLUSTER_LABEL.to_string(), cluster.clone()),
                (SCHEDULED_LABEL.to_string(), "true".to_string()),
            ])),
            annotations: Some(BTreeMap::from([(
                SCHEDULED_AT_ANNOTATION.to_string(),
                slot.to_string(),
            )])),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: RaftClusterBackupSpec {
            cluster: cluster.clone(),
            destination: Some(destination.clone()),
        },
        status: None,
    };
    match api.create(&PostParams::default(), &backup).await {
        Ok(_) => {
            tracing::info!(%cluster, backup = %name, "scheduled backup created");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes a backup's stored file, then the object. A file that cannot be
/// deleted keeps its object (retried at the next reconcile) and is reported
/// by a Warning Event.
async fn prune_one(
    rc: &RaftCluster,
    ctx: &Context,
    api: &Api<RaftClusterBackup>,
    b: &RaftClusterBackup,
) {
    let name = b.name_any();
    let ns = b.namespace().unwrap_or_default();
    let key = b.status.as_ref().and_then(|s| s.object_key.clone());
    if let Some(key) = key
        && let Some(spec) = b
            .spec
            .destination
            .clone()
            .or_else(|| rc.spec.backup.as_ref().map(|s| s.destination.clone()))
    {
        let removed = async {
            let dest = resolve(&ctx.client, &ns, &spec).await?;
            let opened = store::open(&dest).map_err(|e| e.to_string())?;
            let path = store::Key::parse(&key).map_err(|e| e.to_string())?;
            store::remove(&*opened.store, &path)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        if let Err(message) = removed {
            let note = format!("cannot delete {key} of backup {name}: {message}");
            tracing::warn!(%note, "pruning failed");
            warn(rc, ctx, "BackupPruneFailed", &note).await;
            return;
        }
    }
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => tracing::info!(backup = %name, "backup pruned by retention"),
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => tracing::warn!(backup = %name, error = %e, "cannot delete a pruned backup"),
    }
}

async fn warn(rc: &RaftCluster, ctx: &Context, reason: &str, note: &str) {
    let event = Event {
        type_: EventType::Warning,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: "Backup".into(),
        secondary: None::<ObjectReference>,
    };
    if let Err(e) = ctx.recorder.publish(&event, &rc.object_ref(&())).await {
        tracing::warn!(error = %e, "cannot publish event");
    }
}

/// `status.backup` and `BackupStale`, under [`FIELD_MANAGER`]; a Warning
/// Event when the condition turns true.
async fn write_status(
    rc: &RaftCluster,
    ctx: &Context,
    p: &SchedulePlan,
    now: Timestamp,
) -> Result<()> {
    let previous = rc
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == STALE_CONDITION));
    let condition = p.stale.as_ref().map(|(stale, reason, message)| {
        let status = if *stale { "True" } else { "False" };
        Condition {
            type_: STALE_CONDITION.into(),
            status: status.into(),
            reason: (*reason).into(),
            message: message.clone(),
            last_transition_time: match previous {
                Some(c) if c.status == status => c.last_transition_time.clone(),
                _ => Time(now),
            },
            observed_generation: rc.metadata.generation,
        }
    });
    if let Some(c) = &condition
        && c.status == "True"
        && previous.is_none_or(|prev| prev.status != "True" || prev.reason != c.reason)
    {
        warn(rc, ctx, STALE_CONDITION, &c.message).await;
    }
    let ns = rc
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<RaftCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = serde_json::json!({
        "apiVersion": RaftCluster::api_version(&()),
        "kind": "RaftCluster",
        "status": {
            "backup": p.status,
            "conditions": condition.into_iter().collect::<Vec<_>>(),
        },
    });
    api.patch_status(
        &rc.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{
        BackupPhase, BackupSpec, FilesystemBackupDestination, RaftClusterBackupStatus,
    };

    fn cluster(schedule: Option<&str>) -> RaftCluster {
        let mut rc: RaftCluster = serde_json::from_value(serde_json::json!({
            "apiVersion": "raftkv.dev/v1alpha1",
            "kind": "RaftCluster",
            "metadata": {"name": "demo", "namespace": "ns", "uid": "u1",
                         "creationTimestamp": "2026-12-07T09:00:00Z"},
            "spec": {"replicas": 3},
            "status": {"leader": "demo-0", "clusterId": "c-1"},
        }))
        .unwrap();
        rc.spec.backup = schedule.map(|s| BackupSpec {
            schedule: s.into(),
            destination: BackupDestination {
                s3: None,
                filesystem: Some(FilesystemBackupDestination { path: "/b".into() }),
            },
            retention: Some(crate::crd::RetentionSpec { keep: 2 }),
        });
        rc
    }

    fn backup(name: &str, slot: &str, phase: BackupPhase, done: Option<&str>) -> RaftClusterBackup {
        let mut b = RaftClusterBackup::new(
            name,
            RaftClusterBackupSpec {
                cluster: "demo".into(),
                destination: None,
            },
        );
        b.metadata.labels = Some(BTreeMap::from([
            (CLUSTER_LABEL.into(), "demo".into()),
            (SCHEDULED_LABEL.into(), "true".into()),
        ]));
        b.metadata.annotations = Some(BTreeMap::from([(
            SCHEDULED_AT_ANNOTATION.into(),
            slot.into(),
        )]));
        b.status = Some(RaftClusterBackupStatus {
            phase: Some(phase),
            completion_time: done.map(Into::into),
            object_key: Some(format!("ns/demo/{name}.rkvb")),
            size: Some(1234),
            revision: Some(77),
            duration: Some("1s".into()),
            ..Default::default()
        });
        b
    }

    #[test]
    fn the_plan_creates_prunes_and_reports() {
        let rc = cluster(Some("0 * * * *"));
        let backups = vec![
            backup(
                "demo-202612071000",
                "2026-12-07T10:00:00Z",
                BackupPhase::Succeeded,
                Some("2026-12-07T10:00:05Z"),
            ),
            backup(
                "demo-202612071100",
                "2026-12-07T11:00:00Z",
                BackupPhase::Succeeded,
                Some("2026-12-07T11:00:04Z"),
            ),
            backup(
                "demo-202612071200",
                "2026-12-07T12:00:00Z",
                BackupPhase::Succeeded,
                Some("2026-12-07T12:00:03Z"),
            ),
        ];
        let p = plan(&rc, &backups, "2026-12-07T13:00:30Z".parse().unwrap());
        assert_eq!(p.create, Some("2026-12-07T13:00:00Z".parse().unwrap()));
        assert_eq!(p.prune, vec!["demo-202612071000".to_string()]);
        assert_eq!(p.status.last_backup.as_deref(), Some("demo-202612071200"));
        assert_eq!(
            p.status.last_success_time.as_deref(),
            Some("2026-12-07T12:00:03Z")
        );
        assert_eq!(
            p.status.last_object_key.as_deref(),
            Some("ns/demo/demo-202612071200.rkvb")
        );
        assert_eq!(p.status.last_size, Some(1234));
        assert_eq!(p.status.last_revision, Some(77));
        assert_eq!(
            p.status.next_scheduled_time.as_deref(),
            Some("2026-12-07T14:00:00Z")
        );
        assert_eq!(p.interval, Some(SignedDuration::from_hours(1)));
        assert_eq!(p.stale.as_ref().map(|s| (s.0, s.1)), Some((false, "Fresh")));

        // Without a leader (bootstrapping, or no quorum) the due slot waits:
        // a backup created now would fail at once.
        let mut leaderless = rc.clone();
        leaderless.status.as_mut().unwrap().leader = None;
        let p = plan(
            &leaderless,
            &backups,
            "2026-12-07T13:00:30Z".parse().unwrap(),
        );
        assert_eq!(p.create, None);
        let mut new_cluster = rc.clone();
        new_cluster.status = None;
        assert_eq!(
            plan(
                &new_cluster,
                &backups,
                "2026-12-07T13:00:30Z".parse().unwrap()
            )
            .create,
            None
        );

        // Two hours and a bit later, nothing new succeeded: stale.
        let p = plan(&rc, &backups, "2026-12-07T14:00:04Z".parse().unwrap());
        let (stale, reason, message) = p.stale.unwrap();
        assert!(stale);
        assert_eq!(reason, "LastSuccessTooOld");
        assert!(message.contains("2026-12-07T12:00:03Z"), "{message}");
    }

    #[test]
    fn an_invalid_schedule_is_a_condition_and_no_schedule_no_condition() {
        let p = plan(
            &cluster(Some("0 3 * *")),
            &[],
            "2026-12-07T13:00:00Z".parse().unwrap(),
        );
        let (stale, reason, message) = p.stale.unwrap();
        assert!(stale);
        assert_eq!(reason, "ScheduleInvalid");
        assert!(message.contains("has 4 fields"), "{message}");
        assert_eq!(p.create, None);

        let p = plan(&cluster(None), &[], "2026-12-07T13:00:00Z".parse().unwrap());
        assert_eq!(p.stale, None);
        assert_eq!(p.create, None);
        assert_eq!(p.status, BackupStatus::default());

        // Never succeeded, for more than two intervals since creation.
        let p = plan(
            &cluster(Some("0 * * * *")),
            &[],
            "2026-12-07T11:00:01Z".parse().unwrap(),
        );
        assert_eq!(p.stale.map(|s| s.1), Some("NoSuccess"));
    }
}
