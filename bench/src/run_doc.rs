//! The JSON document of one `hack/bench/vs-etcd.sh` run (one file per run under
//! the results directory): every measured round, kept as measured, plus the
//! failover runs. The curves and tables are medians over rounds, computed here.
//!
//! A run with `--tls` measures each system twice, plaintext and with TLS: its
//! rounds carry `"tls": true|false`, and every grouping here is by
//! configuration (system and TLS), named "etcd", "etcd TLS", "raftkv",
//! "raftkv TLS" ([`Round::config`]).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::{Error, Result};

/// What the script writes in `schema`.
pub const SCHEMA: &str = "raftkv-vs-etcd/3";
/// Also read: the same document before `tls` (every round plaintext).
pub const SCHEMA_V2: &str = "raftkv-vs-etcd/2";

#[derive(Debug, Clone, Deserialize)]
pub struct RunDoc {
    pub schema: String,
    /// UTC, RFC 3339.
    pub date: String,
    /// The exact command line that produced the document.
    pub command: String,
    /// nproc, CPU model, memory, load averages: shown as given.
    #[serde(default)]
    pub machine: BTreeMap<String, Value>,
    pub rounds: Vec<Round>,
    /// System -> failover figures (absent in a run that skipped failover).
    #[serde(default)]
    pub failover: BTreeMap<String, Failover>,
}

/// One measured run of one load tool against one system.
#[derive(Debug, Clone, Deserialize)]
pub struct Round {
    /// "etcd" or "raftkv".
    pub system: String,
    /// TLS on the client and peer planes, client certificates required
    /// (absent in schema /2: plaintext).
    #[serde(default)]
    pub tls: bool,
    /// "put" or "get" (linearizable).
    pub op: String,
    pub clients: u32,
    pub round: u32,
    pub ops: u64,
    pub errors: u64,
    pub throughput: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// utime+stime of the 3 servers over the run, per successful request.
    pub server_cpu_us_per_op: Option<f64>,
    /// fsyncs of the 3 members (and of the leader alone) per successful request.
    pub fsyncs_per_op: Option<f64>,
    pub leader_fsyncs_per_op: Option<f64>,
    /// Raft term after minus before the run.
    pub elections: Option<u64>,
    /// CPU seconds of processes other than the servers and the load tool.
    pub other_cpu_s: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Failover {
    /// Seconds from the kill to the first acknowledged write started after it.
    pub runs_s: Vec<f64>,
}

/// Medians over the rounds of one (system, op, clients).
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub clients: u32,
    pub rounds: usize,
    pub throughput: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub server_cpu_us_per_op: Option<f64>,
    pub fsyncs_per_op: Option<f64>,
    pub leader_fsyncs_per_op: Option<f64>,
    /// Sums over the rounds.
    pub errors: u64,
    pub elections: u64,
}

/// One configuration's points for one op, by increasing client count.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The configuration: "etcd", "raftkv", or with TLS "etcd TLS", "raftkv TLS".
    pub system: String,
    pub points: Vec<Point>,
}

pub fn parse(text: &str) -> Result<RunDoc> {
    let doc: RunDoc = serde_json::from_str(text).map_err(|e| Error::RunDoc(e.to_string()))?;
    if doc.schema != SCHEMA && doc.schema != SCHEMA_V2 {
        return Err(Error::RunDoc(format!(
            "schema {:?}, this reader knows {SCHEMA:?} and {SCHEMA_V2:?}",
            doc.schema
        )));
    }
    if doc.rounds.is_empty() {
        return Err(Error::RunDoc("no rounds".into()));
    }
    Ok(doc)
}

/// Median of the values (mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn median_of(rounds: &[&Round], f: impl Fn(&Round) -> Option<f64>) -> Option<f64> {
    median(&rounds.iter().filter_map(|r| f(r)).collect::<Vec<_>>())
}

/// The name of a configuration: the system, plus " TLS" with TLS.
pub fn config_name(system: &str, tls: bool) -> String {
    if tls {
        format!("{system} TLS")
    } else {
        system.to_string()
    }
}

impl Round {
    /// "etcd", "etcd TLS", "raftkv" or "raftkv TLS".
    pub fn config(&self) -> String {
        config_name(&self.system, self.tls)
    }
}

/// The median and the range of per-round ratios (see [`RunDoc::paired_ratios`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratio {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// Rounds that had both configurations.
    pub pairs: usize,
}

impl RunDoc {
    /// The configurations in the document: etcd (the reference) first, each
    /// system's plaintext before its TLS.
    pub fn systems(&self) -> Vec<String> {
        let mut s: Vec<(bool, String, bool)> = self
            .rounds
            .iter()
            .map(|r| (r.system != "etcd", r.system.clone(), r.tls))
            .collect();
        s.sort();
        s.dedup();
        s.into_iter()
            .map(|(_, system, tls)| config_name(&system, tls))
            .collect()
    }

    /// Whether any round ran with TLS.
    pub fn has_tls(&self) -> bool {
        self.rounds.iter().any(|r| r.tls)
    }

    /// Ratios `num / den` of `metric`, one per round number in which both
    /// configurations ran `op` at `clients` (configurations as named by
    /// [`config_name`]): the runs of one round are minutes apart at most, so
    /// a per-round ratio cancels most of a change in the machine's load.
    pub fn paired_ratios(
        &self,
        op: &str,
        clients: u32,
        num: &str,
        den: &str,
        metric: fn(&Round) -> Option<f64>,
    ) -> Option<Ratio> {
        let pick = |config: &str| -> BTreeMap<u32, f64> {
            self.rounds
                .iter()
                .filter(|r| r.op == op && r.clients == clients && r.config() == config)
                .filter_map(|r| Some((r.round, metric(r)?)))
                .collect()
        };
        let (n, d) = (pick(num), pick(den));
        let ratios: Vec<f64> = n
            .iter()
            .filter_map(|(round, a)| {
                let b = d.get(round)?;
                (*b > 0.0).then(|| a / b)
            })
            .collect();
        Some(Ratio {
            median: median(&ratios)?,
            min: ratios.iter().copied().reduce(f64::min)?,
            max: ratios.iter().copied().reduce(f64::max)?,
            pairs: ratios.len(),
        })
    }

    /// Every configuration's medians for `op`, one point per client count.
    pub fn series(&self, op: &str) -> Vec<Series> {
        self.systems()
            .into_iter()
            .filter_map(|system| {
                let mut by_clients: BTreeMap<u32, Vec<&Round>> = BTreeMap::new();
                for r in self
                    .rounds
                    .iter()
                    .filter(|r| r.op == op && r.config() == system)
                {
                    by_clients.entry(r.clients).or_default().push(r);
                }
                let points: Vec<Point> = by_clients
                    .into_iter()
                    .map(|(clients, rs)| Point {
                        clients,
                        rounds: rs.len(),
                        throughput: median_of(&rs, |r| Some(r.throughput)).unwrap_or(0.0),
                        p50_ms: median_of(&rs, |r| Some(r.p50_ms)).unwrap_or(0.0),
                        p99_ms: median_of(&rs, |r| Some(r.p99_ms)).unwrap_or(0.0),
                        server_cpu_us_per_op: median_of(&rs, |r| r.server_cpu_us_per_op),
                        fsyncs_per_op: median_of(&rs, |r| r.fsyncs_per_op),
                        leader_fsyncs_per_op: median_of(&rs, |r| r.leader_fsyncs_per_op),
                        errors: rs.iter().map(|r| r.errors).sum(),
                        elections: rs.iter().filter_map(|r| r.elections).sum(),
                    })
                    .collect();
                (!points.is_empty()).then_some(Series { system, points })
            })
            .collect()
    }

    /// The medians of configuration `system`'s `op` at `clients`, if measured.
    pub fn point(&self, system: &str, op: &str, clients: u32) -> Option<Point> {
        self.series(op)
            .into_iter()
            .find(|s| s.system == system)?
            .points
            .into_iter()
            .find(|p| p.clients == clients)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small document: etcd and raftkv, put at 1 and 64 clients, two rounds at 64.
    pub(crate) fn sample() -> RunDoc {
        let round = |system: &str, op: &str, clients: u32, round: u32, tput: f64, p99: f64| {
            serde_json::json!({
                "system": system, "op": op, "clients": clients, "round": round,
                "ops": (tput * 10.0) as u64, "errors": 0, "throughput": tput,
                "p50_ms": p99 / 4.0, "p99_ms": p99, "server_cpu_us_per_op": 150.0,
                "fsyncs_per_op": 1.0, "leader_fsyncs_per_op": 0.5, "elections": 0,
            })
        };
        let doc = serde_json::json!({
            "schema": SCHEMA, "date": "2026-12-07T18:00:00Z", "command": "hack/bench/vs-etcd.sh --quick",
            "machine": {"nproc": 2},
            "rounds": [
                round("raftkv", "put", 1, 1, 900.0, 2.0),
                round("etcd", "put", 1, 1, 1000.0, 1.5),
                round("etcd", "put", 64, 1, 6000.0, 20.0),
                round("etcd", "put", 64, 2, 7000.0, 30.0),
                round("raftkv", "put", 64, 1, 9000.0, 10.0),
                round("raftkv", "get", 256, 1, 20000.0, 40.0),
            ],
            "failover": {"raftkv": {"runs_s": [0.4, 0.5, 0.45]}},
        });
        parse(&doc.to_string()).unwrap()
    }

    #[test]
    fn medians_are_per_system_op_and_client_count() {
        let doc = sample();
        let s = doc.series("put");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].system, "etcd");
        assert_eq!(s[0].points.len(), 2);
        let p64 = &s[0].points[1];
        assert_eq!(p64.clients, 64);
        assert_eq!(p64.rounds, 2);
        assert_eq!(p64.throughput, 6500.0);
        assert_eq!(p64.p99_ms, 25.0);
        assert_eq!(doc.series("get").len(), 1);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    /// Put at 64 clients, 3 rounds of the 4 configurations; TLS costs raftkv
    /// 10 %, 20 %, 30 % of its throughput in rounds 1-3.
    pub(crate) fn tls_sample() -> RunDoc {
        let mut rounds = Vec::new();
        for round in 1..=3u32 {
            let load = 1.0 - 0.1 * f64::from(round); // the machine gets busier
            for (system, tls, tput, cpu) in [
                ("etcd", false, 6000.0, 200.0),
                ("raftkv", false, 9000.0, 100.0),
                ("etcd", true, 5400.0, 240.0),
                (
                    "raftkv",
                    true,
                    9000.0 * (1.0 - 0.1 * f64::from(round)),
                    130.0,
                ),
            ] {
                let t = tput * load;
                rounds.push(serde_json::json!({
                    "system": system, "tls": tls, "op": "put", "clients": 64, "round": round,
                    "ops": (t * 10.0) as u64, "errors": 0, "throughput": t,
                    "p50_ms": 64000.0 / t / 2.0, "p99_ms": 64000.0 / t * 2.0,
                    "server_cpu_us_per_op": cpu,
                }));
            }
        }
        let doc = serde_json::json!({
            "schema": SCHEMA, "date": "2026-12-08T01:00:00Z", "command": "hack/bench/vs-etcd.sh --tls",
            "rounds": rounds,
        });
        parse(&doc.to_string()).unwrap()
    }

    #[test]
    fn tls_rounds_form_their_own_configurations() {
        let doc = tls_sample();
        assert!(doc.has_tls());
        assert_eq!(
            doc.systems(),
            ["etcd", "etcd TLS", "raftkv", "raftkv TLS"].map(String::from)
        );
        let s = doc.series("put");
        assert_eq!(s.len(), 4);
        // Plaintext medians are not mixed with TLS ones.
        assert_eq!(doc.point("raftkv", "put", 64).unwrap().throughput, 7200.0);
        let tls = doc.point("raftkv TLS", "put", 64).unwrap();
        assert_eq!(tls.rounds, 3);
        assert!((tls.throughput - 5760.0).abs() < 1e-9, "{tls:?}");
    }

    #[test]
    fn paired_ratios_compare_within_each_round() {
        let doc = tls_sample();
        let r = doc
            .paired_ratios("put", 64, "raftkv TLS", "raftkv", |r| Some(r.throughput))
            .unwrap();
        assert_eq!(r.pairs, 3);
        assert!((r.median - 0.8).abs() < 1e-9, "{r:?}");
        assert!(
            (r.min - 0.7).abs() < 1e-9 && (r.max - 0.9).abs() < 1e-9,
            "{r:?}"
        );
        // The machine's load cancels: etcd's TLS ratio is the same every round.
        let e = doc
            .paired_ratios("put", 64, "etcd TLS", "etcd", |r| Some(r.throughput))
            .unwrap();
        assert!(
            (e.min - 0.9).abs() < 1e-9 && (e.max - 0.9).abs() < 1e-9,
            "{e:?}"
        );
        assert!(
            doc.paired_ratios("put", 8, "etcd TLS", "etcd", |r| Some(r.throughput))
                .is_none()
        );
    }

    #[test]
    fn a_schema_2_document_is_all_plaintext() {
        let mut v: Value = serde_json::to_value(serde_json::json!({
            "schema": SCHEMA_V2, "date": "", "command": "",
            "rounds": [{"system": "etcd", "op": "put", "clients": 1, "round": 1, "ops": 5,
                        "errors": 0, "throughput": 5.0, "p50_ms": 1.0, "p99_ms": 2.0}],
        }))
        .unwrap();
        let doc = parse(&v.to_string()).unwrap();
        assert!(!doc.has_tls());
        assert_eq!(doc.systems(), ["etcd"]);
        v["schema"] = "raftkv-vs-etcd/1".into();
        assert!(parse(&v.to_string()).is_err());
    }

    #[test]
    fn another_schema_is_refused() {
        let e = parse(r#"{"schema": "x", "date": "", "command": "", "rounds": []}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("schema"), "{e}");
    }
}
