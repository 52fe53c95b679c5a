//! Logging plus OpenTelemetry export for a binary, in one call ([`init`]):
//! a `fmt` layer (text or JSON, filtered by `RUST_LOG`) and, when an OTLP
//! endpoint is configured, the export layer of [`crate::tracing_setup`] (its
//! own filter, so `RUST_LOG` does not decide what is traced).

use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

use crate::tracing_setup::{BoxedLayer, OtelGuard, otel_layer};

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// Text for a person at a terminal, JSON for a log collector.
    pub fn for_stderr() -> LogFormat {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() {
            LogFormat::Text
        } else {
            LogFormat::Json
        }
    }
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOutput {
    Stdout,
    Stderr,
}

/// What [`init`] sets up.
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    /// `service.name` unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` names it.
    pub service_name: &'a str,
    /// `service.instance.id` (this process among others of the same service)
    /// unless `OTEL_RESOURCE_ATTRIBUTES` sets one.
    pub instance_id: Option<&'a str>,
    /// Span names that never start a trace (see [`crate::sampler`]).
    pub never_root: &'static [&'static str],
    pub format: LogFormat,
    pub output: LogOutput,
    /// The log filter when `RUST_LOG` is unset or invalid.
    pub default_filter: &'a str,
}

/// Flushes the trace exporter when dropped (keep it alive for the life of `main`).
pub struct TelemetryGuard {
    otel: Option<OtelGuard>,
}

impl TelemetryGuard {
    /// Whether spans are exported (an OTLP endpoint is configured and the
    /// pipeline came up).
    pub fn is_exporting(&self) -> bool {
        self.otel.as_ref().is_some_and(OtelGuard::is_exporting)
    }
}

/// Installs the global subscriber (a no-op if one is already installed) and
/// logs whether traces are exported; an OTLP setup error is logged as a
/// warning, never fatal. Call it inside the tokio runtime.
pub fn init(opts: &Options<'_>) -> TelemetryGuard {
    type Registry = tracing_subscriber::Registry;

    let filter =
        EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(opts.default_filter));
    let fmt = tracing_subscriber::fmt::layer();
    let fmt: BoxedLayer<Registry> = match (opts.format, opts.output) {
        (LogFormat::Text, LogOutput::Stdout) => fmt.with_filter(filter).boxed(),
        (LogFormat::Text, LogOutput::Stderr) => {
            fmt.with_writer(std::io::stderr).with_filter(filter).boxed()
        }
        (LogFormat::Json, LogOutput::Stdout) => fmt.json().with_filter(filter).boxed(),
        (LogFormat::Json, LogOutput::Stderr) => fmt
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    let (otel, guard, otel_error) =
        match otel_layer::<Registry>(opts.service_name, opts.instance_id, opts.never_root) {
            Ok(Some((layer, guard))) => (Some(layer), Some(guard), None),
            Ok(None) => (None, None, None),
            Err(e) => (None, None, Some(e)),
        };
    let layers: Vec<BoxedLayer<Registry>> = std::iter::once(fmt).chain(otel).collect();
    let _ = tracing_subscriber::registry().with(layers).try_init();
    if let Some(e) = otel_error {
        tracing::warn!(error = %e, "OpenTelemetry export is off");
    }
    if let Some(g) = &guard {
        tracing::info!(otel = g.summary(), "exporting traces over OTLP/gRPC");
    }
    TelemetryGuard { otel: guard }
}
