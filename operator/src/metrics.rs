//! Prometheus metrics of the operator (text format on `/metrics`).

use std::time::Instant;

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::backup::metrics::BackupMetrics;

type Labels = Vec<(&'static str, String)>;

pub struct Metrics {
    registry: Registry,
    pub reconciles: Counter,
    pub reconcile_duration: Histogram,
    pub errors: Family<Labels, Counter>,
    pub steps: Family<Labels, Counter>,
    pub membership_changes: Family<Labels, Counter>,
    pub blocked: Family<Labels, Counter>,
    pub leader: Gauge,
    /// `raftkv_operator_backup_*` (another prefix: names alerts rely on).
    pub backup: BackupMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("raft_operator");
        let reconciles = Counter::default();
        let reconcile_duration = Histogram::new(exponential_buckets(0.01, 2.0, 12));
        let errors = Family::<Labels, Counter>::default();
        let steps = Family::<Labels, Counter>::default();
        let membership_changes = Family::<Labels, Counter>::default();
        let blocked = Family::<Labels, Counter>::default();
        let leader = Gauge::default();
        registry.register("reconciles", "Reconciles started", reconciles.clone());
        registry.register(
            "reconcile_duration_seconds",
            "Duration of a reconcile",
            reconcile_duration.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconciles by error",
            errors.clone(),
        );
        registry.register("steps", "Planned steps executed, by kind", steps.clone());
        registry.register(
            "membership_changes",
            "Membership actions executed, by Event reason",
            membership_changes.clone(),
        );
        registry.register(
            "blocked_steps",
            "Reconciles whose next step a safety rule blocked, by reason",
            blocked.clone(),
        );
        registry.register(
            "is_leader",
            "1 while this replica holds the leader-election Lease",
            leader.clone(),
        );
        Metrics {
            registry,
            reconciles,
            reconcile_duration,
            errors,
            steps,
            membership_changes,
            blocked,
            leader,
            backup: BackupMetrics::default(),
        }
    }
}

impl Metrics {
    /// Counts a reconcile and returns a guard that records its duration.
    pub fn reconcile_started(&self) -> ReconcileTimer<'_> {
        self.reconciles.inc();
        ReconcileTimer {
            start: Instant::now(),
            histogram: &self.reconcile_duration,
        }
    }

    pub fn count(family: &Family<Labels, Counter>, key: &'static str, value: &str) {
        family.get_or_create(&vec![(key, value.to_string())]).inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        encode_registry(&mut out, &self.registry).expect("writing to a String never fails");
        self.backup.encode(&mut out);
        encode_eof(&mut out).expect("writing to a String never fails");
        out
    }
}

pub struct ReconcileTimer<'a> {
    start: Instant,
    histogram: &'a Histogram,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}
