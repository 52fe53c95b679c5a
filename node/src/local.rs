//! `raft-node local`: a throwaway N-node cluster on loopback.

use std::path::PathBuf;
use std::time::Duration;

/// Flags of `raft-node local`. Node `i` (0-based) listens for clients on
/// `127.0.0.1:<base-port + 2i>` and for peers on `127.0.0.1:<base-port + 2i + 1>`.
#[derive(Debug, Clone, clap::Args)]
pub struct LocalArgs {
    /// Number of nodes (voters).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=9))]
    pub nodes: u16,
    /// Directory holding one data directory per node (`node-<i>`) and their logs.
    /// Re-running with the same directory restarts the same cluster.
    #[arg(long, default_value = "raftkv-local")]
    pub data_dir: PathBuf,
    /// First port: node i gets client port base+2i and peer port base+2i+1.
    #[arg(long, default_value_t = 7000)]
    pub base_port: u16,
    /// Serve Prometheus metrics of node i on 127.0.0.1:<metrics-base-port + i>.
    #[arg(long)]
    pub metrics_base_port: Option<u16>,
    /// Where node logs go: `files` (<data-dir>/node-<i>.log) or `stdout` (prefixed with the node name).
    #[arg(long, value_enum, default_value_t = LogTarget::Files)]
    pub logs: LogTarget,
    /// Delete the data directory first (start a brand-new cluster).
    #[arg(long)]
    pub fresh: bool,
    /// How long to wait after SIGTERM before killing a node.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    pub stop_timeout: Duration,
    /// How long to wait for nodes to answer and a leader to be elected.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    pub ready_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogTarget {
    Files,
    Stdout,
}

pub async fn run(args: LocalArgs) -> anyhow::Result<()> {
    anyhow::bail!("raft-node local is not implemented yet ({args:?})")
}
