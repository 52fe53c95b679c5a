//! `kubectl raft`: wiring only (flags, the API call, printing, exit code).

use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Config};
use kubectl_raft::portforward::PodPortForward;
use kubectl_raft::relay::Relay;
use kubectl_raft::target::{self, Purpose};
use kubectl_raft::{commands, render, through};
use raft_operator::crd::RaftCluster;
use raft_operator::resources::CLIENT_PORT;

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

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
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
    /// Print a key's value (linearizable read through a port-forward to a
    /// serving member). Exit code 1 when the key does not exist.
    Get {
        name: String,
        key: String,
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Write a value (through a port-forward to the leader).
    Put {
        name: String,
        key: String,
        value: String,
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Delete a key (through a port-forward to the leader).
    Del {
        name: String,
        key: String,
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Print each change to keys with PREFIX as a member applies it, one line
    /// each (`-o json`: a JSON object a line), until interrupted or --count.
    Watch {
        name: String,
        #[arg(default_value = "")]
        prefix: String,
        /// PREFIX is one exact key.
        #[arg(long)]
        exact: bool,
        /// Start at this store revision (not yet applied by the member: `get`
        /// gives the revision R to follow from, R + 1). Default: now.
        #[arg(long)]
        from_revision: Option<u64>,
        /// Exit 0 after this many events.
        #[arg(long)]
        count: Option<u64>,
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Save a consistent backup from the leader to FILE (as `raftctl snapshot
    /// save`: FILE.part, verified, renamed), with progress on stderr.
    Backup {
        name: String,
        file: String,
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Make a read replica (a learner; pod name or node ID) a voter. Only on a
    /// paused cluster: the operator owns the membership and would undo it.
    Promote {
        name: String,
        member: String,
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Output,
    },
}

/// Runs raftctl's `args` through a port-forward relay to the pod `purpose`
/// picks from the cluster's status.
async fn through_pod(
    client: &Client,
    namespace: &str,
    rc: &RaftCluster,
    purpose: Purpose,
    output: Output,
    args: Vec<String>,
) -> anyhow::Result<i32> {
    let pod = target::pick_pod(rc, purpose).map_err(anyhow::Error::msg)?;
    let opener = PodPortForward {
        pods: Api::namespaced(client.clone(), namespace),
        pod,
        port: CLIENT_PORT as u16,
    };
    // TLS (the default): the cluster's admin certificate, read from its Secret,
    // in a private directory that lives as long as this command.
    let mut argv = Vec::new();
    let mut _files = None;
    if let Some(secret_name) = kubectl_raft::tls::client_secret_name(rc) {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let secret = secrets.get(&secret_name).await.map_err(|e| {
            anyhow::anyhow!(
                "{} uses TLS: reading its client certificate Secret {secret_name}: {e}",
                rc.metadata.name.as_deref().unwrap_or_default()
            )
        })?;
        let data = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        let dir = kubectl_raft::tls::write_secret_files(&secret_name, &data)
            .map_err(anyhow::Error::msg)?;
        argv = kubectl_raft::tls::raftctl_args(
            dir.path(),
            rc.metadata.name.as_deref().unwrap_or_default(),
            namespace,
        );
        _files = Some(dir);
    }
    argv.extend(args);
    let relay = Relay::start(Arc::new(opener)).await?;
    Ok(through::run_raftctl(&relay, output == Output::Json, &argv).await)
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
    let client = Client::try_from(config)?;
    let api: Api<RaftCluster> = Api::namespaced(client.clone(), &namespace);
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
        Command::Get { name, key, output } => {
            let rc = api.get(&name).await?;
            let args = strings(&["get", "--", &key]);
            through_pod(&client, &namespace, &rc, Purpose::Serving, output, args).await
        }
        Command::Put {
            name,
            key,
            value,
            output,
        } => {
            let rc = api.get(&name).await?;
            let args = strings(&["put", "--", &key, &value]);
            through_pod(&client, &namespace, &rc, Purpose::Leader, output, args).await
        }
        Command::Del { name, key, output } => {
            let rc = api.get(&name).await?;
            let args = strings(&["del", "--", &key]);
            through_pod(&client, &namespace, &rc, Purpose::Leader, output, args).await
        }
        Command::Watch {
            name,
            prefix,
            exact,
            from_revision,
            count,
            output,
        } => {
            let rc = api.get(&name).await?;
            let mut args = strings(&["watch"]);
            if exact {
                args.push("--exact".into());
            }
            if let Some(r) = from_revision {
                args.extend(strings(&["--from-revision", &r.to_string()]));
            }
            if let Some(n) = count {
                args.extend(strings(&["--count", &n.to_string()]));
            }
            args.extend(strings(&["--", &prefix]));
            through_pod(&client, &namespace, &rc, Purpose::Serving, output, args).await
        }
        Command::Backup { name, file, output } => {
            let rc = api.get(&name).await?;
            let args = strings(&["snapshot", "save", "--progress", "--", &file]);
            through_pod(&client, &namespace, &rc, Purpose::Leader, output, args).await
        }
        Command::Promote {
            name,
            member,
            output,
        } => {
            let rc = api.get(&name).await?;
            let id = target::promote_target(&rc, &member).map_err(anyhow::Error::msg)?;
            eprintln!(
                "Warning: {name} is paused; once resumed, the operator steers the membership back to its spec \
                 ({} voters, {} read replicas) and may demote or replace this voter. Change the spec to keep it.",
                rc.spec.replicas, rc.spec.read_replicas
            );
            let args = strings(&["member", "promote", &id.to_string()]);
            through_pod(&client, &namespace, &rc, Purpose::Leader, output, args).await
        }
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn watch_flags_parse_after_the_name() {
        let cli = Cli::try_parse_from([
            "kubectl-raft",
            "watch",
            "demo",
            "p/",
            "--exact",
            "--from-revision",
            "9",
            "--count",
            "2",
            "-o",
            "json",
            "-n",
            "prod",
        ])
        .unwrap();
        assert_eq!(cli.namespace.as_deref(), Some("prod"));
        match cli.command {
            Command::Watch {
                name,
                prefix,
                exact,
                from_revision,
                count,
                output,
            } => {
                assert_eq!((name.as_str(), prefix.as_str()), ("demo", "p/"));
                assert!(exact);
                assert_eq!((from_revision, count), (Some(9), Some(2)));
                assert!(output == Output::Json);
            }
            _ => panic!("not watch"),
        }
    }
}
