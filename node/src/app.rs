//! `start_node`: opens storage, starts Raft and wires the node's tasks and
//! servers together (the one module that imports all of them); and
//! [`NodeHandle`], which stops them in order.

use std::sync::Arc;

use anyhow::Context;
use raftkv_proto::v1::cluster_server::ClusterServer;
use raftkv_proto::v1::kv_server::KvServer;
use raftkv_proto::v1::raft_peer_server::RaftPeerServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::transport::Server;

use crate::config::NodeConfig;
use crate::node::{Node, Parts};
use crate::observability::links::{NodeStorageHooks, TraceLinks};
use crate::observability::server_layer::TraceLayer;
use crate::peer::network::PeerNetwork;
use crate::peer::server::PeerService;
use crate::security::authz::Plane;
use crate::security::layer::AuthzLayer;
use crate::security::server::ClientAuth;
use crate::storage::{self, StorageOptions};
use crate::typ::Raft;

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
            .raft()
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
            .any(|v| v != node.id());
        if !m.state.is_leader() || !others {
            return;
        }
        let max = node.limits().step_down_max;
        match tokio::time::timeout(max, crate::raft::transfer::hand_off(node, 0)).await {
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

    /// Run until a task fails (or forever). A task that ends without an
    /// error (its input closed) does not end the node; a failed one does.
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        while let Some(r) = self.tasks.join_next().await {
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
    // A forced new cluster accepted before the last exit is finished first
    // (crate::force_new_cluster); nothing serves before.
    {
        let (c, o) = (config.clone(), opts.clone());
        let rt = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || crate::force_new_cluster::resume(&c, o, &rt))
            .await
            .context("forced new cluster task")??;
    }
    // A backup received by `Cluster/Restore` before the last exit
    // (crate::bootstrap_restore), verified already; nothing serves before.
    {
        let (c, o) = (config.clone(), opts.clone());
        tokio::task::spawn_blocking(move || crate::bootstrap_restore::resume(&c, o))
            .await
            .context("received backup restore task")??;
    }
    // A restore verifies the whole file before it writes anything.
    if let Some(file) = config.restore.clone() {
        let (c, o) = (config.clone(), opts.clone());
        tokio::task::spawn_blocking(move || crate::backup::restore(&c, &file, o))
            .await
            .context("restore task")??;
    }
    let tls = config.tls.as_ref().map(NodeTls::load).transpose()?;
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
    let links = TraceLinks::new(id);
    // Before Raft starts applying: storage reports to observability through these.
    storage.state_machine.set_hooks(Arc::new(NodeStorageHooks {
        links: links.clone(),
    }));
    let reader = storage.state_machine.reader();
    let net = PeerNetwork::new(
        identity.clone(),
        config.limits.peer_connect_timeout,
        config.limits.grpc_message_bytes_max,
        links.clone(),
    )
    .with_tls(tls.as_ref().map(|t| t.client.clone()))
    .with_faults(config.faults.peer())
    .with_rpc_timeout(config.limits.peer_rpc_timeout);
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
        tls = tls.as_ref().map(|t| t.cluster.to_string()).as_deref().unwrap_or("off (plaintext)"),
        "raft-node started"
    );
    let message_max = config.limits.grpc_message_bytes_max;
    let metrics_listen = config.metrics_listen;
    let node = Arc::new(Node::new(Parts {
        raft,
        identity,
        reader,
        config,
        net,
        log: storage.log,
        links: links.clone(),
    }));

    let (shutdown, shutdown_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut tasks = JoinSet::new();

    let reads = node.clone();
    let read_stop = stopped(shutdown_rx.clone());
    tasks.spawn(async move {
        reads.run_read_confirmations(read_stop).await;
        Ok(())
    });

    // A fatal Raft error (a failed log write, a failed fsync) stops openraft's
    // core for good; the process exits non-zero so its supervisor (kubelet,
    // `raft-node local`) restarts it and it recovers from disk.
    let watched = node.clone();
    let fatal_stop = stopped(shutdown_rx.clone());
    tasks.spawn(async move {
        let mut metrics = watched.raft().metrics();
        let fatal = metrics.wait_for(|m| m.running_state.is_err());
        let why = tokio::select! {
            r = fatal => match r {
                Ok(m) => m.running_state.clone().err().map(|e| e.to_string()).unwrap_or_default(),
                // The core dropped its metrics: it is gone just the same.
                Err(_) => "the Raft core stopped".to_string(),
            },
            _ = fatal_stop => return Ok(()),
        };
        tracing::error!(error = %why, "raft stopped on a fatal error; exiting");
        Err(anyhow::anyhow!("raft stopped on a fatal error: {why}"))
    });

    // ForceNewCluster accepted: exit (non-zero, so every supervisor restarts
    // the process) once the reply had time to leave; the rebuild runs on the
    // next start.
    let forced = node.clone();
    let mut forced_stop = shutdown_rx.clone();
    tasks.spawn(async move {
        tokio::select! {
            _ = forced.restart_requested() => {}
            _ = forced_stop.wait_for(|s| *s) => return Ok(()),
        }
        tokio::time::sleep(forced.limits().force_exit_delay).await;
        tracing::warn!("exiting to rebuild this node as a new cluster (ForceNewCluster)");
        Err(anyhow::anyhow!(
            "restarting to force a new cluster: start this node again to finish it"
        ))
    });

    let joints = node.clone();
    let joint_stop = stopped(shutdown_rx.clone());
    tasks.spawn(async move {
        crate::membership::finish_left_joint(joints, joint_stop).await;
        Ok(())
    });

    let elections = node.clone();
    let election_stop = stopped(shutdown_rx.clone());
    tasks.spawn(async move {
        crate::raft::election::run(elections, election_stop).await;
        Ok(())
    });

    // A disk slower than the heartbeat slows every commit and election down,
    // one slower than half the peer RPC timeout stops them (hole 7 of issue
    // 11): say so in the log.
    let disk_limits = node.limits().clone();
    let mut disk_stop = shutdown_rx.clone();
    tasks.spawn(async move {
        use crate::storage::slow_disk;
        let heartbeat = std::time::Duration::from_millis(disk_limits.heartbeat_interval_ms);
        let rpc_timeout = disk_limits.peer_rpc_timeout;
        let mut before = crate::storage::stats().snapshot();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(slow_disk::CHECK_EVERY) => {}
                _ = disk_stop.wait_for(|s| *s) => return Ok(()),
            }
            let after = crate::storage::stats().snapshot();
            if let Some(w) = slow_disk::warning(&before, &after, heartbeat, rpc_timeout) {
                tracing::warn!("{w}");
            }
            before = after;
        }
    });

    let (health, health_service) = tonic_health::server::health_reporter();
    tasks.spawn(crate::health::run(
        node.clone(),
        health,
        shutdown_rx.clone(),
    ));

    // Requests are bounded by the KV limits before any handler runs; replies
    // (a Range) by the message limit.
    let kv =
        KvServer::new(crate::grpc::kv::KvService::new(node.clone()).with_stop(shutdown_rx.clone()))
            .max_decoding_message_size(node.limits().kv.request_bytes_max())
            .max_encoding_message_size(message_max);
    let cluster = ClusterServer::new(crate::grpc::cluster::ClusterService::new(node.clone()));
    let client_router = Server::builder()
        .layer(TraceLayer { node_id: id })
        .layer(AuthzLayer {
            plane: Plane::Client,
            cluster: tls.as_ref().map(|t| t.cluster.clone()),
        })
        .add_service(health_service)
        .add_service(kv)
        .add_service(cluster);
    let client_stop = stopped(shutdown_rx.clone());
    let client_server: futures::future::BoxFuture<'static, Result<(), tonic::transport::Error>> =
        match &tls {
            Some(t) => Box::pin(client_router.serve_with_incoming_shutdown(
                crate::security::server::incoming(client_listener, t.server(t.client_auth)?),
                client_stop,
            )),
            None => Box::pin(
                client_router
                    .serve_with_incoming_shutdown(nodelay_incoming(client_listener), client_stop),
            ),
        };
    tasks.spawn(async move { client_server.await.context("client server") });

    let peer = RaftPeerServer::new(PeerService::new(node.clone()))
        .max_decoding_message_size(message_max)
        .max_encoding_message_size(message_max);
    let peer_router = Server::builder()
        .layer(TraceLayer { node_id: id })
        .layer(AuthzLayer {
            plane: Plane::Peer,
            cluster: tls.as_ref().map(|t| t.cluster.clone()),
        })
        .add_service(peer);
    let peer_stop = stopped(shutdown_rx.clone());
    let peer_server: futures::future::BoxFuture<'static, Result<(), tonic::transport::Error>> =
        match &tls {
            Some(t) => Box::pin(peer_router.serve_with_incoming_shutdown(
                // Peers always present a certificate (mutual TLS).
                crate::security::server::incoming(peer_listener, t.server(ClientAuth::Required)?),
                peer_stop,
            )),
            None => Box::pin(
                peer_router
                    .serve_with_incoming_shutdown(nodelay_incoming(peer_listener), peer_stop),
            ),
        };
    tasks.spawn(async move { peer_server.await.context("peer server") });

    // Prometheus: Raft gauges follow openraft's metrics; /metrics if asked for.
    let watched = node.clone();
    let lease_net = node.net().clone();
    tokio::spawn(crate::observability::metrics::watch_raft(
        node.raft().metrics(),
        move |m| watched.commit_index(m),
        move |m| {
            links.observe(m);
            lease_net.lease().observe(m);
        },
    ));
    if let Some(addr) = metrics_listen {
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

/// A node's TLS: its reloading credentials, its cluster (read from its own
/// certificate's identity) and the client configuration of its own
/// connections (peers, forwarding).
struct NodeTls {
    creds: Arc<raftkv_client::tls::Credentials>,
    cluster: Arc<raftkv_certs::ClusterRef>,
    client: Arc<rustls::ClientConfig>,
    client_auth: ClientAuth,
}

impl NodeTls {
    fn load(config: &crate::config::TlsConfig) -> anyhow::Result<Self> {
        let creds = raftkv_client::tls::Credentials::load(config.files.clone())
            .context("loading the TLS files")?;
        let own = creds
            .current()
            .key
            .as_ref()
            .and_then(|k| k.cert.first().cloned())
            .context("no certificate in --tls-cert")?;
        let identity = raftkv_certs::identity_of_der(&own)
            .context("reading this node's identity from --tls-cert")?;
        anyhow::ensure!(
            identity.role == raftkv_certs::Role::Peer,
            "--tls-cert must be a node (peer) certificate; {identity} has role {}",
            identity.role
        );
        let client = creds.client_config()?;
        crate::security::expiry::watch(creds.clone());
        Ok(NodeTls {
            creds,
            cluster: Arc::new(identity.cluster),
            client,
            client_auth: config.client_auth,
        })
    }

    fn server(&self, auth: ClientAuth) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        Ok(crate::security::server::server_config(&self.creds, auth)?)
    }
}
