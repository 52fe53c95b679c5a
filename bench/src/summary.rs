//! The run as Markdown tables (docs/performance.md takes them as printed):
//! the sweep (medians per system, op and client count) and where each target
//! of issue #13 / docs/design.md stands; with TLS rounds (`vs-etcd.sh --tls`),
//! what TLS costs each system and how the two compare with it.

use std::fmt::Write;

use super::run_doc::{Point, Ratio, Round, RunDoc, config_name, median};

/// Client count at which the write targets are defined (docs/design.md).
pub const WRITE_TARGET_CLIENTS: u32 = 64;
/// Client count at which the read target is defined (issue #13).
pub const READ_TARGET_CLIENTS: u32 = 256;

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.decimals$}"))
}

fn ratio(etcd: Option<f64>, raftkv: Option<f64>) -> Option<f64> {
    match (etcd, raftkv) {
        (Some(e), Some(r)) if e > 0.0 => Some(r / e),
        _ => None,
    }
}

/// One table per op: a row per client count, etcd and raftkv side by side.
pub fn sweep_table(doc: &RunDoc, op: &str) -> String {
    let series = doc.series(op);
    let get = |system: &str, clients: u32| -> Option<Point> {
        series
            .iter()
            .find(|s| s.system == system)?
            .points
            .iter()
            .find(|p| p.clients == clients)
            .cloned()
    };
    let mut clients: Vec<u32> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.clients))
        .collect();
    clients.sort_unstable();
    clients.dedup();
    let mut t = String::from(
        "| clients | etcd req/s | raftkv req/s | ratio | etcd p50 ms | raftkv p50 ms | etcd p99 ms | raftkv p99 ms | etcd CPU µs/req | raftkv CPU µs/req | rounds | errors |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for c in clients {
        let (e, r) = (get("etcd", c), get("raftkv", c));
        let f = |p: &Option<Point>, g: fn(&Point) -> Option<f64>, d| opt(p.as_ref().and_then(g), d);
        let _ = writeln!(
            t,
            "| {c} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            f(&e, |p| Some(p.throughput), 0),
            f(&r, |p| Some(p.throughput), 0),
            opt(
                ratio(
                    e.as_ref().map(|p| p.throughput),
                    r.as_ref().map(|p| p.throughput)
                ),
                2
            ),
            f(&e, |p| Some(p.p50_ms), 2),
            f(&r, |p| Some(p.p50_ms), 2),
            f(&e, |p| Some(p.p99_ms), 2),
            f(&r, |p| Some(p.p99_ms), 2),
            f(&e, |p| p.server_cpu_us_per_op, 0),
            f(&r, |p| p.server_cpu_us_per_op, 0),
            e.as_ref()
                .map_or(0, |p| p.rounds)
                .max(r.as_ref().map_or(0, |p| p.rounds)),
            e.as_ref().map_or(0, |p| p.errors) + r.as_ref().map_or(0, |p| p.errors),
        );
    }
    t
}

/// "0.91 (0.85-0.97)": the median of per-round ratios and their range.
fn paired(r: Option<Ratio>) -> String {
    r.map_or("-".to_string(), |r| {
        if r.pairs > 1 {
            format!("{:.2} ({:.2}-{:.2})", r.median, r.min, r.max)
        } else {
            format!("{:.2}", r.median)
        }
    })
}

/// The figures the TLS tables compare: name, unit, decimals, the value of a round.
type Metric = (&'static str, usize, fn(&Round) -> Option<f64>);
const TLS_METRICS: [Metric; 3] = [
    ("req/s", 0, |r| Some(r.throughput)),
    ("p99 ms", 2, |r| Some(r.p99_ms)),
    ("server CPU µs/req", 0, |r| r.server_cpu_us_per_op),
];

/// The client counts at which `op` ran with TLS.
fn tls_clients(doc: &RunDoc, op: &str) -> Vec<u32> {
    let mut c: Vec<u32> = doc
        .rounds
        .iter()
        .filter(|r| r.op == op && r.tls)
        .map(|r| r.clients)
        .collect();
    c.sort_unstable();
    c.dedup();
    c
}

/// What TLS costs each system: per system and client count, the medians
/// plaintext and with TLS and the ratio TLS / plaintext, as the median (and
/// range) of per-round ratios. Empty when no round of `op` ran with TLS.
pub fn tls_cost_table(doc: &RunDoc, op: &str) -> String {
    let clients = tls_clients(doc, op);
    if clients.is_empty() {
        return String::new();
    }
    let mut t = String::from("| system | clients |");
    for (name, _, _) in TLS_METRICS {
        let _ = write!(t, " plaintext {name} | TLS {name} | TLS / plaintext |");
    }
    t.push_str(
        " rounds | errors |
|---|---|",
    );
    t.push_str(&"---|---|---|".repeat(TLS_METRICS.len()));
    t.push_str(
        "---|---|
",
    );
    for system in ["etcd", "raftkv"] {
        let (plain_name, tls_name) = (config_name(system, false), config_name(system, true));
        for &c in &clients {
            let (p, q) = (doc.point(&plain_name, op, c), doc.point(&tls_name, op, c));
            if p.is_none() && q.is_none() {
                continue;
            }
            let _ = write!(t, "| {system} | {c} |");
            for (_, decimals, metric) in TLS_METRICS {
                // The medians of the rounds, from the same per-round values.
                let med = |name: &str| {
                    let v: Vec<f64> = doc
                        .rounds
                        .iter()
                        .filter(|r| r.op == op && r.clients == c && r.config() == name)
                        .filter_map(metric)
                        .collect();
                    median(&v)
                };
                let _ = write!(
                    t,
                    " {} | {} | {} |",
                    opt(med(&plain_name), decimals),
                    opt(med(&tls_name), decimals),
                    paired(doc.paired_ratios(op, c, &tls_name, &plain_name, metric))
                );
            }
            let rounds = p
                .as_ref()
                .map_or(0, |p| p.rounds)
                .max(q.as_ref().map_or(0, |q| q.rounds));
            let errors = p.as_ref().map_or(0, |p| p.errors) + q.as_ref().map_or(0, |q| q.errors);
            let _ = writeln!(t, " {rounds} | {errors} |");
        }
    }
    t
}

/// raftkv / etcd, plaintext and with TLS: per client count, the median (and
/// range) of per-round ratios. Empty when no round of `op` ran with TLS.
pub fn tls_versus_table(doc: &RunDoc, op: &str) -> String {
    let clients = tls_clients(doc, op);
    if clients.is_empty() {
        return String::new();
    }
    let mut t = String::from("| clients |");
    for (name, _, _) in TLS_METRICS {
        let _ = write!(t, " {name} plaintext | {name} TLS |");
    }
    t.push_str(
        "
|---|",
    );
    t.push_str(&"---|---|".repeat(TLS_METRICS.len()));
    t.push('\n');
    for c in clients {
        let _ = write!(t, "| {c} |");
        for (_, _, metric) in TLS_METRICS {
            for tls in [false, true] {
                let r = doc.paired_ratios(
                    op,
                    c,
                    &config_name("raftkv", tls),
                    &config_name("etcd", tls),
                    metric,
                );
                let _ = write!(t, " {} |", paired(r));
            }
        }
        t.push('\n');
    }
    t
}

/// Whether a measured ratio meets a bound ("-" when not measured).
fn verdict(value: Option<f64>, bound: f64, at_least: bool) -> &'static str {
    match value {
        None => "not measured",
        Some(v) if (at_least && v >= bound) || (!at_least && v <= bound) => "met",
        Some(_) => "not met",
    }
}

/// The targets, each with both systems' medians and a verdict.
pub fn targets_table(doc: &RunDoc) -> String {
    let w = WRITE_TARGET_CLIENTS;
    let (ew, rw) = (doc.point("etcd", "put", w), doc.point("raftkv", "put", w));
    let rc = READ_TARGET_CLIENTS;
    let (er, rr) = (doc.point("etcd", "get", rc), doc.point("raftkv", "get", rc));
    let fig = |p: &Option<Point>, f: fn(&Point) -> Option<f64>| p.as_ref().and_then(f);
    let mut t = String::from(
        "| target | etcd | raftkv | raftkv / etcd | goal | status |\n|---|---|---|---|---|---|\n",
    );
    let mut ratio_row =
        |name: String, e: Option<f64>, r: Option<f64>, d: usize, bound: f64, at_least: bool| {
            let q = ratio(e, r);
            let goal = format!("{} {bound}x", if at_least { ">=" } else { "<=" });
            let _ = writeln!(
                t,
                "| {name} | {} | {} | {} | {goal} | {} |",
                opt(e, d),
                opt(r, d),
                opt(q, 2),
                verdict(q, bound, at_least)
            );
        };
    ratio_row(
        format!("write throughput at {w} clients (req/s)"),
        fig(&ew, |p| Some(p.throughput)),
        fig(&rw, |p| Some(p.throughput)),
        0,
        1.5,
        true,
    );
    ratio_row(
        format!("server CPU per write at {w} clients (µs, 3 members)"),
        fig(&ew, |p| p.server_cpu_us_per_op),
        fig(&rw, |p| p.server_cpu_us_per_op),
        0,
        0.6,
        false,
    );
    ratio_row(
        format!("write p99 at {w} clients (ms)"),
        fig(&ew, |p| Some(p.p99_ms)),
        fig(&rw, |p| Some(p.p99_ms)),
        2,
        0.8,
        false,
    );
    ratio_row(
        format!("linearizable reads at {rc} clients (req/s)"),
        fig(&er, |p| Some(p.throughput)),
        fig(&rr, |p| Some(p.throughput)),
        0,
        1.5,
        true,
    );
    for (name, pick, bound) in [
        ("failover median (s)", 0usize, 0.5),
        ("failover worst (s)", 1, 1.0),
    ] {
        let of = |system: &str| {
            let runs = &doc.failover.get(system)?.runs_s;
            if pick == 0 {
                median(runs)
            } else {
                runs.iter().copied().reduce(f64::max)
            }
        };
        let (e, r) = (of("etcd"), of("raftkv"));
        let _ = writeln!(
            t,
            "| {name} | {} | {} | {} | <= {bound} s | {} |",
            opt(e, 2),
            opt(r, 2),
            opt(ratio(e, r), 2),
            verdict(r, bound, false)
        );
    }
    let _ = writeln!(
        t,
        "| fsyncs per write at {w} clients (3 members; leader) | {} ; {} | {} ; {} | | (no target) | |",
        opt(fig(&ew, |p| p.fsyncs_per_op), 3),
        opt(fig(&ew, |p| p.leader_fsyncs_per_op), 3),
        opt(fig(&rw, |p| p.fsyncs_per_op), 3),
        opt(fig(&rw, |p| p.leader_fsyncs_per_op), 3),
    );
    let elections: u64 = doc
        .rounds
        .iter()
        .filter(|r| r.system == "raftkv")
        .filter_map(|r| r.elections)
        .sum();
    let _ = writeln!(
        t,
        "| raftkv elections during the load runs | | {elections} | | 0 | {} |",
        if elections == 0 { "met" } else { "not met" }
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run_doc::tests::sample;

    #[test]
    fn sweep_rows_hold_both_systems_and_the_ratio() {
        let t = sweep_table(&sample(), "put");
        let row = t.lines().find(|l| l.starts_with("| 64 |")).unwrap();
        assert!(row.starts_with("| 64 | 6500 | 9000 | 1.38 |"), "{row}");
        assert!(
            t.lines()
                .any(|l| l.starts_with("| 1 | 1000 | 900 | 0.90 |")),
            "{t}"
        );
    }

    #[test]
    fn tls_cost_rows_give_medians_and_per_round_ratios() {
        let doc = crate::run_doc::tests::tls_sample();
        let t = tls_cost_table(&doc, "put");
        let row = |sys: &str| {
            t.lines()
                .find(|l| l.starts_with(&format!("| {sys} | 64 |")))
                .unwrap()
                .to_string()
        };
        // raftkv: throughput medians 7200 and 5760; per-round ratios 0.9, 0.8, 0.7.
        assert!(
            row("raftkv").starts_with("| raftkv | 64 | 7200 | 5760 | 0.80 (0.70-0.90) |"),
            "{t}"
        );
        // CPU 100 -> 130 µs/req every round.
        assert!(
            row("raftkv").contains("| 100 | 130 | 1.30 (1.30-1.30) | 3 | 0 |"),
            "{t}"
        );
        assert!(row("etcd").contains("| 0.90 (0.90-0.90) |"), "{t}");
        assert_eq!(t.lines().count(), 4, "{t}");
        // No TLS round: no table.
        assert!(tls_cost_table(&sample(), "put").is_empty());
    }

    #[test]
    fn tls_versus_rows_compare_raftkv_with_etcd_in_each_mode() {
        let t = tls_versus_table(&crate::run_doc::tests::tls_sample(), "put");
        let row = t.lines().find(|l| l.starts_with("| 64 |")).unwrap();
        // Throughput: 9000/6000 = 1.5 plaintext; with TLS 9000 (1 - 0.1 r) / 5400.
        assert!(
            row.starts_with("| 64 | 1.50 (1.50-1.50) | 1.33 (1.17-1.50) |"),
            "{row}"
        );
        // CPU: 100/200 plaintext, 130/240 with TLS.
        assert!(
            row.ends_with("| 0.50 (0.50-0.50) | 0.54 (0.54-0.54) |"),
            "{row}"
        );
    }

    /// The run docs/performance.md shows under "TLS against etcd", as recorded.
    const TLS_RUN: &str = include_str!("../../docs/perf/vs-etcd-tls-2026-12-08.json");

    #[test]
    fn recorded_tls_run_gives_the_published_tables() {
        let doc = crate::run_doc::parse(TLS_RUN).unwrap();
        assert_eq!(
            doc.systems(),
            ["etcd", "etcd TLS", "raftkv", "raftkv TLS"].map(String::from)
        );
        assert_eq!(doc.rounds.len(), 2 * 5 * 4);
        let cost = tls_cost_table(&doc, "put");
        for row in [
            "| etcd | 64 | 3732 | 2355 | 0.57 (0.53-0.67) | 41.85 | 70.08 | 1.93 (1.24-2.00) |",
            "| raftkv | 64 | 4795 | 5220 | 0.94 (0.83-1.26) | 40.29 | 36.26 | 1.22 (0.59-1.27) |",
            "| raftkv | 8 | 1387 | 1388 | 0.94 (0.92-1.17) |",
        ] {
            assert!(cost.lines().any(|l| l.starts_with(row)), "{row}\n{cost}");
        }
        let versus = tls_versus_table(&doc, "put");
        assert!(
            versus
                .lines()
                .any(|l| l.starts_with("| 64 | 1.39 (1.01-1.56) | 2.14 (2.01-2.64) |")),
            "{versus}"
        );
        assert!(tls_cost_table(&doc, "get").is_empty());
    }

    #[test]
    fn targets_say_met_not_met_or_not_measured() {
        let t = targets_table(&sample());
        let line = |needle: &str| t.lines().find(|l| l.contains(needle)).unwrap().to_string();
        assert!(line("write throughput").ends_with("| not met |"), "{t}");
        assert!(
            line("write p99").contains("| 0.40 | <= 0.8x | met |"),
            "{t}"
        );
        // Reads were measured for raftkv only: no ratio.
        assert!(
            line("linearizable reads").ends_with("| not measured |"),
            "{t}"
        );
        assert!(line("failover median").contains("| - | 0.45 |"), "{t}");
        assert!(line("failover worst").ends_with("| met |"), "{t}");
    }
}
