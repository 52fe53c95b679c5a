//! The JSON document of one `hack/bench/vs-etcd.sh` run (one file per run under
//! the results directory): every measured round, kept as measured, plus the
//! failover runs. The curves and tables are medians over rounds, computed here.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::{Error, Result};

/// What the script writes in `schema`; a reader refuses any other.
pub const SCHEMA: &str = "raftkv-vs-etcd/2";

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

/// One system's points for one op, by increasing client count.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub system: String,
    pub points: Vec<Point>,
}

pub fn parse(text: &str) -> Result<RunDoc> {
    let doc: RunDoc = serde_json::from_str(text).map_err(|e| Error::RunDoc(e.to_string()))?;
    if doc.schema != SCHEMA {
        return Err(Error::RunDoc(format!(
            "schema {:?}, this reader knows {SCHEMA:?}",
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

impl RunDoc {
    /// The systems in the document, etcd (the reference) first.
    pub fn systems(&self) -> Vec<String> {
        let mut s: Vec<String> = self.rounds.iter().map(|r| r.system.clone()).collect();
        s.sort_by_key(|n| (n != "etcd", n.clone()));
        s.dedup();
        s
    }

    /// Every system's medians for `op`, one point per client count.
    pub fn series(&self, op: &str) -> Vec<Series> {
        self.systems()
            .into_iter()
            .filter_map(|system| {
                let mut by_clients: BTreeMap<u32, Vec<&Round>> = BTreeMap::new();
                for r in self
                    .rounds
                    .iter()
                    .filter(|r| r.op == op && r.system == system)
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

    /// The medians of `system`'s `op` at `clients`, if measured.
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

    #[test]
    fn another_schema_is_refused() {
        let e = parse(r#"{"schema": "x", "date": "", "command": "", "rounds": []}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("schema"), "{e}");
    }
}
