//! `raftkv-bench`: the parts of hack/bench/vs-etcd.sh worth a test, as commands.
//!
//!   raftkv-bench parse etcd|raftctl FILE   one JSON object of the run's figures, or exit 1
//!   raftkv-bench plot RUN.json --out-dir D  D/perf-writes.svg and D/perf-reads.svg
//!                          [--prefix P]     (D/P-writes.svg ...; ops without rounds skipped)
//!   raftkv-bench summary RUN.json           the sweep and targets tables (Markdown), and
//!                                           with TLS rounds the TLS tables

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use raftkv_bench::{curves_svg, etcd_output, raftctl_output, run_doc, summary};

#[derive(Parser)]
#[command(about = "Parse load-tool outputs and draw the vs-etcd curves")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Tool {
    Etcd,
    Raftctl,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print a run's figures as JSON (ops, errors, throughput, p50_ms, p99_ms, elapsed_s).
    Parse { tool: Tool, file: PathBuf },
    /// Draw perf-writes.svg and perf-reads.svg from a run document.
    Plot {
        run: PathBuf,
        #[arg(long)]
        out_dir: PathBuf,
        /// File name prefix: PREFIX + "writes.svg" and PREFIX + "reads.svg".
        #[arg(long, default_value = "perf-")]
        prefix: String,
    },
    /// Print the sweep and targets tables of a run document.
    Summary { run: PathBuf },
}

fn read(path: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Parse { tool, file } => {
            let text = read(&file)?;
            let figures = match tool {
                Tool::Etcd => etcd_output::parse(&text),
                Tool::Raftctl => raftctl_output::parse(&text),
            }
            .with_context(|| format!("in {}", file.display()))?;
            println!("{}", serde_json::to_string(&figures)?);
        }
        Cmd::Plot {
            run,
            out_dir,
            prefix,
        } => {
            let doc = run_doc::parse(&read(&run)?)?;
            std::fs::create_dir_all(&out_dir)?;
            let modes = if doc.has_tls() {
                ", plaintext and TLS"
            } else {
                ""
            };
            for (op, file, what) in [
                ("put", "writes.svg", "writes"),
                ("get", "reads.svg", "linearizable reads"),
            ] {
                let series = doc.series(op);
                if series.is_empty() {
                    continue;
                }
                let title = format!(
                    "{what}: etcd vs raftkv{modes}, 3 members on loopback ({})",
                    doc.date
                );
                let path = out_dir.join(format!("{prefix}{file}"));
                std::fs::write(&path, curves_svg::render(&title, &series))
                    .with_context(|| format!("writing {}", path.display()))?;
                eprintln!("wrote {}", path.display());
            }
        }
        Cmd::Summary { run } => {
            let doc = run_doc::parse(&read(&run)?)?;
            println!("Writes:\n\n{}", summary::sweep_table(&doc, "put"));
            println!(
                "Linearizable reads:\n\n{}",
                summary::sweep_table(&doc, "get")
            );
            println!("Targets:\n\n{}", summary::targets_table(&doc));
            for (op, what) in [("put", "Writes"), ("get", "Linearizable reads")] {
                let cost = summary::tls_cost_table(&doc, op);
                if cost.is_empty() {
                    continue;
                }
                println!(
                    "{what}, the cost of TLS (medians of the rounds; TLS / plaintext: median and range of per-round ratios):\n\n{cost}"
                );
                println!(
                    "{what}, raftkv / etcd plaintext and with TLS (median and range of per-round ratios):\n\n{}",
                    summary::tls_versus_table(&doc, op)
                );
            }
        }
    }
    Ok(())
}
