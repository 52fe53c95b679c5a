//! Logging and OpenTelemetry trace export for the operator, configured like
//! the nodes' (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER{,_ARG}`,
//! `RAFTKV_TRACE_RATE_PER_MIN`; no endpoint = no export, no complaint).
//!
//! The sampler (parent-based, ratio + per-process rate limit) and the OTLP
//! pipeline are the node's own files, compiled in here through `#[path]`
//! (node and operator must not depend on each other; DESIGN.md).
//!
//! Use: `let _telemetry = telemetry::init(json);` inside the tokio runtime
//! (instead of `app::init_logging`), keep the guard for the life of `main`;
//! call [`inject`] on the metadata of every gRPC request to a node so the
//! node's spans join the reconcile's trace.

use opentelemetry::propagation::{Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::prelude::*;

/// Span names the shared sampler never lets start a trace (node-side names;
/// the operator creates none of them).
mod semconv {
    pub const PEER_APPEND_ENTRIES: &str = "raftkv.v1.RaftPeer/AppendEntries";
    pub const PEER_READ_INDEX: &str = "raftkv.v1.RaftPeer/ReadIndex";
    pub const CLUSTER_STATUS: &str = "raftkv.v1.Cluster/Status";
    pub const SPAN_APPLY: &str = "raft.apply";
    pub const SPAN_LOG_APPEND: &str = "raft.log.append";
}

#[path = "../../node/src/observability/sampler.rs"]
pub mod sampler;

#[path = "../../node/src/observability/tracing_setup.rs"]
pub mod tracing_setup;

/// Flushes the trace exporter when dropped.
pub struct TelemetryGuard {
    _otel: Option<tracing_setup::OtelGuard>,
}

/// Installs logging (`RUST_LOG`, default `info`; JSON if `json`) and, when
/// an OTLP endpoint is configured, trace export. Call inside the runtime.
pub fn init(json: bool) -> TelemetryGuard {
    type Registry = tracing_subscriber::Registry;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt: tracing_setup::BoxedLayer<Registry> = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_filter(filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer().with_filter(filter).boxed()
    };
    let (otel, guard, err) = match tracing_setup::otel_layer::<Registry>(
        "raft-operator",
        // The pod name in Kubernetes.
        std::env::var("HOSTNAME").ok().as_deref(),
    ) {
        Ok(Some((l, g))) => (Some(l), Some(g), None),
        Ok(None) => (None, None, None),
        Err(e) => (None, None, Some(e)),
    };
    let layers: Vec<tracing_setup::BoxedLayer<Registry>> =
        std::iter::once(fmt).chain(otel).collect();
    let _ = tracing_subscriber::registry().with(layers).try_init();
    if let Some(e) = err {
        tracing::warn!(error = %e, "OpenTelemetry export is off");
    }
    if let Some(g) = &guard {
        tracing::info!(otel = g.summary(), "exporting traces over OTLP/gRPC");
    }
    TelemetryGuard { _otel: guard }
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(k, v);
        }
    }
}

/// Writes the current span's W3C `traceparent` into a request's metadata.
pub fn inject(md: &mut tonic::metadata::MetadataMap) {
    let cx = tracing::Span::current().context();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, &mut MetadataInjector(md));
    }
}

/// A tonic interceptor that calls [`inject`]:
/// `ClusterClient::with_interceptor(channel, telemetry::interceptor)`.
pub fn interceptor(mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    inject(req.metadata_mut());
    Ok(req)
}
