//! `raft-node`: run one Raft key-value node, or (`raft-node local`) a whole
//! throwaway cluster on loopback.

use clap::{Parser, Subcommand};
use raftkv_node::config::NodeArgs;

#[derive(Parser)]
#[command(
    name = "raft-node",
    version,
    about = "A Raft-replicated key-value node"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    node: Option<NodeArgs>,
    /// Fault injection for tests (off by default).
    #[command(flatten)]
    faults: raftkv_node::observability::faults::FaultArgs,
    /// Log format: text (default on a terminal) or json.
    #[arg(long, global = true, env = "RAFT_LOG_FORMAT")]
    log_format: Option<raftkv_node::telemetry::LogFormat>,
}

#[derive(Subcommand)]
enum Command {
    /// Start N nodes on loopback, initialize them, and stop them all on Ctrl-C.
    Local(raftkv_node::local::LocalArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = raftkv_node::telemetry::init(
        cli.log_format,
        "raft-node",
        cli.node.as_ref().map(|a| a.display_name()).as_deref(),
    );
    match (cli.command, cli.node) {
        (Some(Command::Local(args)), _) => raftkv_node::local::run(args).await,
        (None, Some(args)) => {
            let mut config = args.resolve()?;
            config.faults = cli.faults;
            let mut handle = raftkv_node::app::start_node(config).await?;
            tokio::select! {
                r = handle.wait() => r,
                _ = raftkv_node::telemetry::shutdown_signal() => {
                    tracing::info!("shutting down");
                    handle.shutdown().await
                }
            }
        }
        (None, None) => anyhow::bail!("--data-dir is required (or use `raft-node local`)"),
    }
}
