use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::labels::{owned_meta, serving};
use super::{CLIENT_PORT, PEER_PORT, instance_selector, set_selector};
use crate::crd::RaftCluster;
use crate::planner::Set;

fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        app_protocol: Some("kubernetes.io/h2c".into()),
        ..Default::default()
    }
}

/// Headless `<name>-peer`: stable DNS for every pod, published before it is ready
/// (a node is Ready only once it is a caught-up member, so peers must find it first).
pub fn peer_service(rc: &RaftCluster) -> Service {
    let cluster = rc.metadata.name.clone().unwrap_or_default();
    Service {
        metadata: owned_meta(rc, super::peer_service_name(&cluster), "peer"),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(instance_selector(&cluster)),
            ports: Some(vec![port("client", CLIENT_PORT), port("peer", PEER_PORT)]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `<name>`: the client KV/Cluster service, on the voters that serve (a voter
/// about to be removed leaves it first).
pub fn client_service(rc: &RaftCluster) -> Service {
    let cluster = rc.metadata.name.clone().unwrap_or_default();
    Service {
        metadata: owned_meta(rc, cluster.clone(), "client"),
        spec: Some(ServiceSpec {
            selector: Some(serving(set_selector(&cluster, Set::Voters))),
            ports: Some(vec![port("client", CLIENT_PORT)]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `<name>-read`: reads spread over every ready member that serves, read replicas
/// and voters.
pub fn read_service(rc: &RaftCluster) -> Service {
    let cluster = rc.metadata.name.clone().unwrap_or_default();
    Service {
        metadata: owned_meta(rc, super::read_name(&cluster), "read"),
        spec: Some(ServiceSpec {
            selector: Some(serving(instance_selector(&cluster))),
            ports: Some(vec![port("client", CLIENT_PORT)]),
            ..Default::default()
        }),
        ..Default::default()
    }
}
