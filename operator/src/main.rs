use clap::Parser;
use raft_operator::cli::{Cli, Command};
use raft_operator::{app, crd};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some((config, json_logs)) = cli.command.run_config() {
        let _telemetry = raft_operator::telemetry::init(json_logs);
        app::run(config).await?;
        return Ok(());
    }
    if let Command::Crd { output } = cli.command {
        if output.is_empty() {
            print!("{}", crd::crd_yaml());
        }
        for path in output {
            std::fs::write(&path, crd::crd_yaml())?;
        }
    }
    Ok(())
}
