//! `raftctl`: command-line client of a raftkv cluster (commands live in
//! the `raftctl` library).

use clap::Parser;
use raftctl::{self as ctl, Cli};

fn main() {
    let cli = Cli::parse();
    // Before any thread exists: `--trace` sets the sampler's environment.
    if let Err(e) = ctl::prepare_process(&cli) {
        eprintln!("Error: {e}");
        std::process::exit(e.exit_code);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: starting the async runtime: {e}");
            std::process::exit(1);
        }
    };
    // Inside the runtime: the OTLP exporter's channel lives there.
    let telemetry = runtime.block_on(async { ctl::init_logging(cli.log_format) });
    let result = runtime.block_on(ctl::run(cli));
    drop(telemetry); // exports the command's trace before exit
    if let Err(e) = result {
        eprintln!("Error: {e}");
        std::process::exit(e.exit_code);
    }
}
