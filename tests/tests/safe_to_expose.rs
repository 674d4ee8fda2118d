//! What a deployment exposes (issue #16), against a real dev server, a real worker and real
//! HTTP, on SQLite and PostgreSQL:
//!
//! * the sandbox gateway is off unless switched on: a shim without it has no `/sandbox/...`
//!   pages and refuses sandbox orders up front, creating nothing; a worker without it rejects a
//!   sandbox order started directly (`UNKNOWN_PROVIDER`);
//! * an order that names no provider takes the deployment's default, or is refused
//!   (`PROVIDER_REQUIRED`) when it has none;
//! * with stock decided at the edge, an order for a provider not configured here is refused
//!   before any stock is held;
//! * bad input: a signed negative sandbox amount, a 10 KB order id.

use orderflow_client::orders::{NewOrder, OrderOpError, order_id_for_key};
use orderflow_domain::{OrderStatus, PaymentNo};
use orderflow_http::DEV_SANDBOX_WEBHOOK_SECRET;
use orderflow_http::webhook_adapters::sandbox::{
    MERCHANT_ID, PAID, SIGNATURE_HEADER, SandboxEvent, SandboxEventData, sign_event,
};
use orderflow_tests::{Engine, TestApp, eventually, on_every_engine, unique};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

on_every_engine!(
    a_shim_without_the_sandbox_has_none_of_it_and_creates_nothing,
    an_order_naming_no_provider_needs_a_default,
    at_the_edge_an_unconfigured_provider_holds_no_stock,
    a_signed_negative_sandbox_amount_is_refused,
    a_10_kb_order_id_is_an_unknown_order,
);

/// The worker without the sandbox switch: `TestApp` switches it on, so these spawn their own.
mod worker_without_the_sandbox {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        rejects_a_sandbox_order(Engine::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        rejects_a_sandbox_order(Engine::Postgres).await;
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    /// The shim on `app`'s port with `configure` applied to the tests' usual settings.
    async fn start(
        app: &TestApp,
        configure: impl FnOnce(&mut orderflow_http::ServeSettings),
    ) -> Api {
        let mut settings = app.shim_settings();
        configure(&mut settings);
        let state = orderflow_http::AppState::new(app.orders.clone(), settings).expect("app state");
        let shim = app.serve_http_with(state).await;
        Api {
            base: shim.base,
            http: shim.http,
        }
    }

    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let mut req = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url),
        };
        if let Some(body) = body {
            req = req.json(&body);
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// Delivers `event` signed with the development secret, as the sandbox gateway does.
    async fn sandbox_webhook(&self, event: &SandboxEvent) -> (u16, Value) {
        let (signature, body) = sign_event(DEV_SANDBOX_WEBHOOK_SECRET.as_bytes(), event, now());
        let r = self
            .http
            .post(format!("{}/v1/webhooks/sandbox", self.base))
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn create(&self, key: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/v1/orders", self.base))
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

fn order_body(sku: &str, provider: Option<&str>) -> Value {
    let mut body = json!({"customer_id": "exposed-1", "lines": [{"sku": sku, "quantity": 1}]});
    if let Some(provider) = provider {
        body["provider"] = json!(provider);
    }
    body
}

/// The order this key would have created left no trace: no key claimed, no order row, no
/// reservation, no start note, no payment, no workflow.
async fn assert_nothing_created(app: &TestApp, key: &str) {
    let client = orderflow_domain::ClientId::parse(orderflow_tests::SHIM_CLIENT).unwrap();
    let order_id = order_id_for_key(&client, key);
    let id = order_id.as_str();
    for table_where in [
        format!("client_orders WHERE idempotency_key = '{key}'"),
        format!("orders WHERE order_id = '{id}'"),
        format!("stock_reservations WHERE order_id = '{id}'"),
        format!("order_starts WHERE order_id = '{id}'"),
        format!("payments WHERE order_id = '{id}'"),
    ] {
        assert_eq!(app.count(&table_where).await, 0, "{table_where}");
    }
    let described = app.orders.handle(id).describe(Default::default()).await;
    assert!(described.is_err(), "a workflow for {id}");
}

async fn stock_of(app: &TestApp, sku: &str) -> (i64, i64, i64) {
    let level = app.stock(sku).await;
    (level.available, level.reserved, level.sold)
}

async fn a_shim_without_the_sandbox_has_none_of_it_and_creates_nothing(app: TestApp) {
    // A real sandbox payment exists (started through the client, the worker has the sandbox),
    // so a 404 below is the missing route, not an unknown payment.
    let paid_elsewhere = app.order("exposed-0", &[("MUG-LOGO", 1)], None).await;
    let payment_no = app.view(&paid_elsewhere).await.payment_no.unwrap();
    let api = Api::start(&app, |s| {
        s.sandbox.enabled = false;
        s.default_provider = None;
    })
    .await;

    for (method, path) in [
        ("GET", format!("/sandbox/checkout/{payment_no}")),
        ("POST", format!("/sandbox/checkout/{payment_no}/pay")),
        ("POST", format!("/sandbox/checkout/{payment_no}/decline")),
    ] {
        let (status, body) = api.send(method, &path, None).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
    }
    // Nobody paid through the missing page.
    assert_eq!(
        app.view(&paid_elsewhere).await.status,
        Some(OrderStatus::AwaitingPayment)
    );
    assert_eq!(
        app.count(&format!(
            "sandbox_charges WHERE payment_no = '{payment_no}' AND status = 'PENDING'"
        ))
        .await,
        1
    );

    // A signed sandbox webhook: no adapter, so no such provider here.
    let event = SandboxEvent {
        id: unique("sbx_evt_off_"),
        kind: PAID.into(),
        created: now(),
        data: SandboxEventData {
            payment_no: payment_no.clone(),
            amount_minor: 999,
            currency: "USD".into(),
            txn_id: "sbx_txn_off".into(),
            merchant_id: MERCHANT_ID.into(),
        },
    };
    let (status, reply) = api.sandbox_webhook(&event).await;
    assert_eq!((status, code(&reply)), (404, "UNKNOWN_PROVIDER"), "{reply}");

    // Orders for the sandbox, or for Stripe without webhook secrets: refused before anything.
    let before = stock_of(&app, "TEE-RED-M").await;
    for provider in ["sandbox", "stripe"] {
        let key = unique(&format!("off-{provider}-"));
        let (status, reply) = api
            .create(&key, order_body("TEE-RED-M", Some(provider)))
            .await;
        assert_eq!((status, code(&reply)), (422, "UNKNOWN_PROVIDER"), "{reply}");
        assert!(
            reply["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(provider)),
            "{reply}"
        );
        assert_nothing_created(&app, &key).await;
    }
    assert_eq!(stock_of(&app, "TEE-RED-M").await, before);
    app.assert_stock_invariants().await;
}

async fn an_order_naming_no_provider_needs_a_default(app: TestApp) {
    // The sandbox is on, but no default is configured.
    let api = Api::start(&app, |s| s.default_provider = None).await;
    let before = stock_of(&app, "MUG-LOGO").await;
    let key = unique("no-provider-");
    let (status, reply) = api.create(&key, order_body("MUG-LOGO", None)).await;
    assert_eq!(
        (status, code(&reply)),
        (422, "PROVIDER_REQUIRED"),
        "{reply}"
    );
    assert!(
        reply["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("provider")),
        "{reply}"
    );
    assert_nothing_created(&app, &key).await;
    assert_eq!(stock_of(&app, "MUG-LOGO").await, before);

    // The same key, now naming a provider: a new request, and an order.
    let (status, order) = api
        .create(&key, order_body("MUG-LOGO", Some("sandbox")))
        .await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["provider"], "sandbox");
    assert_eq!(order["status"], "AWAITING_PAYMENT");
}

async fn at_the_edge_an_unconfigured_provider_holds_no_stock(app: TestApp) {
    // Stock decided at the edge, the sandbox on and the default provider; no Stripe secrets.
    app.set_stock("HOODIE-BLK-L", 3).await;
    let api = Api::start(&app, |s| s.reserve_at_edge = true).await;
    let before = stock_of(&app, "HOODIE-BLK-L").await;

    let key = unique("edge-stripe-");
    let (status, reply) = api
        .create(&key, order_body("HOODIE-BLK-L", Some("stripe")))
        .await;
    assert_eq!((status, code(&reply)), (422, "UNKNOWN_PROVIDER"), "{reply}");
    assert_nothing_created(&app, &key).await;
    assert_eq!(stock_of(&app, "HOODIE-BLK-L").await, before, "stock held");

    // An order naming none takes the default (sandbox) and is reserved at the edge as usual.
    let (status, order) = api
        .create(&unique("edge-default-"), order_body("HOODIE-BLK-L", None))
        .await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["provider"], "sandbox");
    assert_eq!(order["status"], "AWAITING_PAYMENT");
    let (available, reserved, sold) = before;
    assert_eq!(
        stock_of(&app, "HOODIE-BLK-L").await,
        (available - 1, reserved + 1, sold)
    );
    app.assert_stock_invariants().await;
}

async fn a_signed_negative_sandbox_amount_is_refused(app: TestApp) {
    let api = Api::start(&app, |_| {}).await;
    let (status, order) = api
        .create(&unique("negative-"), order_body("MUG-LOGO", None))
        .await;
    assert_eq!(status, 201, "{order}");
    let order_id = order["order_id"].as_str().unwrap().to_owned();
    let payment_no = PaymentNo::parse(order["payment_no"].as_str().unwrap()).unwrap();
    let currency = order["currency"].as_str().unwrap().to_owned();

    let event_id = unique("sbx_evt_negative_");
    let event = SandboxEvent {
        id: event_id.clone(),
        kind: PAID.into(),
        created: now(),
        data: SandboxEventData {
            payment_no: payment_no.to_string(),
            amount_minor: -order["amount_minor"].as_i64().unwrap(),
            currency,
            txn_id: "sbx_txn_negative".into(),
            merchant_id: MERCHANT_ID.into(),
        },
    };
    let (status, reply) = api.sandbox_webhook(&event).await;
    assert_eq!((status, code(&reply)), (400, "MALFORMED_BODY"), "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("negative")),
        "{reply}"
    );

    // On record with its verdict; the order heard nothing.
    let refused = format!(
        "webhook_callbacks WHERE provider = 'sandbox' AND verdict = 'MALFORMED_BODY' AND body LIKE '%{event_id}%'"
    );
    eventually(Duration::from_secs(10), || async {
        match app.count(&refused).await {
            1 => Ok(()),
            n => Err(n),
        }
    })
    .await
    .unwrap_or_else(|n| panic!("{n} callback rows for the refused event"));
    assert_eq!(
        app.view(&order_id).await.status,
        Some(OrderStatus::AwaitingPayment)
    );
    let events = app.history_event_types(&order_id).await;
    assert!(!events.iter().any(|e| e.contains("Signaled")), "{events:?}");
}

async fn a_10_kb_order_id_is_an_unknown_order(app: TestApp) {
    let api = Api::start(&app, |_| {}).await;
    let long = "A".repeat(10 * 1024);
    let just_too_long = "a".repeat(65);
    for id in [long.as_str(), just_too_long.as_str(), "ord%20with%20spaces"] {
        for (method, path, body) in [
            ("GET", format!("/v1/orders/{id}"), None),
            (
                "POST",
                format!("/v1/orders/{id}/cancel"),
                Some(json!({"reason": "no such order"})),
            ),
        ] {
            let (status, reply) = api.send(method, &path, body).await;
            assert_eq!(
                (status, code(&reply)),
                (404, "ORDER_NOT_FOUND"),
                "{method} {}…: {reply}",
                &path[..40.min(path.len())]
            );
            assert!(reply.to_string().len() < 1024, "echoed in full: {reply}");
        }
    }
    // The same answer for the CLI, from the client it is built on.
    assert!(matches!(
        app.orders.view(&long).await,
        Err(OrderOpError::UnknownOrder(_))
    ));
    assert!(matches!(
        app.orders.cancel(&long, "no such order").await,
        Err(OrderOpError::UnknownOrder(_))
    ));
    // A well-formed id of no order is still 404 too (through Temporal and the database).
    let (status, reply) = api
        .send("GET", "/v1/orders/ord_000000000000000000000000", None)
        .await;
    assert_eq!((status, code(&reply)), (404, "ORDER_NOT_FOUND"), "{reply}");
}

async fn rejects_a_sandbox_order(engine: Engine) {
    let Some(app) = TestApp::spawn_with(engine, |s| s.sandbox.enabled = false).await else {
        return;
    };
    let before = stock_of(&app, "MUG-LOGO").await;
    let (order_id, started) = app
        .orders
        .start(&NewOrder {
            client: orderflow_client::orders::cli_client(),
            idempotency_key: unique("worker-off-"),
            customer_id: "exposed-2".into(),
            lines: vec![("MUG-LOGO".into(), 1)],
            provider: "sandbox".into(),
            payment_timeout_secs: None,
            coupon_code: None,
        })
        .await
        .expect("the start itself succeeds");
    assert!(started);
    let outcome = app.orders.outcome(order_id.as_str()).await.unwrap();
    assert_eq!(outcome.status, OrderStatus::Rejected);
    let reason = outcome.reason.unwrap_or_default();
    assert!(reason.contains("UNKNOWN_PROVIDER"), "{reason}");
    let id = order_id.as_str();
    assert_eq!(
        app.count(&format!("payments WHERE order_id = '{id}'"))
            .await,
        0
    );
    assert_eq!(app.count("sandbox_charges").await, 0);
    assert_eq!(stock_of(&app, "MUG-LOGO").await, before);
    app.assert_stock_invariants().await;
}
