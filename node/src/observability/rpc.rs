//! Spans for gRPC calls, per the OpenTelemetry RPC semantic conventions (see
//! [`super::semconv`]): the span name is the fully qualified method, the kind
//! CLIENT (SERVER spans come from [`super::server_layer`]), and the status code is recorded when the call ends.

use tracing::Span;
use tracing::field::Empty;

use super::semconv::grpc_code_name;

/// A CLIENT span for a call of `method` (`package.Service/Method`) to `server`
/// (`host:port`). Its parent is the current span unless set otherwise.
pub fn client_span(method: &'static str, server: &str) -> Span {
    let (host, port) = split_host_port(server);
    tracing::debug_span!(
        "rpc.client",
        otel.name = method,
        otel.kind = "client",
        otel.status_code = Empty,
        rpc.system.name = "grpc",
        rpc.method = method,
        rpc.response.status_code = Empty,
        error.type = Empty,
        server.address = host,
        server.port = port,
        raft.node_id = Empty,
        raft.target_node_id = Empty,
        raft.term = Empty,
        raft.index = Empty,
        raft.entries = Empty,
        raft.bytes = Empty,
    )
}

/// Records the outcome of the call on its span.
pub fn record_code(span: &Span, code: tonic::Code) {
    let name = grpc_code_name(code);
    span.record("rpc.response.status_code", name);
    if code != tonic::Code::Ok {
        span.record("error.type", name);
        span.record("otel.status_code", "error");
    }
}

/// Runs `fut` inside `span` and records its outcome there.
pub async fn traced<T>(
    span: Span,
    fut: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<T, tonic::Status> {
    use tracing::Instrument;
    let r = fut.instrument(span.clone()).await;
    record_result(&span, &r);
    r
}

/// Records the outcome of a tonic call on its span.
pub fn record_result<T>(span: &Span, r: &Result<T, tonic::Status>) {
    record_code(
        span,
        r.as_ref().map_or_else(|s| s.code(), |_| tonic::Code::Ok),
    );
}

fn split_host_port(addr: &str) -> (&str, Option<u16>) {
    let addr = addr
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    match addr.rsplit_once(':') {
        Some((h, p)) => match p.parse() {
            Ok(port) => (h.trim_start_matches('[').trim_end_matches(']'), Some(port)),
            Err(_) => (addr, None),
        },
        None => (addr, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_are_split_for_server_attributes() {
        assert_eq!(split_host_port("127.0.0.1:7001"), ("127.0.0.1", Some(7001)));
        assert_eq!(
            split_host_port("http://node-0.raft:7001"),
            ("node-0.raft", Some(7001))
        );
        assert_eq!(split_host_port("[::1]:80"), ("::1", Some(80)));
        assert_eq!(split_host_port("noport"), ("noport", None));
    }
}
