//! Backup metrics, under the `raftkv_operator_` prefix (the names an alert
//! relies on; the rest of the operator's metrics are `raft_operator_`).
//! Rendered by [`crate::metrics::Metrics::render`] after the others.

use prometheus_client::encoding::text::encode_registry;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// `namespace`, `raftcluster` (and `result` on the counter).
type Labels = Vec<(&'static str, String)>;

pub struct BackupMetrics {
    registry: Registry,
    /// Unix time of the last successful backup of each cluster.
    pub last_success: Family<Labels, Gauge<f64, AtomicU64>>,
    /// The schedule's interval (its longest gap), seconds.
    pub interval: Family<Labels, Gauge<f64, AtomicU64>>,
    /// Size of the last successful backup, bytes.
    pub last_size: Family<Labels, Gauge<f64, AtomicU64>>,
    /// Duration of the last successful backup, seconds.
    pub last_duration: Family<Labels, Gauge<f64, AtomicU64>>,
    /// Backups finished, by `result` (`succeeded`, `failed`).
    pub backups: Family<Labels, Counter>,
}

impl Default for BackupMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("raftkv_operator");
        let m = BackupMetrics {
            last_success: Family::default(),
            interval: Family::default(),
            last_size: Family::default(),
            last_duration: Family::default(),
            backups: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "backup_last_success_timestamp_seconds",
            "Unix time the last successful backup of the RaftCluster completed",
            m.last_success.clone(),
        );
        registry.register(
            "backup_interval_seconds",
            "The interval of the RaftCluster's backup schedule (its longest gap between two times)",
            m.interval.clone(),
        );
        registry.register(
            "backup_last_size_bytes",
            "Size of the last successful backup of the RaftCluster",
            m.last_size.clone(),
        );
        registry.register(
            "backup_last_duration_seconds",
            "Duration of the last successful backup of the RaftCluster",
            m.last_duration.clone(),
        );
        registry.register(
            "backups",
            "Backups finished, by result (succeeded, failed)",
            m.backups.clone(),
        );
        BackupMetrics { registry, ..m }
    }
}

/// The labels of one cluster.
pub fn cluster(namespace: &str, raftcluster: &str) -> Labels {
    vec![
        ("namespace", namespace.to_string()),
        ("raftcluster", raftcluster.to_string()),
    ]
}

impl BackupMetrics {
    pub fn count(&self, namespace: &str, raftcluster: &str, result: &str) {
        let mut l = cluster(namespace, raftcluster);
        l.push(("result", result.to_string()));
        self.backups.get_or_create(&l).inc();
    }

    /// Forgets a cluster's gauges (its schedule was removed).
    pub fn forget_schedule(&self, namespace: &str, raftcluster: &str) {
        self.interval.remove(&cluster(namespace, raftcluster));
    }

    /// Appends the metrics in the text format (without the final `# EOF`).
    pub fn encode(&self, out: &mut String) {
        encode_registry(out, &self.registry).expect("writing to a String never fails");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_ones_alerts_use() {
        let m = BackupMetrics::default();
        m.last_success
            .get_or_create(&cluster("ns", "demo"))
            .set(1_765_000_000.0);
        m.interval.get_or_create(&cluster("ns", "demo")).set(60.0);
        m.count("ns", "demo", "succeeded");
        let mut out = String::new();
        m.encode(&mut out);
        for line in [
            "raftkv_operator_backup_last_success_timestamp_seconds{namespace=\"ns\",raftcluster=\"demo\"} 1765000000.0",
            "raftkv_operator_backup_interval_seconds{namespace=\"ns\",raftcluster=\"demo\"} 60.0",
            "raftkv_operator_backups_total{namespace=\"ns\",raftcluster=\"demo\",result=\"succeeded\"} 1",
            "# TYPE raftkv_operator_backup_last_success_timestamp_seconds gauge",
        ] {
            assert!(out.contains(line), "missing {line:?} in\n{out}");
        }
        assert!(!out.contains("# EOF"), "{out}");
    }
}
