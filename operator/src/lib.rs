//! raft-operator: reconciles `RaftCluster` resources into StatefulSets and changes
//! Raft membership safely. Decisions live in the pure [`planner`]; the controller
//! only observes, executes one step and writes status.

pub mod app;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod execute;
#[cfg(test)]
mod fixtures;
pub mod leader;
pub mod metrics;
pub mod node_client;
pub mod observe;
pub mod planner;
pub mod resources;
pub mod server;
pub mod telemetry;

/// Every failure of the operator, counted by [`Error::metric_label`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API error: {0}")]
    Kube(#[source] kube::Error),
    #[error("node RPC to {target} failed: {status}")]
    NodeRpc {
        target: String,
        #[source]
        status: Box<tonic::Status>,
    },
    #[error("cannot connect to node {target}: {message}")]
    NodeConnect { target: String, message: String },
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    #[error("unsafe membership change refused: {0}")]
    QuorumUnsafe(String),
    #[error("serialization error: {0}")]
    Serialization(#[source] serde_json::Error),
    #[error("object has no {0}")]
    MissingField(&'static str),
    #[error("leader election: {0}")]
    LeaderElection(String),
    #[error(
        "the RaftCluster CRD (raftclusters.raftkv.dev) is not installed: \
         run `kubectl apply -f crds/raftcluster.yaml` (or `raft-operator crd | kubectl apply -f -`, \
         or install the Helm chart)"
    )]
    CrdNotInstalled,
    #[error("startup: {0}")]
    Startup(String),
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error::Kube(e)
    }
}

/// The operator's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A short, bounded label for the `errors` metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::NodeRpc { .. } => "node_rpc",
            Error::NodeConnect { .. } => "node_connect",
            Error::InvalidSpec(_) => "invalid_spec",
            Error::QuorumUnsafe(_) => "quorum_unsafe",
            Error::Serialization(_) => "serialization",
            Error::MissingField(_) => "missing_field",
            Error::LeaderElection(_) => "leader_election",
            Error::CrdNotInstalled => "crd_not_installed",
            Error::Startup(_) => "startup",
        }
    }
}
