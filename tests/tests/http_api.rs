//! The HTTP shim over real sockets: the orders API and the signed-webhook pipeline, each on SQLite
//! and on PostgreSQL, against a real dev server and worker.

use futures::future::join_all;
use orderflow_activities::providers::sandbox::SandboxProvider;
use orderflow_domain::{OrderId, OrderStatus, PaymentNo};
use orderflow_http::DEV_SANDBOX_WEBHOOK_SECRET;
use orderflow_http::callbacks;
use orderflow_http::webhook_adapters::sandbox::{SIGNATURE_HEADER, SandboxEvent, sign_event};
use orderflow_http::webhook_adapters::stripe_signature;
use orderflow_tests::{Shim, TestApp, eventually, on_every_engine, sandbox_paid_event};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

on_every_engine!(
    order_paid_through_a_signed_webhook,
    forged_and_broken_webhooks_change_nothing,
    repeated_webhooks_change_state_once,
    wrong_amount_with_a_valid_signature_needs_review,
    bad_requests_are_refused_with_json_errors,
    idempotency_keys,
    cancel_through_the_api,
    a_late_payment_is_refunded_once,
    a_paid_orders_money_is_not_refunded_by_another_transaction,
    the_late_payment_workflow_refunds_no_kept_money,
    an_oversized_webhook_is_recorded_truncated,
    health_readiness_and_openapi,
    a_declined_attempt_keeps_the_order_open,
);

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

struct Api {
    base: String,
    admin: String,
    http: reqwest::Client,
}

impl From<Shim> for Api {
    fn from(shim: Shim) -> Api {
        Api {
            base: shim.base,
            admin: shim.admin,
            http: shim.http,
        }
    }
}

impl Api {
    async fn start(app: &TestApp) -> Api {
        app.serve_http().await.into()
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

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn webhook(
        &self,
        provider: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> (u16, String) {
        let mut req = self
            .http
            .post(format!("{}/v1/webhooks/{provider}", self.base))
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn signed(&self, event: &SandboxEvent) -> (u16, String) {
        let (signature, body) = sign_event(DEV_SANDBOX_WEBHOOK_SECRET.as_bytes(), event, now());
        self.webhook("sandbox", &[(SIGNATURE_HEADER, signature)], body)
            .await
    }
}

fn order_body(sku: &str, qty: i64) -> Value {
    json!({"customer_id": "web-1", "lines": [{"sku": sku, "quantity": qty}], "provider": "sandbox"})
}

/// Starts an order through the API and returns (order id, payment number).
async fn api_order(api: &Api, app: &TestApp, key: &str, body: Value) -> (String, String) {
    let key = format!("{key}-{}", app.settings.connection.task_queue);
    let (status, order) = api.create(&key, body).await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["status"], "AWAITING_PAYMENT", "{order}");
    (
        order["order_id"].as_str().unwrap().to_owned(),
        order["payment_no"].as_str().unwrap().to_owned(),
    )
}

/// The customer pays at the sandbox; returns the event the gateway would send.
async fn paid_event(app: &TestApp, payment_no: &str, amount: Option<i64>) -> SandboxEvent {
    let gateway = SandboxProvider::new(app.db.clone(), &app.settings.connection.public_url);
    let paid = gateway
        .pay(&PaymentNo::parse(payment_no).unwrap(), amount)
        .await
        .unwrap();
    sandbox_paid_event(payment_no, paid)
}

async fn order_paid_through_a_signed_webhook(app: TestApp) {
    let api = Api::start(&app).await;
    let (status, order) = api
        .create(
            &format!("k1-{}", app.settings.connection.task_queue),
            order_body("TEE-RED-M", 2),
        )
        .await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["amount_minor"], 3998);
    assert_eq!(order["amount"], "39.98 USD");
    assert!(order["payment_deadline"].as_str().unwrap().ends_with('Z'));
    let checkout = order["checkout_url"].as_str().unwrap();
    assert!(
        checkout.starts_with(&format!("{}/sandbox/checkout/pay_", api.base)),
        "{checkout}"
    );
    let order_id = order["order_id"].as_str().unwrap();
    let payment_no = order["payment_no"].as_str().unwrap();
    // Waiting for the payment parameters did not cost the order a workflow task: everything up
    // to the payment deadline timer was decided in its first one (a query sent while that task
    // ran would have made the worker complete it early and the server schedule another).
    let events = app.history_event_types(order_id).await;
    let until_timer = events
        .iter()
        .take_while(|e| e.as_str() != "TimerStarted")
        .filter(|e| e.as_str() == "WorkflowTaskCompleted")
        .count();
    assert_eq!(until_timer, 1, "{events:?}");

    let event = paid_event(&app, payment_no, None).await;
    let (status, body) = api.signed(&event).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        app.final_view(order_id).await.status,
        Some(OrderStatus::Paid)
    );
    let (status, shown) = api.get(&format!("/v1/orders/{order_id}")).await;
    assert_eq!((status, shown["status"].as_str()), (200, Some("PAID")));
    let log = callbacks::list(&app.db).await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].verdict, "SIGNALLED");
}

async fn forged_and_broken_webhooks_change_nothing(app: TestApp) {
    let api = Api::start(&app).await;
    let (order_id, payment_no) = api_order(&api, &app, "forged", order_body("MUG-LOGO", 1)).await;
    let event = paid_event(&app, &payment_no, None).await;
    let body = serde_json::to_vec(&event).unwrap();
    let t = now();
    let good = stripe_signature::sign(DEV_SANDBOX_WEBHOOK_SECRET.as_bytes(), t, &body);
    let mut flipped = body.clone();
    flipped[body.len() / 2] ^= 0x01;
    // (name, headers, body, expected status)
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, Vec<u8>, u16);
    let cases: Vec<Case> = vec![
        (
            "wrong secret",
            vec![(
                SIGNATURE_HEADER,
                stripe_signature::sign(b"not-the-secret", t, &body),
            )],
            body.clone(),
            401,
        ),
        (
            "stale timestamp",
            vec![(
                SIGNATURE_HEADER,
                stripe_signature::sign(DEV_SANDBOX_WEBHOOK_SECRET.as_bytes(), t - 301, &body),
            )],
            body.clone(),
            401,
        ),
        (
            "flipped body byte",
            vec![(SIGNATURE_HEADER, good.clone())],
            flipped,
            401,
        ),
        ("missing header", vec![], body.clone(), 400),
        (
            "garbage header",
            vec![(SIGNATURE_HEADER, "t=x,v1=nothex".to_owned())],
            body.clone(),
            400,
        ),
        (
            "forged signature",
            vec![(SIGNATURE_HEADER, format!("t={t},v1={}", "ab".repeat(32)))],
            body.clone(),
            401,
        ),
    ];
    for (name, headers, body, expected) in cases {
        let (status, reply) = api.webhook("sandbox", &headers, body).await;
        assert_eq!(status, expected, "{name}: {reply}");
        let error: Value = serde_json::from_str(&reply).unwrap();
        assert!(error["error"]["code"].is_string(), "{name}: {reply}");
    }
    let signed_garbage = b"{not json".to_vec();
    let header = stripe_signature::sign(DEV_SANDBOX_WEBHOOK_SECRET.as_bytes(), t, &signed_garbage);
    let (status, _) = api
        .webhook("sandbox", &[(SIGNATURE_HEADER, header)], signed_garbage)
        .await;
    assert_eq!(status, 400, "malformed body");
    let (status, _) = api.webhook("paypal", &[], body.clone()).await;
    assert_eq!(status, 404, "unknown provider");
    // Longer than any engine's callback log keeps: the provider is kept cut short, and a signed
    // event whose id does not fit is refused as malformed (400, never a 5xx), on every engine.
    let (status, _) = api.webhook(&"p".repeat(300), &[], body.clone()).await;
    assert_eq!(status, 404, "a 300-character unknown provider");
    let mut long_id = event.clone();
    long_id.id = format!("sbx_evt_{}", "x".repeat(300));
    let (status, reply) = api.signed(&long_id).await;
    assert_eq!(status, 400, "a 308-character event id: {reply}");
    let mut foreign = event.clone();
    foreign.id = "sbx_evt_foreign".into();
    foreign.data.payment_no = "pay_0000000000000000000000000000".into();
    let (status, _) = api.signed(&foreign).await;
    assert_eq!(status, 404, "unknown payment");

    // Every request is on record with its verdict (the handler writes it before answering; a
    // signal it sent would be in the history before the answer too)...
    let verdicts: Vec<String> = eventually(Duration::from_secs(30), || async {
        let verdicts = verdicts(&app).await;
        if verdicts.len() >= 11 {
            Ok(verdicts)
        } else {
            Err(verdicts)
        }
    })
    .await
    .unwrap_or_else(|seen| panic!("not every request is on record: {seen:?}"));
    // ...and nothing changed, no signal reached the workflow.
    assert_eq!(
        app.view(&order_id).await.status,
        Some(OrderStatus::AwaitingPayment)
    );
    let events = app.history_event_types(&order_id).await;
    assert!(!events.iter().any(|e| e.contains("Signaled")), "{events:?}");
    for expected in [
        "SIGNATURE_MISMATCH",
        "STALE_TIMESTAMP",
        "MISSING_HEADER",
        "BAD_SIGNATURE_HEADER",
        "MALFORMED_BODY",
        "UNKNOWN_PROVIDER",
        "UNKNOWN_PAYMENT",
    ] {
        assert!(
            verdicts.iter().any(|v| v == expected),
            "no {expected} in {verdicts:?}"
        );
    }
    assert_eq!(verdicts.len(), 11, "{verdicts:?}");
    let providers: Vec<String> = callbacks::list(&app.db)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.provider)
        .collect();
    assert!(
        providers.contains(&"p".repeat(callbacks::MAX_PROVIDER_CHARS)),
        "the long provider is on record, cut to {}",
        callbacks::MAX_PROVIDER_CHARS
    );
}

/// The verdicts of the webhook requests on record, oldest first.
async fn verdicts(app: &TestApp) -> Vec<String> {
    callbacks::list(&app.db)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.verdict)
        .collect()
}

async fn repeated_webhooks_change_state_once(app: TestApp) {
    let api = Api::start(&app).await;
    let (order_id, payment_no) =
        api_order(&api, &app, "repeat", order_body("HOODIE-BLK-L", 1)).await;
    let event = paid_event(&app, &payment_no, None).await;
    for _ in 0..10 {
        let (status, body) = api.signed(&event).await;
        assert_eq!(status, 200, "{body}");
    }
    let parallel = (0..10).map(|_| api.signed(&event));
    for (status, body) in join_all(parallel).await {
        assert_eq!(status, 200, "{body}");
    }
    let done = app.final_view(&order_id).await;
    assert_eq!(done.status, Some(OrderStatus::Paid));
    assert_eq!(done.payment_events, vec![event.id.clone()]);
    let signals = app
        .history_event_types(&order_id)
        .await
        .into_iter()
        .filter(|e| e.contains("Signaled"))
        .count();
    assert!(signals >= 1);
    assert_eq!(
        app.count(&format!(
            "payment_log WHERE payment_no = '{payment_no}' AND event = 'PAID'"
        ))
        .await,
        1
    );
    assert_eq!(
        app.count(&format!(
            "inventory_ledger WHERE order_id = '{order_id}' AND event = 'CONFIRM'"
        ))
        .await,
        1
    );
    let log = callbacks::list(&app.db).await.unwrap();
    assert_eq!(log.len(), 1, "one row per event");
    assert_eq!(log[0].deliveries, 20);
    app.assert_stock_invariants().await;
}

async fn wrong_amount_with_a_valid_signature_needs_review(app: TestApp) {
    let api = Api::start(&app).await;
    let (order_id, payment_no) =
        api_order(&api, &app, "short", order_body("HOODIE-BLK-L", 1)).await;
    let event = paid_event(&app, &payment_no, Some(100)).await;
    let (status, body) = api.signed(&event).await;
    assert_eq!(status, 200, "{body}");
    let review = app.wait_status(&order_id, OrderStatus::NeedsReview).await;
    assert!(review.reason.unwrap().contains("1.00 USD"));
    assert_eq!(
        callbacks::list(&app.db).await.unwrap()[0].verdict,
        "MISMATCH_SIGNALLED"
    );
}

async fn bad_requests_are_refused_with_json_errors(app: TestApp) {
    let api = Api::start(&app).await;
    let post = |key: Option<&str>, body: Vec<u8>| {
        let mut req = api
            .http
            .post(format!("{}/v1/orders", api.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let good = serde_json::to_vec(&order_body("MUG-LOGO", 1)).unwrap();
    // (name, idempotency key, body, expected status, expected error code)
    type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("no key", None, good.clone(), 400, "MISSING_IDEMPOTENCY_KEY"),
        (
            "malformed",
            Some("k"),
            b"{\"customer_id\":".to_vec(),
            400,
            "INVALID_JSON",
        ),
        (
            "unknown field",
            Some("k"),
            br#"{"customer_id":"a","lines":[],"price":1}"#.to_vec(),
            400,
            "INVALID_JSON",
        ),
        (
            "wrong type",
            Some("k"),
            br#"{"customer_id":"a","lines":[{"sku":"MUG-LOGO","quantity":"1"}]}"#.to_vec(),
            400,
            "INVALID_JSON",
        ),
        (
            "float quantity",
            Some("k"),
            br#"{"customer_id":"a","lines":[{"sku":"MUG-LOGO","quantity":1.5}]}"#.to_vec(),
            400,
            "INVALID_JSON",
        ),
        (
            "empty cart",
            Some("k"),
            br#"{"customer_id":"a","lines":[]}"#.to_vec(),
            422,
            "INVALID_ORDER",
        ),
        (
            "zero quantity",
            Some("k"),
            br#"{"customer_id":"a","lines":[{"sku":"MUG-LOGO","quantity":0}]}"#.to_vec(),
            422,
            "INVALID_ORDER",
        ),
        (
            "too big",
            Some("k"),
            vec![b' '; 70 * 1024],
            413,
            "PAYLOAD_TOO_LARGE",
        ),
    ];
    for (name, key, body, status, code) in cases {
        let (got, error) = post(key, body).await;
        assert_eq!(got, status, "{name}: {error}");
        assert_eq!(error["error"]["code"], code, "{name}: {error}");
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let (status, error) = api.get("/v1/orders/ord_missing").await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (404, Some("ORDER_NOT_FOUND"))
    );
    let big = vec![b'x'; 70 * 1024];
    let (status, _) = api.webhook("sandbox", &[], big).await;
    assert_eq!(status, 413);
    assert_eq!(app.count("orders").await, 0, "no order was started");
}

async fn idempotency_keys(app: TestApp) {
    let api = Api::start(&app).await;
    let key = format!("cart-7-{}", app.settings.connection.task_queue);
    let (first, a) = api.create(&key, order_body("STICKER-PACK", 2)).await;
    let (second, b) = api.create(&key, order_body("STICKER-PACK", 2)).await;
    assert_eq!((first, second), (201, 200));
    assert_eq!(a["order_id"], b["order_id"]);
    let (conflict, error) = api.create(&key, order_body("STICKER-PACK", 3)).await;
    assert_eq!(conflict, 409);
    assert_eq!(error["error"]["code"], "IDEMPOTENCY_KEY_REUSED");
    // Concurrent first uses of one key: one order.
    let key2 = format!("cart-8-{}", app.settings.connection.task_queue);
    let racing = (0..5).map(|_| api.create(&key2, order_body("MUG-LOGO", 1)));
    let results = join_all(racing).await;
    let ids: std::collections::BTreeSet<String> = results
        .iter()
        .map(|(_, v)| v["order_id"].to_string())
        .collect();
    assert_eq!(ids.len(), 1, "{results:?}");
    assert_eq!(
        results.iter().filter(|(s, _)| *s == 201).count(),
        1,
        "{results:?}"
    );
    assert_eq!(app.count("orders").await, 2);
}

async fn cancel_through_the_api(app: TestApp) {
    let api = Api::start(&app).await;
    let (open, _) = api_order(&api, &app, "c1", order_body("MUG-LOGO", 1)).await;
    let r = api
        .http
        .post(format!("{}/v1/orders/{open}/cancel", api.base))
        .json(&json!({"reason": "no longer needed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "CANCELLED", "{body}");

    let (paid, payment_no) = api_order(&api, &app, "c2", order_body("MUG-LOGO", 1)).await;
    let event = paid_event(&app, &payment_no, None).await;
    api.signed(&event).await;
    app.wait_status(&paid, OrderStatus::Paid).await;
    let r = api
        .http
        .post(format!("{}/v1/orders/{paid}/cancel", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 409);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "ORDER_NOT_CANCELLABLE");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("PAID"),
        "{body}"
    );
}

async fn a_late_payment_is_refunded_once(app: TestApp) {
    let api = Api::start(&app).await;
    let mut body = order_body("FLASH-DEAL", 1);
    body["payment_timeout_secs"] = json!(1);
    let (order_id, payment_no) = api_order(&api, &app, "late", body).await;
    assert_eq!(
        app.final_view(&order_id).await.status,
        Some(OrderStatus::Closed)
    );
    // The gateway took the money anyway; its callbacks arrive after the order closed.
    let gateway = SandboxProvider::new(app.db.clone(), &app.settings.connection.public_url);
    let paid = gateway
        .pay_after_close(&PaymentNo::parse(&payment_no).unwrap())
        .await
        .unwrap();
    let event = sandbox_paid_event(&payment_no, paid);
    for _ in 0..5 {
        assert_eq!(api.signed(&event).await.0, 200);
    }
    for (status, body) in join_all((0..5).map(|_| api.signed(&event))).await {
        assert_eq!(status, 200, "{body}");
    }
    let refund = app
        .orders
        .client
        .get_workflow_handle::<orderflow_workflows::LatePaymentWorkflow>(
            orderflow_workflows::late_payment_workflow_id(&payment_no),
        )
        .get_result(Default::default())
        .await
        .unwrap();
    assert_eq!(refund.result, "REFUNDED");
    app.maybe_record_workflow_history(
        &orderflow_workflows::late_payment_workflow_id(&payment_no),
        "late_payment_refund",
    )
    .await;
    assert_eq!(
        app.count(&format!(
            "sandbox_charges WHERE payment_no = '{payment_no}' AND status = 'REFUNDED'"
        ))
        .await,
        1
    );
    assert_eq!(
        app.count(&format!(
            "payments WHERE payment_no = '{payment_no}' AND status = 'REFUNDED'"
        ))
        .await,
        1
    );
    assert_eq!(
        app.count(&format!(
            "payment_log WHERE payment_no = '{payment_no}' AND event = 'REFUNDED'"
        ))
        .await,
        1
    );
    let log = callbacks::list(&app.db).await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].verdict, "LATE_PAYMENT_REFUND");
    assert_eq!(log[0].deliveries, 10);
    // The order itself stays closed: it was never paid in time.
    assert_eq!(app.view(&order_id).await.status, Some(OrderStatus::Closed));
    // The late money is announced once however many deliveries, and so is its refund.
    assert_eq!(
        app.events(&order_id).await,
        [
            "order.created",
            "order.awaiting_payment",
            "order.closed",
            "payment.received_late",
            "refund.completed"
        ]
    );
    let order = OrderId::parse(order_id.as_str()).unwrap();
    assert_eq!(PaymentNo::for_order(&order).as_str(), payment_no);
}

/// The attack from issue #16: an order is paid and over; a second validly signed "payment
/// succeeded" event for the same payment number, with another transaction id and another event
/// id, must be acknowledged as settled and must not refund the money the order kept.
async fn a_paid_orders_money_is_not_refunded_by_another_transaction(app: TestApp) {
    let api = Api::start(&app).await;
    let sku = "HOODIE-BLK-L";
    let (order_id, payment_no) = api_order(&api, &app, "kept", order_body(sku, 1)).await;
    let event = paid_event(&app, &payment_no, None).await;
    assert_eq!(api.signed(&event).await.0, 200);
    assert_eq!(
        app.final_view(&order_id).await.status,
        Some(OrderStatus::Paid)
    );
    eventually(Duration::from_secs(30), || async {
        let events = app.history_event_types(&order_id).await;
        match events.last().map(String::as_str) {
            Some("WorkflowExecutionCompleted") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .expect("the order's workflow completed");
    let sold = app.stock(sku).await.sold;

    let mut other = event.clone();
    other.id = format!("{}_again", event.id);
    other.data.txn_id = "sbx_txn_someone_else".to_owned();
    other.created = now();
    for _ in 0..3 {
        let (status, body) = api.signed(&other).await;
        assert_eq!(status, 200, "{body}");
    }
    for (status, body) in join_all((0..3).map(|_| api.signed(&other))).await {
        assert_eq!(status, 200, "{body}");
    }

    // Acknowledged as settled, the differing transaction on record; no refund started.
    assert_eq!(
        app.count(&format!(
            "webhook_callbacks WHERE event_id = '{}' AND verdict = 'ALREADY_SETTLED' \
             AND detail LIKE '%sbx_txn_someone_else%'",
            other.id
        ))
        .await,
        1
    );
    assert_eq!(
        verdicts(&app).await,
        vec!["SIGNALLED".to_owned(), "ALREADY_SETTLED".to_owned()]
    );
    let late = orderflow_workflows::late_payment_workflow_id(&payment_no);
    assert!(
        app.orders
            .export_workflow_history(&late, &payment_no)
            .await
            .is_err(),
        "no LatePaymentWorkflow was started"
    );
    // The money stays where the order kept it: our payment, the gateway's charge, the stock.
    assert_money_kept(&app, &payment_no).await;
    assert_eq!(app.view(&order_id).await.status, Some(OrderStatus::Paid));
    assert_eq!(app.stock(sku).await.sold, sold);
    app.assert_stock_invariants().await;
}

/// A payment its order kept is still kept: our row `PAID` with no refund logged, the gateway's
/// charge `PAID` and never refunded.
async fn assert_money_kept(app: &TestApp, payment_no: &str) {
    let kept = [
        format!("payments WHERE payment_no = '{payment_no}' AND status = 'PAID'"),
        format!(
            "sandbox_charges WHERE payment_no = '{payment_no}' AND status = 'PAID' \
             AND refund_id IS NULL"
        ),
    ];
    for table_where in kept {
        assert_eq!(app.count(&table_where).await, 1, "{table_where}");
    }
    let refunds =
        format!("payment_log WHERE payment_no = '{payment_no}' AND event LIKE '%REFUND%'");
    assert_eq!(app.count(&refunds).await, 0, "{refunds}");
}

/// Defence in depth: `LatePaymentWorkflow` started directly for a payment its order kept refunds
/// nothing (`KEPT_BY_ORDER`); started while an order is still open, it waits for the order's
/// decision, and a payment the order then keeps is not refunded either.
async fn the_late_payment_workflow_refunds_no_kept_money(app: TestApp) {
    let api = Api::start(&app).await;
    let late_result = |payment_no: String| {
        let orders = app.orders.clone();
        async move {
            orders
                .client
                .get_workflow_handle::<orderflow_workflows::LatePaymentWorkflow>(
                    orderflow_workflows::late_payment_workflow_id(&payment_no),
                )
                .get_result(Default::default())
                .await
                .unwrap()
        }
    };

    // Paid and over, then the refund is asked for directly.
    let (order_id, payment_no) = api_order(&api, &app, "direct", order_body("MUG-LOGO", 1)).await;
    assert_eq!(
        api.signed(&paid_event(&app, &payment_no, None).await)
            .await
            .0,
        200
    );
    assert_eq!(
        app.final_view(&order_id).await.status,
        Some(OrderStatus::Paid)
    );
    app.orders
        .start_late_payment_refund(&order_id, &payment_no, "sandbox", "evt_direct")
        .await
        .unwrap();
    let outcome = late_result(payment_no.clone()).await;
    assert_eq!(
        (outcome.result.as_str(), outcome.refund_id),
        (orderflow_workflows::late_payment::KEPT_BY_ORDER, None)
    );

    // Started while the order still awaits payment: it waits; the order is then paid and keeps it.
    let (open_id, open_no) = api_order(&api, &app, "open", order_body("TEE-RED-M", 1)).await;
    app.orders
        .start_late_payment_refund(&open_id, &open_no, "sandbox", "evt_early")
        .await
        .unwrap();
    let waiting = tokio::spawn(late_result(open_no.clone()));
    let late = app
        .orders
        .client
        .get_workflow_handle::<temporalio_common::UntypedWorkflow>(
            orderflow_workflows::late_payment_workflow_id(&open_no),
        );
    eventually(Duration::from_secs(30), || async {
        let described = late
            .describe(Default::default())
            .await
            .map_err(|e| e.to_string())?;
        let pending = &described.raw().pending_activities;
        let waits = pending.iter().any(|a| {
            a.activity_type
                .as_ref()
                .is_some_and(|t| t.name == "query_payment")
                && a.attempt >= 2
                && a.last_failure.as_ref().is_some_and(|f| {
                    orderflow_activities::failure::message_of(f).contains("AWAITING_PAYMENT")
                })
        });
        if waits {
            Ok(())
        } else {
            Err(format!("{pending:?}"))
        }
    })
    .await
    .expect("the inquiry waits while the order is open");
    assert!(!waiting.is_finished());
    assert_eq!(
        api.signed(&paid_event(&app, &open_no, None).await).await.0,
        200
    );
    assert_eq!(
        app.final_view(&open_id).await.status,
        Some(OrderStatus::Paid)
    );
    let outcome = tokio::time::timeout(Duration::from_secs(60), waiting)
        .await
        .expect("the inquiry ends once the order is decided")
        .unwrap();
    assert_eq!(
        outcome.result,
        orderflow_workflows::late_payment::KEPT_BY_ORDER
    );

    assert_money_kept(&app, &payment_no).await;
    assert_money_kept(&app, &open_no).await;
    app.assert_stock_invariants().await;
}

/// Every webhook request is recorded, an oversized one too: its first 64 KiB, with how much
/// arrived; it is still refused with `413`.
async fn an_oversized_webhook_is_recorded_truncated(app: TestApp) {
    let api = Api::start(&app).await;
    let (status, body) = api
        .webhook(
            "sandbox",
            &[("content-type", "application/json".to_owned())],
            vec![b'x'; 100 * 1024],
        )
        .await;
    assert_eq!(status, 413, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["code"], "PAYLOAD_TOO_LARGE", "{body}");
    assert_eq!(verdicts(&app).await, vec!["PAYLOAD_TOO_LARGE".to_owned()]);
    assert_eq!(
        app.count(&format!(
            "webhook_callbacks WHERE verdict = 'PAYLOAD_TOO_LARGE' AND LENGTH(body) = {} \
             AND body_encoding = 'utf8' AND detail LIKE '%more than 65536 bytes arrived%'",
            64 * 1024
        ))
        .await,
        1
    );
}

async fn health_readiness_and_openapi(app: TestApp) {
    let api = Api::start(&app).await;
    let admin = |path: &str| {
        let url = format!("{}{path}", api.admin);
        async move {
            let r = reqwest::get(url).await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(admin("/healthz").await.0, 200);
    let (status, ready) = admin("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    // The public listener serves none of them: they are for the orchestrator and Prometheus.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let (status, body) = api.get(path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["error"]["code"], "NOT_FOUND", "{path}: {body}");
    }
    let (status, doc) = api.get("/openapi.json").await;
    assert_eq!(status, 200);
    for path in [
        "/v1/orders",
        "/v1/orders/{order_id}",
        "/v1/orders/{order_id}/cancel",
        "/v1/orders/{order_id}/resolve",
        "/v1/webhooks/{provider}",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"]["CreateOrderRequest"].is_object());
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"]["scheme"],
        "bearer"
    );
    let (status, metrics) = admin("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains(
            r#"orderflow_http_requests_total{method="GET",route="/openapi.json",status="200"} 1"#
        ),
        "{metrics}"
    );
}

/// The shim routes `/v1/webhooks/stripe` to the Stripe adapter when endpoint secrets are
/// configured: exact `Stripe-Signature` checks, several secrets during a rotation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_webhooks_are_verified_with_the_configured_secrets() {
    let app = TestApp::spawn(orderflow_tests::Engine::Sqlite)
        .await
        .unwrap();
    let mut settings = app.shim_settings();
    settings.stripe_webhook_secrets = vec!["whsec_old".into(), "whsec_new".into()];
    let state = orderflow_http::AppState::new(app.orders.clone(), settings).expect("app state");
    let api: Api = app.serve_http_with(state).await.into();
    let event = json!({
        "id": "evt_1", "type": "payment_intent.succeeded", "object": "event",
        "data": {"object": {"id": "pi_1", "object": "payment_intent", "amount": 500, "amount_received": 500,
            "currency": "usd", "metadata": {"payment_no": "pay_0000000000000000000000000000"}}}
    });
    let body = serde_json::to_vec(&event).unwrap();
    for secret in ["whsec_old", "whsec_new"] {
        let header = stripe_signature::sign(secret.as_bytes(), now(), &body);
        let (status, reply) = api
            .webhook("stripe", &[("Stripe-Signature", header)], body.clone())
            .await;
        assert_eq!(
            status, 404,
            "verified, but the payment is not ours: {reply}"
        );
    }
    let forged = stripe_signature::sign(b"whsec_other", now(), &body);
    let (status, _) = api
        .webhook("stripe", &[("Stripe-Signature", forged)], body.clone())
        .await;
    assert_eq!(status, 401);
    let verdicts = verdicts(&app).await;
    assert_eq!(
        verdicts,
        ["UNKNOWN_PAYMENT", "SIGNATURE_MISMATCH"],
        "one row per event id, plus the forgery"
    );
}

/// The checkout page's Decline: the gateway reports a failed attempt over a signed webhook; the
/// order notes it and keeps waiting, and a later Pay settles it.
async fn a_declined_attempt_keeps_the_order_open(app: TestApp) {
    let api = Api::start(&app).await;
    let (order_id, payment_no) = api_order(&api, &app, "decline", order_body("MUG-LOGO", 1)).await;
    let r = api
        .http
        .post(format!(
            "{}/sandbox/checkout/{payment_no}/decline",
            api.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let noted = app
        .orders
        .wait_until(
            &order_id,
            "the failed attempt noted",
            Duration::from_secs(30),
            |v| {
                v.reason
                    .as_deref()
                    .is_some_and(|r| r.contains("payment attempt failed"))
            },
        )
        .await
        .unwrap();
    assert_eq!(noted.status, Some(OrderStatus::AwaitingPayment));
    // The handler records its verdict after the signal it sent, so the workflow can note the
    // attempt a moment before the callback row says so.
    eventually(Duration::from_secs(30), || async {
        let verdict = callbacks::list(&app.db).await.unwrap()[0].verdict.clone();
        (verdict == "FAILED_ATTEMPT_SIGNALLED")
            .then_some(())
            .ok_or(verdict)
    })
    .await
    .unwrap_or_else(|verdict| panic!("verdict is {verdict}"));
    let r = api
        .http
        .post(format!(
            "{}/sandbox/checkout/{payment_no}/pay?deliveries=2",
            api.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        app.final_view(&order_id).await.status,
        Some(OrderStatus::Paid)
    );
    // The checkout page now shows the charge as paid and offers no button.
    let page = api
        .http
        .get(format!("{}/sandbox/checkout/{payment_no}", api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(">PAID<"), "{page}");
    assert!(page.contains("<button id=\"pay\" disabled>"), "{page}");
}
