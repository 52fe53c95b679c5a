//! `kubectl raft`: wiring only (flags, the API call, printing, exit code).

use clap::{Parser, Subcommand, ValueEnum};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Config};
use kubectl_raft::{commands, render};
use raft_operator::crd::RaftCluster;

#[derive(Parser)]
#[command(
    name = "kubectl raft",
    bin_name = "kubectl raft",
    version,
    about = "Look at and operate raftkv RaftClusters"
)]
struct Cli {
    /// Namespace (default: the kubeconfig context's).
    #[arg(short = 'n', long, global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Members, roles, lag, leader, conditions and the last membership change (with its
    /// trace ID). Exit code 0 when Available, 3 when not, 1 on error.
    Status {
        name: String,
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Stop every operator action on the cluster (annotation raftkv.dev/paused=true).
    Pause { name: String },
    /// Undo `pause`.
    Resume { name: String },
    /// Roll every pod, one at a time, leader last (annotation raftkv.dev/restartedAt).
    Restart { name: String },
    /// Hand leadership to a healthy follower (default: the most caught-up one). Runs
    /// `raftctl member transfer-leader` in the leader's pod through `kubectl exec`.
    TransferLeader {
        name: String,
        /// The follower's pod.
        #[arg(long)]
        to: Option<String>,
    },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(render::EXIT_ERROR);
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    let config = Config::infer().await?;
    let namespace = cli
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let api: Api<RaftCluster> = Api::namespaced(Client::try_from(config)?, &namespace);
    let patch = |name: String, body: serde_json::Value, what: &'static str| {
        let api = api.clone();
        async move {
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&body))
                .await?;
            println!("raftcluster.raftkv.dev/{name} {what}");
            anyhow::Ok(render::EXIT_OK)
        }
    };
    match cli.command {
        Command::Status { name, output } => {
            let rc = api.get(&name).await?;
            match output {
                Output::Table => print!("{}", render::status_text(&rc)),
                Output::Json => println!("{:#}", render::status_json(&rc)),
            }
            Ok(render::status_exit_code(&rc))
        }
        Command::Pause { name } => patch(name, commands::pause_patch(), "paused").await,
        Command::Resume { name } => patch(name, commands::resume_patch(), "resumed").await,
        Command::TransferLeader { name, to } => {
            let rc = api.get(&name).await?;
            let args = commands::transfer_leader_exec(&rc, &namespace, to.as_deref())
                .map_err(anyhow::Error::msg)?;
            let status = std::process::Command::new("kubectl")
                .args(&args)
                .status()
                .map_err(|e| anyhow::anyhow!("cannot run kubectl: {e}"))?;
            Ok(status.code().unwrap_or(render::EXIT_ERROR))
        }
        Command::Restart { name } => {
            let now = k8s_openapi::jiff::Timestamp::now().to_string();
            patch(name, commands::restart_patch(&now), "restarted").await
        }
    }
}
