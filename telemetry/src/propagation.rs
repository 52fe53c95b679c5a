//! W3C trace context (`traceparent`, `tracestate`) in gRPC metadata.
//!
//! Outgoing: [`inject`] writes the current span's context into a request's
//! metadata (a node's client request hook, peer client and forwarding; the
//! operator's [`interceptor`]).
//! Incoming: [`extract`] reads it back, and [`set_parent_from`] makes it the
//! parent of a server span. With no OpenTelemetry layer installed, spans have
//! no valid context and nothing is written.

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The metadata key of the W3C trace parent.
pub const TRACEPARENT: &str = "traceparent";

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(k, v);
        }
    }
}

struct MetadataExtractor<'a>(&'a MetadataMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The remote context carried by HTTP/2 headers (a gRPC request's metadata).
pub fn extract_headers(headers: &http::HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Writes `cx`'s span context into `md` (nothing if it has no valid span).
pub fn inject_context(cx: &Context, md: &mut MetadataMap) {
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(cx, &mut MetadataInjector(md));
    }
}

/// Writes the current `tracing` span's context into `md`.
pub fn inject(md: &mut MetadataMap) {
    inject_context(&tracing::Span::current().context(), md);
}

/// Writes `span`'s context into `md`.
pub fn inject_span(span: &tracing::Span, md: &mut MetadataMap) {
    inject_context(&span.context(), md);
}

/// The remote context carried by `md` (an empty context if there is none).
pub fn extract(md: &MetadataMap) -> Context {
    TraceContextPropagator::new().extract(&MetadataExtractor(md))
}

/// Makes the context carried by `md` the parent of `span` (which must not have
/// been entered yet). No-op without a valid `traceparent`.
pub fn set_parent_from(span: &tracing::Span, md: &MetadataMap) {
    let cx = extract(md);
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// A tonic interceptor that calls [`inject`]:
/// `ClusterClient::with_interceptor(channel, propagation::interceptor)`.
pub fn interceptor(mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    inject(req.metadata_mut());
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

    fn cx(flags: TraceFlags) -> Context {
        Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from(0x0af7651916cd43dd8448eb211c80319cu128),
            SpanId::from(0xb7ad6b7169203331u64),
            flags,
            true,
            TraceState::from_key_value([("vendor", "x")]).unwrap(),
        ))
    }

    #[test]
    fn traceparent_round_trips_through_grpc_metadata() {
        let mut md = MetadataMap::new();
        inject_context(&cx(TraceFlags::SAMPLED), &mut md);
        assert_eq!(
            md.get(TRACEPARENT).unwrap().to_str().unwrap(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
        assert_eq!(md.get("tracestate").unwrap().to_str().unwrap(), "vendor=x");
        let back = extract(&md);
        let sc = back.span().span_context().clone();
        assert!(sc.is_valid());
        assert!(sc.is_remote());
        assert!(sc.is_sampled());
        assert_eq!(
            sc.trace_id(),
            TraceId::from(0x0af7651916cd43dd8448eb211c80319cu128)
        );
        assert_eq!(sc.span_id(), SpanId::from(0xb7ad6b7169203331u64));
        assert_eq!(sc.trace_state().get("vendor"), Some("x"));
    }

    #[test]
    fn the_unsampled_flag_travels_too() {
        let mut md = MetadataMap::new();
        inject_context(&cx(TraceFlags::default()), &mut md);
        assert!(
            md.get(TRACEPARENT)
                .unwrap()
                .to_str()
                .unwrap()
                .ends_with("-00")
        );
        let sc = extract(&md).span().span_context().clone();
        assert!(sc.is_valid());
        assert!(!sc.is_sampled());
    }

    #[test]
    fn nothing_is_written_without_a_span_and_nothing_read_from_garbage() {
        let mut md = MetadataMap::new();
        inject_context(&Context::new(), &mut md);
        assert!(md.is_empty());
        // With no OpenTelemetry layer installed, the current span has no context.
        inject(&mut md);
        assert!(md.is_empty());
        md.insert(TRACEPARENT, MetadataValue::from_static("00-zz-yy-01"));
        assert!(!extract(&md).span().span_context().is_valid());
    }

    #[test]
    fn the_interceptor_carries_the_current_span() {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_subscriber::prelude::*;
        // No exporter: spans are sampled (the SDK's default) and dropped on end.
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("reconcile");
            let _entered = span.enter();
            let trace_id = span.context().span().span_context().trace_id();
            assert_ne!(trace_id, TraceId::INVALID);
            let req = interceptor(tonic::Request::new(())).unwrap();
            let tp = req.metadata().get(TRACEPARENT).expect("traceparent");
            let tp = tp.to_str().unwrap();
            assert!(tp.starts_with(&format!("00-{trace_id}-")), "{tp}");
            assert!(tp.ends_with("-01"), "{tp}");
        });
    }
}
