//! Logging and OpenTelemetry export for `raft-node`, set up by the shared `raftkv_telemetry::init`.

pub use raftkv_telemetry::{LogFormat, TelemetryGuard};

/// Default filter: our crates at info, openraft only when something is wrong
/// (it logs every vote request at info).
const DEFAULT_FILTER: &str = "info,openraft=warn,h2=warn,tower=warn,hyper=warn";

/// Logging on stderr (filtered by `RUST_LOG`) plus, when `OTEL_EXPORTER_OTLP_ENDPOINT`
/// is set, OpenTelemetry export of our spans (its own filter, so `RUST_LOG`
/// does not decide what is traced). See `raftkv_telemetry::tracing_setup`.
/// Call it inside the tokio runtime. No `format`: text on a terminal, JSON otherwise.
/// `instance` names this process among others of the same service (a node's name).
pub fn init(
    format: Option<LogFormat>,
    service_name: &str,
    instance: Option<&str>,
) -> TelemetryGuard {
    raftkv_telemetry::init(&raftkv_telemetry::Options {
        service_name,
        instance_id: instance,
        never_root: crate::observability::sampler::NEVER_ROOT,
        format: format.unwrap_or_else(LogFormat::for_stderr),
        output: raftkv_telemetry::LogOutput::Stderr,
        default_filter: DEFAULT_FILTER,
    })
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
