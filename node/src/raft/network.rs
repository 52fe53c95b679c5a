//! The outbound side of the peer protocol: how openraft reaches other members.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use raftkv_proto::v1::RaftRequest;
use raftkv_proto::v1::raft_peer_client::RaftPeerClient;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

use crate::raft::envelope;
use crate::storage::IdentityStore;
use crate::typ::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use crate::{NodeId, NodeInfo, TypeConfig};

type RpcError<E = openraft::error::Infallible> = RPCError<NodeId, NodeInfo, RaftError<NodeId, E>>;

/// Creates one connection per (target, address); openraft keeps it for the
/// life of a replication stream.
#[derive(Clone)]
pub struct PeerNetwork {
    me: NodeId,
    identity: Arc<IdentityStore>,
    connect_timeout: Duration,
    message_bytes_max: usize,
}

impl PeerNetwork {
    pub fn new(
        me: NodeId,
        identity: Arc<IdentityStore>,
        connect_timeout: Duration,
        message_bytes_max: usize,
    ) -> Self {
        PeerNetwork {
            me,
            identity,
            connect_timeout,
            message_bytes_max,
        }
    }

    /// A lazily connecting channel to a peer listener.
    pub fn channel(&self, peer_addr: &str) -> Result<Channel, String> {
        let ep = Endpoint::from_shared(format!("http://{peer_addr}"))
            .map_err(|e| format!("bad peer address {peer_addr:?}: {e}"))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        Ok(ep.connect_lazy())
    }

    pub fn client(&self, peer_addr: &str) -> Result<RaftPeerClient<Channel>, String> {
        Ok(RaftPeerClient::new(self.channel(peer_addr)?)
            .max_decoding_message_size(self.message_bytes_max)
            .max_encoding_message_size(self.message_bytes_max))
    }

    /// The envelope for a message to `target`.
    pub fn envelope(&self, target: NodeId, payload: Vec<u8>) -> RaftRequest {
        RaftRequest {
            cluster_id: self.identity.cluster_id().unwrap_or_default(),
            target_node_id: target,
            from_node_id: self.me,
            payload: payload.into(),
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> PeerConnection {
        PeerConnection {
            net: self.clone(),
            target,
            node: node.clone(),
            client: self.client(&node.peer_addr),
        }
    }
}

pub struct PeerConnection {
    net: PeerNetwork,
    target: NodeId,
    node: NodeInfo,
    client: Result<RaftPeerClient<Channel>, String>,
}

#[derive(Clone, Copy, Debug)]
enum Method {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

impl PeerConnection {
    async fn call<Req, Resp, E>(
        &mut self,
        method: Method,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, RpcError<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = match &self.client {
            Ok(c) => c.clone(),
            Err(e) => return Err(RPCError::Unreachable(Unreachable::new(&Msg(e.clone())))),
        };
        let payload =
            envelope::encode(req).map_err(|s| RPCError::Network(NetworkError::new(&s)))?;
        let mut request = tonic::Request::new(self.net.envelope(self.target, payload));
        request.set_timeout(ttl);
        let mut client = client;
        let reply = match method {
            Method::AppendEntries => client.append_entries(request).await,
            Method::Vote => client.vote(request).await,
            Method::InstallSnapshot => client.install_snapshot(request).await,
        };
        let reply = reply.map_err(|status| {
            tracing::debug!(target_node = self.target, ?method, %status, "peer rpc failed");
            status_to_rpc_error(status)
        })?;
        let result: Result<Resp, RaftError<NodeId, E>> =
            envelope::decode(&reply.into_inner().payload)
                .map_err(|s| RPCError::Network(NetworkError::new(&s)))?;
        result.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }
}

/// Unreachable makes openraft back off before retrying; Network retries at once.
/// A refused envelope (wrong node/cluster) is a peer that is not there for us.
fn status_to_rpc_error<E>(status: tonic::Status) -> RpcError<E>
where
    E: std::error::Error + DeserializeOwned,
{
    match status.code() {
        Code::Unavailable | Code::FailedPrecondition | Code::Unknown => {
            RPCError::Unreachable(Unreachable::new(&status))
        }
        _ => RPCError::Network(NetworkError::new(&status)),
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse, RpcError> {
        self.call(Method::AppendEntries, &rpc, option.hard_ttl())
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse, RpcError<InstallSnapshotError>> {
        self.call(Method::InstallSnapshot, &rpc, option.hard_ttl())
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest,
        option: RPCOption,
    ) -> Result<VoteResponse, RpcError> {
        self.call(Method::Vote, &rpc, option.hard_ttl()).await
    }
}
