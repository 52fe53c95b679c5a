//! Test fixtures for mocked reconciles: a fluent [`RaftCluster`] builder, a
//! [`Context`] whose client talks to a `tower-test` mock, and the
//! [`ApiServerVerifier`] that plays the API server for one [`Scenario`]: it checks
//! every request a reconcile makes (method, path, query and the body fields that
//! matter), in order, answers it, and fails on any request the scenario does not
//! expect. No real API server and no node gRPC: scenarios are chosen so that
//! observe finds no pod with an address to call.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::client::Body;
use kube::runtime::events::Reporter;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::context::{Context, NodeAddressing};
use crate::crd::{PAUSED_ANNOTATION, RaftCluster, RaftClusterSpec};
use crate::events::EventRecorder;
use crate::planner::Set;
use crate::resources::{self, FIELD_MANAGER, MANAGED_BY};

/// Namespace and name of [`RaftCluster::test`].
pub const NAMESPACE: &str = "testns";
pub const NAME: &str = "demo";
const UID: &str = "6f1c2d3e-0000-4000-8000-00000000demo";
/// The StatefulSet controller's message in [`Scenario::PodsNotCreated`].
const FAILED_CREATE: &str = "create Pod demo-0 in StatefulSet demo failed error: Pod \"demo-0\" is invalid: metadata.labels: Invalid value";

/// The operator's default node image in [`Context::test`].
pub const DEFAULT_NODE_IMAGE: &str = "raftkv/raft-node:operator-default";

impl RaftCluster {
    /// A 3-voter cluster `testns/demo` at generation 1, with no status.
    /// Without TLS: these reconcile tests script the API calls of membership
    /// and status; the certificate Secrets are `certificates::tests`' subject.
    pub fn test() -> Self {
        let spec: RaftClusterSpec = serde_json::from_value(json!({
            "replicas": 3,
            "image": "raftkv/raft-node:test",
            "tls": {"enabled": false},
        }))
        .expect("a valid spec");
        let mut rc = RaftCluster::new(NAME, spec);
        rc.metadata.namespace = Some(NAMESPACE.into());
        rc.metadata.uid = Some(UID.into());
        rc.metadata.generation = Some(1);
        rc
    }

    pub fn with_replicas(mut self, replicas: i32) -> Self {
        self.spec.replicas = replicas;
        self
    }

    pub fn with_read_replicas(mut self, read_replicas: i32) -> Self {
        self.spec.read_replicas = read_replicas;
        self
    }

    pub fn with_generation(mut self, generation: i64) -> Self {
        self.metadata.generation = Some(generation);
        self
    }

    /// Sets the `raftkv.dev/paused: "true"` annotation.
    pub fn paused(mut self) -> Self {
        self.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(PAUSED_ANNOTATION.into(), "true".into());
        self
    }

    /// Being deleted: `metadata.deletionTimestamp` is set.
    pub fn deleting(mut self) -> Self {
        self.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
        self
    }
}

type ApiServerHandle = tower_test::mock::Handle<Request<Body>, Response<Body>>;
type SendResponse = tower_test::mock::SendResponse<Response<Body>>;

/// Plays the API server for one [`Scenario`] (see [`ApiServerVerifier::run`]).
pub struct ApiServerVerifier(ApiServerHandle);

impl Context {
    /// A context whose client (and Event recorder) talk to the returned verifier.
    pub fn test() -> (Arc<Self>, ApiServerVerifier) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let reporter = Reporter {
            controller: MANAGED_BY.into(),
            instance: Some("raft-operator-test".into()),
        };
        let ctx = Context {
            client: client.clone(),
            recorder: EventRecorder::new(client, reporter),
            metrics: Arc::default(),
            node_addressing: NodeAddressing::PodIp,
            default_node_image: DEFAULT_NODE_IMAGE.into(),
            operator_credentials: Default::default(),
            operator_namespace: None,
        };
        (Arc::new(ctx), ApiServerVerifier(handle))
    }
}

/// One expected sequence of API calls of a reconcile.
pub enum Scenario {
    /// Nothing exists yet: observe finds no StatefulSet and no pod; the Services,
    /// the PDB and both StatefulSets are applied (voters at `spec.replicas`, read
    /// replicas at 0 until bootstrap), the status says `Pending`, and a
    /// `StatefulSetScaled` Event is created.
    Bootstrap(RaftCluster),
    /// The voters' StatefulSet exists at `spec.replicas` and its pods are pending
    /// (no IP, so no node to ask): the owned objects are re-applied at the sizes
    /// observed, the status lists the pods as unreachable and waits for them, and
    /// no Event is published (no step, nothing blocked).
    PodsPending(RaftCluster),
    /// Paused: observe, then the status write only (phase `Paused`).
    PausedStatusOnly(RaftCluster),
    /// The first owned-object apply is answered with this HTTP error; nothing else
    /// is applied, the status says `Degraded=True ApplyFailed` with the API server's
    /// message, and a Warning Event says it too.
    ApplyFails(RaftCluster, StatusCode),
    /// As [`Scenario::Bootstrap`], but the status write is answered with this HTTP
    /// error: the step was taken, so its Event is still created.
    StatusWriteFails(RaftCluster, StatusCode),
    /// The voters' StatefulSet exists at `spec.replicas` but has no pod, and its
    /// latest Event is a `FailedCreate`: observe reads it, and the status says
    /// `Degraded=True PodsNotCreated` with the StatefulSet controller's message.
    PodsNotCreated(RaftCluster),
    /// As [`Scenario::PodsPending`], but the pods are scheduled on a node and the
    /// nodes list is forbidden (a namespaced install): the reconcile still succeeds
    /// and `ZoneRisk` is `Unknown`, naming the refusal.
    NodesForbidden(RaftCluster),
    /// No request at all.
    NoCalls,
}

/// Fails the test if the verifier has not finished within a second. Call it after
/// the reconcile returned and every clone of the test's [`Context`] was dropped:
/// the verifier ends by checking that no further request can come.
pub async fn timeout_after_1s(handle: JoinHandle<()>) {
    tokio::time::timeout(Duration::from_secs(1), handle)
        .await
        .expect("the API server verifier timed out")
        .expect("the API server verifier failed");
}

/// One request as received, with its body parsed.
struct Call {
    method: Method,
    path: String,
    query: BTreeMap<String, String>,
    content_type: Option<String>,
    body: Value,
    send: SendResponse,
}

impl Call {
    fn respond(self, code: StatusCode, body: &Value) {
        let bytes = serde_json::to_vec(body).expect("JSON always serializes");
        let response = Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(Body::from(bytes))
            .expect("a valid response");
        self.send.send_response(response);
    }

    fn ok(self, body: &Value) {
        self.respond(StatusCode::OK, body)
    }

    /// Answers with a `metav1.Status` failure, as the API server does.
    fn fail(self, code: StatusCode, reason: &str) {
        let status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": format!("mocked {reason}"),
            "reason": reason,
            "code": code.as_u16(),
        });
        self.respond(code, &status)
    }

    /// Asserts this is a server-side apply by the operator's field manager.
    fn assert_apply(&self, forced: bool) {
        assert_eq!(
            self.content_type.as_deref(),
            Some("application/apply-patch+yaml"),
            "{} {}",
            self.method,
            self.path
        );
        assert_eq!(
            self.query.get("fieldManager").map(String::as_str),
            Some(FIELD_MANAGER)
        );
        let force = self.query.get("force").map(String::as_str);
        assert_eq!(force == Some("true"), forced, "force={force:?}");
    }
}

/// A query parameter as the client encodes it (`application/x-www-form-urlencoded`).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ASCII hex");
                out.push(u8::from_str_radix(hex, 16).expect("percent-encoded byte"));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).expect("UTF-8 query")
}

fn path(kind: &str, name: &str) -> String {
    let base = match kind {
        "services" | "pods" => "/api/v1".to_string(),
        "statefulsets" => "/apis/apps/v1".to_string(),
        "poddisruptionbudgets" => "/apis/policy/v1".to_string(),
        "networkpolicies" => "/apis/networking.k8s.io/v1".to_string(),
        "raftclusters" => "/apis/raftkv.dev/v1alpha1".to_string(),
        "events" => "/apis/events.k8s.io/v1".to_string(),
        other => panic!("no path for {other}"),
    };
    let mut p = format!("{base}/namespaces/{NAMESPACE}/{kind}");
    if !name.is_empty() {
        p = format!("{p}/{name}");
    }
    p
}

/// The `app.kubernetes.io/*` labels and controller owner reference of an owned object.
fn assert_owned(body: &Value, kind: &str, name: &str, component: &str) {
    assert_eq!(body["kind"], kind);
    let meta = &body["metadata"];
    assert_eq!(meta["name"], name, "{kind} name");
    assert_eq!(meta["namespace"], NAMESPACE, "{kind} {name} namespace");
    let labels = &meta["labels"];
    assert_eq!(labels["app.kubernetes.io/name"], "raftkv", "{kind} {name}");
    assert_eq!(labels["app.kubernetes.io/instance"], NAME, "{kind} {name}");
    assert_eq!(
        labels["app.kubernetes.io/component"], component,
        "{kind} {name}"
    );
    assert_eq!(
        labels["app.kubernetes.io/managed-by"], MANAGED_BY,
        "{kind} {name}"
    );
    let owners = meta["ownerReferences"]
        .as_array()
        .unwrap_or_else(|| panic!("{kind} {name} has no ownerReferences"));
    assert_eq!(owners.len(), 1, "{kind} {name}");
    let owner = &owners[0];
    assert_eq!(owner["apiVersion"], "raftkv.dev/v1alpha1");
    assert_eq!(owner["kind"], "RaftCluster");
    assert_eq!(owner["name"], NAME);
    assert_eq!(owner["uid"], UID);
    assert_eq!(owner["controller"], true);
}

/// The condition of `type_` in a status body.
pub fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .expect("status.conditions is a list")
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

impl ApiServerVerifier {
    /// Serves `scenario` on a task; await it with [`timeout_after_1s`].
    pub fn run(self, scenario: Scenario) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut server = self;
            match scenario {
                Scenario::Bootstrap(rc) => {
                    server.observe_nothing().await;
                    let replicas = rc.spec.replicas;
                    server.apply_owned(replicas, 0).await;
                    let status = server.status_patch(&rc).await;
                    assert_eq!(status["phase"], "Pending");
                    let progressing = condition(&status, "Progressing");
                    assert_eq!(progressing["status"], "True");
                    assert_eq!(
                        progressing["message"],
                        format!("scaling voters StatefulSet to {replicas}")
                    );
                    assert!(status.get("lastMembershipChange").is_none());
                    server.statefulset_scaled_event(replicas).await;
                }
                Scenario::StatusWriteFails(rc, code) => {
                    server.observe_nothing().await;
                    let replicas = rc.spec.replicas;
                    server.apply_owned(replicas, 0).await;
                    server.status_patch_answered(&rc, Some(code)).await;
                    server.statefulset_scaled_event(replicas).await;
                }
                Scenario::PodsNotCreated(rc) => {
                    let replicas = rc.spec.replicas;
                    server.observe_missing_pods(&rc).await;
                    server.apply_owned(replicas, 0).await;
                    let status = server.status_patch(&rc).await;
                    assert_eq!(status["phase"], "Pending");
                    let degraded = condition(&status, "Degraded");
                    assert_eq!(degraded["status"], "True");
                    assert_eq!(degraded["reason"], "PodsNotCreated");
                    assert_eq!(
                        degraded["message"],
                        format!("StatefulSet {NAME} cannot create its pods: {FAILED_CREATE}")
                    );
                }
                Scenario::PodsPending(rc) => {
                    let replicas = rc.spec.replicas;
                    server.observe_pending_pods(&rc, false).await;
                    server.apply_owned(replicas, 0).await;
                    let status = server.status_patch(&rc).await;
                    assert_eq!(status["phase"], "Pending");
                    let pods: Vec<String> = (0..replicas).map(|i| format!("{NAME}-{i}")).collect();
                    let members = status["members"].as_array().expect("members");
                    let listed: Vec<&str> = members
                        .iter()
                        .map(|m| m["pod"].as_str().expect("member pod"))
                        .collect();
                    assert_eq!(listed, pods);
                    for m in members {
                        assert_eq!(m["role"], "unreachable", "{m}");
                        assert_eq!(m["healthy"], false, "{m}");
                    }
                    assert_eq!(status["replicas"], 0);
                    assert_eq!(status["readyReplicas"], 0);
                    assert_eq!(
                        condition(&status, "Progressing")["message"],
                        format!("waiting for {} to report Status", pods.join(", "))
                    );
                    assert_eq!(condition(&status, "Available")["status"], "False");
                }
                Scenario::NodesForbidden(rc) => {
                    let replicas = rc.spec.replicas;
                    server.observe_pending_pods(&rc, true).await;
                    let call = server.next_call().await;
                    assert_eq!(call.method, Method::GET);
                    assert_eq!(call.path, "/api/v1/nodes");
                    call.fail(StatusCode::FORBIDDEN, "Forbidden");
                    server.apply_owned(replicas, 0).await;
                    let status = server.status_patch(&rc).await;
                    let zone = condition(&status, "ZoneRisk");
                    assert_eq!(zone["status"], "Unknown");
                    assert_eq!(zone["reason"], "PlacementUnknown");
                    assert!(
                        zone["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("cannot read nodes: mocked Forbidden")),
                        "{zone}"
                    );
                }
                Scenario::PausedStatusOnly(rc) => {
                    server.observe_nothing().await;
                    let status = server.status_patch(&rc).await;
                    assert_eq!(status["phase"], "Paused");
                    let paused = condition(&status, "Paused");
                    assert_eq!(paused["status"], "True");
                    assert_eq!(paused["reason"], "PausedByAnnotation");
                    // Paused, the bootstrap step is not taken: not progressing, and
                    // the condition says why and what is due.
                    let progressing = condition(&status, "Progressing");
                    assert_eq!(progressing["status"], "False");
                    assert_eq!(progressing["reason"], "Paused");
                    assert!(
                        progressing["message"]
                            .as_str()
                            .is_some_and(|m| m.ends_with("scaling voters StatefulSet to 3")),
                        "{progressing}"
                    );
                }
                Scenario::ApplyFails(rc, code) => {
                    server.observe_nothing().await;
                    let call = server.next_call().await;
                    assert_eq!(call.method, Method::PATCH);
                    assert_eq!(call.path, path("services", &format!("{NAME}-peer")));
                    call.assert_apply(true);
                    call.fail(code, "InternalError");
                    let status = server.status_patch(&rc).await;
                    assert_eq!(status["phase"], "Pending");
                    assert!(status.get("lastMembershipChange").is_none());
                    let degraded = condition(&status, "Degraded");
                    assert_eq!(degraded["status"], "True");
                    assert_eq!(degraded["reason"], "ApplyFailed");
                    assert_eq!(degraded["message"], "mocked InternalError");
                    server
                        .event_create_typed(
                            "Warning",
                            "ApplyFailed",
                            "Apply",
                            "mocked InternalError",
                            None,
                        )
                        .await;
                }
                Scenario::NoCalls => {}
            }
            server.no_more_calls().await;
        })
    }

    async fn next_call(&mut self) -> Call {
        let (request, send) = self
            .0
            .next_request()
            .await
            .expect("the client was dropped before the expected request");
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.expect("a readable body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("a JSON body")
        };
        let query = parts
            .uri
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (decode(k), decode(v))
            })
            .collect();
        Call {
            method: parts.method,
            path: parts.uri.path().to_string(),
            query,
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .map(|v| v.to_str().expect("ASCII header").to_string()),
            body,
            send,
        }
    }

    /// Ends the scenario: once the test dropped its context, the client is gone
    /// and no request is left unanswered.
    async fn no_more_calls(mut self) {
        if let Some((request, _)) = self.0.next_request().await {
            panic!("unexpected request {} {}", request.method(), request.uri());
        }
    }

    /// Observe of a cluster with no StatefulSet and no pod.
    async fn observe_nothing(&mut self) {
        for name in [NAME.to_string(), format!("{NAME}-read")] {
            let call = self.next_call().await;
            assert_eq!(call.method, Method::GET);
            assert_eq!(call.path, path("statefulsets", &name));
            call.fail(StatusCode::NOT_FOUND, "NotFound");
        }
        let call = self.next_call().await;
        assert_eq!(call.method, Method::GET);
        assert_eq!(call.path, path("pods", ""));
        assert_eq!(
            call.query.get("labelSelector").map(String::as_str),
            Some(
                format!("app.kubernetes.io/instance={NAME},app.kubernetes.io/name=raftkv").as_str()
            )
        );
        call.ok(&json!({
            "apiVersion": "v1",
            "kind": "PodList",
            "metadata": {"resourceVersion": "1"},
            "items": [],
        }));
        self.observe_endpoint_slices().await;
    }

    /// The EndpointSlices of the client and read Services: none yet.
    async fn observe_endpoint_slices(&mut self) {
        let call = self.next_call().await;
        assert_eq!(call.method, Method::GET);
        assert_eq!(
            call.path,
            format!("/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices")
        );
        assert_eq!(
            call.query.get("labelSelector").map(String::as_str),
            Some(format!("kubernetes.io/service-name in ({NAME},{NAME}-read)").as_str())
        );
        call.ok(&json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSliceList",
            "metadata": {},
            "items": [],
        }));
    }

    /// Observe of a cluster whose voters' StatefulSet exists at `spec.replicas`,
    /// with that many pods not yet scheduled (no IP), and no read replicas.
    async fn observe_pending_pods(&mut self, rc: &RaftCluster, scheduled: bool) {
        let replicas = u32::try_from(rc.spec.replicas).expect("replicas >= 0");
        let call = self.next_call().await;
        assert_eq!(call.method, Method::GET);
        assert_eq!(call.path, path("statefulsets", NAME));
        let mut sts = serde_json::to_value(resources::statefulset(
            rc,
            Set::Voters,
            replicas,
            DEFAULT_NODE_IMAGE,
        ))
        .expect("StatefulSet serializes");
        sts["status"] = json!({"replicas": replicas, "updateRevision": format!("{NAME}-rev1")});
        call.ok(&sts);

        let call = self.next_call().await;
        assert_eq!(call.method, Method::GET);
        assert_eq!(call.path, path("statefulsets", &format!("{NAME}-read")));
        call.fail(StatusCode::NOT_FOUND, "NotFound");

        let call = self.next_call().await;
        assert_eq!(call.method, Method::GET);
        assert_eq!(call.path, path("pods", ""));
        // Listed out of order: the status sorts them by ordinal.
        let pods: Vec<Value> = (0..replicas)
            .rev()
            .map(|i| {
                json!({
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": format!("{NAME}-{i}"),
                        "namespace": NAMESPACE,
                        "creationTimestamp": "2025-01-01T00:00:00Z",
                        "labels": {
                            "app.kubernetes.io/name": "raftkv",
                            "app.kubernetes.io/instance": NAME,
                            "app.kubernetes.io/component": "voter",
                            "controller-revision-hash": format!("{NAME}-rev1"),
                            "raftkv.dev/serving": "true",
                        },
                    },
                    "spec": if scheduled {
                        json!({"nodeName": "node-a", "containers": []})
                    } else {
                        Value::Null
                    },
                    "status": {
                        "phase": "Pending",
                        "conditions": [{"type": "PodScheduled", "status": "False"}],
                    },
                })
            })
            .collect();
        call.ok(&json!({
            "apiVersion": "v1",
            "kind": "PodList",
            "metadata": {"resourceVersion": "2"},
            "items": pods,
        }));
        self.observe_endpoint_slices().await;
    }

    /// Observe of a cluster whose voters' StatefulSet exists at `spec.replicas` with
    /// no pod: the StatefulSet's `FailedCreate` Events are listed.
    async fn observe_missing_pods(&mut self, rc: &RaftCluster) {
        let replicas = u32::try_from(rc.spec.replicas).expect("replicas >= 0");
        let call = self.next_call().await;
        assert_eq!(call.path, path("statefulsets", NAME));
        let mut sts = serde_json::to_value(resources::statefulset(
            rc,
            Set::Voters,
            replicas,
            DEFAULT_NODE_IMAGE,
        ))
        .expect("StatefulSet serializes");
        sts["status"] = json!({"replicas": 0, "updateRevision": format!("{NAME}-rev1")});
        call.ok(&sts);
        let call = self.next_call().await;
        assert_eq!(call.path, path("statefulsets", &format!("{NAME}-read")));
        call.fail(StatusCode::NOT_FOUND, "NotFound");
        let call = self.next_call().await;
        assert_eq!(call.path, path("pods", ""));
        call.ok(&json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []}));
        self.observe_endpoint_slices().await;

        let call = self.next_call().await;
        assert_eq!(call.method, Method::GET);
        assert_eq!(call.path, format!("/api/v1/namespaces/{NAMESPACE}/events"));
        assert_eq!(
            call.query.get("fieldSelector").map(String::as_str),
            Some(
                format!(
                    "involvedObject.kind=StatefulSet,involvedObject.name={NAME},reason=FailedCreate"
                )
                .as_str()
            )
        );
        let event = |message: &str, last: Timestamp| {
            json!({
                "metadata": {"name": format!("{NAME}.{}", last.as_second()), "namespace": NAMESPACE},
                "involvedObject": {"kind": "StatefulSet", "name": NAME, "namespace": NAMESPACE},
                "reason": "FailedCreate", "type": "Warning", "message": message,
                "lastTimestamp": last.to_string(), "count": 3,
            })
        };
        let now = Timestamp::now();
        call.ok(&json!({
            "apiVersion": "v1",
            "kind": "EventList",
            "metadata": {},
            "items": [
                event("an older failure", now - std::time::Duration::from_secs(60)),
                event(FAILED_CREATE, now - std::time::Duration::from_secs(5)),
            ],
        }));
    }

    /// Next request: a server-side apply of `kind/name`, answered with its body.
    async fn apply(&mut self, kind: &str, name: &str) -> Value {
        let call = self.next_call().await;
        assert_eq!(call.method, Method::PATCH, "{kind}/{name}");
        assert_eq!(call.path, path(kind, name));
        call.assert_apply(true);
        let body = call.body.clone();
        call.ok(&body);
        body
    }

    /// Services, PDB, NetworkPolicy and the two StatefulSets, in this order, with their sizes.
    async fn apply_owned(&mut self, voters: i32, read: i32) {
        let peer = self.apply("services", &format!("{NAME}-peer")).await;
        assert_owned(&peer, "Service", &format!("{NAME}-peer"), "peer");
        assert_eq!(peer["spec"]["clusterIP"], "None");
        assert_eq!(peer["spec"]["publishNotReadyAddresses"], true);

        let client = self.apply("services", NAME).await;
        assert_owned(&client, "Service", NAME, "client");
        assert_eq!(
            client["spec"]["selector"]["app.kubernetes.io/component"],
            "voter"
        );

        let read_svc = self.apply("services", &format!("{NAME}-read")).await;
        assert_owned(&read_svc, "Service", &format!("{NAME}-read"), "read");

        // The voters' budget from the quorum (here no membership yet: nothing may go,
        // planner::disruption has the arithmetic), the read replicas' one at a time.
        let pdb = self.apply("poddisruptionbudgets", NAME).await;
        assert_owned(&pdb, "PodDisruptionBudget", NAME, "voter");
        assert!(pdb["spec"]["minAvailable"].is_u64(), "{pdb}");
        assert!(pdb["spec"].get("maxUnavailable").is_none(), "{pdb}");
        let read_pdb = self
            .apply("poddisruptionbudgets", &format!("{NAME}-read"))
            .await;
        assert_owned(
            &read_pdb,
            "PodDisruptionBudget",
            &format!("{NAME}-read"),
            "read-replica",
        );
        assert_eq!(read_pdb["spec"]["maxUnavailable"], 1);

        let np = self.apply("networkpolicies", &format!("{NAME}-peer")).await;
        assert_owned(&np, "NetworkPolicy", &format!("{NAME}-peer"), "peer");
        assert_eq!(
            np["spec"]["ingress"][0]["ports"][0]["port"], 7001,
            "the first rule guards the peer port"
        );

        for (name, component, replicas) in [
            (NAME.to_string(), "voter", voters),
            (format!("{NAME}-read"), "read-replica", read),
        ] {
            let sts = self.apply("statefulsets", &name).await;
            assert_owned(&sts, "StatefulSet", &name, component);
            let spec = &sts["spec"];
            assert_eq!(spec["replicas"], replicas, "{name} replicas");
            assert_eq!(
                spec["selector"]["matchLabels"]["app.kubernetes.io/component"],
                component
            );
            assert_eq!(
                spec["template"]["metadata"]["labels"]["app.kubernetes.io/component"],
                component
            );
            assert_eq!(spec["serviceName"], format!("{NAME}-peer"));
        }
    }

    /// The status write: a forced apply on `/status`. Returns `status`.
    async fn status_patch(&mut self, rc: &RaftCluster) -> Value {
        self.status_patch_answered(rc, None).await
    }

    /// [`Self::status_patch`], answered with `failure` if given.
    async fn status_patch_answered(
        &mut self,
        rc: &RaftCluster,
        failure: Option<StatusCode>,
    ) -> Value {
        let call = self.next_call().await;
        assert_eq!(call.method, Method::PATCH);
        assert_eq!(call.path, format!("{}/status", path("raftclusters", NAME)));
        call.assert_apply(true);
        assert_eq!(call.body["apiVersion"], "raftkv.dev/v1alpha1");
        assert_eq!(call.body["kind"], "RaftCluster");
        let status = call.body["status"].clone();
        assert_eq!(status["observedGeneration"], json!(rc.metadata.generation));
        assert_eq!(
            status["selector"],
            format!(
                "app.kubernetes.io/name=raftkv,app.kubernetes.io/instance={NAME},app.kubernetes.io/component=voter"
            )
        );
        for c in status["conditions"].as_array().expect("conditions") {
            assert_eq!(c["observedGeneration"], json!(rc.metadata.generation));
        }
        if let Some(code) = failure {
            call.fail(code, "InternalError");
            return status;
        }
        let mut updated = serde_json::to_value(rc).expect("RaftCluster serializes");
        updated["status"] = status.clone();
        call.ok(&updated);
        status
    }

    /// The Event of scaling the voters' StatefulSet to `replicas`.
    async fn statefulset_scaled_event(&mut self, replicas: i32) {
        self.event_create(
            "StatefulSetScaled",
            "Scale",
            &format!("voters StatefulSet scaled to {replicas}"),
            ("StatefulSet", NAME),
        )
        .await;
    }

    /// A Normal `events.k8s.io/v1` Event about the test cluster.
    async fn event_create(
        &mut self,
        reason: &str,
        action: &str,
        note: &str,
        related: (&str, &str),
    ) {
        self.event_create_typed("Normal", reason, action, note, Some(related))
            .await
    }

    /// An `events.k8s.io/v1` Event about the test cluster.
    async fn event_create_typed(
        &mut self,
        type_: &str,
        reason: &str,
        action: &str,
        note: &str,
        related: Option<(&str, &str)>,
    ) {
        let call = self.next_call().await;
        assert_eq!(call.method, Method::POST);
        assert_eq!(call.path, path("events", ""));
        let ev = &call.body;
        assert_eq!(ev["reason"], reason);
        assert_eq!(ev["action"], action);
        assert_eq!(ev["note"], note);
        assert_eq!(ev["type"], type_);
        assert!(
            ev["eventTime"].is_string(),
            "eventTime orders `kubectl events`"
        );
        assert_eq!(ev["reportingController"], MANAGED_BY);
        let regarding = &ev["regarding"];
        assert_eq!(regarding["kind"], "RaftCluster");
        assert_eq!(regarding["name"], NAME);
        assert_eq!(regarding["namespace"], NAMESPACE);
        assert_eq!(regarding["uid"], UID);
        match related {
            Some((kind, name)) => {
                assert_eq!(ev["related"]["kind"], kind);
                assert_eq!(ev["related"]["name"], name);
            }
            None => assert!(ev.get("related").is_none(), "{ev}"),
        }
        assert!(
            ev["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with(&format!("{NAME}."))),
            "event name {}",
            ev["metadata"]["name"]
        );
        let body = call.body.clone();
        call.respond(StatusCode::CREATED, &body);
    }
}
