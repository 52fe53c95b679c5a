//! W3C trace context (`traceparent`, `tracestate`) in gRPC metadata: the
//! shared helpers ([`raftkv_telemetry::propagation`], re-exported here) plus
//! the node client's request hook.

pub use raftkv_telemetry::propagation::*;

/// A hook for `client::set_default_request_hook`: injects the current span.
pub fn request_hook() -> crate::client::RequestHook {
    std::sync::Arc::new(inject)
}
