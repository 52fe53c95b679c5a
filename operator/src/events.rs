//! Publishes `events.k8s.io/v1` Events with one Event per distinct message.
//!
//! kube-runtime's `Recorder` aggregates by (type, reason, action, reporter, regarding,
//! related) and ignores the note: scaling 3 -> 5 -> 3 -> 1 left one Event
//! `StatefulSetScaled "voters StatefulSet scaled to 3"` with `series.count=3`, and
//! "scaled to 5" and "scaled to 1" were never shown. This recorder keeps the same
//! protocol (create, then a `series` patch of the same Event for a repeat within the
//! cache TTL) with the note in the aggregation key: an identical repeat (the same
//! Warning every retry) is counted on one Event, a distinct message is its own Event.
//!
//! Times: `eventTime` at creation and `series.lastObservedTime` on repeats, which
//! `kubectl events --for raftcluster/NAME` orders by. (The events.k8s.io API refuses
//! the deprecated `lastTimestamp`, so `kubectl get events --sort-by=.lastTimestamp`
//! cannot order these Events; `kubectl events` can.)

use std::collections::HashMap;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};
use tokio::sync::Mutex;

/// A repeat later than this after the last occurrence starts a new Event (as kube's
/// `Recorder`, and client-go's event correlator).
const CACHE_TTL: SignedDuration = SignedDuration::from_mins(6);

/// What makes two occurrences the same Event.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    warning: bool,
    reason: String,
    action: String,
    note: Option<String>,
    regarding: (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    ),
    related: Option<(Option<String>, Option<String>, Option<String>)>,
}

impl Key {
    fn new(ev: &Event, regarding: &ObjectReference) -> Self {
        Key {
            warning: ev.type_ == EventType::Warning,
            reason: ev.reason.clone(),
            action: ev.action.clone(),
            note: ev.note.clone(),
            regarding: (
                regarding.kind.clone(),
                regarding.namespace.clone(),
                regarding.name.clone(),
                regarding.uid.clone(),
            ),
            related: ev
                .secondary
                .as_ref()
                .map(|r| (r.kind.clone(), r.namespace.clone(), r.name.clone())),
        }
    }
}

/// See the module documentation.
pub struct EventRecorder {
    client: Client,
    reporter: Reporter,
    cache: Mutex<HashMap<Key, K8sEvent>>,
}

impl EventRecorder {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        EventRecorder {
            client,
            reporter,
            cache: Mutex::default(),
        }
    }

    fn new_event(&self, ev: &Event, regarding: &ObjectReference, now: Timestamp) -> K8sEvent {
        K8sEvent {
            action: Some(ev.action.clone()),
            reason: Some(ev.reason.clone()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: ev.secondary.clone(),
            note: ev.note.clone(),
            metadata: ObjectMeta {
                namespace: regarding.namespace.clone(),
                name: Some(format!(
                    "{}.{:x}",
                    regarding
                        .name
                        .as_deref()
                        .unwrap_or(&self.reporter.controller),
                    now.as_nanosecond()
                )),
                ..Default::default()
            },
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| self.reporter.controller.clone()),
            ),
            type_: Some(
                match ev.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .into(),
            ),
            ..Default::default()
        }
    }

    /// Creates the Event, or counts a repeat of an identical one on it.
    pub async fn publish(
        &self,
        ev: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let key = Key::new(ev, regarding);
        let mut cache = self.cache.lock().await;
        cache.retain(|_, e| last_seen(e).is_some_and(|t| t + CACHE_TTL > now));
        let ns = regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), ns);
        let event = match cache.get(&key) {
            Some(previous) => {
                let mut event = previous.clone();
                event.series = Some(EventSeries {
                    count: previous.series.as_ref().map_or(2, |s| s.count + 1),
                    last_observed_time: MicroTime(now),
                });
                let name = event.metadata.name.clone().unwrap_or_default();
                let patch = serde_json::json!({"series": event.series});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                event
            }
            None => {
                let event = self.new_event(ev, regarding, now);
                api.create(&PostParams::default(), &event).await?;
                event
            }
        };
        cache.insert(key, event);
        Ok(())
    }
}

fn last_seen(e: &K8sEvent) -> Option<Timestamp> {
    e.series
        .as_ref()
        .map(|s| s.last_observed_time.0)
        .or(e.event_time.as_ref().map(|t| t.0))
}

#[cfg(test)]
mod tests {
    use http::{Method, Request, Response};
    use kube::client::Body;
    use serde_json::Value;

    use super::*;

    type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

    /// The next request: (method, path, JSON body), answered with its body.
    async fn next(handle: &mut Handle) -> (Method, String, Value) {
        let (request, send) = handle.next_request().await.expect("a request");
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.expect("a body");
        let body: Value = serde_json::from_slice(&bytes).expect("JSON");
        let response = Response::builder()
            .status(if parts.method == Method::POST {
                201
            } else {
                200
            })
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap();
        send.send_response(response);
        (parts.method, parts.uri.path().to_string(), body)
    }

    #[tokio::test]
    async fn each_distinct_message_is_its_own_event_and_a_repeat_is_counted() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let reporter = Reporter {
            controller: "raft-operator".into(),
            instance: Some("op-0".into()),
        };
        let recorder = EventRecorder::new(Client::new(service, "default"), reporter);
        let regarding = ObjectReference {
            api_version: Some("raftkv.dev/v1alpha1".into()),
            kind: Some("RaftCluster".into()),
            name: Some("demo".into()),
            namespace: Some("ns".into()),
            uid: Some("u-1".into()),
            ..Default::default()
        };
        let scaled = |n: u32| Event {
            type_: EventType::Normal,
            reason: "StatefulSetScaled".into(),
            note: Some(format!("voters StatefulSet scaled to {n}")),
            action: "Scale".into(),
            secondary: None,
        };
        let server = tokio::spawn(async move {
            let mut created = Vec::new();
            for n in [5, 3, 1] {
                let (method, path, body) = next(&mut handle).await;
                assert_eq!(method, Method::POST, "scaled to {n}");
                assert_eq!(path, "/apis/events.k8s.io/v1/namespaces/ns/events");
                assert_eq!(body["note"], format!("voters StatefulSet scaled to {n}"));
                assert_eq!(body["reason"], "StatefulSetScaled");
                assert!(body["eventTime"].is_string());
                assert!(body.get("series").is_none());
                created.push(body["metadata"]["name"].as_str().unwrap().to_string());
            }
            // "scaled to 3" again: counted on its own Event, not on "scaled to 1".
            let (method, path, body) = next(&mut handle).await;
            assert_eq!(method, Method::PATCH);
            assert_eq!(
                path,
                format!("/apis/events.k8s.io/v1/namespaces/ns/events/{}", created[1])
            );
            assert_eq!(body["series"]["count"], 2);
            assert!(body["series"]["lastObservedTime"].is_string());
            let (method, _, body) = next(&mut handle).await;
            assert_eq!(method, Method::PATCH);
            assert_eq!(body["series"]["count"], 3);
            assert!(handle.next_request().await.is_none(), "no other request");
            created
        });
        for n in [5, 3, 1, 3, 3] {
            recorder
                .publish(&scaled(n), &regarding)
                .await
                .expect("published");
        }
        drop(recorder);
        let created = server.await.expect("the mock API server");
        assert_eq!(
            created
                .iter()
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            3,
            "three distinct Event names: {created:?}"
        );
    }
}
