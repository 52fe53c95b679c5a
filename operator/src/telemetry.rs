//! Logging and OpenTelemetry trace export for the operator, configured like
//! the nodes' (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER{,_ARG}`,
//! `RAFTKV_TRACE_RATE_PER_MIN`; no endpoint = no export, no complaint).
//!
//! The sampler (parent-based, ratio + per-process rate limit), the OTLP
//! pipeline and the `traceparent` helpers are the `raftkv-telemetry` crate's,
//! shared with the node (node and operator never depend on each other;
//! docs/design.md).
//!
//! Use: `let _telemetry = telemetry::init(json);` inside the tokio runtime,
//! keep the guard for the life of `main`;
//! call [`inject`] on the metadata of every gRPC request to a node so the
//! node's spans join the step's trace.

pub use raftkv_telemetry::TelemetryGuard;
pub use raftkv_telemetry::propagation::{inject, interceptor};

/// Spans that never start a trace: a reconcile mostly observes (a Status call to
/// every member every few seconds); as a root it would spend the rate limit on
/// noise. A step the reconcile takes starts its own trace (`controller::step_span`).
/// Must match the name of `controller::reconcile`'s span.
pub const NEVER_ROOT: &[&str] = &["reconcile"];

/// Installs logging on stdout (`RUST_LOG`, default `info`; JSON if `json`)
/// and, when an OTLP endpoint is configured, trace export. Call inside the
/// runtime.
pub fn init(json: bool) -> TelemetryGuard {
    raftkv_telemetry::init(&raftkv_telemetry::Options {
        service_name: "raft-operator",
        // The pod name in Kubernetes.
        instance_id: std::env::var("HOSTNAME").ok().as_deref(),
        never_root: NEVER_ROOT,
        format: if json {
            raftkv_telemetry::LogFormat::Json
        } else {
            raftkv_telemetry::LogFormat::Text
        },
        output: raftkv_telemetry::LogOutput::Stdout,
        default_filter: "info",
    })
}
