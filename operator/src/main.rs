use clap::Parser;
use raft_operator::app;
use raft_operator::cli::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some((config, json_logs)) = cli.command.run_config() {
        let _telemetry = raft_operator::telemetry::init(json_logs);
        app::run(config).await?;
        return Ok(());
    }
    if let Command::Crd { output, kind } = cli.command {
        let yaml = kind.yaml();
        if output.is_empty() {
            print!("{yaml}");
        }
        for path in output {
            std::fs::write(&path, &yaml)?;
        }
    }
    Ok(())
}
