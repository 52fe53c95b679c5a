//! Builders of the objects a RaftCluster owns. Pure: spec in, object out.

mod labels;
mod network_policy;
mod pdb;
mod services;
mod statefulset;

pub use labels::*;
pub use network_policy::network_policy;
pub use pdb::{pod_disruption_budget, read_pod_disruption_budget};
pub use services::{client_service, peer_service, read_service};
pub use statefulset::{TLS_DIR, pod_dns, statefulset, statefulset_with_claim_size};

/// Field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "raft-operator";

/// Port of the client KV and Cluster services (and gRPC health).
pub const CLIENT_PORT: i32 = 7000;
/// Port of the internal Raft peer service.
pub const PEER_PORT: i32 = 7001;
/// Port of raft-node's Prometheus metrics.
pub const METRICS_PORT: i32 = 9100;
/// Mount point of the `data` volume.
pub const DATA_DIR: &str = "/var/lib/raftkv";
/// Name of the volumeClaimTemplate; PVCs are `data-<pod>`.
pub const DATA_VOLUME: &str = "data";

/// Names of the owned objects.
pub fn peer_service_name(cluster: &str) -> String {
    format!("{cluster}-peer")
}
pub fn read_name(cluster: &str) -> String {
    format!("{cluster}-read")
}
pub fn pvc_name(pod: &str) -> String {
    format!("{DATA_VOLUME}-{pod}")
}

#[cfg(test)]
mod tests;
