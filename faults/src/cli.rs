//! Command line: `raftkv-faults run ...` and `raftkv-faults check HISTORY`.
//!
//! Exit codes: 0 clean, 1 anomalies found (or a history that fails the
//! check), 2 harness error (setup failed, interrupted, checker inconclusive).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::{Parser, Subcommand};

use crate::nemesis::{Kind, Plan};
use crate::run::{RunConfig, Summary, run_one};
use crate::workload::Break;

#[derive(Parser)]
#[command(
    name = "raftkv-faults",
    version,
    about = "Fault-injection suite for raftkv (needs root)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Start a cluster in network namespaces, run the workload under a
    /// nemesis, heal, and check the history.
    Run(RunArgs),
    /// Print the table of a summary.jsonl (one line per run).
    Table { summary: PathBuf },
    /// Check a saved history.jsonl again.
    Check {
        history: PathBuf,
        #[arg(long, default_value_t = crate::checker::DEFAULT_BUDGET)]
        budget: u64,
    },
}

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// none, a nemesis (kill, pause, partition, peer-faults, fsync, wipe,
    /// membership), a comma-separated list of them, `all` (each one in turn,
    /// one run each) or `mixed` (a random nemesis per step).
    #[arg(long, default_value = "mixed")]
    pub nemesis: String,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Workload time of each run (heal and checks come on top).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "20s")]
    pub duration: Duration,
    /// Voters: 3 or 5.
    #[arg(long, default_value_t = 3, value_parser = parse_nodes)]
    pub nodes: usize,
    /// Where run folders go.
    #[arg(long, default_value = "faults-out")]
    pub out: PathBuf,
    /// Keep running seeds seed, seed+1, ... (each with every selected
    /// nemesis) until this much time has passed.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub soak: Option<Duration>,
    /// Deliberately break the recording so the checker must find anomalies.
    #[arg(long = "break", value_enum)]
    pub broken: Option<Break>,
    /// Concurrent client workers.
    #[arg(long, default_value_t = 5)]
    pub workers: u32,
    /// Keys the workload uses.
    #[arg(long, default_value_t = 5)]
    pub keys: usize,
    /// The raft-node binary (default: $CARGO_TARGET_DIR/debug/raft-node, else
    /// target/debug/raft-node).
    #[arg(long, env = "RAFTKV_NODE_BIN")]
    pub node_bin: Option<PathBuf>,
    /// Keep the run folder of clean runs too.
    #[arg(long)]
    pub keep: bool,
    /// Linearizability search steps per key before giving up.
    #[arg(long, default_value_t = crate::checker::DEFAULT_BUDGET)]
    pub budget: u64,
}

fn parse_nodes(s: &str) -> Result<usize, String> {
    match s {
        "3" => Ok(3),
        "5" => Ok(5),
        _ => Err(format!("{s:?}: the suite runs 3 or 5 voters")),
    }
}

pub fn node_bin(arg: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let path = arg.unwrap_or_else(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("target"));
        target.join("debug").join("raft-node")
    });
    if !path.is_file() {
        bail!(
            "raft-node not found at {}; build it with `cargo build -p raftkv-node --bin raft-node` \
             (same CARGO_TARGET_DIR), or pass --node-bin / set RAFTKV_NODE_BIN",
            path.display()
        );
    }
    Ok(std::fs::canonicalize(&path)?)
}

pub fn plans(spec: &str) -> anyhow::Result<Vec<Plan>> {
    Ok(match spec {
        "all" => Kind::ALL.into_iter().map(Plan::One).collect(),
        "mixed" => vec![Plan::Mixed],
        "none" => vec![Plan::None],
        list => list
            .split(',')
            .map(|s| match s.trim() {
                "mixed" => Ok(Plan::Mixed),
                "none" => Ok(Plan::None),
                name => Kind::parse(name).map(Plan::One).ok_or_else(|| {
                    anyhow::anyhow!(
                        "unknown nemesis {name:?}; one of none, all, mixed, {}",
                        Kind::ALL
                            .into_iter()
                            .chain(Kind::STEADY)
                            .map(|k| k.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }),
            })
            .collect::<anyhow::Result<_>>()?,
    })
}

/// Runs what `args` asks; returns the process exit code.
pub async fn run(args: RunArgs) -> anyhow::Result<i32> {
    crate::netns::require_root()?;
    let plans = plans(&args.nemesis)?;
    let node_bin = node_bin(args.node_bin.clone())?;
    std::fs::create_dir_all(&args.out)?;
    let (cancel_tx, cancel) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!(
            "==> interrupted: stopping nodes and removing namespaces (again to exit at once)"
        );
        let _ = cancel_tx.send(true);
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        // The next run cleans up whatever is left (its stale-slot sweep).
        std::process::exit(130);
    });

    let started = Instant::now();
    let mut summaries: Vec<Summary> = Vec::new();
    let mut seed = args.seed;
    'seeds: loop {
        for plan in &plans {
            let cfg = RunConfig {
                node_bin: node_bin.clone(),
                nodes: args.nodes,
                seed,
                duration: args.duration,
                plan: plan.clone(),
                out: args.out.clone(),
                workers: args.workers,
                keys: args.keys,
                broken: args.broken,
                keep: args.keep,
                budget: args.budget,
            };
            let s = run_one(&cfg, cancel.clone()).await;
            append_summary(&args.out, &s);
            summaries.push(s);
            if *cancel.borrow() {
                break 'seeds;
            }
            if let Some(soak) = args.soak
                && started.elapsed() >= soak
            {
                break 'seeds;
            }
        }
        match args.soak {
            Some(soak) if started.elapsed() < soak => seed += 1,
            _ => break,
        }
    }
    if summaries.len() > 1 {
        print_table(&summaries);
    }
    let anomalies: usize = summaries.iter().map(|s| s.anomalies).sum();
    let harness = summaries
        .iter()
        .any(|s| s.harness_error.is_some() || !s.inconclusive_keys.is_empty());
    for s in summaries
        .iter()
        .filter(|s| s.kept && (s.anomalies > 0 || s.harness_error.is_some()))
    {
        println!("==> failing run kept in {}", s.dir.display());
    }
    Ok(if anomalies > 0 {
        1
    } else if harness {
        2
    } else {
        0
    })
}

fn append_summary(out: &std::path::Path, s: &Summary) {
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out.join("summary.jsonl"))
    {
        let _ = serde_json::to_writer(&mut f, s);
        let _ = f.write_all(b"\n");
    }
}

pub fn print_table(summaries: &[Summary]) {
    println!(
        "\n{:<12} {:>5} {:>4} {:>7} {:>7} {:>6} {:>7} {:>6} {:>9} {:>8} {:>10} {:>9}  RESULT",
        "NEMESIS",
        "SEED",
        "N",
        "OPS",
        "OK",
        "FAIL",
        "UNKNOWN",
        "FAULTS",
        "ANOMALIES",
        "LEADERS",
        "NO-WRITE",
        "RECOVERY"
    );
    for s in summaries {
        let result = if s.anomalies > 0 {
            format!("ANOMALIES {}  kept in {}", s.anomaly_kinds, s.dir.display())
        } else if let Some(e) = &s.harness_error {
            format!("HARNESS ERROR {e}")
        } else if !s.inconclusive_keys.is_empty() {
            "INCONCLUSIVE".into()
        } else {
            "ok".into()
        };
        println!(
            "{:<12} {:>5} {:>4} {:>7} {:>7} {:>6} {:>7} {:>6} {:>9} {:>8} {:>9.2}s {:>9}  {result}",
            s.nemesis,
            s.seed,
            s.nodes,
            s.ops,
            s.ok,
            s.fail,
            s.unknown,
            s.faults,
            s.anomalies,
            s.leader_changes,
            s.longest_no_ack_write_ms as f64 / 1e3,
            s.recovery_ms
                .map(|m| format!("{:.2}s", m as f64 / 1e3))
                .unwrap_or_else(|| "-".into()),
        );
    }
}

pub fn table(path: PathBuf) -> anyhow::Result<i32> {
    let text = std::fs::read_to_string(&path)?;
    let summaries: Vec<Summary> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    print_table(&summaries);
    Ok(0)
}

pub fn check(history: PathBuf, budget: u64) -> anyhow::Result<i32> {
    let ops = crate::history::read_jsonl(&history)?;
    let report = crate::checker::check(&ops, budget);
    print!("{}", report.text);
    println!(
        "{} ops, {} anomalies{}",
        ops.len(),
        report.anomalies.len(),
        if report.inconclusive.is_empty() {
            String::new()
        } else {
            format!(", inconclusive keys {:?}", report.inconclusive)
        }
    );
    Ok(if !report.anomalies.is_empty() {
        1
    } else if !report.inconclusive.is_empty() {
        2
    } else {
        0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_runs_are_named_explicitly_never_part_of_all() {
        let all = plans("all").unwrap();
        assert!(all.iter().all(|p| p.steady().is_none()), "{all:?}");
        let steady = plans("slow-link,fsync-stall").unwrap();
        assert_eq!(
            steady.iter().map(Plan::steady).collect::<Vec<_>>(),
            [Some(Kind::SlowLink), Some(Kind::FsyncStall)]
        );
        let err = plans("slow-disk").unwrap_err().to_string();
        assert!(
            err.contains("slow-link") && err.contains("fsync-stall"),
            "{err}"
        );
    }
}
