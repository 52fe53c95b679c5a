//! Keeps the standard gRPC health service (`grpc.health.v1`) in step with the
//! node: the default service (and `raftkv.v1.KV`) is SERVING only while it is a
//! caught-up member of a cluster with a leader: Kubernetes' readiness probe.
//! [`LIVENESS_SERVICE`] is SERVING while the Raft core runs: the liveness probe
//! (a node that is merely behind or without a leader must not be restarted).
//!
//! The same two answers are kept in `observability::probes` for the plaintext metrics
//! listener's `/readyz` and `/livez`: kubelet's gRPC probes cannot speak TLS,
//! so with TLS on the pods are probed over HTTP there (docs/security.md).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::node::Node;
use crate::observability::probes::PROBES;
use crate::typ::RaftMetrics;

/// The health service name of the liveness probe.
pub const LIVENESS_SERVICE: &str = "liveness";

pub async fn run(
    node: Arc<Node>,
    reporter: HealthReporter,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut metrics = node.raft().metrics();
    let mut last = None;
    let mut last_alive = None;
    loop {
        let m = metrics.borrow_and_update().clone();
        let alive = m.running_state.is_ok();
        if last_alive != Some(alive) {
            let status = if alive {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            reporter.set_service_status(LIVENESS_SERVICE, status).await;
            PROBES.set_alive(alive);
            last_alive = Some(alive);
        }
        let healthy = is_healthy(&node, &m);
        if last != Some(healthy) {
            let status = if healthy {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            reporter.set_service_status("", status).await;
            reporter.set_service_status("raftkv.v1.KV", status).await;
            PROBES.set_ready(healthy);
            tracing::info!(healthy, "health changed");
            last = Some(healthy);
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return Ok(()),
            r = metrics.changed() => if r.is_err() { return Ok(()) },
            _ = tokio::time::sleep(node.limits().health_recheck) => {}
        }
    }
}

/// SERVING for the gRPC health check (and so Kubernetes readiness): a member
/// of an initialized cluster that follows a live leader and has applied close
/// to its commit index.
pub fn is_healthy(node: &Node, m: &RaftMetrics) -> bool {
    if m.running_state.is_err() || !node.is_member(m) || m.current_leader.is_none() {
        return false;
    }
    if m.state.is_leader() {
        return node.holds_lease(m);
    }
    let limits = node.limits();
    let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
    follower_healthy(
        node.contact()
            .last()
            .map(|c| (c.at.elapsed(), c.leader_commit)),
        applied,
        Duration::from_millis(2 * limits.election_timeout_ms_max),
        limits.caught_up_lag_max,
    )
}

/// A follower or learner is healthy when its last leader contact is younger
/// than `contact_max` and it is caught up (its applied index within
/// `lag_max` of the leader's commit index then).
fn follower_healthy(
    contact: Option<(Duration, u64)>,
    applied: u64,
    contact_max: Duration,
    lag_max: u64,
) -> bool {
    contact.is_some_and(|(age, leader_commit)| {
        age <= contact_max && applied.saturating_add(lag_max) >= leader_commit
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follower_needs_fresh_contact_and_a_small_lag() {
        let ms = Duration::from_millis;
        assert!(!follower_healthy(None, 10, ms(800), 1000));
        assert!(follower_healthy(Some((ms(100), 10)), 10, ms(800), 1000));
        assert!(!follower_healthy(Some((ms(900), 10)), 10, ms(800), 1000));
        assert!(follower_healthy(Some((ms(1), 1010)), 10, ms(800), 1000));
        assert!(!follower_healthy(Some((ms(1), 1011)), 10, ms(800), 1000));
    }
}
