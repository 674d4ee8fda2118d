//! `POST /v1/orders` against bad input, through the real axum router (`http::router`) with its
//! 64 KiB limit, a real SQLite database, and a stand-in for Temporal that records what would be
//! started and then answers "permission denied" (so a good body ends in `503`, after its
//! workflow input was captured).
//!
//! The property — a body is refused with `400` when it does not decode, `422` when the order is
//! invalid, and otherwise reaches Temporal as exactly the order it describes, with 1..=1000 of
//! every SKU — is checked against `fuzz/src/orders_api.rs`, which the `orders_api_body` fuzz
//! target runs on arbitrary bytes (`scripts/fuzz.sh`).

#[path = "../../fuzz/src/domain.rs"]
#[allow(dead_code)] // Only `check_validation` is used here; the rest is for the domain targets.
mod domain;
#[path = "../../fuzz/src/orders_api.rs"]
mod orders_api;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use futures::future::BoxFuture;
use orderflow_activities::db::Db;
use orderflow_client::orders::{Orders, order_id_for_key};
use orderflow_domain::{ClientId, MAX_LINE_QUANTITY, OrderInput};
use orderflow_http::api_keys;
use orderflow_http::orders::CreateOrderRequest;
use orderflow_http::{AppState, MAX_BODY_BYTES, ServeSettings, router};
use orderflow_worker::settings::ExposeSecret;
use orders_api::{check_order_body, order_input_for};
use proptest::prelude::*;
use prost::Message;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use temporalio_client::callback_based::{
    CallbackBasedGrpcService, GrpcRequest, GrpcSuccessResponse,
};
use temporalio_client::tonic::Status;
use temporalio_client::{Client, ClientOptions, Connection, ConnectionOptions, Url};
use temporalio_common::protos::temporal::api::workflowservice::v1::StartWorkflowExecutionRequest;
use tower::ServiceExt;

/// The router, the runtime it runs on, and the workflow inputs the Temporal stand-in received,
/// by workflow id.
struct Shim {
    runtime: tokio::runtime::Runtime,
    router: Router,
    /// An API key of `client_id()` with the client scopes.
    key: String,
    started: Arc<Mutex<BTreeMap<String, OrderInput>>>,
}

type Started = Arc<Mutex<BTreeMap<String, OrderInput>>>;

/// Answers every Temporal RPC with an error that is not retried, after noting the input of each
/// `StartWorkflowExecution`.
fn temporal_stand_in(started: Started) -> CallbackBasedGrpcService {
    CallbackBasedGrpcService {
        callback: Arc::new(
            move |req: GrpcRequest| -> BoxFuture<'static, Result<GrpcSuccessResponse, Status>> {
                let started = started.clone();
                Box::pin(async move {
                    match req.rpc.as_str() {
                        // What an old server says: the client connects without capabilities.
                        "GetSystemInfo" => {
                            return Err(Status::unimplemented("unknown method GetSystemInfo"));
                        }
                        "StartWorkflowExecution" => {
                            let start = StartWorkflowExecutionRequest::decode(req.proto.as_ref())
                                .map_err(|e| Status::invalid_argument(e.to_string()))?;
                            let data = start
                                .input
                                .and_then(|p| p.payloads.into_iter().next())
                                .map(|p| p.data)
                                .unwrap_or_default();
                            let input: OrderInput = serde_json::from_slice(&data)
                                .map_err(|e| Status::invalid_argument(e.to_string()))?;
                            started
                                .lock()
                                .expect("not poisoned")
                                .insert(start.workflow_id, input);
                        }
                        _ => {}
                    }
                    Err(Status::permission_denied("no Temporal server in this test"))
                })
            },
        ),
    }
}

fn shim() -> &'static Shim {
    static SHIM: OnceLock<Shim> = OnceLock::new();
    SHIM.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let started: Started = Arc::default();
        let (router, key) = runtime.block_on(async {
            let connection = Connection::connect(
                ConnectionOptions::new(Url::parse("http://127.0.0.1:7233").unwrap())
                    .service_override(temporal_stand_in(started.clone()))
                    .dns_load_balancing(None)
                    .build(),
            )
            .await
            .expect("a stand-in connection");
            let client =
                Client::new(connection, ClientOptions::new("default").build()).expect("a client");
            let path = std::env::temp_dir().join(format!(
                "orderflow-api-body-properties-{}.db",
                std::process::id()
            ));
            let db = Db::connect(&format!("sqlite://{}", path.display()))
                .await
                .expect("a SQLite database");
            db.migrate().await.expect("migrations");
            let orders = Orders {
                client,
                db,
                task_queue: "api-body-properties".to_owned(),
                public_url: "http://127.0.0.1:9".to_owned(),
            };
            let created =
                api_keys::create(&orders.db, &client_id(), &api_keys::Scope::CLIENT.into())
                    .await
                    .expect("an API key");
            // As in development (scripts/up.sh): the sandbox on and the default provider, which
            // `order_input_for` fills in for a body that names none; and limits no property run
            // reaches: these tests are about bodies.
            let mut settings = ServeSettings::defaults();
            settings.sandbox.enabled = true;
            settings.default_provider = Some(orders_api::DEFAULT_PROVIDER.to_owned());
            settings.limits.api_rate_per_sec = u32::MAX;
            settings.limits.api_burst = u32::MAX;
            let key = created.key.expose_secret().to_owned();
            (
                router(AppState::new(orders, settings).expect("app state")),
                key,
            )
        });
        Shim {
            runtime,
            router,
            key,
            started,
        }
    })
}

/// The API client these requests come from.
fn client_id() -> ClientId {
    ClientId::parse("props").expect("a valid client id")
}

/// A fresh Idempotency-Key, so no case sees another's order.
fn fresh_key() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("props-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Sends one request through the router; returns the status and the JSON body.
fn send(method: &str, uri: &str, key: Option<&[u8]>, body: Vec<u8>) -> (u16, Value) {
    let shim = shim();
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {}", shim.key))
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let request = request.body(Body::from(body)).expect("a request");
    shim.runtime.block_on(async {
        let response = shim
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("a body");
        let json = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{status}: not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (status, json)
    })
}

fn post_order(key: &str, body: impl Into<Vec<u8>>) -> (u16, Value) {
    send("POST", "/v1/orders", Some(key.as_bytes()), body.into())
}

fn code(error: &Value) -> &str {
    error["error"]["code"].as_str().unwrap_or("")
}

/// The router's answer to `body` is the one `check_order_body` predicts, and a body that gets
/// through reaches Temporal as exactly its order, with every quantity in 1..=1000.
fn router_agrees(body: &[u8]) -> (u16, String) {
    let key = fresh_key();
    let (status, error) = post_order(&key, body);
    let decoded = serde_json::from_slice::<CreateOrderRequest>(body);
    let expected = match (&decoded, check_order_body(body)) {
        _ if body.len() > MAX_BODY_BYTES => (413, "PAYLOAD_TOO_LARGE"),
        (Err(_), _) => (400, "INVALID_JSON"),
        (Ok(_), None) => (422, "INVALID_ORDER"),
        (Ok(_), Some(_)) => (503, "TEMPORAL_UNAVAILABLE"),
    };
    assert_eq!(
        (status, code(&error)),
        expected,
        "{error} for {}",
        String::from_utf8_lossy(&body[..body.len().min(300)])
    );
    let order_id = order_id_for_key(&client_id(), &key);
    let started = shim()
        .started
        .lock()
        .expect("not poisoned")
        .remove(&format!("order-{order_id}"));
    match (decoded, status) {
        (Ok(request), 503) => {
            let input = started.expect("a valid order was started");
            assert_eq!(input, order_input_for(&request, order_id.as_str()));
            let valid = domain::check_validation(&input).expect("what is started validates");
            assert!(
                valid
                    .lines
                    .iter()
                    .all(|l| (1..=MAX_LINE_QUANTITY).contains(&l.quantity.get()))
            );
        }
        _ => assert_eq!(started, None, "a refused body started a workflow"),
    }
    (status, code(&error).to_owned())
}

fn body_with_quantity(quantity: &str) -> String {
    format!(r#"{{"customer_id":"alice","lines":[{{"sku":"MUG-LOGO","quantity":{quantity}}}]}}"#)
}

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

#[test]
fn a_good_body_reaches_temporal_as_its_order() {
    let (status, _) = router_agrees(body_with_quantity("2").as_bytes());
    assert_eq!(status, 503);
    let two_lines = br#"{"customer_id":"a","lines":[{"sku":"B","quantity":1000},{"sku":"A","quantity":1}],"provider":"sandbox","payment_timeout_secs":60}"#;
    assert_eq!(router_agrees(two_lines).0, 503);
}

#[test]
fn whole_numbers_written_with_a_fraction_or_exponent_are_those_numbers() {
    // JSON Schema's `integer` (the OpenAPI document's type): any number with no fractional part.
    for quantity in ["2.0", "20e-1", "1e2", "0.5e1"] {
        assert_eq!(
            router_agrees(body_with_quantity(quantity).as_bytes()).0,
            503,
            "{quantity} reaches Temporal"
        );
    }
}

#[test]
fn quantities_that_are_not_whole_numbers_in_i64_are_malformed() {
    for quantity in [
        "\"2\"",
        "2.5",
        "2.0000000000000000001",
        "1e-1",
        "1e400",
        "9223372036854775808",
        "-9223372036854775809",
        "null",
        "[2]",
    ] {
        assert_eq!(
            router_agrees(body_with_quantity(quantity).as_bytes()),
            (400, "INVALID_JSON".to_owned()),
            "{quantity}"
        );
    }
}

#[test]
fn zero_negative_and_too_large_quantities_are_invalid_orders() {
    for quantity in ["0", "-1", "-9223372036854775808", "1001", "4294967297"] {
        assert_eq!(
            router_agrees(body_with_quantity(quantity).as_bytes()),
            (422, "INVALID_ORDER".to_owned()),
            "{quantity}"
        );
    }
}

#[test]
fn duplicate_keys_nesting_and_invalid_utf8_are_malformed() {
    for body in [
        br#"{"customer_id":"a","customer_id":"b","lines":[{"sku":"MUG","quantity":1}]}"#.to_vec(),
        br#"{"customer_id":"a","lines":[{"sku":"MUG","quantity":1,"quantity":-1}]}"#.to_vec(),
        br#"{"customer_id":"a","lines":[],"lines":[{"sku":"MUG","quantity":1}]}"#.to_vec(),
        nested(10_000).into_bytes(),
        format!(r#"{{"customer_id":"a","lines":{}}}"#, nested(10_000)).into_bytes(),
        b"{\"customer_id\":\"al\xffce\",\"lines\":[{\"sku\":\"MUG\",\"quantity\":1}]}".to_vec(),
        b"\xef\xbb\xbf{\"customer_id\":\"a\",\"lines\":[]}".to_vec(),
        Vec::new(),
    ] {
        assert_eq!(
            router_agrees(&body),
            (400, "INVALID_JSON".to_owned()),
            "{}",
            String::from_utf8_lossy(&body[..body.len().min(80)])
        );
    }
    // The same SKU on two lines decodes, and is an invalid order.
    let twice =
        br#"{"customer_id":"a","lines":[{"sku":"MUG","quantity":1},{"sku":"MUG","quantity":2}]}"#;
    assert_eq!(router_agrees(twice), (422, "INVALID_ORDER".to_owned()));
}

#[test]
fn the_64_kib_limit_is_exact() {
    let good = body_with_quantity("1");
    let mut at_limit = good.clone().into_bytes();
    at_limit.resize(MAX_BODY_BYTES, b' ');
    assert_eq!(router_agrees(&at_limit).0, 503, "64 KiB exactly is read");
    let mut over = good.into_bytes();
    over.resize(MAX_BODY_BYTES + 1, b' ');
    assert_eq!(router_agrees(&over), (413, "PAYLOAD_TOO_LARGE".to_owned()));
    assert_eq!(
        router_agrees(&vec![b'x'; 8 << 20]),
        (413, "PAYLOAD_TOO_LARGE".to_owned())
    );
}

#[test]
fn over_long_ids_are_refused() {
    let long = "A".repeat(10 * 1024);
    let long_customer =
        format!(r#"{{"customer_id":"{long}","lines":[{{"sku":"MUG","quantity":1}}]}}"#);
    assert_eq!(
        router_agrees(long_customer.as_bytes()),
        (422, "INVALID_ORDER".to_owned())
    );
    let long_sku = format!(r#"{{"customer_id":"a","lines":[{{"sku":"{long}","quantity":1}}]}}"#);
    assert_eq!(
        router_agrees(long_sku.as_bytes()),
        (422, "INVALID_ORDER".to_owned())
    );
    let long_provider = format!(
        r#"{{"customer_id":"a","lines":[{{"sku":"MUG","quantity":1}}],"provider":"{}"}}"#,
        "p".repeat(10 * 1024)
    );
    assert_eq!(
        router_agrees(long_provider.as_bytes()),
        (422, "INVALID_ORDER".to_owned())
    );

    // Idempotency keys: over-long, and not ASCII, are refused before anything happens.
    let body = body_with_quantity("1").into_bytes();
    for key in [long.as_bytes(), b"cart-\xff"] {
        let (status, error) = send("POST", "/v1/orders", Some(key), body.clone());
        assert_eq!((status, code(&error)), (400, "INVALID_IDEMPOTENCY_KEY"));
    }

    // A 10 KB order id in the path is no order we know: 404, decided before Temporal (this
    // stand-in would answer 503) or the database is asked, and not echoed back in full.
    for (method, uri) in [
        ("GET", format!("/v1/orders/{long}")),
        ("POST", format!("/v1/orders/{long}/cancel")),
    ] {
        let (status, error) = send(method, &uri, None, Vec::new());
        assert_eq!(
            (status, code(&error)),
            (404, "ORDER_NOT_FOUND"),
            "{method} {error}"
        );
        assert!(error.to_string().len() < 1024, "{method}: {error}");
    }
}

// ---------------------------------------------------------------------------------------------
// Generated bodies

fn json_quantity() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => (1i64..=1000).prop_map(|n| n.to_string()),
        2 => prop::sample::select(vec![
            "0", "-1", "1001", "2.0", "20e-1", "2.0000000000000000001", "1e400", "\"2\"",
            "9223372036854775808", "-9223372036854775809", "null",
        ])
        .prop_map(str::to_owned),
        1 => any::<i64>().prop_map(|n| n.to_string()),
    ]
}

fn json_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Z][A-Z0-9-]{0,8}".prop_map(|s| format!("\"{s}\"")),
        1 => ".{0,50}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        1 => prop::sample::select(vec!["null", "1", "[]", "\"\""]).prop_map(str::to_owned),
    ]
}

fn line() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            4 => prop::sample::select(vec!["\"MUG\"", "\"HAT\"", "\"TEE-RED-M\""]).prop_map(str::to_owned),
            1 => json_text(),
        ],
        json_quantity(),
        prop_oneof![
            12 => Just(""),
            1 => prop::sample::select(vec![r#","quantity":3"#, r#","price":1"#, r#","sku":"HAT""#]),
        ],
    )
        .prop_map(|(sku, quantity, extra)| {
            format!(r#"{{"sku":{sku},"quantity":{quantity}{extra}}}"#)
        })
}

/// Order bodies with odd values, repeated or unknown fields, and (sometimes) no body at all.
fn order_body() -> impl Strategy<Value = Vec<u8>> {
    let shaped = (
        prop_oneof![6 => Just("\"alice\"".to_owned()), 1 => json_text()],
        prop::collection::vec(line(), 0..6),
        prop_oneof![
            6 => prop::sample::select(vec!["", r#","provider":"sandbox""#, r#","payment_timeout_secs":60"#]),
            1 => prop::sample::select(vec![
            r#","provider":"sandbox""#,
            r#","provider":"Stripe!""#,
            r#","payment_timeout_secs":60"#,
            r#","payment_timeout_secs":0"#,
            r#","payment_timeout_secs":-1"#,
            r#","payment_timeout_secs":1e400"#,
            r#","customer_id":"bob""#,
            r#","total":1"#,
            ]),
        ],
    )
        .prop_map(|(customer, lines, extra)| {
            format!(
                r#"{{"customer_id":{customer},"lines":[{}]{extra}}}"#,
                lines.join(",")
            )
            .into_bytes()
        });
    prop_oneof![
        6 => shaped,
        1 => prop::collection::vec(any::<u8>(), 0..128),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_router_answers_what_the_body_check_predicts(body in order_body()) {
        router_agrees(&body);
    }
}
