use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "raft-operator",
    version,
    about = "Kubernetes operator for raftkv clusters"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the RaftCluster CRD as YAML (or write it to each --output file).
    Crd {
        /// Write the CRD to this file instead of stdout (repeatable).
        #[arg(long)]
        output: Vec<std::path::PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd { output } => {
            let yaml = raft_operator::crd::crd_yaml();
            if output.is_empty() {
                print!("{yaml}");
            }
            for path in output {
                std::fs::write(&path, &yaml)?;
            }
        }
    }
    Ok(())
}
