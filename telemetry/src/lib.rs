//! Telemetry shared by raft-node, raftctl and raft-operator (node and operator
//! never depend on each other, docs/design.md; both depend on this crate).
//!
//! - [`logging`]: [`init`] installs logging plus, when an OTLP endpoint is
//!   configured, trace export; keep the returned [`TelemetryGuard`].
//! - [`tracing_setup`]: the OTLP export pipeline from the standard `OTEL_*`
//!   variables ([`tracing_setup::otel_layer`]).
//! - [`sampler`]: parent-based sampling, ratio and per-process rate limit.
//! - [`propagation`]: W3C `traceparent` in gRPC metadata.
//!
//! The crate knows no span names: the caller passes the ones that must never
//! start a trace (`never_root`).

pub mod logging;
pub mod propagation;
pub mod sampler;
pub mod tracing_setup;

pub use logging::{LogFormat, LogOutput, Options, TelemetryGuard, init};
