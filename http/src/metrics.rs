//! The shim's Prometheus metrics, served at `GET /metrics`: requests and latencies by route and
//! status, and webhook verdicts by provider.

use super::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};
use std::time::Instant;

pub struct ShimMetrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    webhooks: IntCounterVec,
}

impl ShimMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "orderflow_http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "orderflow_http_request_duration_seconds",
                "HTTP request latency by route",
            ),
            &["route", "method"],
        )
        .expect("valid metric");
        let webhooks = IntCounterVec::new(
            Opts::new(
                "orderflow_webhook_callbacks_total",
                "Provider callbacks by provider and verdict",
            ),
            &["provider", "verdict"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(webhooks.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric registered once");
        }
        ShimMetrics {
            registry,
            requests,
            latency,
            webhooks,
        }
    }

    pub fn webhook(&self, provider: &str, verdict: &str) {
        // Unknown providers are attacker-chosen strings: keep the label set bounded.
        let provider = if provider.len() <= 32 && provider.bytes().all(|b| b.is_ascii_lowercase()) {
            provider
        } else {
            "invalid"
        };
        self.webhooks.with_label_values(&[provider, verdict]).inc();
    }

    fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for ShimMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Route layer: counts and times every matched request by its route template.
pub async fn track(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(req).await;
    app.metrics
        .latency
        .with_label_values(&[&route, &method])
        .observe(started.elapsed().as_secs_f64());
    app.metrics
        .requests
        .with_label_values(&[&route, &method, response.status().as_str()])
        .inc();
    response
}

pub async fn serve_metrics(State(app): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
}
