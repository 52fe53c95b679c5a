//! `<name>-peer` NetworkPolicy: the peer port (Raft messages: AppendEntries,
//! votes, snapshots) takes connections only from the cluster's own pods. The
//! client and metrics ports stay open to the namespace's and other clients; TLS
//! and the admin role guard those (docs/security.md). On a network plugin that
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

pub fn network_policy(rc: &RaftCluster) -> NetworkPolicy {
    let cluster = rc.metadata.name.clone().unwrap_or_default();
    let members = LabelSelector {
        match_labels: Some(instance_selector(&cluster)),
        ..Default::default()
    };
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
                // No `from`: any source.
                NetworkPolicyIngressRule {
                    from: None,
                    ports: Some(vec![port(CLIENT_PORT), port(METRICS_PORT)]),
                },
            ]),
            ..Default::default()
        }),
    }
}
