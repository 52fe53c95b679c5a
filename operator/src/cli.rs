//! Command-line interface of the `raft-operator` binary.

use std::net::SocketAddr;

use clap::{Parser, Subcommand, ValueEnum};

use crate::app::RunConfig;
use crate::context::NodeAddressing;

/// The node image of this operator's version, when nothing else is configured.
pub const DEFAULT_NODE_IMAGE: &str = concat!("raftkv/raft-node:", env!("CARGO_PKG_VERSION"));

#[derive(Parser)]
#[command(
    name = "raft-operator",
    version,
    about = "Kubernetes operator for raftkv clusters"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The operator's CRDs.
#[derive(Clone, Copy, ValueEnum)]
pub enum CrdKind {
    RaftCluster,
    RaftClusterBackup,
}

impl CrdKind {
    pub fn yaml(self) -> String {
        match self {
            CrdKind::RaftCluster => crate::crd::crd_yaml(),
            CrdKind::RaftClusterBackup => crate::crd::backup_crd_yaml(),
        }
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the controller (uses in-cluster config, else the kubeconfig).
    Run {
        /// Watch only this namespace (default: all namespaces).
        #[arg(long, env = "WATCH_NAMESPACE")]
        watch_namespace: Option<String>,
        /// Address of /metrics, /healthz and /readyz.
        #[arg(long, default_value = "0.0.0.0:8080")]
        metrics_addr: SocketAddr,
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
        /// Reconcile only while holding a Lease (for more than one replica).
        #[arg(long)]
        leader_election: bool,
        /// Namespace of the Lease (default: the pod's namespace).
        #[arg(long)]
        leader_election_namespace: Option<String>,
        #[arg(long, default_value = "raft-operator")]
        lease_name: String,
        /// How to reach nodes: pod DNS names (in-cluster) or pod IPs (out-of-cluster).
        #[arg(long, value_enum, default_value = "pod-dns")]
        node_addressing: NodeAddressing,
        /// raft-node image of RaftClusters without spec.image (the Helm chart sets
        /// raft-node at the operator's own tag).
        #[arg(long, env = "RAFTKV_DEFAULT_NODE_IMAGE", default_value = DEFAULT_NODE_IMAGE)]
        default_node_image: String,
    },
    /// Print a CRD as YAML (or write it to each --output file).
    Crd {
        #[arg(long)]
        output: Vec<std::path::PathBuf>,
        /// Which CRD.
        #[arg(long, value_enum, default_value = "raft-cluster")]
        kind: CrdKind,
    },
}

impl Command {
    /// The settings of `run`, or `None` for other commands; also whether logs are JSON.
    pub fn run_config(&self) -> Option<(RunConfig, bool)> {
        let Command::Run {
            watch_namespace,
            metrics_addr,
            log_format,
            leader_election,
            leader_election_namespace,
            lease_name,
            node_addressing,
            default_node_image,
        } = self
        else {
            return None;
        };
        let config = RunConfig {
            watch_namespace: watch_namespace.clone(),
            metrics_addr: *metrics_addr,
            leader_election: *leader_election,
            leader_election_namespace: leader_election_namespace.clone(),
            lease_name: lease_name.clone(),
            node_addressing: *node_addressing,
            default_node_image: default_node_image.clone(),
        };
        Some((config, matches!(log_format, LogFormat::Json)))
    }
}
