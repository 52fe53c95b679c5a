//! The owned objects carry what the nodes and the planner rely on.

use kube::core::ObjectMeta;

use super::*;
use crate::crd::{RaftCluster, RaftClusterSpec, RaftTimings, TracingSpec};
use crate::planner::Set;

const DEFAULT_IMAGE: &str = "raftkv/raft-node:default";

fn cluster() -> RaftCluster {
    let spec: RaftClusterSpec = serde_json::from_value(serde_json::json!({
        "replicas": 3,
        "image": "raftkv/raft-node:dev",
        "imagePullPolicy": "IfNotPresent",
    }))
    .unwrap();
    let mut rc = RaftCluster::new("demo", spec);
    rc.metadata = ObjectMeta {
        name: Some("demo".into()),
        namespace: Some("ns1".into()),
        uid: Some("u-1".into()),
        ..Default::default()
    };
    rc
}

#[test]
fn without_tls_the_pods_mount_no_secret_and_get_no_tls_variables() {
    let mut rc = cluster();
    rc.spec.tls.enabled = false;
    let sts = statefulset(&rc, Set::Voters, 3, DEFAULT_IMAGE);
    let pod = sts.spec.unwrap().template.spec.unwrap();
    assert!(pod.volumes.is_none());
    let c = &pod.containers[0];
    assert!(
        !c.env
            .iter()
            .flatten()
            .any(|e| e.name.starts_with("RAFT_TLS") || e.name == "RAFT_CLIENT_AUTH")
    );
    assert_eq!(c.volume_mounts.as_ref().unwrap().len(), 1);
    // The probes are the same HTTP ones.
    assert!(c.readiness_probe.as_ref().unwrap().http_get.is_some());
}

#[test]
fn voters_statefulset_is_parallel_on_delete_with_stable_dns_args() {
    let sts = statefulset(&cluster(), Set::Voters, 3, DEFAULT_IMAGE);
    let spec = sts.spec.unwrap();
    assert_eq!(sts.metadata.name.as_deref(), Some("demo"));
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.service_name.as_deref(), Some("demo-peer"));
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    assert_eq!(
        spec.update_strategy.unwrap().type_.as_deref(),
        Some("OnDelete")
    );
    let retention = spec.persistent_volume_claim_retention_policy.unwrap();
    assert_eq!(retention.when_deleted.as_deref(), Some("Retain"));
    assert_eq!(retention.when_scaled.as_deref(), Some("Delete"));
    let pvc = &spec.volume_claim_templates.unwrap()[0];
    assert_eq!(pvc.metadata.name.as_deref(), Some("data"));
    let pod = spec.template.spec.unwrap();
    let c = &pod.containers[0];
    let args = c.args.clone().unwrap().join(" ");
    assert!(args.contains("--advertise-client $(POD_NAME).demo-peer.ns1.svc.cluster.local:7000"));
    assert!(args.contains("--advertise-peer $(POD_NAME).demo-peer.ns1.svc.cluster.local:7001"));
    assert!(args.contains("--name $(POD_NAME)"));
    assert!(args.contains("--data-dir /var/lib/raftkv"));
    // Readiness: /readyz (caught up, leader known); liveness and startup:
    // /livez (the node's Raft core runs); plain HTTP on the metrics port.
    let http = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        let h = p
            .as_ref()
            .and_then(|p| p.http_get.clone())
            .expect("an HTTP probe");
        (h.path.unwrap_or_default(), h.port)
    };
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    assert_eq!(
        http(&c.readiness_probe),
        ("/readyz".into(), IntOrString::Int(9100))
    );
    assert_eq!(
        http(&c.liveness_probe),
        ("/livez".into(), IntOrString::Int(9100))
    );
    assert_eq!(
        http(&c.startup_probe),
        ("/livez".into(), IntOrString::Int(9100))
    );
    // TLS by default: the node Secret mounted read-only, the node pointed at it.
    let env: std::collections::BTreeMap<_, _> = c
        .env
        .clone()
        .unwrap()
        .into_iter()
        .filter_map(|e| Some((e.name, e.value?)))
        .collect();
    assert_eq!(env["RAFT_TLS_CERT"], "/etc/raftkv/tls/tls.crt");
    assert_eq!(env["RAFT_TLS_KEY"], "/etc/raftkv/tls/tls.key");
    assert_eq!(env["RAFT_TLS_CA"], "/etc/raftkv/tls/ca.crt");
    assert_eq!(env["RAFT_CLIENT_AUTH"], "required");
    // raftctl run in the pod (kubectl exec) uses the same files.
    assert_eq!(env["RAFTCTL_CACERT"], "/etc/raftkv/tls/ca.crt");
    assert_eq!(env["RAFTCTL_KEY"], "/etc/raftkv/tls/tls.key");
    let mount = c
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.name == "tls")
        .expect("the tls mount");
    assert_eq!(
        (mount.mount_path.as_str(), mount.read_only),
        ("/etc/raftkv/tls", Some(true))
    );
    let vol = &pod.volumes.as_ref().unwrap()[0];
    assert_eq!(
        vol.secret.as_ref().unwrap().secret_name.as_deref(),
        Some("demo-tls")
    );
    assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert!(
        pod.affinity.unwrap().pod_anti_affinity.is_some(),
        "voters spread by default"
    );
    // The role label is the operator's, never the template's.
    let labels = spec.template.metadata.unwrap().labels.unwrap();
    assert!(!labels.contains_key(crate::crd::ROLE_LABEL));
    assert_eq!(labels["app.kubernetes.io/component"], "voter");
    let owner = &sts.metadata.owner_references.unwrap()[0];
    assert_eq!(owner.kind, "RaftCluster");
    assert_eq!(owner.controller, Some(true));
}

#[test]
fn raft_timings_and_tracing_become_environment_variables() {
    let mut rc = cluster();
    rc.spec.raft = Some(RaftTimings {
        heartbeat_ms: Some(50),
        election_timeout_min_ms: Some(300),
        election_timeout_max_ms: None,
        snapshot_threshold: Some(1000),
    });
    rc.spec.tracing = Some(TracingSpec {
        endpoint: "http://otel:4317".into(),
        sampling_ratio: 0.25,
    });
    let sts = statefulset(&rc, Set::Read, 2, DEFAULT_IMAGE);
    let pod = sts.spec.unwrap().template.spec.unwrap();
    let env: Vec<(String, Option<String>)> = pod.containers[0]
        .env
        .clone()
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.value))
        .collect();
    let get = |k: &str| {
        env.iter()
            .find(|(n, _)| n == k)
            .and_then(|(_, v)| v.clone())
    };
    assert_eq!(get("RAFT_HEARTBEAT_MS").as_deref(), Some("50"));
    assert_eq!(get("RAFT_ELECTION_TIMEOUT_MIN_MS").as_deref(), Some("300"));
    assert_eq!(
        get("RAFT_ELECTION_TIMEOUT_MAX_MS"),
        None,
        "unset keeps node default"
    );
    assert_eq!(get("RAFT_SNAPSHOT_THRESHOLD").as_deref(), Some("1000"));
    assert_eq!(
        get("OTEL_EXPORTER_OTLP_ENDPOINT").as_deref(),
        Some("http://otel:4317")
    );
    assert_eq!(
        get("OTEL_TRACES_SAMPLER").as_deref(),
        Some("parentbased_traceidratio")
    );
    assert_eq!(get("OTEL_TRACES_SAMPLER_ARG").as_deref(), Some("0.25"));
    assert!(
        get("OTEL_RESOURCE_ATTRIBUTES")
            .unwrap()
            .contains("k8s.pod.name=$(POD_NAME)")
    );
    assert!(
        pod.affinity.is_none(),
        "read replicas are not spread by default"
    );
}

#[test]
fn services_and_pdb_select_the_right_pods() {
    let rc = cluster();
    let peer = peer_service(&rc).spec.unwrap();
    assert_eq!(peer.cluster_ip.as_deref(), Some("None"));
    assert_eq!(peer.publish_not_ready_addresses, Some(true));
    let peer_selector = peer.selector.unwrap();
    assert!(!peer_selector.contains_key("app.kubernetes.io/component"));
    // Peers must resolve a member that is leaving the client Services.
    assert!(!peer_selector.contains_key(crate::crd::SERVING_LABEL));
    let client = client_service(&rc);
    assert_eq!(client.metadata.name.as_deref(), Some("demo"));
    let client_selector = client.spec.unwrap().selector.unwrap();
    assert_eq!(client_selector["app.kubernetes.io/component"], "voter");
    assert_eq!(client_selector[crate::crd::SERVING_LABEL], "true");
    let read = read_service(&rc);
    assert_eq!(read.metadata.name.as_deref(), Some("demo-read"));
    assert_eq!(
        read.spec.unwrap().selector.unwrap()[crate::crd::SERVING_LABEL],
        "true"
    );
    // New pods serve from the start, without waiting for the operator.
    for set in [Set::Voters, Set::Read] {
        let sts = statefulset(&rc, set, 1, DEFAULT_IMAGE).spec.unwrap();
        assert_eq!(
            sts.template.metadata.unwrap().labels.unwrap()[crate::crd::SERVING_LABEL],
            "true"
        );
        // The selector is immutable and must not carry a label that changes.
        assert!(
            !sts.selector
                .match_labels
                .unwrap()
                .contains_key(crate::crd::SERVING_LABEL)
        );
    }
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let budget = crate::planner::disruption::Budget {
        allowed: 2,
        min_available: 3,
    };
    let voters = pod_disruption_budget(&rc, &budget);
    assert_eq!(voters.metadata.name.as_deref(), Some("demo"));
    let spec = voters.spec.unwrap();
    assert_eq!(spec.min_available, Some(IntOrString::Int(3)));
    assert_eq!(spec.max_unavailable, None, "one of the two, never both");
    assert_eq!(
        spec.selector.unwrap().match_labels.unwrap()["app.kubernetes.io/component"],
        "voter"
    );
    assert_eq!(
        spec.unhealthy_pod_eviction_policy.as_deref(),
        Some("AlwaysAllow")
    );
    let read = read_pod_disruption_budget(&rc);
    assert_eq!(read.metadata.name.as_deref(), Some("demo-read"));
    let spec = read.spec.unwrap();
    assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
    assert_eq!(spec.min_available, None);
    assert_eq!(
        spec.selector.unwrap().match_labels.unwrap()["app.kubernetes.io/component"],
        "read-replica"
    );
}

#[test]
fn the_voter_selector_in_status_matches_the_pod_labels() {
    let sts = statefulset(&cluster(), Set::Voters, 3, DEFAULT_IMAGE);
    let labels = sts.spec.unwrap().template.metadata.unwrap().labels.unwrap();
    for pair in crate::crd::voter_selector("demo").split(',') {
        let (k, v) = pair.split_once('=').unwrap();
        assert_eq!(labels.get(k).map(String::as_str), Some(v), "{k}");
    }
}

#[test]
fn restarted_at_annotation_changes_the_pod_template() {
    let mut rc = cluster();
    let before = statefulset(&rc, Set::Voters, 3, DEFAULT_IMAGE)
        .spec
        .unwrap()
        .template;
    assert!(before.metadata.unwrap().annotations.is_none());
    rc.metadata.annotations = Some(
        [(
            crate::crd::RESTARTED_AT_ANNOTATION.to_string(),
            "1".to_string(),
        )]
        .into(),
    );
    let after = statefulset(&rc, Set::Read, 3, DEFAULT_IMAGE)
        .spec
        .unwrap()
        .template;
    let annotations = after.metadata.unwrap().annotations.unwrap();
    assert_eq!(annotations[crate::crd::RESTARTED_AT_ANNOTATION], "1");
}

#[test]
fn the_image_defaults_to_the_operators_node_image() {
    let c = |rc: &RaftCluster| {
        statefulset(rc, Set::Voters, 3, DEFAULT_IMAGE)
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .containers[0]
            .image
            .clone()
    };
    let mut rc = cluster();
    assert_eq!(c(&rc).as_deref(), Some("raftkv/raft-node:dev"));
    rc.spec.image = None;
    assert_eq!(c(&rc).as_deref(), Some(DEFAULT_IMAGE));
}

/// Every name and label value a cluster name ends up in, for the largest ordinals
/// the schema allows and the longest controller-revision hash: the schema's
/// `NAME_MAX_LEN` is exactly the bound where all of them fit in 63 characters.
#[test]
fn every_derived_name_fits_at_the_longest_cluster_name() {
    use crate::crd::limits::{
        DNS_LABEL_MAX, NAME_MAX_LEN, READ_REPLICAS_MAX, REPLICAS_MAX, REVISION_HASH_MAX_LEN,
    };
    use crate::planner::pod_name;

    /// (what, value) of every DNS label and label value derived from the name.
    fn derived(name: &str) -> Vec<(String, String)> {
        let mut rc = cluster();
        rc.metadata.name = Some(name.into());
        let hash = "x".repeat(REVISION_HASH_MAX_LEN);
        let mut out = vec![];
        for svc in [peer_service(&rc), client_service(&rc), read_service(&rc)] {
            out.push(("Service".into(), svc.metadata.name.unwrap()));
        }
        out.push((
            "PDB".into(),
            pod_disruption_budget(&rc, &Default::default())
                .metadata
                .name
                .unwrap(),
        ));
        for secret in [
            crate::certificates::ca_secret_name(name),
            crate::certificates::node_secret_name(name),
            crate::certificates::client_secret_name(name),
            crate::certificates::admin_secret_name(name),
        ] {
            out.push(("Secret".into(), secret));
        }
        out.push((
            "read PDB".into(),
            read_pod_disruption_budget(&rc).metadata.name.unwrap(),
        ));
        for (set, max) in [(Set::Voters, REPLICAS_MAX), (Set::Read, READ_REPLICAS_MAX)] {
            let sts = statefulset(&rc, set, max as u32, DEFAULT_IMAGE);
            let sts_name = sts.metadata.name.clone().unwrap();
            // The StatefulSet controller labels each pod with its revision and name;
            // a pod's name is also its hostname (a DNS label).
            out.push((
                "controller-revision-hash".into(),
                format!("{sts_name}-{hash}"),
            ));
            let pod = pod_name(name, set, max as u32 - 1);
            out.push(("pod name / hostname".into(), pod));
            for (k, v) in sts.spec.unwrap().template.metadata.unwrap().labels.unwrap() {
                out.push((format!("pod label {k}"), v));
            }
        }
        out
    }

    let longest = "a".repeat(NAME_MAX_LEN);
    let names = derived(&longest);
    for (what, value) in &names {
        assert!(
            value.len() <= DNS_LABEL_MAX,
            "{what} {value} has {} characters",
            value.len()
        );
    }
    assert!(
        names.iter().any(|(_, v)| v.len() == DNS_LABEL_MAX),
        "NAME_MAX_LEN is not tight: {names:?}"
    );
    let too_long = derived(&"a".repeat(NAME_MAX_LEN + 1));
    assert!(too_long.iter().any(|(_, v)| v.len() > DNS_LABEL_MAX));
}

#[test]
fn voters_spread_over_zones_and_nodes_by_default_and_users_override_it() {
    let pod = |rc: &RaftCluster, set| {
        statefulset(rc, set, 3, DEFAULT_IMAGE)
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
    };
    let rc = cluster();
    let spread = pod(&rc, Set::Voters).topology_spread_constraints.unwrap();
    let keys: Vec<&str> = spread.iter().map(|c| c.topology_key.as_str()).collect();
    assert_eq!(
        keys,
        ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    );
    for c in &spread {
        assert_eq!(c.max_skew, 1);
        assert_eq!(
            c.when_unsatisfiable, "ScheduleAnyway",
            "never unschedulable"
        );
        let selector = c.label_selector.clone().unwrap().match_labels.unwrap();
        assert_eq!(selector["app.kubernetes.io/instance"], "demo");
        assert_eq!(selector["app.kubernetes.io/component"], "voter");
    }
    assert!(pod(&rc, Set::Read).topology_spread_constraints.is_none());

    let mut custom = cluster();
    custom.spec.topology_spread_constraints = Some(vec![
        serde_json::from_value(serde_json::json!({
            "maxSkew": 2, "topologyKey": "rack", "whenUnsatisfiable": "DoNotSchedule",
        }))
        .unwrap(),
    ]);
    for set in [Set::Voters, Set::Read] {
        let c = pod(&custom, set).topology_spread_constraints.unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].topology_key, "rack");
    }
    let mut none = cluster();
    none.spec.topology_spread_constraints = Some(vec![]);
    assert!(
        pod(&none, Set::Voters)
            .topology_spread_constraints
            .is_none(),
        "[] turns the default off"
    );
}

#[test]
fn pod_settings_from_the_spec_reach_the_pod_template() {
    let spec: RaftClusterSpec = serde_json::from_value(serde_json::json!({
        "replicas": 3,
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
        "nodeSelector": {"disk": "ssd"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "raft", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["raft"]}]}]}}},
        "priorityClassName": "raftkv-critical",
        "imagePullSecrets": [{"name": "registry"}],
        "serviceAccountName": "raftkv-node",
        "podLabels": {"team": "storage", "cost-center": "42"},
        "podAnnotations": {"prometheus.io/scrape": "true"},
    }))
    .unwrap();
    let mut rc = cluster();
    rc.spec = spec;
    rc.metadata.annotations = Some(
        [(
            crate::crd::RESTARTED_AT_ANNOTATION.to_string(),
            "t1".to_string(),
        )]
        .into(),
    );
    for set in [Set::Voters, Set::Read] {
        let template = statefulset(&rc, set, 3, DEFAULT_IMAGE)
            .spec
            .unwrap()
            .template;
        let pod = template.spec.unwrap();
        let c = &pod.containers[0];
        let resources = c.resources.clone().unwrap();
        assert_eq!(resources.requests.unwrap()["cpu"].0, "250m");
        assert_eq!(resources.limits.unwrap()["memory"].0, "512Mi");
        assert_eq!(pod.node_selector.unwrap()["disk"], "ssd");
        assert_eq!(
            pod.tolerations.unwrap()[0].key.as_deref(),
            Some("dedicated")
        );
        let affinity = pod.affinity.unwrap();
        assert!(affinity.node_affinity.is_some());
        assert!(
            affinity.pod_anti_affinity.is_none(),
            "a user affinity replaces the default"
        );
        assert_eq!(pod.priority_class_name.as_deref(), Some("raftkv-critical"));
        assert_eq!(pod.image_pull_secrets.unwrap()[0].name, "registry");
        assert_eq!(pod.service_account_name.as_deref(), Some("raftkv-node"));
        let meta = template.metadata.unwrap();
        let labels = meta.labels.unwrap();
        assert_eq!(labels["team"], "storage");
        assert_eq!(labels["cost-center"], "42");
        assert_eq!(labels["app.kubernetes.io/instance"], "demo");
        let annotations = meta.annotations.unwrap();
        assert_eq!(annotations["prometheus.io/scrape"], "true");
        assert_eq!(annotations[crate::crd::RESTARTED_AT_ANNOTATION], "t1");
    }
}

#[test]
fn user_pod_labels_never_replace_the_selector_labels() {
    let mut rc = cluster();
    // The CRD refuses these keys; the rendering holds even if one slipped through.
    rc.spec.pod_labels = Some(
        [(
            "app.kubernetes.io/component".to_string(),
            "mine".to_string(),
        )]
        .into(),
    );
    let spec = statefulset(&rc, Set::Voters, 3, DEFAULT_IMAGE)
        .spec
        .unwrap();
    let labels = spec.template.metadata.unwrap().labels.unwrap();
    assert_eq!(labels["app.kubernetes.io/component"], "voter");
    for (k, v) in spec.selector.match_labels.unwrap() {
        assert_eq!(labels[&k], v, "the selector still matches the pods ({k})");
    }
}

#[test]
fn node_pods_meet_the_restricted_pod_security_profile() {
    for set in [Set::Voters, Set::Read] {
        let pod = statefulset(&cluster(), set, 3, DEFAULT_IMAGE)
            .spec
            .unwrap()
            .template
            .spec
            .unwrap();
        let psc = pod.security_context.unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(
            psc.seccomp_profile.map(|p| p.type_).as_deref(),
            Some("RuntimeDefault")
        );
        for c in pod.containers {
            let sc = c.security_context.unwrap();
            assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
            assert_eq!(
                sc.capabilities.and_then(|c| c.drop),
                Some(vec!["ALL".to_string()])
            );
            assert_eq!(sc.read_only_root_filesystem, Some(true));
        }
    }
}

#[test]
fn only_the_clusters_own_pods_reach_the_peer_port() {
    let np = network_policy(&cluster(), Some("raftkv-system"));
    assert_eq!(np.metadata.name.as_deref(), Some("demo-peer"));
    let spec = np.spec.unwrap();
    let members = spec.pod_selector.unwrap().match_labels.unwrap();
    assert_eq!(members["app.kubernetes.io/instance"], "demo");
    let rules = spec.ingress.unwrap();
    let port_of = |r: &k8s_openapi::api::networking::v1::NetworkPolicyIngressRule| {
        r.ports
            .iter()
            .flatten()
            .filter_map(|p| match &p.port {
                Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n)) => Some(*n),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    // The peer port: one rule, from the cluster's pods only.
    let peer: Vec<_> = rules
        .iter()
        .filter(|r| port_of(r).contains(&PEER_PORT))
        .collect();
    assert_eq!(peer.len(), 1);
    let from = peer[0].from.as_ref().expect("a source restriction");
    assert_eq!(
        from[0].pod_selector.as_ref().unwrap().match_labels.as_ref(),
        Some(&members)
    );
    assert!(from[0].namespace_selector.is_none(), "same namespace only");
    // Metrics from anywhere by default.
    let metrics: Vec<_> = rules
        .iter()
        .filter(|r| port_of(r).contains(&METRICS_PORT))
        .collect();
    assert_eq!(metrics.len(), 1);
    assert!(metrics[0].from.is_none(), "{metrics:?}");
}

/// The client port's sources: one rule naming exactly that port.
fn client_rule(
    np: &k8s_openapi::api::networking::v1::NetworkPolicy,
) -> k8s_openapi::api::networking::v1::NetworkPolicyIngressRule {
    let rules = np.spec.clone().unwrap().ingress.unwrap();
    let client: Vec<_> = rules
        .into_iter()
        .filter(|r| {
            r.ports.iter().flatten().any(|p| {
                p.port
                    == Some(
                        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(CLIENT_PORT),
                    )
            })
        })
        .collect();
    assert_eq!(client.len(), 1, "{client:?}");
    assert_eq!(
        client[0].ports.as_ref().unwrap().len(),
        1,
        "the client port alone"
    );
    client[0].clone()
}

fn names_namespace(p: &k8s_openapi::api::networking::v1::NetworkPolicyPeer, ns: &str) -> bool {
    p.pod_selector.is_none()
        && p.namespace_selector
            .as_ref()
            .and_then(|s| s.match_labels.as_ref())
            .and_then(|l| l.get("kubernetes.io/metadata.name"))
            .is_some_and(|n| n == ns)
}

#[test]
fn the_client_port_takes_the_clusters_namespace_and_the_operators_by_default() {
    let from = client_rule(&network_policy(&cluster(), Some("raftkv-system")))
        .from
        .expect("restricted");
    assert_eq!(from.len(), 2, "{from:?}");
    // Every pod of the policy's own namespace: an empty pod selector, no namespace selector.
    assert_eq!(from[0].pod_selector, Some(Default::default()));
    assert!(from[0].namespace_selector.is_none());
    assert!(names_namespace(&from[1], "raftkv-system"), "{from:?}");
    // An operator outside the cluster cannot be named: the port stays open.
    assert!(
        client_rule(&network_policy(&cluster(), None))
            .from
            .is_none()
    );
}

#[test]
fn client_from_and_metrics_from_replace_the_defaults_and_keep_the_operator() {
    use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    let team = NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some([("team".to_string(), "payments".to_string())].into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut rc = cluster();
    rc.spec.network_policy = Some(crate::crd::NetworkPolicySpec {
        client_from: Some(vec![team.clone()]),
        metrics_from: Some(vec![team.clone()]),
    });
    let np = network_policy(&rc, Some("raftkv-system"));
    let from = client_rule(&np).from.expect("restricted");
    assert_eq!(from[0], team);
    assert!(names_namespace(&from[1], "raftkv-system"));
    assert_eq!(from.len(), 2);
    let metrics = np
        .spec
        .unwrap()
        .ingress
        .unwrap()
        .into_iter()
        .find(|r| {
            r.ports.iter().flatten().any(|p| {
                p.port
                    == Some(
                        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(
                            METRICS_PORT,
                        ),
                    )
            })
        })
        .unwrap();
    assert_eq!(metrics.from, Some(vec![team]));
}
