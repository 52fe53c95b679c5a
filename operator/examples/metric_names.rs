//! Prints the operator's `/metrics` text as a fresh process serves it: every metric
//! family's `# HELP`/`# TYPE` lines, also of those with no sample yet.
//! hack/monitoring/check.sh reads it to check that the chart's alerts and dashboard
//! name only metrics the operator exports (no Kubernetes API needed, unlike the binary).
//!
//! `cargo run -p raft-operator --example metric_names`

fn main() {
    print!("{}", raft_operator::metrics::Metrics::default().render());
}
