//! `<name>-peer` NetworkPolicy: the peer port (Raft messages: AppendEntries,
//! votes, snapshots) takes connections only from the cluster's own pods; the
//! client port from `spec.networkPolicy.clientFrom` (default: the cluster's
//! namespace) and the operator's namespace; the metrics port from
//! `spec.networkPolicy.metricsFrom` (default: anywhere). TLS and the admin role
//! guard the client port as well (docs/security.md). On a network plugin that
//! does not enforce NetworkPolicies this changes nothing.

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::labels::owned_meta;
use super::{CLIENT_PORT, METRICS_PORT, PEER_PORT, instance_selector, peer_service_name};
use crate::crd::RaftCluster;

fn port(p: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(p)),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// Sources allowed on the client port: `spec.networkPolicy.clientFrom`, by
/// default the cluster's own namespace; always the operator's namespace when it
/// is known (it calls every member there), else (an operator outside the
/// cluster) any source, as a policy cannot name where the operator is.
fn client_sources(
    rc: &RaftCluster,
    operator_namespace: Option<&str>,
) -> Option<Vec<NetworkPolicyPeer>> {
    let operator_namespace = operator_namespace?;
    let mut from = match rc
        .spec
        .network_policy
        .as_ref()
        .and_then(|n| n.client_from.clone())
    {
        Some(peers) => peers,
        // An empty pod selector without a namespace selector: every pod of the
        // policy's own namespace.
        None => vec![NetworkPolicyPeer {
            pod_selector: Some(LabelSelector::default()),
            ..Default::default()
        }],
    };
    from.push(NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(
                [(
                    NAMESPACE_NAME_LABEL.to_string(),
                    operator_namespace.to_string(),
                )]
                .into(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    });
    Some(from)
}

/// The label the API server puts on every namespace, naming it.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

pub fn network_policy(rc: &RaftCluster, operator_namespace: Option<&str>) -> NetworkPolicy {
    let cluster = rc.metadata.name.clone().unwrap_or_default();
    let members = LabelSelector {
        match_labels: Some(instance_selector(&cluster)),
        ..Default::default()
    };
    // `None`: any source (Prometheus may run anywhere).
    let metrics_from = rc
        .spec
        .network_policy
        .as_ref()
        .and_then(|n| n.metrics_from.clone());
    NetworkPolicy {
        metadata: owned_meta(rc, peer_service_name(&cluster), "peer"),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(members.clone()),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    from: Some(vec![NetworkPolicyPeer {
                        pod_selector: Some(members),
                        ..Default::default()
                    }]),
                    ports: Some(vec![port(PEER_PORT)]),
                },
                NetworkPolicyIngressRule {
                    from: client_sources(rc, operator_namespace),
                    ports: Some(vec![port(CLIENT_PORT)]),
                },
                NetworkPolicyIngressRule {
                    from: metrics_from,
                    ports: Some(vec![port(METRICS_PORT)]),
                },
            ]),
            ..Default::default()
        }),
    }
}
