//! `bench put|get`: N concurrent clients, each with its own connections, each
//! running one request at a time for a fixed duration. Latencies go into an
//! HDR histogram per client, merged at the end.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;

use super::output::{OutputFormat, json_doc};
use super::{ConsistencyArg, CtlError, ReadArgs};
use raftkv_client::{ClientOptions, RaftClient};

/// Latencies are recorded in microseconds, from 1 µs to this (longer ones are clamped).
const LATENCY_US_MAX: u64 = 60_000_000;
/// Concurrent clients allowed (each holds its own HTTP/2 connections).
const CLIENTS_MAX: u32 = 4096;

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum)]
    pub op: BenchOp,
    /// Concurrent clients (each one request at a time, its own connections).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=CLIENTS_MAX as i64))]
    pub clients: u32,
    /// How long to run.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// Size of each written value, in bytes.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Number of distinct keys (random uniform); `get` writes them all first.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub keys: u64,
    /// Prefix of the benchmark's keys.
    #[arg(long, default_value = "bench/")]
    pub key_prefix: String,
    /// Read consistency for `get`.
    #[arg(long, value_enum, default_value_t = ConsistencyArg::Linearizable)]
    pub consistency: ConsistencyArg,
    /// `get`: do not write the keys first (a previous run did). A benchmark
    /// script that measures the nodes' CPU over the whole process would
    /// otherwise count the preload's writes against the reads.
    #[arg(long)]
    pub skip_preload: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchOp {
    Put,
    Get,
}

/// What one client task hands back.
struct ClientResult {
    hist: Histogram<u64>,
    errors: BTreeMap<String, (u64, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BenchSummary {
    pub op: &'static str,
    pub clients: u32,
    pub elapsed: Duration,
    pub ops: u64,
    pub errors: u64,
    pub throughput: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    /// gRPC code -> (count, a sample message).
    pub error_kinds: BTreeMap<String, (u64, String)>,
}

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds")
}

/// Summarize a run from its merged histogram (microseconds). Pure.
pub fn summarize(
    op: &'static str,
    clients: u32,
    hist: &Histogram<u64>,
    errors: BTreeMap<String, (u64, String)>,
    elapsed: Duration,
) -> BenchSummary {
    let ops = hist.len();
    let ms = |us: u64| us as f64 / 1000.0;
    let q = |quantile: f64| {
        if ops == 0 {
            0.0
        } else {
            ms(hist.value_at_quantile(quantile))
        }
    };
    BenchSummary {
        op,
        clients,
        elapsed,
        ops,
        errors: errors.values().map(|(n, _)| n).sum(),
        throughput: if elapsed.is_zero() {
            0.0
        } else {
            ops as f64 / elapsed.as_secs_f64()
        },
        p50_ms: q(0.5),
        p90_ms: q(0.9),
        p99_ms: q(0.99),
        p999_ms: q(0.999),
        max_ms: if ops == 0 { 0.0 } else { ms(hist.max()) },
        mean_ms: if ops == 0 { 0.0 } else { hist.mean() / 1000.0 },
        error_kinds: errors,
    }
}

pub fn render(s: &BenchSummary, out: OutputFormat) -> String {
    match out {
        OutputFormat::Table => {
            let mut t = format!(
                "bench {}: {} clients, {:.1}s\n  requests    {} ok, {} errors\n  throughput  {:.1} ops/s\n  latency     p50 {:.3} ms   p90 {:.3} ms   p99 {:.3} ms   p99.9 {:.3} ms   max {:.3} ms   mean {:.3} ms\n",
                s.op,
                s.clients,
                s.elapsed.as_secs_f64(),
                s.ops,
                s.errors,
                s.throughput,
                s.p50_ms,
                s.p90_ms,
                s.p99_ms,
                s.p999_ms,
                s.max_ms,
                s.mean_ms
            );
            for (code, (n, sample)) in &s.error_kinds {
                t.push_str(&format!("  errors      {n} x {code}: {sample}\n"));
            }
            t
        }
        OutputFormat::Json => json_doc(&json!({
            "op": s.op,
            "clients": s.clients,
            "elapsed_s": s.elapsed.as_secs_f64(),
            "ops": s.ops,
            "errors": s.errors,
            "throughput_ops_per_s": s.throughput,
            "latency_ms": {
                "p50": s.p50_ms, "p90": s.p90_ms, "p99": s.p99_ms, "p99.9": s.p999_ms,
                "max": s.max_ms, "mean": s.mean_ms,
            },
            "error_kinds": s.error_kinds.iter().map(|(k, (n, m))| (k.clone(), json!({"count": n, "sample": m})))
                .collect::<serde_json::Map<_, _>>(),
        })),
    }
}

fn op_name(op: BenchOp) -> &'static str {
    match op {
        BenchOp::Put => "put",
        BenchOp::Get => "get",
    }
}

fn key(prefix: &str, i: u64) -> Vec<u8> {
    format!("{prefix}{i:010}").into_bytes()
}

pub async fn run(
    endpoints: Vec<String>,
    opts: ClientOptions,
    args: BenchArgs,
    out: OutputFormat,
) -> Result<(), CtlError> {
    // Writes go to the leader (a follower would forward them): start there.
    let setup = RaftClient::connect(endpoints.clone(), opts.clone())?;
    let mut endpoints = endpoints;
    match setup.leader_status().await {
        Ok((leader, _)) => {
            if args.op == BenchOp::Put {
                endpoints.retain(|e| *e != leader);
                endpoints.insert(0, leader);
            }
        }
        Err(e) => eprintln!("warning: no leader found before the run ({e})"),
    }
    let value: Vec<u8> = (0..args.value_size)
        .map(|i| b'a' + (i % 26) as u8)
        .collect();
    let read = ReadArgs {
        consistency: args.consistency,
        max_staleness: None,
        min_revision: 0,
    }
    .to_options()?;

    if args.op == BenchOp::Get && !args.skip_preload {
        eprintln!(
            "preloading {} keys of {} bytes...",
            args.keys, args.value_size
        );
        let n = u64::from(args.clients).min(args.keys);
        let tasks: Vec<_> = (0..n)
            .map(|t| {
                let (c, value, prefix, keys) = (
                    setup.clone(),
                    value.clone(),
                    args.key_prefix.clone(),
                    args.keys,
                );
                tokio::spawn(async move {
                    for i in (t..keys).step_by(n as usize) {
                        c.put(key(&prefix, i), value.clone()).await?;
                    }
                    Ok::<_, raftkv_client::Error>(())
                })
            })
            .collect();
        for t in tasks {
            t.await
                .map_err(|e| CtlError::failed(format!("preload task: {e}")))??;
        }
    }

    let ops = Arc::new(AtomicU64::new(0));
    let errs = Arc::new(AtomicU64::new(0));
    let start_barrier = Arc::new(tokio::sync::Barrier::new(args.clients as usize + 1));
    let mut tasks = Vec::with_capacity(args.clients as usize);
    for i in 0..args.clients {
        // Each client has its own RaftClient, hence its own connections.
        let c = RaftClient::connect(endpoints.clone(), opts.clone())?;
        let c = if args.op == BenchOp::Get {
            c.prefer(i as usize)
        } else {
            c
        };
        let (ops, errs, barrier) = (ops.clone(), errs.clone(), start_barrier.clone());
        let (value, prefix, keys, op, duration) = (
            value.clone(),
            args.key_prefix.clone(),
            args.keys,
            args.op,
            args.duration,
        );
        tasks.push(tokio::spawn(async move {
            // Connect before the clock starts.
            let _ = c.status(&c.preferred_endpoint()).await;
            barrier.wait().await;
            let deadline = Instant::now() + duration;
            let mut res = ClientResult {
                hist: new_histogram(),
                errors: BTreeMap::new(),
            };
            while Instant::now() < deadline {
                let k = key(&prefix, rand::random_range(0..keys));
                let t0 = Instant::now();
                let r = match op {
                    BenchOp::Put => c.put(k, value.clone()).await.map(drop),
                    BenchOp::Get => c.get(k, read).await.map(drop),
                };
                let us = (t0.elapsed().as_micros() as u64).clamp(1, LATENCY_US_MAX);
                match r {
                    Ok(()) => {
                        res.hist.saturating_record(us);
                        ops.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        errs.fetch_add(1, Ordering::Relaxed);
                        let entry = res
                            .errors
                            .entry(format!("{:?}", e.code()))
                            .or_insert((0, e.to_string()));
                        entry.0 += 1;
                    }
                }
            }
            res
        }));
    }

    start_barrier.wait().await;
    let started = Instant::now();
    eprintln!(
        "running {} with {} clients for {}...",
        op_name(args.op),
        args.clients,
        humantime::format_duration(args.duration)
    );
    let progress = {
        let (ops, errs) = (ops.clone(), errs.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            let mut last = 0;
            loop {
                tick.tick().await;
                let now = ops.load(Ordering::Relaxed);
                eprintln!(
                    "  {:>4.0}s  {:>8} ops/s  errors {}",
                    started.elapsed().as_secs_f64(),
                    now - last,
                    errs.load(Ordering::Relaxed)
                );
                last = now;
            }
        })
    };
    let mut hist = new_histogram();
    let mut errors: BTreeMap<String, (u64, String)> = BTreeMap::new();
    for t in tasks {
        let r = t
            .await
            .map_err(|e| CtlError::failed(format!("bench client task: {e}")))?;
        hist.add(&r.hist)
            .map_err(|e| CtlError::failed(format!("merging histograms: {e}")))?;
        for (code, (n, sample)) in r.errors {
            errors.entry(code).or_insert((0, sample)).0 += n;
        }
    }
    let elapsed = started.elapsed();
    progress.abort();
    let summary = summarize(op_name(args.op), args.clients, &hist, errors, elapsed);
    print!("{}", render(&summary, out));
    if summary.ops == 0 {
        return Err(CtlError::failed(format!(
            "no request succeeded ({} errors)",
            summary.errors
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_has_throughput_and_percentiles() {
        let mut h = new_histogram();
        for us in 1..=1000u64 {
            h.record(us * 10).unwrap(); // 10 µs .. 10 ms
        }
        let mut errors = BTreeMap::new();
        errors.insert("Unavailable".to_string(), (3, "no leader".to_string()));
        let s = summarize("put", 4, &h, errors, Duration::from_secs(2));
        assert_eq!(s.ops, 1000);
        assert_eq!(s.errors, 3);
        assert!((s.throughput - 500.0).abs() < 1e-9);
        assert!((s.p50_ms - 5.0).abs() < 0.01, "{}", s.p50_ms);
        assert!((s.p99_ms - 9.9).abs() < 0.01, "{}", s.p99_ms);
        assert!((s.p999_ms - 9.99).abs() < 0.01, "{}", s.p999_ms);
        assert!((s.max_ms - 10.0).abs() < 0.01, "{}", s.max_ms);
        assert!(
            s.p50_ms <= s.p90_ms
                && s.p90_ms <= s.p99_ms
                && s.p99_ms <= s.p999_ms
                && s.p999_ms <= s.max_ms
        );
    }

    #[test]
    fn empty_run_has_zero_figures() {
        let s = summarize("get", 1, &new_histogram(), BTreeMap::new(), Duration::ZERO);
        assert_eq!(s.ops, 0);
        assert_eq!(s.throughput, 0.0);
        assert_eq!(s.p99_ms, 0.0);
    }

    #[test]
    fn rendering_names_every_figure() {
        let mut h = new_histogram();
        h.record(1500).unwrap();
        let s = summarize("put", 64, &h, BTreeMap::new(), Duration::from_secs(1));
        let t = render(&s, OutputFormat::Table);
        for needle in [
            "64 clients",
            "1 ok, 0 errors",
            "1.0 ops/s",
            "p50 1.50",
            "p99 1.50",
            "p99.9 1.50",
        ] {
            assert!(t.contains(needle), "{needle:?} missing in {t}");
        }
        let doc: serde_json::Value = serde_json::from_str(&render(&s, OutputFormat::Json)).unwrap();
        assert_eq!(doc["ops"], 1);
        assert!(doc["latency_ms"]["p99.9"].as_f64().unwrap() > 1.4);
    }

    #[test]
    fn keys_sort_in_numeric_order() {
        assert_eq!(key("b/", 7), b"b/0000000007");
        assert!(key("b/", 9) < key("b/", 10));
    }
}
