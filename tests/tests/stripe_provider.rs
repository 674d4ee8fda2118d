//! The Stripe provider's outbound calls, against a local stand-in for Stripe's REST API.
//!
//! The stand-in (an axum server on 127.0.0.1) checks each request the way Stripe documents it —
//! Bearer auth, form encoding, the required parameters, an Idempotency-Key derived from the
//! payment number — and keeps intents and refunds in memory, answering with Stripe-shaped JSON
//! and Stripe's error bodies. Every request that breaks the documented shape is recorded as a
//! violation, and each test ends by asserting there were none.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use orderflow_activities::db::Db;
use orderflow_activities::providers::stripe::StripeProvider;
use orderflow_activities::providers::{
    ChargeRequest, CloseResult, PaymentProvider, ProviderError, RefundRequest,
};
use orderflow_activities::sql;
use orderflow_domain::{Currency, Money, OrderId, PaymentNo, PaymentStatus};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

const SECRET_KEY: &str = "sk_test_orderflow_standin";

// ---------------------------------------------------------------------------------------------
// The stand-in
// ---------------------------------------------------------------------------------------------

type Reply = (StatusCode, Value);

/// A response Stripe stored under an idempotency key, with the request it answered.
struct Saved {
    route: String,
    params: Vec<(String, String)>,
    reply: Reply,
}

#[derive(Default)]
struct Books {
    intents: BTreeMap<String, Value>,
    refunds: Vec<Value>,
    idempotent: HashMap<String, Saved>,
    /// Answers to give instead of handling the next requests (outages, odd errors).
    injected: VecDeque<Reply>,
    violations: Vec<String>,
    /// Make the next refund, then answer 500 as if the reply was lost on the way back (the
    /// worker died before reading it).
    lose_next_refund_reply: bool,
    requests: usize,
    next_id: u64,
}

impl Books {
    fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_StandIn{:08}", self.next_id)
    }

    /// A request our client should never send: recorded, and refused as Stripe would.
    fn violation(&mut self, message: String) -> Reply {
        self.violations.push(message.clone());
        stripe_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "parameter_invalid",
            &message,
        )
    }

    /// What every endpoint does first: injected failures, authentication, the body's encoding.
    fn admit(
        &mut self,
        route: &str,
        headers: &HeaderMap,
        body: Option<&Bytes>,
    ) -> Result<Vec<(String, String)>, Reply> {
        self.requests += 1;
        if let Some(reply) = self.injected.pop_front() {
            return Err(reply);
        }
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
        if auth != Some(&format!("Bearer {SECRET_KEY}")) {
            return Err(stripe_error(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "api_key_invalid",
                "Invalid API Key provided",
            ));
        }
        if headers.get("stripe-version").is_none() {
            return Err(self.violation(format!("{route}: no Stripe-Version header")));
        }
        let Some(body) = body else {
            return Ok(Vec::new());
        };
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !content_type.starts_with("application/x-www-form-urlencoded") {
            return Err(self.violation(format!(
                "{route}: body is {content_type:?}, not form-encoded"
            )));
        }
        let params: Vec<(String, String)> = url::form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        for (key, _) in &params {
            if !seen.insert(key) {
                return Err(self.violation(format!("{route}: parameter {key} sent twice")));
            }
        }
        Ok(params)
    }

    fn idempotency_key(&mut self, route: &str, headers: &HeaderMap) -> Result<String, Reply> {
        match headers.get("idempotency-key").and_then(|v| v.to_str().ok()) {
            Some(key) if !key.is_empty() => Ok(key.to_owned()),
            _ => Err(self.violation(format!("{route}: no Idempotency-Key"))),
        }
    }

    /// Stripe's rule: the same key with the same parameters gets the stored answer; with other
    /// parameters it is an error.
    fn replay(&self, key: &str, route: &str, params: &[(String, String)]) -> Option<Reply> {
        let saved = self.idempotent.get(key)?;
        let mut a = saved.params.clone();
        let mut b = params.to_vec();
        a.sort();
        b.sort();
        if saved.route == route && a == b {
            Some(saved.reply.clone())
        } else {
            Some(stripe_error(
                StatusCode::BAD_REQUEST,
                "idempotency_error",
                "idempotency_key_in_use",
                "Keys for idempotent requests can only be used with the same parameters they were first used with.",
            ))
        }
    }

    fn save(&mut self, key: String, route: &str, params: Vec<(String, String)>, reply: &Reply) {
        self.idempotent.insert(
            key,
            Saved {
                route: route.to_owned(),
                params,
                reply: reply.clone(),
            },
        );
    }
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn stripe_error(status: StatusCode, kind: &str, code: &str, message: &str) -> Reply {
    (
        status,
        json!({"error": {"type": kind, "code": code, "message": message,
                         "doc_url": format!("https://stripe.com/docs/error-codes/{code}")}}),
    )
}

fn respond(reply: Reply) -> Response {
    (reply.0, axum::Json(reply.1)).into_response()
}

fn no_such(kind: &str, id: &str) -> Reply {
    stripe_error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        "resource_missing",
        &format!("No such {kind}: '{id}'"),
    )
}

#[derive(Clone)]
struct StandIn {
    books: Arc<Mutex<Books>>,
    base_url: String,
}

impl StandIn {
    async fn spawn() -> StandIn {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let standin = StandIn {
            books: Arc::default(),
            base_url: format!("http://{}", listener.local_addr().unwrap()),
        };
        let app = Router::new()
            .route("/v1/payment_intents", post(create_intent))
            .route("/v1/payment_intents/{id}", get(retrieve_intent))
            .route("/v1/payment_intents/{id}/cancel", post(cancel_intent))
            .route("/v1/refunds", post(create_refund).get(list_refunds))
            .with_state(standin.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        standin
    }

    fn books(&self) -> MutexGuard<'_, Books> {
        self.books.lock().unwrap()
    }

    /// The customer pays with Stripe.js: the intent succeeds and gets a charge.
    fn pay(&self, intent_id: &str) {
        let mut books = self.books();
        let charge = books.new_id("ch");
        let intent = books.intents.get_mut(intent_id).expect("known intent");
        intent["status"] = json!("succeeded");
        intent["amount_received"] = intent["amount"].clone();
        intent["latest_charge"] = json!(charge);
    }

    fn inject(&self, status: u16, body: Value) {
        self.books()
            .injected
            .push_back((StatusCode::from_u16(status).unwrap(), body));
    }

    /// What Stripe does 24 hours after a request: the key no longer replays anything.
    fn lose_next_refund_reply(&self) {
        self.books().lose_next_refund_reply = true;
    }

    fn forget_idempotency_keys(&self) {
        self.books().idempotent.clear();
    }

    fn intent_ids(&self) -> Vec<String> {
        self.books().intents.keys().cloned().collect()
    }

    fn refund_ids(&self) -> Vec<String> {
        self.books()
            .refunds
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    }

    fn assert_no_violations(&self) {
        let books = self.books();
        assert!(
            books.violations.is_empty(),
            "requests that break Stripe's documented shape: {:#?}",
            books.violations
        );
    }
}

async fn create_intent(State(s): State<StandIn>, headers: HeaderMap, body: Bytes) -> Response {
    const ROUTE: &str = "POST /v1/payment_intents";
    let mut books = s.books();
    let reply = (|| {
        let params = books.admit(ROUTE, &headers, Some(&body))?;
        let key = books.idempotency_key(ROUTE, &headers)?;
        if let Some(reply) = books.replay(&key, ROUTE, &params) {
            return Ok(reply);
        }
        for (k, _) in &params {
            let known = matches!(
                k.as_str(),
                "amount" | "currency" | "automatic_payment_methods[enabled]" | "description"
            ) || (k.starts_with("metadata[") && k.ends_with(']'));
            if !known {
                return Err(books.violation(format!("{ROUTE}: unknown parameter {k}")));
            }
        }
        let amount = match param(&params, "amount").map(str::parse::<i64>) {
            Some(Ok(amount)) if amount > 0 => amount,
            other => return Err(books.violation(format!("{ROUTE}: amount is {other:?}"))),
        };
        let currency = param(&params, "currency").unwrap_or_default().to_owned();
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(books.violation(format!(
                "{ROUTE}: currency {currency:?} is not lower-case ISO"
            )));
        }
        if param(&params, "automatic_payment_methods[enabled]") != Some("true") {
            return Err(books.violation(format!(
                "{ROUTE}: automatic_payment_methods[enabled] is not true"
            )));
        }
        let (Some(payment_no), Some(order_id)) = (
            param(&params, "metadata[payment_no]"),
            param(&params, "metadata[order_id]"),
        ) else {
            return Err(books.violation(format!(
                "{ROUTE}: metadata[payment_no] or metadata[order_id] missing"
            )));
        };
        if key != payment_no {
            return Err(books.violation(format!(
                "{ROUTE}: Idempotency-Key {key:?} is not the payment number {payment_no:?}"
            )));
        }
        let metadata: serde_json::Map<String, Value> = params
            .iter()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix("metadata[")?.strip_suffix(']')?;
                Some((name.to_owned(), json!(v)))
            })
            .collect();
        assert_eq!(metadata["order_id"], json!(order_id));
        let id = books.new_id("pi");
        let intent = json!({
            "id": id,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": 0,
            "automatic_payment_methods": {"enabled": true, "allow_redirects": "always"},
            "capture_method": "automatic_async",
            "client_secret": format!("{id}_secret_StandInSecret"),
            "created": 1_700_000_000,
            "currency": currency,
            "latest_charge": null,
            "livemode": false,
            "metadata": metadata,
            "payment_method_types": ["card", "link"],
            "status": "requires_payment_method",
        });
        books.intents.insert(id, intent.clone());
        let reply = (StatusCode::OK, intent);
        books.save(key, ROUTE, params, &reply);
        Ok(reply)
    })();
    respond(reply.unwrap_or_else(|e| e))
}

async fn retrieve_intent(
    State(s): State<StandIn>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut books = s.books();
    if let Err(reply) = books.admit("GET /v1/payment_intents/{id}", &headers, None) {
        return respond(reply);
    }
    respond(match books.intents.get(&id) {
        Some(intent) => (StatusCode::OK, intent.clone()),
        None => no_such("payment_intent", &id),
    })
}

async fn cancel_intent(
    State(s): State<StandIn>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    const ROUTE: &str = "POST /v1/payment_intents/{id}/cancel";
    let mut books = s.books();
    let params = match books.admit(ROUTE, &headers, Some(&body)) {
        Ok(params) => params,
        Err(reply) => return respond(reply),
    };
    if let Some((k, _)) = params.iter().find(|(k, _)| k != "cancellation_reason") {
        let reply = books.violation(format!("{ROUTE}: unknown parameter {k}"));
        return respond(reply);
    }
    let Some(intent) = books.intents.get_mut(&id) else {
        return respond(no_such("payment_intent", &id));
    };
    let status = intent["status"].as_str().unwrap_or_default().to_owned();
    let cancelable = matches!(
        status.as_str(),
        "requires_payment_method"
            | "requires_capture"
            | "requires_confirmation"
            | "requires_action"
            | "processing"
    );
    if !cancelable {
        // Stripe's answer, body and all, for cancelling a succeeded or canceled intent.
        let mut reply = stripe_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "payment_intent_unexpected_state",
            &format!(
                "You cannot cancel this PaymentIntent because it has a status of {status}. Only a \
                 PaymentIntent with one of the following statuses may be canceled: \
                 requires_payment_method, requires_capture, requires_confirmation, requires_action, \
                 processing."
            ),
        );
        reply.1["error"]["payment_intent"] = intent.clone();
        return respond(reply);
    }
    intent["status"] = json!("canceled");
    intent["cancellation_reason"] = json!(param(&params, "cancellation_reason"));
    respond((StatusCode::OK, intent.clone()))
}

async fn create_refund(State(s): State<StandIn>, headers: HeaderMap, body: Bytes) -> Response {
    const ROUTE: &str = "POST /v1/refunds";
    let mut books = s.books();
    let reply = (|| {
        let params = books.admit(ROUTE, &headers, Some(&body))?;
        let key = books.idempotency_key(ROUTE, &headers)?;
        if let Some(reply) = books.replay(&key, ROUTE, &params) {
            return Ok(reply);
        }
        for (k, _) in &params {
            let known = matches!(k.as_str(), "payment_intent" | "amount" | "reason")
                || (k.starts_with("metadata[") && k.ends_with(']'));
            if !known {
                return Err(books.violation(format!("{ROUTE}: unknown parameter {k}")));
            }
        }
        let Some(intent_id) = param(&params, "payment_intent") else {
            return Err(books.violation(format!("{ROUTE}: no payment_intent")));
        };
        let amount = match param(&params, "amount").map(str::parse::<i64>) {
            Some(Ok(amount)) if amount > 0 => amount,
            other => return Err(books.violation(format!("{ROUTE}: amount is {other:?}"))),
        };
        let Some(intent) = books.intents.get(intent_id).cloned() else {
            return Err(no_such("payment_intent", intent_id));
        };
        // Orderflow's convention: one key per refund number, and the refund number is the
        // payment's (`rf_<payment digits>`, or that and `_<request>` for an after-sale refund).
        let payment_digits = intent["metadata"]["payment_no"]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches("pay_")
            .to_owned();
        let refund_no = param(&params, "metadata[refund_no]").unwrap_or_default();
        if !refund_no.starts_with(&format!("rf_{payment_digits}")) {
            return Err(books.violation(format!(
                "{ROUTE}: refund number {refund_no:?} is not the payment's"
            )));
        }
        let expected_key = format!("refund_{refund_no}");
        if key != expected_key {
            return Err(books.violation(format!(
                "{ROUTE}: Idempotency-Key {key:?}, expected {expected_key:?}"
            )));
        }
        if intent["status"] != "succeeded" {
            return Err(stripe_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "payment_intent_unexpected_state",
                "This PaymentIntent does not have a successful charge to refund.",
            ));
        }
        let refunded: i64 = books
            .refunds
            .iter()
            .filter(|r| r["payment_intent"] == intent_id)
            .map(|r| r["amount"].as_i64().unwrap())
            .sum();
        let remaining = intent["amount_received"].as_i64().unwrap() - refunded;
        if remaining == 0 {
            return Err(stripe_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "charge_already_refunded",
                &format!(
                    "Charge {} has already been refunded.",
                    intent["latest_charge"].as_str().unwrap_or_default()
                ),
            ));
        }
        if amount > remaining {
            return Err(stripe_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "amount_too_large",
                "Refund amount is greater than unrefunded amount on charge",
            ));
        }
        let metadata: serde_json::Map<String, Value> = params
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    k.strip_prefix("metadata[")?.strip_suffix(']')?.to_owned(),
                    json!(v),
                ))
            })
            .collect();
        let refund = json!({
            "id": books.new_id("re"),
            "object": "refund",
            "amount": amount,
            "charge": intent["latest_charge"],
            "created": 1_700_000_100,
            "currency": intent["currency"],
            "metadata": metadata,
            "payment_intent": intent_id,
            "reason": null,
            "status": "succeeded",
        });
        books.refunds.push(refund.clone());
        let reply = (StatusCode::OK, refund);
        books.save(key, ROUTE, params, &reply);
        if std::mem::take(&mut books.lose_next_refund_reply) {
            return Err(stripe_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                "lost_reply",
                "the refund was made; this reply stands for one that never arrived",
            ));
        }
        Ok(reply)
    })();
    respond(reply.unwrap_or_else(|e| e))
}

async fn list_refunds(
    State(s): State<StandIn>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut books = s.books();
    if let Err(reply) = books.admit("GET /v1/refunds", &headers, None) {
        return respond(reply);
    }
    let data: Vec<Value> = books
        .refunds
        .iter()
        .filter(|r| {
            query
                .get("payment_intent")
                .is_none_or(|pi| r["payment_intent"] == **pi)
        })
        .cloned()
        .collect();
    respond((
        StatusCode::OK,
        json!({"object": "list", "data": data, "has_more": false, "url": "/v1/refunds"}),
    ))
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

async fn fresh_db() -> Db {
    let url = orderflow_tests::fresh_database(orderflow_tests::Engine::Sqlite)
        .await
        .unwrap()
        .expect("SQLite is always available");
    orderflow_worker::open_database(&url.into()).await.unwrap()
}

async fn setup() -> (StandIn, StripeProvider, Db) {
    let standin = StandIn::spawn().await;
    let db = fresh_db().await;
    let provider = StripeProvider::new(db.clone(), SECRET_KEY)
        .unwrap()
        .with_base_url(&standin.base_url);
    (standin, provider, db)
}

fn charge(order: &str, minor: i64, currency: &str) -> ChargeRequest {
    let order_id = OrderId::parse(order).unwrap();
    ChargeRequest {
        payment_no: PaymentNo::for_order(&order_id),
        order_id,
        amount: Money::new(minor, Currency::parse(currency).unwrap()).unwrap(),
        deadline_ms: 1_700_000_900_000,
        description: format!("Order {order}"),
    }
}

fn refund_of(req: &ChargeRequest) -> RefundRequest {
    RefundRequest {
        payment_no: req.payment_no.clone(),
        refund_no: orderflow_activities::providers::refund_no_for(&req.payment_no),
        amount: req.amount,
        reason: "operator chose REFUND".into(),
    }
}

async fn stored_intent(db: &Db, payment_no: &PaymentNo) -> Option<String> {
    use sqlx::Row;
    sql!("SELECT intent_id FROM stripe_payment_intents WHERE payment_no = $1")
        .on(db.engine())
        .bind(payment_no.as_str())
        .fetch_optional(db.pool())
        .await
        .unwrap()
        .map(|row| row.get(0))
}

#[tokio::test]
async fn create_twice_opens_one_intent() {
    let (standin, provider, db) = setup().await;
    let req = charge("ord_stripe_create", 5248, "USD");

    let (first, second) = tokio::join!(provider.create(&req), provider.create(&req));
    let (first, second) = (first.unwrap(), second.unwrap());
    let third = provider.create(&req).await.unwrap();
    assert_eq!(
        standin.intent_ids().len(),
        1,
        "one payment number, one intent"
    );
    let intent_id = standin.intent_ids().remove(0);
    assert_eq!(
        stored_intent(&db, &req.payment_no).await,
        Some(intent_id.clone())
    );
    assert_eq!(first.checkout_url, "");
    assert_eq!(first.qr_payload, "");
    assert_eq!(
        first.client_secret.as_deref(),
        Some(format!("{intent_id}_secret_StandInSecret").as_str())
    );
    assert_eq!(first, second);
    assert_eq!(first, third);

    // A worker with no row for it (another database) still gets the same intent: the
    // Idempotency-Key is the payment number, not something random.
    let other = StripeProvider::new(fresh_db().await, SECRET_KEY)
        .unwrap()
        .with_base_url(&standin.base_url);
    assert_eq!(other.create(&req).await.unwrap(), first);
    assert_eq!(standin.intent_ids(), vec![intent_id.clone()]);

    // After Stripe forgot the key, our own table keeps it to one intent.
    standin.forget_idempotency_keys();
    assert_eq!(provider.create(&req).await.unwrap(), first);
    assert_eq!(standin.intent_ids(), vec![intent_id]);

    // The same payment number for another sum is refused, not a second charge.
    let mut changed = req.clone();
    changed.amount = Money::new(9999, Currency::parse("USD").unwrap()).unwrap();
    assert!(matches!(
        provider.create(&changed).await,
        Err(ProviderError::Rejected(_))
    ));
    assert_eq!(standin.intent_ids().len(), 1);
    standin.assert_no_violations();
}

#[tokio::test]
async fn paid_intent_is_queried_closed_as_paid_and_refunded_once() {
    let (standin, provider, _db) = setup().await;
    let req = charge("ord_stripe_paid", 1200, "EUR");
    provider.create(&req).await.unwrap();
    let intent_id = standin.intent_ids().remove(0);

    let pending = provider.query(&req.payment_no).await.unwrap();
    assert_eq!(pending.status, PaymentStatus::Pending);
    assert_eq!(pending.paid_amount_minor, None);
    assert_eq!(pending.currency, "EUR");
    assert_eq!(pending.provider_txn_id.as_deref(), Some(intent_id.as_str()));

    standin.pay(&intent_id);
    let paid = provider.query(&req.payment_no).await.unwrap();
    assert_eq!(paid.status, PaymentStatus::Paid);
    assert_eq!(paid.paid_amount_minor, Some(1200));
    assert_eq!(paid.currency, "EUR");
    let charge_id = paid.provider_txn_id.clone().unwrap();
    assert!(charge_id.starts_with("ch_"), "{charge_id}");

    // The timer fired after the customer paid: Stripe refuses the cancel, and that is a payment.
    assert_eq!(
        provider.close(&req.payment_no).await.unwrap(),
        CloseResult::AlreadyPaid(paid.clone())
    );
    assert_eq!(
        provider.close(&req.payment_no).await.unwrap(),
        CloseResult::AlreadyPaid(paid)
    );

    let first = provider.refund(&refund_of(&req)).await.unwrap();
    let second = provider.refund(&refund_of(&req)).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(standin.refund_ids(), vec![first.refund_id.clone()]);

    // A day later Stripe no longer replays the key and says "already refunded": the refund we
    // made is still the answer.
    standin.forget_idempotency_keys();
    assert_eq!(provider.refund(&refund_of(&req)).await.unwrap(), first);
    assert_eq!(standin.refund_ids(), vec![first.refund_id]);
    standin.assert_no_violations();
}

#[tokio::test]
async fn unpaid_intent_closes_and_stays_closed() {
    let (standin, provider, _db) = setup().await;
    let req = charge("ord_stripe_close", 3000, "JPY");
    provider.create(&req).await.unwrap();
    assert_eq!(
        provider.close(&req.payment_no).await.unwrap(),
        CloseResult::Closed
    );
    // Cancelling a canceled intent is Stripe's 400 "unexpected state"; for us it is closed again.
    assert_eq!(
        provider.close(&req.payment_no).await.unwrap(),
        CloseResult::Closed
    );
    let state = provider.query(&req.payment_no).await.unwrap();
    assert_eq!(state.status, PaymentStatus::Closed);
    assert_eq!(state.currency, "JPY");
    // Nothing was paid, so nothing can be refunded.
    assert!(matches!(
        provider.refund(&refund_of(&req)).await,
        Err(ProviderError::Rejected(_))
    ));
    standin.assert_no_violations();
}

#[tokio::test]
async fn errors_are_classified_for_retries() {
    let (standin, provider, db) = setup().await;
    let req = charge("ord_stripe_errors", 500, "USD");
    let api_error =
        |kind: &str, code: &str| json!({"error": {"type": kind, "code": code, "message": "m"}});

    standin.inject(500, api_error("api_error", "internal"));
    assert!(matches!(
        provider.create(&req).await,
        Err(ProviderError::Unavailable(_))
    ));
    assert_eq!(stored_intent(&db, &req.payment_no).await, None);
    standin.inject(
        400,
        api_error("invalid_request_error", "parameter_invalid_integer"),
    );
    assert!(matches!(
        provider.create(&req).await,
        Err(ProviderError::Rejected(_))
    ));
    standin.inject(429, api_error("invalid_request_error", "rate_limit"));
    assert!(matches!(
        provider.create(&req).await,
        Err(ProviderError::Unavailable(_))
    ));
    standin.inject(503, json!("not even Stripe's error shape"));
    assert!(matches!(
        provider.create(&req).await,
        Err(ProviderError::Unavailable(_))
    ));

    // Nothing stored for a payment number: there is nothing to ask Stripe about.
    let requests = standin.books().requests;
    assert!(matches!(
        provider.query(&req.payment_no).await,
        Err(ProviderError::NotFound(_))
    ));
    assert!(matches!(
        provider.close(&req.payment_no).await,
        Err(ProviderError::NotFound(_))
    ));
    assert!(matches!(
        provider.refund(&refund_of(&req)).await,
        Err(ProviderError::NotFound(_))
    ));
    assert_eq!(standin.books().requests, requests);

    provider.create(&req).await.unwrap();
    standin.inject(502, api_error("api_error", "bad_gateway"));
    assert!(matches!(
        provider.query(&req.payment_no).await,
        Err(ProviderError::Unavailable(_))
    ));
    standin.inject(500, api_error("api_error", "internal"));
    assert!(matches!(
        provider.close(&req.payment_no).await,
        Err(ProviderError::Unavailable(_))
    ));
    standin.inject(404, api_error("invalid_request_error", "resource_missing"));
    assert!(matches!(
        provider.query(&req.payment_no).await,
        Err(ProviderError::NotFound(_))
    ));
    standin.inject(400, api_error("invalid_request_error", "parameter_invalid"));
    assert!(matches!(
        provider.close(&req.payment_no).await,
        Err(ProviderError::Rejected(_))
    ));
    standin.pay(&standin.intent_ids()[0]);
    standin.inject(500, api_error("api_error", "internal"));
    assert!(matches!(
        provider.refund(&refund_of(&req)).await,
        Err(ProviderError::Unavailable(_))
    ));
    // After the outage the same call goes through.
    provider.refund(&refund_of(&req)).await.unwrap();

    let wrong_key = StripeProvider::new(db.clone(), "sk_test_wrong")
        .unwrap()
        .with_base_url(&standin.base_url);
    assert!(matches!(
        wrong_key.query(&req.payment_no).await,
        Err(ProviderError::Rejected(_))
    ));

    // Nobody listening: a connection error, worth retrying.
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let unreachable = StripeProvider::new(db, SECRET_KEY)
        .unwrap()
        .with_base_url(format!("http://127.0.0.1:{closed_port}"));
    assert!(matches!(
        unreachable.query(&req.payment_no).await,
        Err(ProviderError::Unavailable(_))
    ));
    standin.assert_no_violations();
}

/// Partial refunds: one per refund number, also when the answer to the first attempt never
/// arrived (the worker died mid-call) and when Stripe has forgotten the idempotency key since.
#[tokio::test]
async fn partial_refunds_are_one_per_refund_number_even_when_a_reply_is_lost() {
    use orderflow_activities::failure::Classified;
    let (standin, provider, _db) = setup().await;
    let req = charge("ord_stripe_partial", 1200, "EUR");
    provider.create(&req).await.unwrap();
    let intent_id = standin.intent_ids().remove(0);
    standin.pay(&intent_id);
    let part = |request: &str, minor: i64| RefundRequest {
        payment_no: req.payment_no.clone(),
        refund_no: format!(
            "{}_{request}",
            orderflow_activities::providers::refund_no_for(&req.payment_no)
        ),
        amount: Money::new(minor, Currency::parse("EUR").unwrap()).unwrap(),
        reason: "returned".into(),
    };

    standin.lose_next_refund_reply();
    let lost = provider.refund(&part("a000000001", 500)).await.unwrap_err();
    assert!(lost.retryable(), "{lost}");
    assert_eq!(standin.refund_ids().len(), 1, "Stripe made the refund");
    // The retry (the activity's next attempt) finds it by its refund number.
    let first = provider.refund(&part("a000000001", 500)).await.unwrap();
    assert_eq!(standin.refund_ids(), vec![first.refund_id.clone()]);
    standin.forget_idempotency_keys();
    assert_eq!(
        provider.refund(&part("a000000001", 500)).await.unwrap(),
        first
    );

    // Another refund number is another refund; past what was paid Stripe refuses for good.
    let second = provider.refund(&part("b000000002", 700)).await.unwrap();
    assert_ne!(second.refund_id, first.refund_id);
    assert_eq!(standin.refund_ids().len(), 2);
    let over = provider.refund(&part("c000000003", 1)).await.unwrap_err();
    assert!(!over.retryable(), "{over}");
    assert_eq!(standin.refund_ids().len(), 2);
    standin.assert_no_violations();
}
