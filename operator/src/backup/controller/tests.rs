//! Mocked reconciles of a RaftClusterBackup: each test plays the API server
//! for the requests one reconcile makes, in order, and checks them. (Taking a
//! real backup needs a node: `operator/tests/backup_take.rs` and the e2e.)

use std::time::Duration;

use http::{Method, Request, Response};
use kube::Client;
use kube::client::Body;
use kube::runtime::events::Reporter;
use serde_json::{Value, json};

use super::*;
use crate::crd::RaftClusterBackupSpec;
use crate::events::EventRecorder;
use crate::metrics::Metrics;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn context() -> (Arc<BackupContext>, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let reporter = Reporter {
        controller: "raft-operator".into(),
        instance: Some("test".into()),
    };
    let ctx = Context {
        client: client.clone(),
        recorder: EventRecorder::new(client, reporter),
        metrics: Arc::new(Metrics::default()),
        node_addressing: NodeAddressing::PodIp,
        default_node_image: "raftkv/raft-node:test".into(),
        operator_credentials: Default::default(),
        operator_namespace: None,
    };
    (Arc::new(BackupContext::new(Arc::new(ctx))), handle)
}

fn backup(name: &str, phase: Option<BackupPhase>) -> RaftClusterBackup {
    let mut b = RaftClusterBackup::new(
        name,
        RaftClusterBackupSpec {
            cluster: "demo".into(),
            destination: None,
        },
    );
    b.metadata.namespace = Some("ns".into());
    b.metadata.uid = Some(format!("uid-{name}"));
    b.status = phase.map(|p| RaftClusterBackupStatus {
        phase: Some(p),
        ..Default::default()
    });
    b
}

/// Answers the next request with `status` and `body`; returns (method, path, request body).
async fn answer(h: &mut Handle, status: u16, body: Value) -> (Method, String, Value) {
    let (request, send) = tokio::time::timeout(Duration::from_secs(1), h.next_request())
        .await
        .expect("a request within 1 s")
        .expect("a request");
    let (parts, req_body) = request.into_parts();
    let bytes = req_body.collect_bytes().await.expect("a body");
    let req: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("JSON")
    };
    let response = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap();
    send.send_response(response);
    (parts.method, parts.uri.path().to_string(), req)
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
           "code": 404, "message": "raftclusters.raftkv.dev \"demo\" not found"})
}

fn failed_count(bctx: &BackupContext) -> u64 {
    bctx.ctx
        .metrics
        .backup
        .backups
        .get_or_create(&vec![
            ("namespace", "ns".to_string()),
            ("raftcluster", "demo".to_string()),
            ("result", "failed".to_string()),
        ])
        .get()
}

#[tokio::test]
async fn a_backup_of_a_missing_cluster_fails_naming_it() {
    let (bctx, mut h) = context();
    let b = backup("b1", None);
    let run = tokio::spawn(reconcile(Arc::new(b.clone()), bctx.clone()));

    let (m, path, _) = answer(&mut h, 404, not_found()).await;
    assert_eq!(m, Method::GET);
    assert_eq!(
        path,
        "/apis/raftkv.dev/v1alpha1/namespaces/ns/raftclusters/demo"
    );
    let (m, path, req) = answer(&mut h, 200, serde_json::to_value(&b).unwrap()).await;
    assert_eq!(m, Method::PATCH);
    assert_eq!(
        path,
        "/apis/raftkv.dev/v1alpha1/namespaces/ns/raftclusterbackups/b1/status"
    );
    assert_eq!(req["status"]["phase"], "Failed");
    assert_eq!(
        req["status"]["message"],
        "RaftCluster demo not found in namespace ns"
    );
    assert!(req["status"]["completionTime"].is_string());
    let (m, path, req) = answer(&mut h, 201, json!({})).await;
    assert_eq!(m, Method::POST);
    assert_eq!(path, "/apis/events.k8s.io/v1/namespaces/ns/events");
    assert_eq!(req["reason"], "BackupFailed");
    assert_eq!(req["type"], "Warning");
    assert_eq!(req["regarding"]["kind"], "RaftClusterBackup");
    assert_eq!(req["related"]["name"], "demo");

    let action = run.await.unwrap().expect("reconciled");
    assert_eq!(action, Action::await_change());
    assert_eq!(failed_count(&bctx), 1);
    assert!(
        bctx.running.lock().unwrap().is_empty(),
        "the claim is released"
    );
}

#[tokio::test]
async fn a_second_backup_of_a_cluster_waits_pending() {
    let (bctx, mut h) = context();
    let _first = bctx.claim("ns", "demo", "b1").expect("claimed");
    let b2 = backup("b2", None);
    let run = tokio::spawn(reconcile(Arc::new(b2.clone()), bctx.clone()));
    let (m, _, req) = answer(&mut h, 200, serde_json::to_value(&b2).unwrap()).await;
    assert_eq!(m, Method::PATCH);
    assert_eq!(req["status"]["phase"], "Pending");
    assert_eq!(
        req["status"]["message"],
        "waiting for backup b1 of RaftCluster demo to finish"
    );
    assert_eq!(
        run.await.unwrap().expect("reconciled"),
        Action::requeue(WAIT_REQUEUE)
    );
    assert!(
        bctx.claim("ns", "demo", "b3").is_err(),
        "b1 still holds the cluster"
    );
}

#[tokio::test]
async fn a_running_backup_no_task_runs_was_interrupted() {
    let (bctx, mut h) = context();
    let b = backup("b1", Some(BackupPhase::Running));
    let run = tokio::spawn(reconcile(Arc::new(b.clone()), bctx.clone()));
    let (_, _, req) = answer(&mut h, 200, serde_json::to_value(&b).unwrap()).await;
    assert_eq!(req["status"]["phase"], "Failed");
    assert!(
        req["status"]["message"]
            .as_str()
            .unwrap()
            .starts_with("interrupted: the operator stopped"),
        "{req}"
    );
    let (_, _, ev) = answer(&mut h, 201, json!({})).await;
    assert_eq!(ev["reason"], "BackupFailed");
    run.await.unwrap().expect("reconciled");
    assert_eq!(failed_count(&bctx), 1);
}

#[tokio::test]
async fn a_finished_backup_is_left_alone() {
    for phase in [BackupPhase::Succeeded, BackupPhase::Failed] {
        let (bctx, mut h) = context();
        let action = reconcile(Arc::new(backup("b1", Some(phase))), bctx)
            .await
            .expect("reconciled");
        assert_eq!(action, Action::await_change());
        // The client is dropped with the context: `None` (or nothing at all).
        let next = tokio::time::timeout(Duration::from_millis(100), h.next_request()).await;
        assert!(
            matches!(next, Err(_) | Ok(None)),
            "{phase:?}: no API request"
        );
    }
}
