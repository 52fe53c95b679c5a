//! Keeps the standard gRPC health service (`grpc.health.v1`) in step with the
//! node: SERVING only while it is a caught-up member of a cluster with a
//! leader. Kubernetes uses it as the readiness probe.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::app::Node;

/// Re-evaluated on every metrics change and at least this often (contact age
/// changes without a metrics change).
const HEALTH_RECHECK: Duration = Duration::from_millis(250);

pub async fn run(
    node: Arc<Node>,
    reporter: HealthReporter,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut metrics = node.raft.metrics();
    let mut last = None;
    loop {
        let healthy = node.is_healthy(&metrics.borrow_and_update().clone());
        if last != Some(healthy) {
            let status = if healthy {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            reporter.set_service_status("", status).await;
            reporter.set_service_status("raftkv.v1.KV", status).await;
            tracing::info!(healthy, "health changed");
            last = Some(healthy);
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return Ok(()),
            r = metrics.changed() => if r.is_err() { return Ok(()) },
            _ = tokio::time::sleep(HEALTH_RECHECK) => {}
        }
    }
}
