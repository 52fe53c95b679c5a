//! A running node: the Raft instance, its storage handles and the shared
//! state the gRPC services work on; and `start_node`, which wires them up.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use parking_lot::Mutex;
use raftkv_proto::v1::cluster_server::ClusterServer;
use raftkv_proto::v1::kv_server::KvServer;
use raftkv_proto::v1::raft_peer_server::RaftPeerServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::Status;
use tonic::transport::{Channel, Endpoint, Server};

use crate::config::NodeConfig;
use crate::grpc::errors;
use crate::raft::contact::LeaderContact;
use crate::raft::envelope;
use crate::raft::network::PeerNetwork;
use crate::raft::server::PeerService;
use crate::read_batch::ReadIndexBatcher;
use crate::storage::{self, IdentityStore, KvReader, StorageOptions};
use crate::typ::{Raft, RaftMetrics};
use crate::{NodeId, NodeInfo};

/// Shared state of a running node.
pub struct Node {
    pub id: NodeId,
    pub raft: Raft,
    pub identity: Arc<IdentityStore>,
    pub reader: KvReader,
    pub config: Arc<NodeConfig>,
    pub contact: LeaderContact,
    pub net: PeerNetwork,
    /// A handle on the Raft log (shared with openraft) for the pre-vote's
    /// last-log comparison.
    pub log: crate::storage::LogStore,
    /// Set on the leader while it hands leadership off: new writes are refused
    /// (UNAVAILABLE, retryable) so the target can catch up completely.
    transferring: AtomicBool,
    /// Set on a leader-transfer target while it campaigns: it then refuses
    /// pre-votes, so a third voter cannot win the race the transfer started.
    transfer_campaign: AtomicBool,
    /// Coalesces concurrent linearizable reads into one confirmation.
    read_batcher: ReadIndexBatcher,
    /// Channels to other nodes' client listeners, for forwarding.
    client_channels: Mutex<HashMap<String, Channel>>,
}

/// Longest a stopping leader spends handing off leadership (well inside
/// Kubernetes' default 30 s termination grace period).
const STEP_DOWN_MAX: Duration = Duration::from_secs(5);

/// At most this many cached forwarding channels (one per distinct leader address).
const CLIENT_CHANNELS_MAX: usize = 64;

impl Node {
    pub fn metrics(&self) -> RaftMetrics {
        self.raft.metrics().borrow().clone()
    }

    pub fn info(&self) -> NodeInfo {
        NodeInfo {
            client_addr: self.config.advertise_client.clone(),
            peer_addr: self.config.advertise_peer.clone(),
            name: self.config.name.clone(),
        }
    }

    /// The leader this node knows of, with its membership entry.
    pub fn leader(&self, m: &RaftMetrics) -> Option<(NodeId, NodeInfo)> {
        let id = m.current_leader?;
        let info = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, info))
    }

    pub fn is_member(&self, m: &RaftMetrics) -> bool {
        m.membership_config
            .membership()
            .get_node(&self.id)
            .is_some()
    }

    pub fn is_transferring(&self) -> bool {
        self.transferring.load(Ordering::Acquire)
    }

    /// This node campaigns as a leader-transfer target until the guard drops.
    pub fn start_transfer_campaign(&self) -> CampaignGuard<'_> {
        self.transfer_campaign.store(true, Ordering::Release);
        CampaignGuard { node: self }
    }

    pub fn in_transfer_campaign(&self) -> bool {
        self.transfer_campaign.load(Ordering::Acquire)
    }

    /// A channel to another node's client listener (cached).
    pub fn client_channel(&self, addr: &str) -> Result<Channel, Status> {
        let mut map = self.client_channels.lock();
        if let Some(c) = map.get(addr) {
            return Ok(c.clone());
        }
        if map.len() >= CLIENT_CHANNELS_MAX {
            map.clear();
        }
        let ep = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| Status::internal(format!("bad leader address {addr:?}: {e}")))?
            .connect_timeout(Duration::from_secs(2))
            .timeout(self.config.limits.forward_timeout)
            .tcp_nodelay(true);
        let ch = ep.connect_lazy();
        map.insert(addr.to_string(), ch.clone());
        Ok(ch)
    }

    /// The commit index as this node knows it: on the leader, the highest index
    /// replicated to a quorum of every active config; elsewhere, what the
    /// leader last told us (bounded by our own log).
    pub fn commit_index(&self, m: &RaftMetrics) -> u64 {
        let last = m.last_log_index.unwrap_or(0);
        if m.current_leader == Some(self.id) && m.state.is_leader() {
            let matched = |id: &NodeId| -> u64 {
                if *id == self.id {
                    return last;
                }
                m.replication
                    .as_ref()
                    .and_then(|r| r.get(id).cloned().flatten())
                    .map(|l| l.index)
                    .unwrap_or(0)
            };
            let configs = m.membership_config.membership().get_joint_config();
            configs
                .iter()
                .map(|voters| {
                    let mut idx: Vec<u64> = voters.iter().map(matched).collect();
                    idx.sort_unstable_by(|a, b| b.cmp(a));
                    idx.get(voters.len() / 2).copied().unwrap_or(0)
                })
                .min()
                .unwrap_or(0)
        } else {
            self.contact
                .last()
                .map(|c| c.leader_commit.min(last))
                .unwrap_or(0)
        }
    }

    /// SERVING for the gRPC health check (and so Kubernetes readiness): a
    /// member of an initialized cluster that follows a live leader and has
    /// applied close to its commit index.
    pub fn is_healthy(&self, m: &RaftMetrics) -> bool {
        if m.running_state.is_err() || !self.is_member(m) || m.current_leader.is_none() {
            return false;
        }
        if m.state.is_leader() {
            return true;
        }
        let limits = &self.config.limits;
        let Some(c) = self.contact.last() else {
            return false;
        };
        let fresh = c.at.elapsed() <= Duration::from_millis(2 * limits.election_timeout_ms_max);
        let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
        fresh && applied + limits.caught_up_lag_max >= c.leader_commit
    }

    /// Wait until this node has applied `index`, bounded by the read wait limit.
    pub async fn wait_applied(&self, index: u64) -> Result<(), Status> {
        let mut rx = self.reader.subscribe();
        let wait = rx.wait_for(|a| a.index >= index);
        match tokio::time::timeout(self.config.limits.read_wait_max, wait).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(Status::unavailable("this node is shutting down")),
            Err(_) => Err(Status::unavailable(format!(
                "this node has applied up to {} but needs {index}; it is catching up, retry or read elsewhere",
                self.reader.applied().index
            ))),
        }
    }

    /// Wait until the store has reached `revision` (read-your-writes).
    pub async fn wait_revision(&self, revision: u64) -> Result<(), Status> {
        let mut rx = self.reader.subscribe();
        let wait = rx.wait_for(|a| a.revision >= revision);
        match tokio::time::timeout(self.config.limits.read_wait_max, wait).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(Status::unavailable("this node is shutting down")),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "revision {revision} not reached on this node within {:?} (at {})",
                self.config.limits.read_wait_max,
                self.reader.applied().revision
            ))),
        }
    }

    /// ReadIndex: the index this node must apply before a linearizable read,
    /// confirmed after this call started (batched with concurrent reads).
    pub async fn read_index(&self) -> Result<u64, Status> {
        self.read_batcher.read_index().await
    }

    /// One confirmation: on the leader, a quorum round; elsewhere, asked of
    /// the leader.
    async fn confirm_read_index(&self) -> Result<u64, Status> {
        let m = self.metrics();
        if m.state.is_leader() {
            let (read, _applied) = self.raft.get_read_log_id().await.map_err(|e| match e {
                openraft::error::RaftError::APIError(
                    openraft::error::CheckIsLeaderError::ForwardToLeader(f),
                ) => errors::not_leader(&f),
                openraft::error::RaftError::APIError(q) => Status::unavailable(q.to_string()),
                openraft::error::RaftError::Fatal(f) => errors::fatal(&f),
            })?;
            return Ok(read.map(|l| l.index).unwrap_or(0));
        }
        let (leader, info) = self
            .leader(&m)
            .ok_or_else(|| Status::unavailable("no leader is known right now; retry shortly"))?;
        let mut client = self.net.client(&info.peer_addr).map_err(Status::internal)?;
        let mut req = tonic::Request::new(self.net.envelope(leader, Vec::new()));
        req.set_timeout(self.config.limits.peer_rpc_timeout);
        crate::observability::propagation::inject(req.metadata_mut());
        let reply = client.read_index(req).await.map_err(|s| {
            errors::unavailable_with_hint(
                format!(
                    "leader {leader} did not confirm a read index: {}",
                    s.message()
                ),
                Some(&info.client_addr),
            )
        })?;
        envelope::decode::<u64>(&reply.into_inner().payload)
    }

    /// Leader side of a leadership hand-off (see `raft::server` for the
    /// target's side). Refuses writes meanwhile, waits until the target has
    /// every entry, then asks it to campaign.
    pub async fn transfer_leader(
        &self,
        requested: NodeId,
    ) -> Result<(NodeId, NodeId, u64), Status> {
        let m = self.metrics();
        if !m.state.is_leader() {
            return Err(Status::failed_precondition("not the leader"));
        }
        let membership = m.membership_config.membership();
        if membership.get_joint_config().len() > 1 {
            return Err(Status::failed_precondition(
                "a membership change is in progress; transfer leadership after it completes",
            ));
        }
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let matched = |id: NodeId| -> u64 {
            m.replication
                .as_ref()
                .and_then(|r| r.get(&id).cloned().flatten())
                .map(|l| l.index)
                .unwrap_or(0)
        };
        let target = if requested == 0 {
            voters
                .iter()
                .copied()
                .filter(|v| *v != self.id)
                .max_by_key(|v| matched(*v))
                .ok_or_else(|| {
                    Status::failed_precondition("there is no other voter to hand leadership to")
                })?
        } else {
            requested
        };
        if target == self.id {
            return Ok((self.id, self.id, m.current_term));
        }
        if !voters.contains(&target) {
            return Err(Status::failed_precondition(format!(
                "node {target} is not a voter; only voters can lead"
            )));
        }
        let target_info = membership.get_node(&target).cloned().unwrap_or_default();

        let _guard = TransferGuard::start(self);
        let deadline = Instant::now() + self.config.limits.transfer_timeout;
        // Let the target receive every entry we have.
        let mut metrics = self.raft.metrics();
        loop {
            let m = metrics.borrow_and_update().clone();
            let last = m.last_log_index.unwrap_or(0);
            let target_matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(&target).cloned().flatten())
                .map(|l| l.index)
                .unwrap_or(0);
            if target_matched >= last {
                break;
            }
            if tokio::time::timeout_at(deadline.into(), metrics.changed())
                .await
                .is_err()
            {
                return Err(Status::deadline_exceeded(format!(
                    "node {target} did not catch up ({target_matched} of {last}) in time"
                )));
            }
        }
        // Stop heartbeats so the other followers' leader leases expire and they
        // will vote. (openraft never campaigns on its own here: elections go
        // through the pre-vote in raft::election, which skips a transferring node.)
        self.raft.runtime_config().heartbeat(false);
        let mut client = self
            .net
            .client(&target_info.peer_addr)
            .map_err(Status::internal)?;
        let mut req = tonic::Request::new(
            self.net
                .envelope(target, envelope::encode(&m.current_term)?),
        );
        req.set_timeout(self.config.limits.peer_rpc_timeout);
        crate::observability::propagation::inject(req.metadata_mut());
        client.timeout_now(req).await.map_err(|s| {
            Status::unavailable(format!(
                "node {target} refused to campaign: {}",
                s.message()
            ))
        })?;
        loop {
            let m = metrics.borrow_and_update().clone();
            if let Some(l) = m.current_leader
                && l != self.id
            {
                return Ok((self.id, l, m.current_term));
            }
            if tokio::time::timeout_at(deadline.into(), metrics.changed())
                .await
                .is_err()
            {
                return Err(Status::deadline_exceeded(format!(
                    "node {target} did not take over leadership within {:?}",
                    self.config.limits.transfer_timeout
                )));
            }
        }
    }
}

pub struct CampaignGuard<'a> {
    node: &'a Node,
}

impl Drop for CampaignGuard<'_> {
    fn drop(&mut self) {
        self.node.transfer_campaign.store(false, Ordering::Release);
    }
}

/// Restores normal leader behaviour when a transfer ends, however it ends.
struct TransferGuard<'a> {
    node: &'a Node,
}

impl<'a> TransferGuard<'a> {
    fn start(node: &'a Node) -> Self {
        node.transferring.store(true, Ordering::Release);
        TransferGuard { node }
    }
}

impl Drop for TransferGuard<'_> {
    fn drop(&mut self) {
        self.node.transferring.store(false, Ordering::Release);
        self.node.raft.runtime_config().heartbeat(true);
    }
}

/// A started node: its servers run until `shutdown`.
pub struct NodeHandle {
    pub node: Arc<Node>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<anyhow::Result<()>>,
}

impl NodeHandle {
    /// Stop serving, then stop Raft.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.step_down().await;
        let _ = self.shutdown.send(true);
        while let Some(r) = self.tasks.join_next().await {
            r??;
        }
        self.node
            .raft
            .shutdown()
            .await
            .map_err(|e| anyhow::anyhow!("raft shutdown: {e}"))?;
        Ok(())
    }

    /// A leader that is stopping (SIGTERM: a pod being deleted or rolled)
    /// hands leadership to the most caught-up voter first, so the cluster
    /// does not wait out an election timeout — and a pod that comes back fast
    /// does not resume leading at the same term. Best effort: a failed
    /// hand-off only means the others elect a leader as after a crash.
    async fn step_down(&self) {
        let node = &self.node;
        let m = node.metrics();
        let others = m
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v != node.id);
        if !m.state.is_leader() || !others {
            return;
        }
        match tokio::time::timeout(STEP_DOWN_MAX, node.transfer_leader(0)).await {
            Ok(Ok((_, to, term))) => {
                tracing::info!(to, term, "handed leadership off before stopping")
            }
            Ok(Err(e)) => tracing::warn!(
                "leadership hand-off before stopping failed: {}",
                e.message()
            ),
            Err(_) => tracing::warn!("leadership hand-off before stopping timed out"),
        }
    }

    /// Run until a server fails (or forever).
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        if let Some(r) = self.tasks.join_next().await {
            r??;
        }
        Ok(())
    }
}

pub async fn start_node(config: NodeConfig) -> anyhow::Result<NodeHandle> {
    start_node_with_options(config, StorageOptions::default()).await
}

pub async fn start_node_with_options(
    config: NodeConfig,
    opts: StorageOptions,
) -> anyhow::Result<NodeHandle> {
    let raft_config = Arc::new(config.limits.raft_config()?);
    config.faults.warn_if_on();
    let mut opts = opts;
    if config.faults.fsync().is_on() {
        opts.fsync_faults = config.faults.fsync();
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    // Recovery reads the whole log: keep that blocking I/O off the runtime.
    let dir = config.data_dir.clone();
    let storage = tokio::task::spawn_blocking(move || storage::open(&dir, opts))
        .await
        .context("storage recovery task")?
        .with_context(|| format!("opening storage in {}", config.data_dir.display()))?;
    let identity = Arc::new(storage.identity);
    let id = identity.node_id();
    crate::observability::set_node_id(id);
    let reader = storage.state_machine.reader();
    let net = PeerNetwork::new(
        id,
        identity.clone(),
        Duration::from_secs(2),
        config.limits.grpc_message_bytes_max,
    )
    .with_faults(config.faults.peer());
    let raft = Raft::new(
        id,
        raft_config,
        net.clone(),
        storage.log.clone(),
        storage.state_machine,
    )
    .await
    .context("starting raft")?;
    let client_listener = TcpListener::bind(config.client_listen)
        .await
        .with_context(|| format!("binding client address {}", config.client_listen))?;
    let peer_listener = TcpListener::bind(config.peer_listen)
        .await
        .with_context(|| format!("binding peer address {}", config.peer_listen))?;
    tracing::info!(
        node_id = id,
        cluster_id = identity.cluster_id().as_deref().unwrap_or("-"),
        client = %config.client_listen,
        peer = %config.peer_listen,
        advertise_client = %config.advertise_client,
        "raft-node started"
    );
    let message_max = config.limits.grpc_message_bytes_max;
    let node = Arc::new(Node {
        id,
        raft,
        identity,
        reader,
        config: Arc::new(config),
        contact: LeaderContact::default(),
        net,
        log: storage.log,
        transferring: AtomicBool::new(false),
        transfer_campaign: AtomicBool::new(false),
        read_batcher: ReadIndexBatcher::default(),
        client_channels: Mutex::new(HashMap::new()),
    });

    let (shutdown, shutdown_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut tasks = JoinSet::new();

    let reads = node.clone();
    let read_stop = stopped(shutdown_rx.clone());
    tasks.spawn(async move {
        let timeout = reads.config.limits.read_wait_max;
        let fetch = || reads.confirm_read_index();
        reads.read_batcher.run(fetch, timeout, read_stop).await;
        Ok(())
    });

    let elections = node.clone();
    let election_stop = stopped(shutdown_rx.clone());
    tasks.spawn(async move {
        crate::raft::election::run(elections, election_stop).await;
        Ok(())
    });

    let (health, health_service) = tonic_health::server::health_reporter();
    tasks.spawn(crate::health::run(
        node.clone(),
        health,
        shutdown_rx.clone(),
    ));

    let kv = KvServer::new(crate::grpc::kv::KvService::new(node.clone()))
        .max_decoding_message_size(message_max)
        .max_encoding_message_size(message_max);
    let cluster = ClusterServer::new(crate::grpc::cluster::ClusterService::new(node.clone()));
    let client_server = Server::builder()
        .layer(crate::observability::server_layer::TraceLayer)
        .add_service(health_service)
        .add_service(kv)
        .add_service(cluster)
        .serve_with_incoming_shutdown(
            nodelay_incoming(client_listener),
            stopped(shutdown_rx.clone()),
        );
    tasks.spawn(async move { client_server.await.context("client server") });

    let peer = RaftPeerServer::new(PeerService::new(node.clone()))
        .max_decoding_message_size(message_max)
        .max_encoding_message_size(message_max);
    let peer_server = Server::builder()
        .layer(crate::observability::server_layer::TraceLayer)
        .add_service(peer)
        .serve_with_incoming_shutdown(
            nodelay_incoming(peer_listener),
            stopped(shutdown_rx.clone()),
        );
    tasks.spawn(async move { peer_server.await.context("peer server") });

    // Prometheus: Raft gauges follow openraft's metrics; /metrics if asked for.
    let watched = node.clone();
    tokio::spawn(crate::observability::metrics::watch_raft(
        node.raft.metrics(),
        move |m| watched.commit_index(m),
    ));
    if let Some(addr) = node.config.metrics_listen {
        let (_, server) =
            crate::observability::metrics::spawn_server(addr, stopped(shutdown_rx.clone()))
                .await
                .with_context(|| format!("binding metrics address {addr}"))?;
        tasks.spawn(async move { server.await?.context("metrics server") });
    }

    Ok(NodeHandle {
        node,
        shutdown,
        tasks,
    })
}

/// Accepted connections with TCP_NODELAY. `Server::tcp_nodelay` only applies
/// to listeners tonic binds itself; without it every small reply waits for
/// Nagle + delayed ACK (~40 ms on Linux loopback).
fn nodelay_incoming(listener: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}
