//! Peer messages are openraft structs encoded with postcard inside a gRPC
//! envelope that names the cluster and the target node. The envelope check is
//! the one place that enforces invariant 2 (docs/design.md): a node refuses messages
//! meant for another cluster or for another node ID (pods get recycled IPs,
//! and a replaced member inherits its predecessor's DNS name).

use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::Status;

use crate::NodeId;
use crate::storage::IdentityStore;

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, Status> {
    postcard::to_stdvec(value).map_err(|e| Status::internal(format!("encode peer message: {e}")))
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Status> {
    postcard::from_bytes(bytes)
        .map_err(|e| Status::invalid_argument(format!("decode peer message: {e}")))
}

/// Why a peer message was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error(
        "message for node {target} reached node {me} (the address now belongs to another member)"
    )]
    WrongNode { target: NodeId, me: NodeId },
    #[error("message from cluster {theirs:?} reached a node of cluster {mine:?}")]
    WrongCluster { theirs: String, mine: String },
    #[error("message from node {from} carries no cluster ID")]
    NoClusterId { from: NodeId },
    #[error("cannot record cluster ID: {0}")]
    Persist(String),
}

impl From<EnvelopeError> for Status {
    fn from(e: EnvelopeError) -> Status {
        match e {
            EnvelopeError::Persist(_) => Status::internal(e.to_string()),
            _ => Status::failed_precondition(e.to_string()),
        }
    }
}

/// Accept or refuse an incoming peer message. A node that has no cluster ID
/// yet (fresh, waiting to be initialized or added) adopts the sender's: only a
/// cluster that was told this node's random ID can address it.
pub fn check(
    identity: &IdentityStore,
    cluster_id: &str,
    target: NodeId,
    from: NodeId,
) -> Result<(), EnvelopeError> {
    let me = identity.node_id();
    if target != me {
        return Err(EnvelopeError::WrongNode { target, me });
    }
    if cluster_id.is_empty() {
        return Err(EnvelopeError::NoClusterId { from });
    }
    match identity.cluster_id() {
        Some(mine) if mine == cluster_id => Ok(()),
        Some(mine) => Err(EnvelopeError::WrongCluster {
            theirs: cluster_id.to_string(),
            mine,
        }),
        None => {
            tracing::info!(cluster_id, from, "joining cluster");
            identity
                .set_cluster_id(cluster_id)
                .map_err(|e| EnvelopeError::Persist(e.to_string()))
        }
    }
}
