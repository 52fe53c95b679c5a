//! `raftkv-faults`: see faults/README.md.

use clap::Parser;
use raftkv_faults::cli::{self, Cli, Command};

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Run(args) => cli::run(args).await,
        Command::Table { summary } => cli::table(summary),
        Command::Check { history, budget } => cli::check(history, budget),
    };
    match code {
        Ok(c) => std::process::exit(c),
        Err(e) => {
            eprintln!("raftkv-faults: {e:#}");
            std::process::exit(2);
        }
    }
}
