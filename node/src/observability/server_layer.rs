//! A tower layer in front of the tonic servers: one SERVER span per gRPC call
//! (RPC semantic conventions; name = `package.Service/Method` from the path),
//! child of the caller's `traceparent`, entered while the handler runs, with
//! the gRPC status recorded when the response starts. Handlers add Raft
//! attributes to it through `tracing::Span::current()`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::Either;
use opentelemetry::trace::TraceContextExt;
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::propagation::extract_headers;
use super::rpc::record_code;

/// Calls that get no span at all (probes, polled many times a second).
pub const UNTRACED_METHODS: &[&str] =
    &["grpc.health.v1.Health/Check", "grpc.health.v1.Health/Watch"];

/// A traced call: the inner future inside its span, then the status recorded.
pub type Traced<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

/// Adds [`TraceService`] to a tonic `Server::builder().layer(..)`; spans
/// carry `raft.node_id`.
#[derive(Debug, Clone, Copy)]
pub struct TraceLayer {
    pub node_id: crate::NodeId,
}

impl<S> tower_layer::Layer<S> for TraceLayer {
    type Service = TraceService<S>;

    fn layer(&self, inner: S) -> TraceService<S> {
        TraceService {
            inner,
            node_id: self.node_id,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TraceService<S> {
    inner: S,
    node_id: crate::NodeId,
}

/// The SERVER span of one call of `method`.
pub fn server_span(
    method: &str,
    headers: &http::HeaderMap,
    remote: Option<std::net::SocketAddr>,
    node_id: crate::NodeId,
) -> tracing::Span {
    let span = tracing::debug_span!(
        "rpc.server",
        otel.name = method,
        otel.kind = "server",
        otel.status_code = Empty,
        rpc.system.name = "grpc",
        rpc.method = method,
        rpc.response.status_code = Empty,
        error.type = Empty,
        client.address = Empty,
        raft.node_id = Empty,
        raft.term = Empty,
        raft.index = Empty,
        raft.entries = Empty,
        raft.bytes = Empty,
    );
    if span.is_disabled() {
        return span;
    }
    if let Some(a) = remote {
        span.record("client.address", tracing::field::display(a.ip()));
    }
    span.record("raft.node_id", node_id);
    let cx = extract_headers(headers);
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
    span
}

/// Whether a call of `method` with these headers could be sampled at all: it
/// carries a trace context, or it is allowed to start a trace. Heartbeats and
/// polls without context get no span (they could only be dropped).
/// A call without context that may start a trace is skipped too when the
/// sampler would drop it anyway (ratio 0, rate limit reached): at the default
/// rate limit most requests then cost no span at all.
fn may_be_traced(method: &str, headers: &http::HeaderMap) -> bool {
    headers.contains_key(super::propagation::TRACEPARENT)
        || (!super::sampler::NEVER_ROOT.contains(&method) && super::sampler::root_may_sample())
}

impl<S, B, RB> tower_service::Service<http::Request<B>> for TraceService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    RB: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    /// The inner future itself for a call without a span (nearly every call
    /// at the default sampling): boxing it cost an allocation and a copy of
    /// the future on every request and peer RPC. Only a traced call is boxed.
    type Future = Either<S::Future, Traced<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = req.uri().path().trim_start_matches('/');
        if UNTRACED_METHODS.contains(&method) || !may_be_traced(method, req.headers()) {
            return Either::Left(self.inner.call(req));
        }
        use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
        let ext = req.extensions();
        let remote = ext
            .get::<TcpConnectInfo>()
            .and_then(|i| i.remote_addr())
            // Over TLS (security::server) the TCP info sits inside the TLS info.
            .or_else(|| {
                ext.get::<TlsConnectInfo<TcpConnectInfo>>()
                    .and_then(|i| i.get_ref().remote_addr())
            });
        let span = server_span(method, req.headers(), remote, self.node_id);
        if span.is_disabled() {
            return Either::Left(self.inner.call(req));
        }
        let fut = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        Either::Right(Box::pin(async move {
            let r = fut.instrument(span.clone()).await;
            if let Ok(resp) = &r {
                // A unary error is a trailers-only response: the status is in
                // the headers. No grpc-status header = OK (sent in trailers).
                let code = resp
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map_or(tonic::Code::Ok, tonic::Code::from_i32);
                record_code(&span, code);
            }
            r
        }))
    }
}
