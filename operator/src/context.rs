//! What every reconcile shares ([`Context`]) and how it reaches pods
//! ([`NodeAddressing`]): its own module, so the controller and the observe and
//! execute halves of a reconcile all import it and none imports another back.

use std::sync::Arc;

use kube::Client;

use crate::events::EventRecorder;
use crate::metrics::Metrics;

/// How the operator reaches a pod's gRPC listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum NodeAddressing {
    /// `<pod>.<name>-peer.<ns>.svc.cluster.local` (in-cluster).
    PodDns,
    /// The pod IP (out-of-cluster runs on a host that routes to pods).
    PodIp,
}

/// Shared state of every reconcile.
pub struct Context {
    pub client: Client,
    pub recorder: EventRecorder,
    pub metrics: Arc<Metrics>,
    pub node_addressing: NodeAddressing,
    /// raft-node image of RaftClusters without `spec.image`.
    pub default_node_image: String,
    /// The operator's own admin certificates, per cluster, in memory.
    pub operator_credentials: crate::certificates::credentials::OperatorCredentials,
    /// The namespace the operator runs in (`POD_NAMESPACE`), which each
    /// cluster's NetworkPolicy lets reach the client port; `None` outside a
    /// cluster.
    pub operator_namespace: Option<String>,
}
