//! Mocked reconciles: each test runs `reconcile` once against an
//! [`ApiServerVerifier`] playing one [`Scenario`], which checks every API request
//! in order. Only scenarios that need no node gRPC call are covered here; the
//! planner's decisions have their own pure tests, the nodes the e2e tier.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use kube::runtime::controller::Action;

use super::{Context, already_deleted, error_policy, reconcile};
use crate::Error;
use crate::crd::RaftCluster;
use crate::fixtures::{Scenario, timeout_after_1s};
use crate::planner::limits::{REQUEUE_BUSY_SECS, REQUEUE_IDLE_SECS};

/// Runs one reconcile, bounded by a second so a verifier that never answers
/// fails the test instead of hanging it.
async fn reconcile_once(rc: &RaftCluster, ctx: &Arc<Context>) -> crate::Result<Action> {
    tokio::time::timeout(
        Duration::from_secs(1),
        reconcile(Arc::new(rc.clone()), ctx.clone()),
    )
    .await
    .expect("reconcile did not finish within 1 s")
}

fn reconciles(ctx: &Context) -> u64 {
    ctx.metrics.reconciles.get()
}

fn errors(ctx: &Context, label: &str) -> u64 {
    ctx.metrics
        .errors
        .get_or_create(&vec![("error", label.to_string())])
        .get()
}

#[tokio::test]
async fn new_cluster_applies_owned_objects_writes_pending_status_and_requeues_soon() {
    let (ctx, server) = Context::test();
    let rc = RaftCluster::test()
        .with_replicas(5)
        .with_read_replicas(2)
        .with_generation(4);
    let verifier = server.run(Scenario::Bootstrap(rc.clone()));

    let action = reconcile_once(&rc, &ctx).await;
    let counted = reconciles(&ctx);
    let scaled = ctx
        .metrics
        .steps
        .get_or_create(&vec![("kind", "scale_statefulset".to_string())])
        .get();
    drop(ctx);
    timeout_after_1s(verifier).await;

    let action = action.expect("reconcile succeeds");
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(REQUEUE_BUSY_SECS))
    );
    assert_eq!(counted, 1);
    assert_eq!(scaled, 1);
}

#[tokio::test]
async fn pending_pods_keep_the_observed_sizes_and_publish_no_event() {
    let (ctx, server) = Context::test();
    let rc = RaftCluster::test().with_replicas(3);
    let verifier = server.run(Scenario::PodsPending(rc.clone()));

    let action = reconcile_once(&rc, &ctx).await;
    drop(ctx);
    timeout_after_1s(verifier).await;

    // Waiting on pods is "in progress": look again soon.
    assert_eq!(
        action.expect("reconcile succeeds"),
        Action::requeue(Duration::from_secs(REQUEUE_BUSY_SECS))
    );
}

#[tokio::test]
async fn unreadable_nodes_make_the_placement_unknown_and_never_fail_the_reconcile() {
    let (ctx, server) = Context::test();
    let rc = RaftCluster::test().with_replicas(3);
    let verifier = server.run(Scenario::NodesForbidden(rc.clone()));

    let action = reconcile_once(&rc, &ctx).await;
    drop(ctx);
    timeout_after_1s(verifier).await;

    assert_eq!(
        action.expect("reconcile succeeds without the nodes"),
        Action::requeue(Duration::from_secs(REQUEUE_BUSY_SECS))
    );
}

#[tokio::test]
async fn paused_cluster_writes_only_its_status() {
    let (ctx, server) = Context::test();
    let rc = RaftCluster::test().paused();
    let verifier = server.run(Scenario::PausedStatusOnly(rc.clone()));

    let action = reconcile_once(&rc, &ctx).await;
    drop(ctx);
    timeout_after_1s(verifier).await;

    assert_eq!(
        action.expect("reconcile succeeds"),
        Action::requeue(Duration::from_secs(REQUEUE_IDLE_SECS))
    );
}

#[tokio::test]
async fn deleted_cluster_makes_no_call_and_awaits_change() {
    let (ctx, server) = Context::test();
    let rc = RaftCluster::test().deleting();
    let verifier = server.run(Scenario::NoCalls);

    let action = reconcile_once(&rc, &ctx).await;
    drop(ctx);
    timeout_after_1s(verifier).await;

    assert_eq!(action.expect("reconcile succeeds"), Action::await_change());
}

#[tokio::test]
async fn failed_apply_still_writes_status_returns_the_error_and_is_counted() {
    let (ctx, server) = Context::test();
    let rc = RaftCluster::test();
    let verifier = server.run(Scenario::ApplyFails(
        rc.clone(),
        StatusCode::INTERNAL_SERVER_ERROR,
    ));

    let result = reconcile_once(&rc, &ctx).await;
    let error = match result {
        Err(e) => e,
        Ok(action) => panic!("reconcile succeeded with {action:?}"),
    };
    let requeue = error_policy(Arc::new(rc), &error, ctx.clone());
    let kube_errors = errors(&ctx, "kube");
    let steps = ctx
        .metrics
        .steps
        .get_or_create(&vec![("kind", "scale_statefulset".to_string())])
        .get();
    drop(ctx);
    timeout_after_1s(verifier).await;

    match &error {
        Error::Kube(kube::Error::Api(status)) => assert_eq!(status.code, 500),
        other => panic!("expected the API error, got {other:?}"),
    }
    assert_eq!(requeue, Action::requeue(Duration::from_secs(5)));
    assert_eq!(kube_errors, 1);
    // The step did not run, so it is not counted as executed.
    assert_eq!(steps, 0);
}

#[tokio::test]
async fn a_step_taken_is_announced_even_when_the_status_write_fails() {
    let (ctx, server) = Context::test();
    let rc = RaftCluster::test();
    let verifier = server.run(Scenario::StatusWriteFails(
        rc.clone(),
        StatusCode::INTERNAL_SERVER_ERROR,
    ));

    let result = reconcile_once(&rc, &ctx).await;
    let steps = ctx
        .metrics
        .steps
        .get_or_create(&vec![("kind", "scale_statefulset".to_string())])
        .get();
    drop(ctx);
    timeout_after_1s(verifier).await;

    match result {
        Err(Error::Kube(kube::Error::Api(status))) => assert_eq!(status.code, 500),
        other => panic!("expected the status write's API error, got {other:?}"),
    }
    // The StatefulSet was scaled: counted, and its Event created (the verifier).
    assert_eq!(steps, 1);
}

#[test]
fn a_deleted_cluster_is_not_an_error_to_log() {
    use kube::runtime::controller::Error as E;
    use kube::runtime::reflector::ObjectRef;
    use kube::runtime::watcher;
    let obj = || Box::new(ObjectRef::<RaftCluster>::new("demo").within("ns").erase());
    let api = |code: u16| {
        let mut s = kube::core::Status::failure("boom", "Reason");
        s.code = code;
        Error::Kube(kube::Error::Api(Box::new(s)))
    };
    let gone: E<Error, watcher::Error> = E::ObjectNotFound(obj());
    assert!(already_deleted(&gone));
    let deleted_meanwhile: E<Error, watcher::Error> = E::ReconcilerFailed(api(404), obj());
    assert!(already_deleted(&deleted_meanwhile));
    let real: E<Error, watcher::Error> = E::ReconcilerFailed(api(500), obj());
    assert!(!already_deleted(&real));
}

#[tokio::test]
async fn pods_the_statefulset_cannot_create_are_reported_in_status() {
    let (ctx, server) = Context::test();
    let rc = RaftCluster::test();
    let verifier = server.run(Scenario::PodsNotCreated(rc.clone()));

    let action = reconcile_once(&rc, &ctx).await;
    drop(ctx);
    timeout_after_1s(verifier).await;

    // Degraded: look again soon.
    assert_eq!(
        action.expect("reconcile succeeds"),
        Action::requeue(Duration::from_secs(REQUEUE_BUSY_SECS))
    );
}
