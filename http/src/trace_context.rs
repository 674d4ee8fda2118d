//! The request span of the HTTP shim, continuing an incoming W3C `traceparent`.
//!
//! Every request runs in an `INFO` span `http_request` (method, path); when the request carries
//! a valid `traceparent` (W3C Trace Context), that remote span is the span's parent, so the
//! OpenTelemetry export (see `orderflow_worker::telemetry`) puts the request, the order's
//! workflow start and its activities into the caller's trace.

use axum::http::{HeaderMap, Request};
use opentelemetry::{
    Context,
    propagation::{Extractor, TextMapPropagator as _},
    trace::TraceContextExt as _,
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The remote context in `traceparent`/`tracestate`, if the request carries a valid one.
pub fn remote_context(headers: &HeaderMap) -> Option<Context> {
    let cx = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    cx.span().span_context().is_valid().then_some(cx)
}

/// `TraceLayer::make_span_with`: the request span, child of the incoming `traceparent`.
pub fn make_span<B>(request: &Request<B>) -> Span {
    let span = tracing::info_span!(
        "http_request",
        otel.name = %format!("{} {}", request.method(), request.uri().path()),
        otel.kind = "server",
        http.request.method = %request.method(),
        url.path = %request.uri().path(),
        // Filled in by the handlers that know them.
        order_id = tracing::field::Empty,
        provider = tracing::field::Empty,
        client = tracing::field::Empty,
    );
    if let Some(cx) = remote_context(request.headers()) {
        let _ = span.set_parent(cx);
    }
    span
}
