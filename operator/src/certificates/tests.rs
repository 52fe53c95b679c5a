//! The pure half of the certificates: names, contents, renewal decisions.

use std::time::{Duration, SystemTime};

use kube::core::ObjectMeta;
use raftkv_certs::{CA_VALIDITY, Ca, ClusterRef, Validity};

use super::*;
use crate::crd::{RaftCluster, RaftClusterSpec, TlsSpec};

fn cluster() -> RaftCluster {
    let spec: RaftClusterSpec = serde_json::from_value(serde_json::json!({"replicas": 3})).unwrap();
    let mut rc = RaftCluster::new("demo", spec);
    rc.metadata = ObjectMeta {
        name: Some("demo".into()),
        namespace: Some("ns1".into()),
        uid: Some("u-1".into()),
        ..Default::default()
    };
    rc
}

fn ca() -> Ca {
    Ca::generate(
        &ClusterRef::new("ns1", "demo").unwrap(),
        Validity::from_now(CA_VALIDITY),
    )
    .unwrap()
}

const DAY: Duration = Duration::from_secs(24 * 3600);

#[test]
fn tls_is_on_by_default_with_required_client_certificates() {
    let rc = cluster();
    assert!(rc.spec.tls.enabled);
    assert_eq!(rc.spec.tls.client_auth, crate::crd::ClientAuth::Required);
    let l = Lifetimes::of(&rc.spec.tls).unwrap();
    assert_eq!(l.lifetime, raftkv_certs::LEAF_VALIDITY);
    assert_eq!(l.renew_before, l.lifetime / 3, "a third of the lifetime");
}

#[test]
fn lifetimes_refuse_what_would_renew_forever_naming_the_field() {
    let spec = |lifetime: &str, before: Option<&str>| TlsSpec {
        certificate_lifetime: Some(lifetime.into()),
        renew_before: before.map(Into::into),
        ..Default::default()
    };
    assert_eq!(
        Lifetimes::of(&spec("48h", Some("12h"))).unwrap(),
        Lifetimes {
            lifetime: 2 * DAY,
            renew_before: DAY / 2
        }
    );
    let e = Lifetimes::of(&spec("48h", Some("48h"))).unwrap_err();
    assert!(e.contains("spec.tls.renewBefore"), "{e}");
    let e = Lifetimes::of(&spec("30m", None)).unwrap_err();
    assert!(
        e.contains("spec.tls.certificateLifetime") && e.contains("1h"),
        "{e}"
    );
}

#[test]
fn the_node_certificate_names_every_pod_the_services_and_the_peer_identity() {
    let ca = ca();
    let req = Leaf::Node
        .request("demo", "ns1", Validity::from_now(DAY))
        .unwrap();
    assert_eq!(req.identity.uri(), "raftkv://ns1/demo/peer/demo");
    for name in [
        "*.demo-peer.ns1.svc",
        "*.demo-peer.ns1.svc.cluster.local",
        "demo.ns1.svc",
        "demo-read.ns1.svc.cluster.local",
        "localhost",
    ] {
        assert!(req.dns_names.iter().any(|d| d == name), "{name} missing");
    }
    // The server name the operator verifies a pod for is covered by the wildcard.
    let pod = pod_server_name("demo-2", "demo", "ns1");
    assert_eq!(pod, "demo-2.demo-peer.ns1.svc");
    assert!(ca.issue(&req).is_ok());
    let kv = Leaf::Client
        .request("demo", "ns1", Validity::from_now(DAY))
        .unwrap();
    assert_eq!(kv.identity.uri(), "raftkv://ns1/demo/client/kv/client");
    let admin = Leaf::Admin
        .request("demo", "ns1", Validity::from_now(DAY))
        .unwrap();
    assert_eq!(admin.identity.uri(), "raftkv://ns1/demo/client/admin/admin");
    let op = operator_request("demo", "ns1", Validity::from_now(DAY)).unwrap();
    assert_eq!(op.identity.uri(), "raftkv://ns1/demo/client/admin/operator");
}

/// The Secret data of a freshly issued leaf, as the API server would return it.
fn issued_data(ca: &Ca, validity: Validity) -> BTreeMap<String, String> {
    let req = Leaf::Client.request("demo", "ns1", validity).unwrap();
    let issued = ca.issue(&req).unwrap();
    secret_text(&leaf_secret(
        &cluster(),
        Leaf::Client,
        ca.cert_pem(),
        &issued,
        None,
    ))
}

#[test]
fn renewal_is_due_when_a_third_of_the_lifetime_is_left_and_not_before() {
    let ca = ca();
    let lifetimes = Lifetimes {
        lifetime: 90 * DAY,
        renew_before: 30 * DAY,
    };
    let now = SystemTime::now();
    let fresh = issued_data(&ca, Validity::from_now(90 * DAY));
    assert_eq!(
        renewal_due(Some((&fresh, None)), ca.cert_pem(), now, &lifetimes, None),
        None
    );
    // 61 days on: 29 days left, less than a third.
    let later = now + 61 * DAY;
    assert!(matches!(
        renewal_due(Some((&fresh, None)), ca.cert_pem(), later, &lifetimes, None),
        Some(Renewal::Expiring { .. })
    ));
    // 59 days on: 31 days left, kept.
    assert_eq!(
        renewal_due(
            Some((&fresh, None)),
            ca.cert_pem(),
            now + 59 * DAY,
            &lifetimes,
            None
        ),
        None
    );
    // An expired one is due too.
    assert!(matches!(
        renewal_due(
            Some((&fresh, None)),
            ca.cert_pem(),
            now + 100 * DAY,
            &lifetimes,
            None
        ),
        Some(Renewal::Expiring { .. })
    ));
}

#[test]
fn a_renewal_request_fires_once_per_value() {
    let ca = ca();
    let lifetimes = Lifetimes {
        lifetime: 90 * DAY,
        renew_before: 30 * DAY,
    };
    let now = SystemTime::now();
    let data = issued_data(&ca, Validity::from_now(90 * DAY));
    assert_eq!(
        renewal_due(
            Some((&data, None)),
            ca.cert_pem(),
            now,
            &lifetimes,
            Some("1")
        ),
        Some(Renewal::Requested("1".into()))
    );
    // Issued for "1": the same value asks for nothing more; a new one does.
    assert_eq!(
        renewal_due(
            Some((&data, Some("1"))),
            ca.cert_pem(),
            now,
            &lifetimes,
            Some("1")
        ),
        None
    );
    assert_eq!(
        renewal_due(
            Some((&data, Some("1"))),
            ca.cert_pem(),
            now,
            &lifetimes,
            Some("2")
        ),
        Some(Renewal::Requested("2".into()))
    );
}

#[test]
fn missing_foreign_or_broken_certificates_are_reissued() {
    let ca = ca();
    let lifetimes = Lifetimes {
        lifetime: 90 * DAY,
        renew_before: 30 * DAY,
    };
    let now = SystemTime::now();
    assert_eq!(
        renewal_due(None, ca.cert_pem(), now, &lifetimes, None),
        Some(Renewal::Missing)
    );
    let mut data = issued_data(&ca, Validity::from_now(90 * DAY));
    let other = self::ca();
    assert_eq!(
        renewal_due(Some((&data, None)), other.cert_pem(), now, &lifetimes, None),
        Some(Renewal::OtherCa)
    );
    data.insert(TLS_CRT.into(), "garbage".into());
    assert!(matches!(
        renewal_due(Some((&data, None)), ca.cert_pem(), now, &lifetimes, None),
        Some(Renewal::Unreadable(_))
    ));
    data.remove(TLS_KEY);
    assert_eq!(
        renewal_due(Some((&data, None)), ca.cert_pem(), now, &lifetimes, None),
        Some(Renewal::Missing)
    );
}

#[test]
fn secrets_are_owned_by_the_cluster_and_carry_what_clients_need() {
    let rc = cluster();
    let ca = ca();
    let ca_secret = ca_secret(&rc, ca.cert_pem(), ca.key_pem());
    assert_eq!(ca_secret.metadata.name.as_deref(), Some("demo-ca"));
    let owner = &ca_secret.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("RaftCluster", "u-1")
    );
    let issued = ca
        .issue(
            &Leaf::Admin
                .request("demo", "ns1", Validity::from_now(DAY))
                .unwrap(),
        )
        .unwrap();
    let s = leaf_secret(&rc, Leaf::Admin, ca.cert_pem(), &issued, Some("r1"));
    assert_eq!(s.metadata.name.as_deref(), Some("demo-admin"));
    assert_eq!(s.type_.as_deref(), Some("kubernetes.io/tls"));
    let data = secret_text(&s);
    assert_eq!(data.keys().collect::<Vec<_>>(), [CA_CRT, TLS_CRT, TLS_KEY]);
    assert_eq!(
        s.metadata.annotations.unwrap()[RENEWED_FOR_ANNOTATION],
        "r1"
    );
    assert_eq!(mounted_secret_name("demo", &rc.spec.tls), "demo-tls");
    let byo = TlsSpec {
        secret_name: Some("mine".into()),
        ..Default::default()
    };
    assert_eq!(mounted_secret_name("demo", &byo), "mine");
}

#[test]
fn a_cluster_made_before_tls_stays_plaintext() {
    use crate::planner::Set;
    let with_tls = crate::resources::statefulset(&cluster(), Set::Voters, 3, "img");
    let mut plain_rc = cluster();
    plain_rc.spec.tls.enabled = false;
    let plaintext = crate::resources::statefulset(&plain_rc, Set::Voters, 3, "img");
    // A new cluster, and one whose pods already run TLS: TLS.
    assert!(tls_enabled(true, None));
    assert!(tls_enabled(true, Some(&with_tls)));
    // Pods made without TLS (before spec.tls existed): kept plaintext.
    assert!(!tls_enabled(true, Some(&plaintext)));
    assert!(!tls_enabled(false, None));
}
