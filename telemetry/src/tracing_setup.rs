//! The OpenTelemetry pipeline: a `tracing` layer that exports sampled spans
//! over OTLP/gRPC (tonic), configured by the standard environment variables.
//!
//! | variable | effect |
//! | --- | --- |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) | the collector, e.g. `http://otel-collector:4317`; unset or empty = no export, no layer, no complaint |
//! | `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` | resource (e.g. `k8s.pod.name=demo-0,k8s.namespace.name=db`); service name defaults to the binary's |
//! | `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` | root ratio, always parent-based (see [`crate::sampler`]) |
//! | `RAFTKV_TRACE_RATE_PER_MIN` | new traces per minute per process (default 20; 0 = unlimited) |
//! | `OTEL_SDK_DISABLED=true`, `OTEL_TRACES_EXPORTER=none` | no export |
//! | `OTEL_BSP_*`, `OTEL_EXPORTER_OTLP_TIMEOUT` | batch processor and exporter, as in the SDK |
//!
//! Only spans of our own crates are exported (targets in [`EXPORTED_TARGETS`]),
//! so dependencies' spans (h2, tonic, openraft internals, the exporter itself)
//! never reach the collector and cannot loop.

use std::sync::Arc;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

use crate::sampler::{MonotonicClock, SamplingConfig};

/// `tracing` targets whose spans are exported (DEBUG and above). The trace
/// spans are DEBUG spans: with no OpenTelemetry layer (and logs at INFO) they
/// are disabled at their callsite and cost nothing.
pub const EXPORTED_TARGETS: &[&str] = &["raftkv_node", "raft_operator", "raftctl", "raft_node"];

/// What [`OtelConfig::from_env`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct OtelConfig {
    /// `None`: tracing export is off.
    pub endpoint: Option<String>,
    pub sampling: SamplingConfig,
    /// Set only when neither `OTEL_SERVICE_NAME` nor `service.name` in
    /// `OTEL_RESOURCE_ATTRIBUTES` names the service.
    pub default_service_name: Option<String>,
}

impl OtelConfig {
    pub fn from_env(default_service_name: &str) -> Result<Self, String> {
        let var = |k: &str| {
            std::env::var(k)
                .ok()
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"));
        let endpoint = if disabled {
            None
        } else {
            var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"))
        };
        let named = var("OTEL_SERVICE_NAME").is_some()
            || var("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|a| {
                a.split(',')
                    .any(|kv| kv.trim().starts_with("service.name="))
            });
        Ok(OtelConfig {
            endpoint,
            sampling: SamplingConfig::from_env()?,
            default_service_name: (!named).then(|| default_service_name.to_string()),
        })
    }
}

/// Flushes and shuts the exporter down when dropped (keep it alive in `main`).
#[derive(Default)]
pub struct OtelGuard {
    provider: Option<SdkTracerProvider>,
    summary: String,
}

impl OtelGuard {
    pub fn is_exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Endpoint and sampling, for a log line once logging is up.
    pub fn summary(&self) -> &str {
        &self.summary
    }

    /// Exports what is buffered now.
    pub fn flush(&self) {
        if let Some(p) = &self.provider {
            let _ = p.force_flush();
        }
    }
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            // The batch processor exports from its own thread through the
            // tonic channel, whose connection task lives on the runtime: do
            // not block a current-thread runtime's only thread on it.
            let shutdown = move || {
                let _ = p.shutdown_with_timeout(std::time::Duration::from_secs(3));
            };
            match tokio::runtime::Handle::try_current() {
                Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                    tokio::task::block_in_place(shutdown)
                }
                Ok(_) => {
                    let _ = std::thread::spawn(shutdown).join();
                }
                Err(_) => shutdown(),
            }
        }
    }
}

/// A boxed layer for any registry-like subscriber.
pub type BoxedLayer<S> = Box<dyn Layer<S> + Send + Sync + 'static>;

/// Builds the OpenTelemetry layer from the environment. `Ok(None)` when no
/// endpoint is configured. `instance_id` becomes the `service.instance.id` resource
/// attribute unless `OTEL_RESOURCE_ATTRIBUTES` sets one: without it, trace viewers
/// merge the spans of every node of a service into one process. `never_root`:
/// span names the sampler never lets start a trace (see [`crate::sampler`]).
/// Must run inside a tokio runtime when exporting
/// (the tonic channel spawns its connection task there); outside one it
/// returns an error rather than panicking later.
pub fn otel_layer<S>(
    default_service_name: &str,
    instance_id: Option<&str>,
    never_root: &'static [&'static str],
) -> Result<Option<(BoxedLayer<S>, OtelGuard)>, String>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    let cfg = OtelConfig::from_env(default_service_name)?;
    let Some(endpoint) = cfg.endpoint.clone() else {
        return Ok(None);
    };
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(
            "OpenTelemetry export needs a tokio runtime (telemetry::init was called outside one)"
                .into(),
        );
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
        .map_err(|e| format!("OTLP exporter for {endpoint}: {e}"))?;
    let mut resource = Resource::builder();
    if let Some(name) = &cfg.default_service_name {
        resource = resource.with_service_name(name.clone());
    }
    let instance_set = std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|a| {
        a.split(',')
            .any(|kv| kv.trim().starts_with("service.instance.id="))
    });
    if let Some(id) = instance_id.filter(|_| !instance_set) {
        resource = resource.with_attribute(opentelemetry::KeyValue::new(
            "service.instance.id",
            id.to_string(),
        ));
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(
            cfg.sampling
                .sampler(Arc::new(MonotonicClock::default()), never_root),
        )
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("raftkv");
    let mut targets = Targets::new();
    for t in EXPORTED_TARGETS {
        targets = targets.with_target(*t, tracing::Level::DEBUG);
    }
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_filter(targets)
        .boxed();
    let summary = format!(
        "endpoint={endpoint} ratio={} rate_per_min={}",
        cfg.sampling.ratio,
        cfg.sampling
            .rate_per_min
            .map_or("unlimited".to_string(), |r| r.to_string())
    );
    Ok(Some((
        layer,
        OtelGuard {
            provider: Some(provider),
            summary,
        },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_endpoint_means_no_layer() {
        // The test environment sets no OTEL_* variables (checked, not assumed).
        if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
            || std::env::var_os("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
        {
            panic!("unset OTEL_EXPORTER_OTLP_*ENDPOINT to run the unit tests");
        }
        let cfg = OtelConfig::from_env("raft-node").unwrap();
        assert_eq!(cfg.endpoint, None);
        let layer = otel_layer::<tracing_subscriber::Registry>("raft-node", None, &[]).unwrap();
        assert!(layer.is_none());
    }
}
