//! Observability of the node: OpenTelemetry traces across nodes, sampling
//! with a rate limit, Prometheus metrics, fault injection.
//!
//! - `raftkv_telemetry` (a crate shared with the operator): the OTLP export
//!   pipeline from the standard `OTEL_*` variables, the sampler, `traceparent`
//!   helpers; set up by [`crate::telemetry::init`].
//! - [`sampler`]: which spans never start a trace ([`sampler::NEVER_ROOT`]),
//!   plus the shared sampler (parent-based, ratio and per-process rate limit).
//! - [`propagation`]: W3C `traceparent` in gRPC metadata.
//! - [`rpc`]: client/server spans per the RPC semantic conventions.
//! - [`links`]: carries a write's trace through openraft's internal tasks.
//! - [`server_layer`]: the SERVER span of every incoming gRPC call.
//! - [`metrics`]: the Prometheus registry and the `/metrics` server.
//! - [`faults`]: fault injection (peer RPC drop/delay, fsync fail/delay).
//! - [`semconv`]: span names and attribute keys.

pub mod faults;
pub mod links;
pub mod metrics;
pub mod propagation;
pub mod rpc;
pub mod sampler;
pub mod semconv;
pub mod server_layer;

static NODE_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Sets this process's Raft node ID, recorded as `raft.node_id` on its server,
/// proposal and apply spans (called once storage has opened).
pub fn set_node_id(id: crate::NodeId) {
    NODE_ID.store(id, std::sync::atomic::Ordering::Relaxed);
}

/// This process's Raft node ID, once known.
pub fn node_id() -> Option<crate::NodeId> {
    Some(NODE_ID.load(std::sync::atomic::Ordering::Relaxed)).filter(|id| *id != 0)
}
