//! Startup: client, CRD check, metrics server, optional leader election, controller.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kube::Client;
use kube::api::{Api, ListParams};

use crate::controller::{self, ControllerConfig, NodeAddressing};
use crate::crd::RaftCluster;
use crate::leader::LeaderElector;
use crate::metrics::Metrics;
use crate::server::{self, ServerState};
use crate::{Error, Result};

/// Everything `raft-operator run` needs.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub watch_namespace: Option<String>,
    pub metrics_addr: SocketAddr,
    pub leader_election: bool,
    /// Namespace of the Lease; defaults to the pod's namespace.
    pub leader_election_namespace: Option<String>,
    pub lease_name: String,
    pub node_addressing: NodeAddressing,
    /// raft-node image of RaftClusters without `spec.image`.
    pub default_node_image: String,
}

/// The pod name in-cluster (`POD_NAME` from the downward API), else host name + pid.
fn identity() -> String {
    std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    })
}

/// Fails with an install hint when the RaftCluster CRD is not served.
pub async fn check_crd(client: &Client, namespace: &Option<String>) -> Result<()> {
    let api: Api<RaftCluster> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(Error::CrdNotInstalled),
        Err(e) => Err(e.into()),
    }
}

pub async fn run(config: RunConfig) -> Result<()> {
    let client = Client::try_default().await?;
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let state = ServerState {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    let server = tokio::spawn(server::serve(config.metrics_addr, state));

    check_crd(&client, &config.watch_namespace).await?;
    ready.store(true, Ordering::Relaxed);

    let identity = identity();
    let controller_config = ControllerConfig {
        namespace: config.watch_namespace.clone(),
        node_addressing: config.node_addressing,
        instance: identity.clone(),
        default_node_image: config.default_node_image.clone(),
        operator_namespace: std::env::var("POD_NAMESPACE")
            .ok()
            .filter(|n| !n.is_empty()),
    };
    let work = async {
        if !config.leader_election {
            metrics.leader.set(1);
            controller::run(client.clone(), controller_config, metrics.clone()).await;
            return Ok(());
        }
        let ns = config
            .leader_election_namespace
            .clone()
            .or_else(|| std::fs::read_to_string(NAMESPACE_FILE).ok())
            .or_else(|| config.watch_namespace.clone())
            .unwrap_or_else(|| client.default_namespace().to_string());
        let mut elector =
            LeaderElector::new(client.clone(), ns.trim(), &config.lease_name, &identity);
        elector.acquire().await?;
        metrics.leader.set(1);
        let outcome = tokio::select! {
            () = controller::run(client.clone(), controller_config, metrics.clone()) => Ok(()),
            lost = elector.hold() => Err(lost),
            () = shutdown_grace_expired() => {
                tracing::warn!(
                    grace_secs = SHUTDOWN_GRACE.as_secs(),
                    "reconciles still running after SIGTERM: abandoning them to hand the Lease over"
                );
                Ok(())
            }
        };
        if outcome.is_ok() {
            elector.release().await;
        }
        outcome
    };
    tokio::select! {
        r = work => r,
        r = server => r.map_err(|e| Error::Startup(e.to_string()))?,
    }
}

/// How long in-flight reconciles may run after SIGTERM before they are dropped and
/// the Lease released. Without a bound, one reconcile stuck on slow node RPCs kept
/// the Lease until the kubelet killed the pod and the Lease expired (45 s without a
/// leader on every operator upgrade seen in e2e). Dropping a reconcile is safe: the
/// next leader observes the cluster again before it acts, and the nodes refuse a
/// second membership change while one is in flight.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Resolves `SHUTDOWN_GRACE` after the first SIGTERM or Ctrl-C (the controller's own
/// graceful shutdown listens for the same signals).
async fn shutdown_grace_expired() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    tokio::time::sleep(SHUTDOWN_GRACE).await;
}

const NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
