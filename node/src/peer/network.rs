//! The outbound side of the peer protocol: how openraft reaches other members.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use parking_lot::Mutex;
use raftkv_client::channel::ChannelSettings;
use raftkv_proto::v1::RaftRequest;
use raftkv_proto::v1::raft_peer_client::RaftPeerClient;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::Code;
use tonic::transport::Channel;

use crate::observability::faults::PeerFaults;
use crate::observability::links::{self, TraceLinks};
use crate::observability::{metrics, propagation, rpc, semconv};
use crate::peer::envelope;
use crate::peer::rto::Rto;
use crate::raft::lease::{Lease, Stamp};
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
    /// Fault injection on outgoing RPCs (off by default).
    faults: Arc<PeerFaults>,
    /// Which traced writes an AppendEntries carries; the campaign span of a Vote.
    links: Arc<TraceLinks>,
    /// Send times and answers of AppendEntries: this leader's quorum lease.
    lease: Arc<Lease>,
    /// TLS of this node's own connections (its node certificate); `None`:
    /// plaintext.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Channels of the calls made outside openraft (pre-vote, TimeoutNow,
    /// ReadIndex), one per peer address, kept: a channel made per call opens
    /// a TCP connection (and with TLS a full handshake) per ReadIndex round,
    /// which cost TLS reads about half their throughput. Apart from
    /// openraft's replication channels, so a large AppendEntries or snapshot
    /// never queues a ReadIndex behind it.
    side_channels: Arc<Mutex<HashMap<String, Channel>>>,
    /// The longest any peer RPC may take (`Limits::peer_rpc_timeout`).
    rpc_timeout: Duration,
    /// The AppendEntries deadline of each peer (`peer::rto`), shared by every
    /// connection to it (openraft makes new ones for replication, votes and
    /// leadership checks).
    rtos: Arc<Mutex<HashMap<NodeId, Rto>>>,
}

/// Distinct peer addresses kept in `side_channels` before it is emptied (a
/// bound for clusters whose members change addresses many times).
const SIDE_CHANNELS_MAX: usize = 64;

impl PeerNetwork {
    pub fn new(
        identity: Arc<IdentityStore>,
        connect_timeout: Duration,
        message_bytes_max: usize,
        links: Arc<TraceLinks>,
    ) -> Self {
        PeerNetwork {
            me: identity.node_id(),
            lease: Arc::new(Lease::new(identity.node_id())),
            identity,
            connect_timeout,
            message_bytes_max,
            faults: Arc::new(PeerFaults::default()),
            links,
            tls: None,
            side_channels: Arc::new(Mutex::new(HashMap::new())),
            rpc_timeout: crate::raft::runtime::TIMEOUT_FLOOR,
            rtos: Arc::default(),
        }
    }

    /// The longest a peer RPC may take (no more than the floor openraft's
    /// own timeouts get: `raft::runtime`).
    pub fn with_rpc_timeout(mut self, timeout: Duration) -> Self {
        self.rpc_timeout = timeout.min(crate::raft::runtime::TIMEOUT_FLOOR);
        self
    }

    /// The deadline of the next AppendEntries to `target`, openraft having
    /// asked for `asked`.
    fn append_deadline(&self, target: NodeId, asked: Duration) -> Duration {
        let rtos = self.rtos.lock();
        rtos.get(&target).copied().unwrap_or_default().deadline(
            asked,
            self.rpc_timeout,
            Instant::now(),
        )
    }

    /// `Ok(latency)`: answered; `Err(deadline)`: no answer within it.
    fn append_outcome(&self, target: NodeId, outcome: Result<Duration, Duration>) {
        let mut rtos = self.rtos.lock();
        let rto = rtos.entry(target).or_default();
        match outcome {
            Ok(latency) => rto.answered(latency, Instant::now()),
            Err(deadline) => rto.timed_out(deadline, Instant::now()),
        }
    }

    /// The quorum lease kept from AppendEntries answers.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Connect to peers (and forward to the leader) over TLS with `tls`.
    pub fn with_tls(mut self, tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        self.tls = tls;
        self
    }

    /// This node's TLS client configuration, for every connection it makes.
    pub fn client_tls(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.tls.clone()
    }

    /// Injects `faults` into every outgoing RPC (see `observability::faults`).
    pub fn with_faults(mut self, faults: PeerFaults) -> Self {
        self.faults = Arc::new(faults);
        self
    }

    /// A lazily connecting channel to a peer listener.
    pub fn channel(&self, peer_addr: &str) -> Result<Channel, String> {
        ChannelSettings::new(self.connect_timeout)
            .with_tls(self.tls.clone())
            .lazy(peer_addr)
            .map_err(|e| format!("peer address: {e}"))
    }

    pub fn client(&self, peer_addr: &str) -> Result<RaftPeerClient<Channel>, String> {
        Ok(self.client_on(self.channel(peer_addr)?))
    }

    fn client_on(&self, channel: Channel) -> RaftPeerClient<Channel> {
        RaftPeerClient::new(channel)
            .max_decoding_message_size(self.message_bytes_max)
            .max_encoding_message_size(self.message_bytes_max)
    }

    /// A client for the calls made outside openraft (pre-vote, TimeoutNow,
    /// ReadIndex), on the kept channel to `peer_addr` (see `side_channels`).
    pub fn side_client(&self, peer_addr: &str) -> Result<RaftPeerClient<Channel>, String> {
        let channel = {
            let mut map = self.side_channels.lock();
            match map.get(peer_addr) {
                Some(c) => c.clone(),
                None => {
                    if map.len() >= SIDE_CHANNELS_MAX {
                        map.clear();
                    }
                    let c = self.channel(peer_addr)?;
                    map.insert(peer_addr.to_string(), c.clone());
                    c
                }
            }
        };
        Ok(self.client_on(channel))
    }

    /// A request to `target` carrying `payload`, with a deadline and the
    /// current span's trace context (for the calls made outside openraft:
    /// pre-vote, TimeoutNow, ReadIndex).
    pub fn request(
        &self,
        target: NodeId,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> tonic::Request<RaftRequest> {
        let mut req = tonic::Request::new(self.envelope(target, payload));
        req.set_timeout(timeout);
        propagation::inject(req.metadata_mut());
        req
    }

    /// The envelope for a message to `target`.
    pub fn envelope(&self, target: NodeId, payload: Vec<u8>) -> RaftRequest {
        RaftRequest {
            cluster_id: self.identity.cluster_id().unwrap_or_default(),
            target_node_id: target,
            from_node_id: self.me,
            payload: payload.into(),
            seq: 0,
            confirmed_seq: 0,
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

impl Method {
    fn rpc_method(self) -> &'static str {
        match self {
            Method::AppendEntries => semconv::PEER_APPEND_ENTRIES,
            Method::Vote => semconv::PEER_VOTE,
            Method::InstallSnapshot => semconv::PEER_INSTALL_SNAPSHOT,
        }
    }

    fn rpc_type(self) -> RPCTypes {
        match self {
            Method::AppendEntries => RPCTypes::AppendEntries,
            Method::Vote => RPCTypes::Vote,
            Method::InstallSnapshot => RPCTypes::InstallSnapshot,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Method::AppendEntries => "AppendEntries",
            Method::Vote => "Vote",
            Method::InstallSnapshot => "InstallSnapshot",
        }
    }
}

/// The metrics label of a failed peer RPC.
fn error_kind(code: Code) -> &'static str {
    match code {
        Code::Unavailable => "unreachable",
        Code::DeadlineExceeded => "timeout",
        Code::FailedPrecondition => "refused",
        _ => "network",
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

impl PeerConnection {
    /// The CLIENT span of one RPC; `parents` are the traced writes it carries
    /// (AppendEntries), so the span joins their traces.
    fn span(&self, method: Method, parents: &[opentelemetry::trace::SpanContext]) -> tracing::Span {
        // An AppendEntries that carries no traced write can only be dropped
        // by the sampler (it never starts a trace): skip the span.
        if matches!(method, Method::AppendEntries) && parents.is_empty() {
            return tracing::Span::none();
        }
        let span = rpc::client_span(method.rpc_method(), &self.node.peer_addr);
        span.record("raft.node_id", self.net.me);
        span.record("raft.target_node_id", self.target);
        links::adopt(&span, parents);
        span
    }

    /// One RPC, given up (as openraft would) after `deadline`: the network,
    /// not openraft, decides how long each call may take (`raft::runtime`).
    async fn call<Req, Resp, E>(
        &mut self,
        method: Method,
        req: &Req,
        stamp: Stamp,
        deadline: Duration,
        span: tracing::Span,
    ) -> Result<Resp, RpcError<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let target = self.target;
        match tokio::time::timeout(deadline, self.send(method, req, stamp, deadline, span)).await {
            Ok(r) => r,
            Err(_) => {
                metrics::node().peer_rpc_error(method.label(), "timeout");
                Err(RPCError::Timeout(Timeout {
                    action: method.rpc_type(),
                    id: self.net.me,
                    target,
                    timeout: deadline,
                }))
            }
        }
    }

    async fn send<Req, Resp, E>(
        &mut self,
        method: Method,
        req: &Req,
        stamp: Stamp,
        ttl: Duration,
        span: tracing::Span,
    ) -> Result<Resp, RpcError<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        use tracing::Instrument;
        let client = match &self.client {
            Ok(c) => c.clone(),
            Err(e) => return Err(RPCError::Unreachable(Unreachable::new(&Msg(e.clone())))),
        };
        let payload =
            envelope::encode(req).map_err(|s| RPCError::Network(NetworkError::new(&s)))?;
        span.record("raft.bytes", payload.len());
        if self
            .net
            .faults
            .apply(method.rpc_method(), &self.node.peer_addr, &span)
            .await
        {
            // A lost request: the sender learns nothing until its deadline
            // (`call` ends it then; recorded first for that reason).
            metrics::node().peer_rpc_error(method.label(), "injected_drop");
            rpc::record_code(&span, Code::DeadlineExceeded);
            std::future::pending::<()>().await;
        }
        let mut envelope = self.net.envelope(self.target, payload);
        envelope.seq = stamp.seq;
        envelope.confirmed_seq = stamp.confirmed_seq;
        let mut request = tonic::Request::new(envelope);
        // The server may work on it until the longest deadline any RPC gets:
        // `call` gives up at this call's own deadline, and tonic would report
        // its own expiry as a network error, not a timeout (`peer::rto`
        // backs off on timeouts only).
        request.set_timeout(ttl.max(self.net.rpc_timeout));
        propagation::inject_span(&span, request.metadata_mut());
        let mut client = client;
        let reply = async {
            match method {
                Method::AppendEntries => client.append_entries(request).await,
                Method::Vote => client.vote(request).await,
                Method::InstallSnapshot => client.install_snapshot(request).await,
            }
        }
        .instrument(span.clone())
        .await;
        rpc::record_result(&span, &reply);
        let reply = reply.map_err(|status| {
            tracing::debug!(target_node = self.target, ?method, %status, "peer rpc failed");
            metrics::node().peer_rpc_error(method.label(), error_kind(status.code()));
            status_to_rpc_error(status)
        })?;
        let result: Result<Resp, RaftError<NodeId, E>> =
            envelope::decode(&reply.into_inner().payload)
                .map_err(|s| RPCError::Network(NetworkError::new(&s)))?;
        result.map_err(|e| {
            metrics::node().peer_rpc_error(method.label(), "remote");
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
        let span = self.span(
            Method::AppendEntries,
            &self.net.links.parent_for_entries(&rpc.entries),
        );
        span.record("raft.term", rpc.vote.leader_id().term);
        span.record("raft.entries", rpc.entries.len());
        if let Some(first) = rpc.entries.first() {
            span.record("raft.index", first.log_id.index);
        }
        // Numbered before it leaves: the send time is what an answer proves.
        let term = rpc.vote.leader_id().term;
        let sent = Instant::now();
        let stamp = self.net.lease.outgoing(self.target, term, sent);
        let deadline = self.net.append_deadline(self.target, option.hard_ttl());
        let res: Result<AppendEntriesResponse, RpcError> = self
            .call(Method::AppendEntries, &rpc, stamp, deadline, span)
            .await;
        match &res {
            Ok(_) => self.net.append_outcome(self.target, Ok(sent.elapsed())),
            Err(RPCError::Timeout(_)) => self.net.append_outcome(self.target, Err(deadline)),
            // Refused or unreachable: says nothing about how long it takes.
            Err(_) => {}
        }
        if let Ok(r) = &res
            && !matches!(r, AppendEntriesResponse::HigherVote(_))
        {
            self.net
                .lease
                .answered(self.target, term, stamp.seq, Instant::now());
        }
        res
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse, RpcError<InstallSnapshotError>> {
        let span = self.span(Method::InstallSnapshot, &[]);
        span.record("raft.term", rpc.vote.leader_id().term);
        span.record("raft.index", rpc.meta.last_log_id.map_or(0, |l| l.index));
        self.call(
            Method::InstallSnapshot,
            &rpc,
            Stamp::default(),
            option.hard_ttl(),
            span,
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest,
        option: RPCOption,
    ) -> Result<VoteResponse, RpcError> {
        let span = self.span(
            Method::Vote,
            &self.net.links.election_parent(rpc.vote.leader_id().term),
        );
        span.record("raft.term", rpc.vote.leader_id().term);
        // A voter answers once its vote is fsynced: on a slow disk that is
        // far beyond openraft's `election_timeout_min`. Waiting longer costs
        // nothing (the campaign runs on its own schedule, `raft::election`).
        let deadline = self.net.rpc_timeout.max(option.hard_ttl());
        let sent = Instant::now();
        let res = self
            .call(Method::Vote, &rpc, Stamp::default(), deadline, span)
            .await;
        // A vote's answer costs the voter an fsync, as an AppendEntries' does:
        // the best first guess of the deadline a new leader's entries need
        // (without it, each election on a slow disk began with a series of
        // timed-out AppendEntries while the deadline grew).
        if res.is_ok() {
            self.net.append_outcome(self.target, Ok(sent.elapsed()));
        }
        res
    }
}
