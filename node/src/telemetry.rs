//! Logging and OpenTelemetry export for the node's binaries (raft-node,
//! raftctl), set up by the shared `raftkv_telemetry::init`.

use std::io::IsTerminal;

pub use raftkv_telemetry::{LogFormat, TelemetryGuard};

/// Default filter: our crates at info, openraft only when something is wrong
/// (it logs every vote request at info).
const DEFAULT_FILTER: &str = "info,openraft=warn,h2=warn,tower=warn,hyper=warn";

/// Logging on stderr (filtered by `RUST_LOG`) plus, when `OTEL_EXPORTER_OTLP_ENDPOINT`
/// is set, OpenTelemetry export of our spans (its own filter, so `RUST_LOG`
/// does not decide what is traced). See `raftkv_telemetry::tracing_setup`.
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
/// No `format`: text on a terminal, JSON otherwise.
pub fn init_with_filter(
    format: Option<LogFormat>,
    service_name: &str,
    instance: Option<&str>,
    default_filter: &str,
) -> TelemetryGuard {
    let format = format.unwrap_or(if std::io::stderr().is_terminal() {
        LogFormat::Text
    } else {
        LogFormat::Json
    });
    let guard = raftkv_telemetry::init(&raftkv_telemetry::Options {
        service_name,
        instance_id: instance,
        never_root: crate::observability::sampler::NEVER_ROOT,
        format,
        output: raftkv_telemetry::LogOutput::Stderr,
        default_filter,
    });
    if guard.is_exporting() {
        // Every client built with default options (raftctl, forwarding) carries traceparent.
        crate::client::set_default_request_hook(crate::observability::propagation::request_hook());
    }
    guard
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
