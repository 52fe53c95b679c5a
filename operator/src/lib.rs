//! raft-operator: reconciles `RaftCluster` resources into StatefulSets and changes
//! Raft membership safely. Decisions live in the pure [`planner`]; the controller
//! only observes, executes one step and writes status.

pub mod app;
pub mod backup;
pub mod certificates;
pub mod cli;
pub mod context;
pub mod controller;
pub mod crd;
pub mod events;
pub mod execute;
pub mod expand;
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
    #[error("Kubernetes API error: {}", kube_text(.0))]
    Kube(#[source] kube::Error),
    #[error("node RPC to {target} failed: {}", rpc_text(status))]
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
    #[error("restore from a backup: {0}")]
    Restore(String),
    #[error("certificates: {0}")]
    Certificates(String),
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error::Kube(e)
    }
}

/// A kube error for people: the API server's own message, not a debug dump of its
/// `Status` (kube's `Display` appends one).
fn kube_text(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => s.message.clone(),
        other => other.to_string(),
    }
}

/// A gRPC status for people: `Code: message`, without tonic's quoting and metadata.
fn rpc_text(s: &tonic::Status) -> String {
    if s.message().is_empty() {
        format!("{:?}", s.code())
    } else {
        format!("{:?}: {}", s.code(), s.message())
    }
}

/// The operator's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// What a person reads in a condition or Event: the API server's or the node's
    /// own message, naming its target.
    pub fn user_message(&self) -> String {
        match self {
            Error::Kube(e) => kube_text(e),
            other => other.to_string(),
        }
    }

    /// The reason of the `Degraded` condition and Warning Event this failure sets.
    pub fn failure_reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "ApplyFailed",
            Error::NodeRpc { .. } | Error::NodeConnect { .. } => "NodeRpcFailed",
            Error::Restore(_) => "RestoreFailed",
            Error::Certificates(_) => "CertificatesFailed",
            _ => "StepFailed",
        }
    }

    /// The object is gone (404): nothing to report to it any more.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Kube(kube::Error::Api(s)) if s.code == 404)
    }

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
            Error::Restore(_) => "restore",
            Error::Certificates(_) => "certificates",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_are_for_people() {
        let api = Error::Kube(kube::Error::Api(Box::new(kube::core::Status::failure(
            "Service \"x-peer\" is invalid: metadata.name: must be no more than 63 characters",
            "Invalid",
        ))));
        assert_eq!(
            api.user_message(),
            "Service \"x-peer\" is invalid: metadata.name: must be no more than 63 characters"
        );
        assert!(!api.to_string().contains("Status {"), "{api}");
        assert_eq!(api.failure_reason(), "ApplyFailed");

        let rpc = Error::NodeRpc {
            target: "demo-0:7000".into(),
            status: Box::new(tonic::Status::failed_precondition("not the leader")),
        };
        assert_eq!(
            rpc.user_message(),
            "node RPC to demo-0:7000 failed: FailedPrecondition: not the leader"
        );
        assert_eq!(rpc.failure_reason(), "NodeRpcFailed");
    }
}
