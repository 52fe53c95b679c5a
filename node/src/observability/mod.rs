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
//! - [`links`]: carries a write's trace through openraft's internal tasks
//!   (and implements the storage hooks, so storage needs none of this).
//! - [`server_layer`]: the SERVER span of every incoming gRPC call.
//! - [`metrics`]: the Prometheus registry and the `/metrics` server.
//! - [`faults`]: fault injection (peer RPC drop/delay, fsync fail/delay).
//! - [`semconv`]: span names and attribute keys.

pub mod faults;
pub mod links;
pub mod metrics;
pub mod probes;
pub mod propagation;
pub mod rpc;
pub mod sampler;
pub mod semconv;
pub mod server_layer;
