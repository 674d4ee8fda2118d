//! One tracing setup for every Orderflow binary: `RUST_LOG` filters (default `info`),
//! `ORDERFLOW_LOG_FORMAT=json` switches to JSON lines for log shippers.
//!
//! OpenTelemetry: when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, spans are also exported over
//! OTLP/HTTP (protobuf) to `$OTEL_EXPORTER_OTLP_ENDPOINT/v1/traces` (or to
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as is), service name `OTEL_SERVICE_NAME` or the binary's
//! name. Call [`shutdown`] before the process exits so the last spans are sent. `RUST_LOG`
//! filters the logs only; the exported spans have their own filter, `ORDERFLOW_TRACE_FILTER`
//! (default: `info` for Orderflow, the HTTP stack and the exporter off).
//!
//! Trace context travels as W3C Trace Context: the HTTP shim reads `traceparent`, the order's
//! workflow start carries it in the Temporal header [`TRACE_HEADER_KEY`] (the cross-SDK
//! `_tracer-data` header: a JSON map `{"traceparent": …}`), [`workflow_interceptor`] copies that
//! header onto every activity the workflow schedules (no new commands, no new inputs), and
//! [`ActivityTraceContext`] runs each activity inside a span whose parent is that context.

use std::{collections::HashMap, sync::Mutex};

use opentelemetry::{Context, propagation::TextMapPropagator, trace::TracerProvider as _};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use temporalio_common::protos::temporal::api::common::v1::{Header, Payload};
use temporalio_sdk::{
    interceptors::{ActivityInboundInterceptor, ExecuteActivityInput, ExecuteActivityOutput, Next},
    workflow_interceptors::{
        CancellableWorkflowOutboundFuture, ExecuteWorkflowInput, ExecuteWorkflowResult,
        ScheduleActivityInput, ScheduleActivityResult, ScheduleLocalActivityInput,
        WorkflowInterceptor, WorkflowInterceptorConstructor, WorkflowInterceptorContext,
        WorkflowInterceptorFuture, WorkflowNext,
    },
};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::{
    EnvFilter, Layer as _, layer::SubscriberExt as _, util::SubscriberInitExt as _,
};

/// The Temporal header that carries trace context (the name the other Temporal SDKs use).
pub const TRACE_HEADER_KEY: &str = "_tracer-data";

/// The tracer provider while OTLP export is on; taken by [`shutdown`].
static PROVIDER: Mutex<Option<SdkTracerProvider>> = Mutex::new(None);

/// The default filter of the exported spans: `ORDERFLOW_TRACE_FILTER` overrides it. Independent
/// of `RUST_LOG`, so quiet logs still export the request, workflow and activity spans; the HTTP
/// stack below the exporter stays out (its own requests must not make spans of their own).
const DEFAULT_TRACE_FILTER: &str = "info,temporalio_sdk_core=warn,temporalio_client=warn,sqlx=warn,async_nats=warn,h2=off,hyper=off,hyper_util=off,reqwest=off,tower=off,opentelemetry=off,opentelemetry_sdk=off,opentelemetry_otlp=off,opentelemetry_http=off";

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,temporalio_sdk_core=warn,sqlx=warn,async_nats=warn")
    });
    let json = std::env::var("ORDERFLOW_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if json {
        fmt.json().boxed()
    } else {
        fmt.boxed()
    };
    let otel = otlp_provider().map(|provider| {
        let trace_filter = std::env::var("ORDERFLOW_TRACE_FILTER")
            .ok()
            .and_then(|v| EnvFilter::try_new(v).ok())
            .unwrap_or_else(|| EnvFilter::new(DEFAULT_TRACE_FILTER));
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("orderflow"))
            .with_filter(trace_filter)
    });
    // A second init (tests call this from many places) is harmless: the first one wins.
    let _ = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel)
        .try_init();
}

/// The OTLP/HTTP tracer provider when `OTEL_EXPORTER_OTLP_ENDPOINT` (or the traces-only
/// variant) is set and no provider exists yet; `None` otherwise.
fn otlp_provider() -> Option<SdkTracerProvider> {
    let configured = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var(name).is_ok_and(|v| !v.trim().is_empty()));
    if !configured {
        return None;
    }
    let mut slot = PROVIDER.lock().unwrap_or_else(|e| e.into_inner());
    if slot.is_some() {
        return None;
    }
    use opentelemetry_otlp::{Protocol, WithExportConfig as _};
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .build()
    {
        Ok(exporter) => exporter,
        Err(err) => {
            eprintln!("OTLP span export disabled: {err}");
            return None;
        }
    };
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service_name())
                .build(),
        )
        .build();
    *slot = Some(provider.clone());
    Some(provider)
}

fn service_name() -> String {
    if let Ok(name) = std::env::var("OTEL_SERVICE_NAME")
        && !name.trim().is_empty()
    {
        return name;
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "orderflow".to_owned())
}

/// Sends the spans still buffered (no-op without OTLP export). Export keeps working.
pub fn flush() {
    let provider = PROVIDER.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(provider) = provider
        && let Err(err) = provider.force_flush()
    {
        eprintln!("OTLP span flush failed: {err}");
    }
}

/// Flushes and stops OTLP export (no-op without it). Call once, at the end of `main`.
pub fn shutdown() {
    let provider = PROVIDER.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(provider) = provider
        && let Err(err) = provider.shutdown()
    {
        eprintln!("OTLP span export shutdown failed: {err}");
    }
}

// ---- W3C trace context in Temporal headers ----

/// Text-map carrier: the JSON map stored in the [`TRACE_HEADER_KEY`] header payload.
#[derive(Default)]
struct Carrier(HashMap<String, String>);

impl opentelemetry::propagation::Injector for Carrier {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

impl opentelemetry::propagation::Extractor for Carrier {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// The header payload carrying `cx`, or `None` when `cx` has no valid span context (no
/// exporter, no incoming `traceparent`).
pub fn trace_payload(cx: &Context) -> Option<Payload> {
    let mut carrier = Carrier::default();
    TraceContextPropagator::new().inject_context(cx, &mut carrier);
    if carrier.0.is_empty() {
        return None;
    }
    Some(Payload {
        metadata: HashMap::from([("encoding".to_owned(), b"json/plain".to_vec())]),
        data: serde_json::to_vec(&carrier.0).ok()?,
        ..Default::default()
    })
}

/// A Temporal header carrying the current span's trace context, for a workflow start.
pub fn current_trace_header() -> Option<Header> {
    let payload = trace_payload(&tracing::Span::current().context())?;
    Some(Header {
        fields: HashMap::from([(TRACE_HEADER_KEY.to_owned(), payload)]),
    })
}

/// The remote trace context in a set of Temporal header fields, if any.
pub fn extract_trace_context(fields: &HashMap<String, Payload>) -> Option<Context> {
    let payload = fields.get(TRACE_HEADER_KEY)?;
    let map: HashMap<String, String> = serde_json::from_slice(&payload.data).ok()?;
    let cx = TraceContextPropagator::new().extract(&Carrier(map));
    use opentelemetry::trace::TraceContextExt as _;
    cx.span().span_context().is_valid().then_some(cx)
}

/// Workflow interceptor: remembers the workflow's start header [`TRACE_HEADER_KEY`] and puts it
/// on each activity the workflow schedules. Only header fields change; the commands, their order
/// and every input stay the same, so histories replay unchanged.
pub fn workflow_interceptor() -> WorkflowInterceptorConstructor {
    WorkflowInterceptorConstructor::new(|_| TraceHeaderForwarder::default())
}

#[derive(Default)]
struct TraceHeaderForwarder {
    header: std::cell::RefCell<Option<Payload>>,
}

impl WorkflowInterceptor for TraceHeaderForwarder {
    fn execute<'a>(
        &'a self,
        _ctx: WorkflowInterceptorContext,
        input: ExecuteWorkflowInput,
        next: WorkflowNext<
            'a,
            ExecuteWorkflowInput,
            WorkflowInterceptorFuture<'a, ExecuteWorkflowResult>,
        >,
    ) -> WorkflowInterceptorFuture<'a, ExecuteWorkflowResult> {
        *self.header.borrow_mut() = input.headers().get(TRACE_HEADER_KEY).cloned();
        next.run(input)
    }

    #[allow(clippy::result_large_err)]
    fn schedule_activity(
        &self,
        _ctx: WorkflowInterceptorContext,
        mut input: ScheduleActivityInput,
        next: WorkflowNext<
            'static,
            ScheduleActivityInput,
            CancellableWorkflowOutboundFuture<ScheduleActivityResult>,
        >,
    ) -> CancellableWorkflowOutboundFuture<ScheduleActivityResult> {
        if let Some(payload) = self.header.borrow().clone() {
            input
                .headers_mut()
                .entry(TRACE_HEADER_KEY.to_owned())
                .or_insert(payload);
        }
        next.run(input)
    }

    /// The same for local activities (orders run their steps as local activities first).
    #[allow(clippy::result_large_err)]
    fn schedule_local_activity(
        &self,
        _ctx: WorkflowInterceptorContext,
        mut input: ScheduleLocalActivityInput,
        next: WorkflowNext<
            'static,
            ScheduleLocalActivityInput,
            CancellableWorkflowOutboundFuture<ScheduleActivityResult>,
        >,
    ) -> CancellableWorkflowOutboundFuture<ScheduleActivityResult> {
        if let Some(payload) = self.header.borrow().clone() {
            input
                .headers_mut()
                .entry(TRACE_HEADER_KEY.to_owned())
                .or_insert(payload);
        }
        next.run(input)
    }
}

/// Activity interceptor: runs every activity inside an `activity` span (fields `activity_type`,
/// `activity_id`, `workflow_id`) whose parent is the trace context in the activity's header, so
/// the activities' own spans (`open_order`, …) continue the trace of the HTTP request.
#[derive(Default)]
pub struct ActivityTraceContext;

impl ActivityInboundInterceptor for ActivityTraceContext {
    fn execute_activity<'a>(
        &'a self,
        input: ExecuteActivityInput,
        next: Next<'a, ExecuteActivityInput, ExecuteActivityOutput<'a>>,
    ) -> ExecuteActivityOutput<'a> {
        let info = input.activity_info();
        let span = tracing::info_span!(
            "activity",
            otel.name = %format!("RunActivity:{}", info.activity_type),
            activity_type = %info.activity_type,
            activity_id = %info.activity_id,
            workflow_id = info.workflow_id.as_deref().unwrap_or_default(),
        );
        if let Some(cx) = extract_trace_context(input.headers()) {
            let _ = span.set_parent(cx);
        }
        // The activity's own span is created when the activity is called: make ours current.
        let future = span.in_scope(|| next.run(input));
        Box::pin(future.instrument(span))
    }
}

/// Registers [`workflow_interceptor`] and [`ActivityTraceContext`] on worker options.
pub fn register(options: &mut temporalio_sdk::WorkerOptions) {
    options.workflow_interceptor(workflow_interceptor());
    options.activity_inbound_interceptor(ActivityTraceContext);
}
