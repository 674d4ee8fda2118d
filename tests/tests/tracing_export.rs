//! OTLP/HTTP span export and trace-context propagation, end to end: an HTTP request carrying a
//! W3C `traceparent` starts an order; the request span and the order's activity spans arrive at
//! a local OTLP/HTTP receiver in the caller's trace.
//!
//! `telemetry::init` is process-global and reads `OTEL_EXPORTER_OTLP_ENDPOINT` at start-up, and
//! this workspace forbids the `unsafe` that `std::env::set_var` needs, so the test runs the
//! worker and the shim in a child process of this test binary (`exporting_child`), started with
//! the variable pointing at the receiver this process runs.

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::StatusCode,
    routing::{get, post},
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use orderflow_tests::{Engine, TestApp, eventually};
use prost::Message as _;
use serde_json::json;
use std::{
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

const CHILD_MARKER: &str = "ORDERFLOW_TRACING_EXPORT_CHILD";
const TRACEPARENT_VAR: &str = "ORDERFLOW_TRACING_EXPORT_TRACEPARENT";
/// Where the receiver lists the names of the spans it has (see [`received_names`]).
const RECEIVED_PATH: &str = "/received-span-names";

/// One exported span: (name, trace id hex, parent span id hex, service name).
#[derive(Debug, Clone)]
struct Received {
    name: String,
    trace_id: String,
    parent_span_id: String,
    service: String,
}

async fn receive(State(spans): State<Arc<Mutex<Vec<Received>>>>, body: Bytes) -> StatusCode {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut spans = spans.lock().unwrap();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| r.attributes.iter())
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref())
            .map(|v| format!("{:?}", v.value))
            .unwrap_or_default();
        for scope_spans in resource_spans.scope_spans {
            for span in scope_spans.spans {
                spans.push(Received {
                    name: span.name,
                    trace_id: hex::encode(&span.trace_id),
                    parent_span_id: hex::encode(&span.parent_span_id),
                    service: service.clone(),
                });
            }
        }
    }
    StatusCode::OK
}

/// The names of the spans received so far, for the child to wait on.
async fn received_names(State(spans): State<Arc<Mutex<Vec<Received>>>>) -> Json<Vec<String>> {
    Json(
        spans
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.name.clone())
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_request_and_activities_export_in_the_callers_trace() {
    if std::env::var_os(CHILD_MARKER).is_some() {
        return; // In the child process only `exporting_child` does the work.
    }
    let spans = Arc::new(Mutex::new(Vec::<Received>::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/v1/traces", post(receive))
        .route(RECEIVED_PATH, get(received_names))
        .with_state(spans.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let parent_span_id = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
    let traceparent = format!("00-{trace_id}-{parent_span_id}-01");

    let exe = std::env::current_exe().unwrap();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(exe)
            .args([
                "exporting_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_MARKER, "1")
            .env(TRACEPARENT_VAR, &traceparent)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
            .env("OTEL_SERVICE_NAME", "orderflow-tracing-test")
            .env("OTEL_BSP_SCHEDULE_DELAY", "200")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "the exporting child failed: {}\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    let spans = spans.lock().unwrap().clone();
    assert!(!spans.is_empty(), "no spans reached the OTLP/HTTP receiver");
    let in_trace: Vec<&Received> = spans.iter().filter(|s| s.trace_id == trace_id).collect();
    let names: Vec<&str> = in_trace.iter().map(|s| s.name.as_str()).collect();
    eprintln!("spans in the caller's trace: {names:?}");

    let request = in_trace
        .iter()
        .find(|s| s.name == "POST /v1/orders")
        .unwrap_or_else(|| panic!("no request span in the trace: {names:?} (all: {spans:?})"));
    assert_eq!(
        request.parent_span_id, parent_span_id,
        "the request span's parent is the incoming traceparent's span"
    );
    assert!(
        request.service.contains("orderflow-tracing-test"),
        "service name from OTEL_SERVICE_NAME: {}",
        request.service
    );
    assert!(
        names.contains(&"open_order"),
        "the open_order activity span continues the caller's trace: {names:?}"
    );
    assert!(
        names.contains(&"RunActivity:open_order"),
        "the activity wrapper span is in the caller's trace: {names:?}"
    );
    assert!(
        [
            "record_order",
            "reserve_stock",
            "create_payment",
            "mark_order_status"
        ]
        .iter()
        .all(|part| names.contains(part)),
        "each part of opening the order has its span in the trace: {names:?}"
    );
}

/// The child half: the worker and the shim with OTLP export on (see the module docs). Does
/// nothing unless started by the test above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporting_child() {
    if std::env::var_os(CHILD_MARKER).is_none() {
        return;
    }
    let traceparent = std::env::var(TRACEPARENT_VAR).expect("traceparent for the child");
    let Some(app) = TestApp::spawn(Engine::Sqlite).await else {
        return;
    };
    let shim = app.serve_http().await;
    let base = shim.base;
    let response = shim
        .http
        .post(format!("{base}/v1/orders"))
        .header(
            "Idempotency-Key",
            format!("trace-{}", app.settings.connection.task_queue),
        )
        .header("traceparent", &traceparent)
        .json(&json!({"customer_id": "trace-1", "provider": "sandbox",
                      "lines": [{"sku": "TEE-RED-M", "quantity": 1}]}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "AWAITING_PAYMENT", "{body}");
    // The request span closes a moment after the response is sent: wait until the receiver has
    // it (the batch exporter sends every 200 ms here), then flush the rest.
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").expect("the receiver's address");
    let http = reqwest::Client::new();
    eventually(Duration::from_secs(30), || async {
        let names: Vec<String> = http
            .get(format!("{endpoint}{RECEIVED_PATH}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if names.iter().any(|n| n == "POST /v1/orders") {
            Ok(())
        } else {
            Err(names)
        }
    })
    .await
    .unwrap_or_else(|names| panic!("the request span was never exported: {names:?}"));
    orderflow_worker::telemetry::shutdown();
}
