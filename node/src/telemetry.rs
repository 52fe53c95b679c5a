//! Logging setup shared by the binaries. (OpenTelemetry export is added here.)

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Flushes exporters when dropped (keep it alive for the life of `main`).
pub struct TelemetryGuard {
    _otel: Option<crate::observability::tracing_setup::OtelGuard>,
}

/// Default filter: our crates at info, openraft only when something is wrong
/// (it logs every vote request at info).
const DEFAULT_FILTER: &str = "info,openraft=warn,h2=warn,tower=warn,hyper=warn";

/// Logging (filtered by `RUST_LOG`) plus, when `OTEL_EXPORTER_OTLP_ENDPOINT`
/// is set, OpenTelemetry export of our spans (its own filter, so `RUST_LOG`
/// does not decide what is traced). See `observability::tracing_setup`.
/// Call it inside the tokio runtime.
/// `instance` names this process among others of the same service (a node's name).
pub fn init(
    format: Option<LogFormat>,
    service_name: &str,
    instance: Option<&str>,
) -> TelemetryGuard {
    init_with_filter(format, service_name, instance, DEFAULT_FILTER)
}

/// [`init`] with another default log filter (used when `RUST_LOG` is unset).
pub fn init_with_filter(
    format: Option<LogFormat>,
    service_name: &str,
    instance: Option<&str>,
    default_filter: &str,
) -> TelemetryGuard {
    use crate::observability::tracing_setup::{BoxedLayer, otel_layer};
    type Registry = tracing_subscriber::Registry;

    let filter =
        EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    let format = format.unwrap_or(if std::io::stderr().is_terminal() {
        LogFormat::Text
    } else {
        LogFormat::Json
    });
    let fmt: BoxedLayer<Registry> = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    let (otel, guard, otel_error) = match otel_layer::<Registry>(service_name, instance) {
        Ok(Some((layer, guard))) => (Some(layer), Some(guard), None),
        Ok(None) => (None, None, None),
        Err(e) => (None, None, Some(e)),
    };
    let exporting = otel.is_some();
    let layers: Vec<BoxedLayer<Registry>> = std::iter::once(fmt).chain(otel).collect();
    let _ = tracing_subscriber::registry().with(layers).try_init();
    if let Some(e) = otel_error {
        tracing::warn!(error = %e, "OpenTelemetry export is off");
    }
    if let Some(g) = &guard {
        tracing::info!(otel = g.summary(), "exporting traces over OTLP/gRPC");
    }
    if exporting {
        // Every client built with default options (raftctl, forwarding) carries traceparent.
        crate::client::set_default_request_hook(crate::observability::propagation::request_hook());
    }
    TelemetryGuard { _otel: guard }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
