//! Prints the operator's `/metrics` text, for hack/monitoring/check.sh, which checks that
//! the chart's alerts and dashboard name only metrics the operator exports (no
//! Kubernetes API needed, unlike the binary).
//!
//! A labelled family is printed only once it has a series, so one series of each is
//! counted first (the label values are placeholders): a family added to
//! `metrics::Metrics` needs a line here before the rules may use it.
//!
//! `cargo run -p raft-operator --example metric_names`

use raft_operator::metrics::Metrics;

fn main() {
    let m = Metrics::default();
    Metrics::count(&m.errors, "error", "example");
    Metrics::count(&m.steps, "kind", "example");
    Metrics::count(&m.membership_changes, "kind", "example");
    Metrics::count(&m.blocked, "reason", "example");
    print!("{}", m.render());
}
