use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodAffinityTerm,
    PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
    SecretVolumeSource, SecurityContext, TopologySpreadConstraint, Volume, VolumeMount,
    VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::labels::{component, labels, owned_meta, serving, set_selector};
use super::{CLIENT_PORT, DATA_DIR, DATA_VOLUME, METRICS_PORT, PEER_PORT, peer_service_name};
use crate::crd::{RESTARTED_AT_ANNOTATION, RaftCluster, RaftClusterSpec};
use crate::planner::Set;

/// Stable DNS name of a pod behind the peer Service.
pub fn pod_dns(pod: &str, cluster: &str, namespace: &str) -> String {
    format!(
        "{pod}.{}.{namespace}.svc.cluster.local",
        peer_service_name(cluster)
    )
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Where the node's certificate Secret is mounted.
pub const TLS_DIR: &str = "/etc/raftkv/tls";
/// Name of the pod volume holding it.
pub const TLS_VOLUME: &str = "tls";

/// `RAFT_*` and `OTEL_*` variables from the spec (unset fields keep node defaults).
fn node_env(spec: &RaftClusterSpec, cluster: &str) -> Vec<EnvVar> {
    let mut out = vec![
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
    ];
    if spec.tls.enabled {
        // The files of the mounted Secret; the node rereads them when the
        // kubelet rewrites the volume after a renewal.
        use crate::certificates::{CA_CRT, TLS_CRT, TLS_KEY};
        out.push(env("RAFT_TLS_CERT", format!("{TLS_DIR}/{TLS_CRT}")));
        out.push(env("RAFT_TLS_KEY", format!("{TLS_DIR}/{TLS_KEY}")));
        out.push(env("RAFT_TLS_CA", format!("{TLS_DIR}/{CA_CRT}")));
        out.push(env("RAFT_CLIENT_AUTH", spec.tls.client_auth.node_value()));
        // `kubectl exec <pod> -- raftctl --endpoints localhost:7000 ...` works as
        // it did without TLS: raftctl presents the node's own certificate (a peer
        // may make every client-plane call; it lists `localhost` and the Services).
        out.push(env("RAFTCTL_CACERT", format!("{TLS_DIR}/{CA_CRT}")));
        out.push(env("RAFTCTL_CERT", format!("{TLS_DIR}/{TLS_CRT}")));
        out.push(env("RAFTCTL_KEY", format!("{TLS_DIR}/{TLS_KEY}")));
    }
    if let Some(r) = &spec.raft {
        let vars = [
            ("RAFT_HEARTBEAT_MS", r.heartbeat_ms.map(u64::from)),
            (
                "RAFT_ELECTION_TIMEOUT_MIN_MS",
                r.election_timeout_min_ms.map(u64::from),
            ),
            (
                "RAFT_ELECTION_TIMEOUT_MAX_MS",
                r.election_timeout_max_ms.map(u64::from),
            ),
            ("RAFT_SNAPSHOT_THRESHOLD", r.snapshot_threshold),
        ];
        for (name, value) in vars {
            if let Some(v) = value {
                out.push(env(name, v.to_string()));
            }
        }
    }
    if let Some(t) = &spec.tracing {
        out.push(env("OTEL_EXPORTER_OTLP_ENDPOINT", t.endpoint.clone()));
        out.push(env("OTEL_SERVICE_NAME", "raft-node"));
        out.push(env(
            "OTEL_RESOURCE_ATTRIBUTES",
            format!(
                "k8s.pod.name=$(POD_NAME),k8s.namespace.name=$(POD_NAMESPACE),service.instance.id=$(POD_NAME),raftkv.cluster={cluster}"
            ),
        ));
        out.push(env("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"));
        out.push(env("OTEL_TRACES_SAMPLER_ARG", t.sampling_ratio.to_string()));
    }
    out
}

/// raft-node's probe paths on its plaintext metrics listener: `/readyz` is the
/// default gRPC health service (a caught-up member with a leader), `/livez`
/// the `liveness` service (the Raft core runs) (`node/src/health.rs`). HTTP,
/// TLS or not: kubelet's gRPC probes cannot present a client certificate.
pub const READY_PATH: &str = "/readyz";
pub const LIVE_PATH: &str = "/livez";

fn http_probe(path: &str, period: i32, timeout: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(METRICS_PORT),
            scheme: Some("HTTP".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(timeout),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

fn default_anti_affinity(selector: &BTreeMap<String, String>) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(LabelSelector {
                            match_labels: Some(selector.clone()),
                            ..Default::default()
                        }),
                        topology_key: "kubernetes.io/hostname".into(),
                        ..Default::default()
                    },
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Topology keys the voters spread over by default, widest first.
pub const ZONE_TOPOLOGY_KEY: &str = "topology.kubernetes.io/zone";
pub const HOSTNAME_TOPOLOGY_KEY: &str = "kubernetes.io/hostname";

/// Voters spread over zones, then nodes: a zone or node holding a quorum of voters
/// takes the cluster down with it. `ScheduleAnyway`: a cluster without zones (or with
/// fewer nodes than voters) still schedules every voter.
fn default_spread(selector: &BTreeMap<String, String>) -> Vec<TopologySpreadConstraint> {
    [ZONE_TOPOLOGY_KEY, HOSTNAME_TOPOLOGY_KEY]
        .into_iter()
        .map(|key| TopologySpreadConstraint {
            max_skew: 1,
            topology_key: key.into(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            label_selector: Some(LabelSelector {
                match_labels: Some(selector.clone()),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect()
}

/// The pods' labels: the user's `podLabels`, then the operator's (which win; the CRD
/// refuses user keys with the operator's prefixes anyway).
fn pod_labels(spec: &RaftClusterSpec, cluster: &str, set: Set) -> BTreeMap<String, String> {
    let mut out = spec.pod_labels.clone().unwrap_or_default();
    out.extend(labels(cluster, component(set)));
    out
}

/// The pods' annotations: the user's `podAnnotations`, and `raftkv.dev/restartedAt`
/// from the RaftCluster, if set.
fn pod_annotations(rc: &RaftCluster) -> Option<BTreeMap<String, String>> {
    let mut out = rc.spec.pod_annotations.clone().unwrap_or_default();
    if let Some(value) = rc
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(RESTARTED_AT_ANNOTATION))
    {
        out.insert(RESTARTED_AT_ANNOTATION.to_string(), value.clone());
    }
    (!out.is_empty()).then_some(out)
}

fn volume_mounts(spec: &RaftClusterSpec) -> Vec<VolumeMount> {
    let mut out = vec![VolumeMount {
        name: DATA_VOLUME.into(),
        mount_path: DATA_DIR.into(),
        ..Default::default()
    }];
    if spec.tls.enabled {
        out.push(VolumeMount {
            name: TLS_VOLUME.into(),
            mount_path: TLS_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    out
}

/// The node certificate Secret as a volume. Every pod of the StatefulSet
/// mounts the same Secret (a pod template cannot name a per-pod one), so the
/// certificate lists every pod by wildcard (`certificates::node_dns_names`).
/// Not `subPath`: the kubelet updates a Secret volume in place only without it.
fn tls_volume(cluster: &str, spec: &RaftClusterSpec) -> Option<Volume> {
    spec.tls.enabled.then(|| Volume {
        name: TLS_VOLUME.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(crate::certificates::mounted_secret_name(cluster, &spec.tls)),
            // Readable by the node's group (fsGroup 65532) only.
            default_mode: Some(0o440),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The voters' (`<name>`) or read replicas' (`<name>-read`) StatefulSet.
/// `default_image`: the node image when `spec.image` is unset (the operator's own).
pub fn statefulset(rc: &RaftCluster, set: Set, replicas: u32, default_image: &str) -> StatefulSet {
    statefulset_with_claim_size(rc, set, replicas, default_image, None)
}

/// [`statefulset`] whose volumeClaimTemplate requests `claim_size` instead of
/// `spec.storage.size`: the size an existing StatefulSet was created with, which the
/// API server refuses to change (`spec.storage.size` grows through the PVCs instead).
pub fn statefulset_with_claim_size(
    rc: &RaftCluster,
    set: Set,
    replicas: u32,
    default_image: &str,
    claim_size: Option<&str>,
) -> StatefulSet {
    let cluster = rc.metadata.name.clone().unwrap_or_default();
    let namespace = rc.metadata.namespace.clone().unwrap_or_default();
    let spec = &rc.spec;
    let name = match set {
        Set::Voters => cluster.clone(),
        Set::Read => super::read_name(&cluster),
    };
    let selector = set_selector(&cluster, set);
    let advertise = format!(
        "$(POD_NAME).{}.{namespace}.svc.cluster.local",
        peer_service_name(&cluster)
    );
    let args = vec![
        "--data-dir".to_string(),
        DATA_DIR.into(),
        "--client-addr".into(),
        format!("0.0.0.0:{CLIENT_PORT}"),
        "--peer-addr".into(),
        format!("0.0.0.0:{PEER_PORT}"),
        "--advertise-client".into(),
        format!("{advertise}:{CLIENT_PORT}"),
        "--advertise-peer".into(),
        format!("{advertise}:{PEER_PORT}"),
        "--name".into(),
        "$(POD_NAME)".into(),
        "--metrics-addr".into(),
        format!("0.0.0.0:{METRICS_PORT}"),
    ];
    let port = |name: &str, port: i32| ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    let container = Container {
        name: "raft-node".into(),
        image: Some(spec.image_or(default_image).to_string()),
        image_pull_policy: spec.image_pull_policy.map(|p| p.as_str().to_string()),
        command: Some(vec!["raft-node".into()]),
        args: Some(args),
        env: Some(node_env(spec, &cluster)),
        ports: Some(vec![
            port("client", CLIENT_PORT),
            port("peer", PEER_PORT),
            port("metrics", METRICS_PORT),
        ]),
        readiness_probe: Some(http_probe(READY_PATH, 5, 2, 3)),
        // `/livez` answers 200 while the node's Raft core runs (a node that is
        // only behind or without a leader is not restarted; a node whose core
        // stopped on a fatal error exits by itself, this catches a hung one).
        liveness_probe: Some(http_probe(LIVE_PATH, 10, 3, 6)),
        // The node serves only after recovering its log from disk: liveness is
        // checked once this has passed (up to 10 minutes of recovery).
        startup_probe: Some(http_probe(LIVE_PATH, 5, 3, 120)),
        resources: spec.resources.clone(),
        // A node that exits (e.g. refusing its configuration) leaves its last log lines
        // in `lastState.terminated.message`, which the operator reports in status.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        volume_mounts: Some(volume_mounts(spec)),
        // The Pod Security "restricted" profile: the node needs no privilege and
        // writes only to its data volume.
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    let affinity = spec.affinity.clone().or_else(|| match set {
        Set::Voters => Some(default_anti_affinity(&selector)),
        Set::Read => None,
    });
    let spread = match (&spec.topology_spread_constraints, set) {
        (Some(user), _) => Some(user.clone()).filter(|c| !c.is_empty()),
        (None, Set::Voters) => Some(default_spread(&selector)),
        (None, Set::Read) => None,
    };
    let mut storage_request = BTreeMap::new();
    let size = claim_size.map_or_else(|| spec.storage.size.clone(), |q| Quantity(q.into()));
    storage_request.insert("storage".to_string(), size);
    let retention = spec.pvc_retention();
    StatefulSet {
        metadata: owned_meta(rc, name, component(set)),
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas as i32),
            service_name: Some(peer_service_name(&cluster)),
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                rolling_update: None,
            }),
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some(retention.when_deleted.as_str().into()),
                    when_scaled: Some(retention.when_scaled.as_str().into()),
                },
            ),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    // A new pod serves at once; the operator sets `false` only before
                    // removing its member (planner `drain`).
                    labels: Some(serving(pod_labels(spec, &cluster, set))),
                    annotations: pod_annotations(rc),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: tls_volume(&cluster, spec).map(|v| vec![v]),
                    affinity,
                    topology_spread_constraints: spread,
                    tolerations: spec.tolerations.clone(),
                    node_selector: spec.node_selector.clone(),
                    priority_class_name: spec.priority_class_name.clone(),
                    image_pull_secrets: spec.image_pull_secrets.clone(),
                    service_account_name: spec.service_account_name.clone(),
                    termination_grace_period_seconds: Some(30),
                    // The images' nonroot user; the volume is group-owned by it.
                    security_context: Some(PodSecurityContext {
                        fs_group: Some(65532),
                        run_as_user: Some(65532),
                        run_as_group: Some(65532),
                        run_as_non_root: Some(true),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            },
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(DATA_VOLUME.into()),
                    labels: Some(labels(&cluster, component(set))),
                    ..Default::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    storage_class_name: spec.storage.storage_class_name.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(storage_request),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}
