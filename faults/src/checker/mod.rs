//! Judges a history: linearizability per key (writes, CAS and linearizable
//! reads), bounded and min-revision reads against their promise, and no
//! phantom values at any level. The end-of-run state comparison across
//! members is done by the harness (it needs the live cluster) and lands in
//! the same report as an extra anomaly.

#[cfg(test)]
mod brute;
pub mod linearizable;
pub mod model;
pub mod reads;

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::history::Op;
use linearizable::Verdict;

/// Search steps per key before giving up (a few seconds of CPU at most).
pub const DEFAULT_BUDGET: u64 = 200_000_000;

#[derive(Debug, Clone)]
pub struct Anomaly {
    pub kind: String,
    pub key: String,
    pub detail: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub anomalies: Vec<Anomaly>,
    /// Keys whose linearizability search ran out of budget.
    pub inconclusive: Vec<String>,
    /// Human-readable account, written to checker.txt.
    pub text: String,
}

pub fn check(ops: &[Op], budget: u64) -> Report {
    let mut report = Report::default();
    let by_id: BTreeMap<u64, &Op> = ops.iter().map(|o| (o.id, o)).collect();
    let mut by_key: BTreeMap<&str, Vec<Op>> = BTreeMap::new();
    for op in ops {
        by_key.entry(&op.key).or_default().push(op.clone());
    }
    for (key, key_ops) in &by_key {
        let started = std::time::Instant::now();
        let verdict = linearizable::check(key_ops, budget);
        let _ = writeln!(
            report.text,
            "key {key}: {} ops, {} ({:.2?})",
            key_ops.len(),
            match &verdict {
                Verdict::Linearizable => "linearizable".to_string(),
                Verdict::NotLinearizable(_) => "NOT LINEARIZABLE".to_string(),
                Verdict::Inconclusive { steps } => format!("inconclusive after {steps} steps"),
            },
            started.elapsed()
        );
        match verdict {
            Verdict::Linearizable => {}
            Verdict::Inconclusive { .. } => report.inconclusive.push(key.to_string()),
            Verdict::NotLinearizable(f) => {
                let mut detail = String::new();
                let _ = writeln!(
                    detail,
                    "longest linearizable prefix: {} ops, ending in state {}",
                    f.prefix.len(),
                    f.state
                );
                for id in f.prefix.iter().rev().take(8).rev() {
                    let _ = writeln!(detail, "    {}", by_id[id].describe());
                }
                let _ = writeln!(
                    detail,
                    "  cannot continue with (first op that must come next, and its concurrent ops):"
                );
                for id in &f.stuck {
                    let _ = writeln!(detail, "    {}", by_id[id].describe());
                }
                let _ = write!(report.text, "{detail}");
                report.anomalies.push(Anomaly {
                    kind: "not-linearizable".into(),
                    key: key.to_string(),
                    detail,
                });
            }
        }
    }
    let reads = reads::check(ops);
    let _ = writeln!(report.text, "read checks: {} anomalies", reads.len());
    for a in reads {
        let key = by_id.get(&a.op).map(|o| o.key.clone()).unwrap_or_default();
        let _ = writeln!(report.text, "  {}: {}", a.kind, a.detail);
        report.anomalies.push(Anomaly {
            kind: a.kind.into(),
            key,
            detail: a.detail,
        });
    }
    report
}

impl Report {
    pub fn add(&mut self, kind: &str, detail: String) {
        let _ = writeln!(self.text, "{kind}: {detail}");
        self.anomalies.push(Anomaly {
            kind: kind.into(),
            key: String::new(),
            detail,
        });
    }

    /// Anomaly counts by kind, e.g. "not-linearizable=1 phantom-read=3".
    pub fn by_kind(&self) -> String {
        let mut m: BTreeMap<&str, usize> = BTreeMap::new();
        for a in &self.anomalies {
            *m.entry(&a.kind).or_default() += 1;
        }
        m.iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}
