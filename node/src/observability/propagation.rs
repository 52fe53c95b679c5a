//! W3C trace context (`traceparent`, `tracestate`) in gRPC metadata: the
//! shared helpers of [`raftkv_telemetry::propagation`], re-exported here.

pub use raftkv_telemetry::propagation::*;
