//! `stripe`: payments through Stripe's PaymentIntents API.
//!
//! The shop pays with Stripe.js from its own page, so `create` hands back the intent's client
//! secret instead of a checkout URL. Stripe has no deadline on an intent: the workflow's timer
//! closes (cancels) it.
//!
//! Idempotency comes from two places. Every creating POST carries an `Idempotency-Key` derived
//! from the payment number, so a retried activity gets Stripe's stored answer instead of a second
//! intent or refund. Stripe forgets those keys after 24 hours, so the intent id is also kept in our
//! own `stripe_payment_intents` table, and "already refunded" is answered by looking the refund up.

use super::{
    ChargeRequest, ChargeState, CloseResult, PayParams, PaymentProvider, ProviderError,
    ProviderRefund, RefundRequest, RefundState,
};
use crate::db::{Db, now_ms};
use crate::sql;
use async_trait::async_trait;
use orderflow_domain::{PaymentNo, PaymentStatus};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::Row;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

pub const NAME: &str = "stripe";
pub const DEFAULT_BASE_URL: &str = "https://api.stripe.com";
/// Pinned so the response shapes parsed here (`latest_charge` exists from 2022-11-15 on) do not
/// depend on whatever default API version the account happens to have.
pub const API_VERSION: &str = "2024-06-20";
/// Stripe answers in well under a second; past this the activity is better off retrying.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Stripe's limit on a metadata value.
const METADATA_VALUE_MAX_CHARS: usize = 500;
/// Stripe's error code for "this intent is not in a state that allows that".
const UNEXPECTED_STATE: &str = "payment_intent_unexpected_state";
const ALREADY_REFUNDED: &str = "charge_already_refunded";

#[derive(Clone)]
pub struct StripeProvider {
    db: Db,
    http: reqwest::Client,
    base_url: String,
    secret_key: String,
}

impl fmt::Debug for StripeProvider {
    // The secret key must never reach a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeProvider")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl StripeProvider {
    /// A provider talking to `https://api.stripe.com` with the secret key `sk_...` (or a
    /// restricted key `rk_...` allowed to write PaymentIntents and Refunds).
    pub fn new(db: Db, secret_key: impl Into<String>) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("orderflow/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(StripeProvider {
            db,
            http,
            base_url: DEFAULT_BASE_URL.to_owned(),
            secret_key: secret_key.into(),
        })
    }

    /// Points the provider at another host (a proxy, or a local stand-in in tests).
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into().trim_end_matches('/').to_owned();
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base_url))
            .bearer_auth(&self.secret_key)
            .header("Stripe-Version", API_VERSION)
    }

    async fn call<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, CallError> {
        let response = request.send().await.map_err(CallError::Transport)?;
        let status = response.status();
        let should_retry = response
            .headers()
            .get("stripe-should-retry")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.eq_ignore_ascii_case("true"));
        let body = response.bytes().await.map_err(CallError::Transport)?;
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map_err(|e| CallError::BadResponse(format!("{status}: {e}")));
        }
        let error = serde_json::from_slice::<ErrorBody>(&body)
            .map(|b| b.error)
            .unwrap_or_default();
        Err(CallError::Api {
            status,
            code: error.code,
            message: error
                .message
                .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect()),
            should_retry,
        })
    }

    async fn stored(&self, payment_no: &PaymentNo) -> Result<Option<StoredIntent>, ProviderError> {
        let row = sql!(
            "SELECT intent_id, amount_minor, currency
               FROM stripe_payment_intents WHERE payment_no = $1",
        )
        .on(&self.db)
        .bind(payment_no.as_str())
        .fetch_optional(self.db.pool())
        .await?;
        row.map(|row| {
            Ok(StoredIntent {
                intent_id: row.try_get(0)?,
                amount_minor: row.try_get(1)?,
                currency: row.try_get(2)?,
            })
        })
        .transpose()
    }

    async fn stored_or_not_found(
        &self,
        payment_no: &PaymentNo,
    ) -> Result<StoredIntent, ProviderError> {
        self.stored(payment_no)
            .await?
            .ok_or_else(|| ProviderError::NotFound(payment_no.to_string()))
    }

    async fn retrieve(
        &self,
        intent_id: &str,
        payment_no: &PaymentNo,
    ) -> Result<Intent, ProviderError> {
        let path = intent_path(intent_id)?;
        self.call(self.request(Method::GET, &path))
            .await
            .map_err(|e| e.into_provider_error(payment_no))
    }

    /// Finds the refund Stripe already made for this refund number: ours carry it in their
    /// metadata. `any_live`: a payment's one refund made before refund numbers were recorded
    /// there is recognised by its payment number, or as the intent's only live refund.
    async fn existing_refund(
        &self,
        intent_id: &str,
        req: &RefundRequest,
        any_live: bool,
    ) -> Result<Option<Refund>, ProviderError> {
        let mut list: RefundList = self
            .call(
                self.request(Method::GET, "/v1/refunds")
                    .query(&[("payment_intent", intent_id), ("limit", "100")]),
            )
            .await
            .map_err(|e| e.into_provider_error(&req.payment_no))?;
        let live = |r: &Refund| !r.is_dead();
        let ours = list
            .data
            .iter()
            .position(|r| live(r) && r.refund_no() == Some(req.refund_no.as_str()))
            .or_else(|| {
                any_live
                    .then(|| {
                        list.data.iter().position(|r| {
                            live(r)
                                && r.refund_no().is_none()
                                && r.payment_no() == Some(req.payment_no.as_str())
                        })
                    })
                    .flatten()
            })
            .or_else(|| any_live.then(|| list.data.iter().position(live)).flatten());
        Ok(ours.map(|i| list.data.swap_remove(i)))
    }

    /// Best effort: an intent nobody will hand out must not stay payable.
    async fn cancel_orphan(&self, intent_id: &str) {
        let Ok(path) = intent_path(intent_id) else {
            return;
        };
        let result: Result<Value, _> = self
            .call(
                self.request(Method::POST, &format!("{path}/cancel"))
                    .form(&NO_PARAMS),
            )
            .await;
        if let Err(e) = result {
            tracing::warn!(intent_id, error = %e, "could not cancel a duplicate PaymentIntent");
        }
    }
}

/// Sent as the body of parameterless POSTs, so every POST is form-encoded as Stripe documents.
const NO_PARAMS: [(&str, &str); 0] = [];

#[async_trait]
impl PaymentProvider for StripeProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn create(&self, req: &ChargeRequest) -> Result<PayParams, ProviderError> {
        let currency = req.amount.currency().code().to_owned();
        // Stripe's idempotency key lasts 24 hours; our table lasts for ever.
        if let Some(stored) = self.stored(&req.payment_no).await? {
            stored.check_same_charge(req)?;
            let intent = self.retrieve(&stored.intent_id, &req.payment_no).await?;
            return pay_params(&intent);
        }
        let form = [
            ("amount", req.amount.minor().to_string()),
            ("currency", currency.to_ascii_lowercase()),
            ("metadata[payment_no]", req.payment_no.to_string()),
            ("metadata[order_id]", req.order_id.to_string()),
            ("automatic_payment_methods[enabled]", "true".to_owned()),
        ];
        let intent: Intent = self
            .call(
                self.request(Method::POST, "/v1/payment_intents")
                    .header("Idempotency-Key", req.payment_no.as_str())
                    .form(&form),
            )
            .await
            .map_err(|e| e.into_provider_error(&req.payment_no))?;
        intent_path(&intent.id)?;
        if intent.amount != req.amount.minor()
            || !intent.currency.eq_ignore_ascii_case(&currency)
            || intent
                .payment_no()
                .is_some_and(|p| p != req.payment_no.as_str())
        {
            return Err(ProviderError::Rejected(format!(
                "Stripe answered payment number {} with intent {} for {} {} (payment {:?})",
                req.payment_no,
                intent.id,
                intent.amount,
                intent.currency,
                intent.payment_no()
            )));
        }
        sql!(
            "INSERT INTO stripe_payment_intents
                (payment_no, intent_id, amount_minor, currency, created_at_ms)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (payment_no) DO NOTHING",
        )
        .on(self.db.writes())
        .bind(req.payment_no.as_str())
        .bind(&intent.id)
        .bind(req.amount.minor())
        .bind(&currency)
        .bind(now_ms())
        .execute(self.db.writes())
        .await?;
        let stored = self.stored(&req.payment_no).await?.ok_or_else(|| {
            ProviderError::Unavailable(format!("intent of {} was not stored", req.payment_no))
        })?;
        if stored.intent_id != intent.id {
            // Only possible when a concurrent create got a different intent from Stripe (its key
            // had expired): the first one stored is the payment's intent, the other must go.
            self.cancel_orphan(&intent.id).await;
            stored.check_same_charge(req)?;
            let intent = self.retrieve(&stored.intent_id, &req.payment_no).await?;
            return pay_params(&intent);
        }
        pay_params(&intent)
    }

    async fn query(&self, payment_no: &PaymentNo) -> Result<ChargeState, ProviderError> {
        let stored = self.stored_or_not_found(payment_no).await?;
        let intent = self.retrieve(&stored.intent_id, payment_no).await?;
        Ok(intent.charge_state())
    }

    async fn close(&self, payment_no: &PaymentNo) -> Result<CloseResult, ProviderError> {
        let stored = self.stored_or_not_found(payment_no).await?;
        let path = format!("{}/cancel", intent_path(&stored.intent_id)?);
        // No Idempotency-Key: cancelling is idempotent by state, and Stripe would replay a stored
        // "unexpected state" answer for a day instead of re-reading the intent.
        let result: Result<Intent, CallError> = self
            .call(self.request(Method::POST, &path).form(&NO_PARAMS))
            .await;
        let state = match result {
            Ok(intent) => intent.charge_state(),
            // Succeeded or already canceled (or still processing): the intent itself says which.
            Err(CallError::Api {
                code: Some(code), ..
            }) if code == UNEXPECTED_STATE => self
                .retrieve(&stored.intent_id, payment_no)
                .await?
                .charge_state(),
            Err(e) => return Err(e.into_provider_error(payment_no)),
        };
        match state.status {
            PaymentStatus::Closed => Ok(CloseResult::Closed),
            PaymentStatus::Paid | PaymentStatus::Refunded => Ok(CloseResult::AlreadyPaid(state)),
            // `processing`: the customer's payment is in flight, so its outcome is worth waiting for.
            other => Err(ProviderError::Unavailable(format!(
                "Stripe intent {} for {payment_no} is {other} and cannot be cancelled yet",
                stored.intent_id
            ))),
        }
    }

    async fn refund(&self, req: &RefundRequest) -> Result<ProviderRefund, ProviderError> {
        let stored = self.stored_or_not_found(&req.payment_no).await?;
        if stored.currency != req.amount.currency().code() {
            return Err(ProviderError::Rejected(format!(
                "payment {} was in {}, not {}",
                req.payment_no,
                stored.currency,
                req.amount.currency()
            )));
        }
        // Stripe forgets an idempotency key after 24 hours, and a partial refund asked again after
        // that would be made twice: a refund already made for this number is the answer.
        if let Some(refund) = self.existing_refund(&stored.intent_id, req, false).await? {
            return refund_state(refund, &req.payment_no);
        }
        let reason: String = req.reason.chars().take(METADATA_VALUE_MAX_CHARS).collect();
        let form = [
            ("payment_intent", stored.intent_id.clone()),
            ("amount", req.amount.minor().to_string()),
            ("metadata[payment_no]", req.payment_no.to_string()),
            ("metadata[refund_no]", req.refund_no.clone()),
            ("metadata[reason]", reason),
        ];
        let result: Result<Refund, CallError> = self
            .call(
                self.request(Method::POST, "/v1/refunds")
                    .header("Idempotency-Key", format!("refund_{}", req.refund_no))
                    .form(&form),
            )
            .await;
        let refund = match result {
            Ok(refund) => refund,
            // The key expired and this is a repeat: the refund we made before is the answer.
            Err(CallError::Api {
                code: Some(code), ..
            }) if code == ALREADY_REFUNDED => self
                // A payment's one refund made before refund numbers were in the metadata may be
                // found by its payment; any other refund number is a new refund, and the charge
                // has nothing left for it.
                .existing_refund(
                    &stored.intent_id,
                    req,
                    req.refund_no == super::refund_no_for(&req.payment_no),
                )
                .await?
                .ok_or_else(|| {
                    ProviderError::Rejected(format!(
                        "Stripe says {} is already refunded, and no refund {} is among its refunds",
                        req.payment_no, req.refund_no
                    ))
                })?,
            Err(e) => return Err(e.into_provider_error(&req.payment_no)),
        };
        refund_state(refund, &req.payment_no)
    }
}

/// What a Stripe refund means for us: done, still pending, or dead (refused for good).
fn refund_state(refund: Refund, payment_no: &PaymentNo) -> Result<ProviderRefund, ProviderError> {
    if refund.is_dead() {
        return Err(ProviderError::Rejected(format!(
            "Stripe refund {} for {} is {}",
            refund.id,
            payment_no,
            refund.status.as_deref().unwrap_or("?")
        )));
    }
    let state = match refund.status.as_deref() {
        Some("pending" | "requires_action") => RefundState::Processing,
        _ => RefundState::Succeeded,
    };
    Ok(ProviderRefund {
        refund_id: refund.id,
        state,
    })
}

struct StoredIntent {
    intent_id: String,
    amount_minor: i64,
    currency: String,
}

impl StoredIntent {
    /// Same payment number, different sum: a real gateway refuses the reuse, and so do we.
    fn check_same_charge(&self, req: &ChargeRequest) -> Result<(), ProviderError> {
        if self.amount_minor != req.amount.minor() || self.currency != req.amount.currency().code()
        {
            return Err(ProviderError::Rejected(format!(
                "payment number {} was already used for {} {}",
                req.payment_no, self.amount_minor, self.currency
            )));
        }
        Ok(())
    }
}

/// The URL path of an intent. Ids come back from Stripe; checking their shape keeps a garbled
/// answer from turning into a request to some other path.
fn intent_path(intent_id: &str) -> Result<String, ProviderError> {
    let well_formed = intent_id.len() > 3
        && intent_id.starts_with("pi_")
        && intent_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if well_formed {
        Ok(format!("/v1/payment_intents/{intent_id}"))
    } else {
        Err(ProviderError::Unavailable(format!(
            "Stripe returned a malformed PaymentIntent id {intent_id:?}"
        )))
    }
}

fn pay_params(intent: &Intent) -> Result<PayParams, ProviderError> {
    let client_secret = intent.client_secret.clone().ok_or_else(|| {
        ProviderError::Unavailable(format!(
            "Stripe intent {} came without a client secret",
            intent.id
        ))
    })?;
    Ok(PayParams {
        checkout_url: String::new(),
        qr_payload: String::new(),
        client_secret: Some(client_secret),
    })
}

/// The fields of a PaymentIntent we read; Stripe adds fields over time, so the rest is ignored.
#[derive(Debug, Deserialize)]
struct Intent {
    id: String,
    status: String,
    amount: i64,
    #[serde(default)]
    amount_received: i64,
    currency: String,
    #[serde(default)]
    client_secret: Option<String>,
    /// A charge id, or the charge object when expanded.
    #[serde(default)]
    latest_charge: Option<Value>,
    #[serde(default)]
    metadata: BTreeMap<String, Value>,
}

impl Intent {
    fn payment_no(&self) -> Option<&str> {
        self.metadata.get("payment_no").and_then(Value::as_str)
    }

    fn charge_state(&self) -> ChargeState {
        let (status, paid_amount_minor) = match self.status.as_str() {
            "succeeded" => (PaymentStatus::Paid, Some(self.amount_received)),
            "canceled" => (PaymentStatus::Closed, None),
            _ => (PaymentStatus::Pending, None),
        };
        let latest_charge = match &self.latest_charge {
            Some(Value::String(id)) => Some(id.clone()),
            Some(Value::Object(charge)) => {
                charge.get("id").and_then(Value::as_str).map(str::to_owned)
            }
            _ => None,
        };
        ChargeState {
            status,
            paid_amount_minor,
            currency: self.currency.to_ascii_uppercase(),
            provider_txn_id: Some(latest_charge.unwrap_or_else(|| self.id.clone())),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Refund {
    id: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, Value>,
}

impl Refund {
    /// A refund that did not and will not return the money.
    fn is_dead(&self) -> bool {
        matches!(self.status.as_deref(), Some("failed" | "canceled"))
    }

    fn payment_no(&self) -> Option<&str> {
        self.metadata.get("payment_no").and_then(Value::as_str)
    }

    fn refund_no(&self) -> Option<&str> {
        self.metadata.get("refund_no").and_then(Value::as_str)
    }
}

#[derive(Debug, Deserialize)]
struct RefundList {
    #[serde(default)]
    data: Vec<Refund>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: ErrorFields,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorFields {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// What went wrong with one call, before it is judged retryable or not.
#[derive(Debug)]
enum CallError {
    Transport(reqwest::Error),
    Api {
        status: StatusCode,
        code: Option<String>,
        message: String,
        /// Stripe's own `Stripe-Should-Retry` verdict, when it gives one.
        should_retry: Option<bool>,
    },
    /// A 2xx whose body is not what Stripe documents.
    BadResponse(String),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Transport(e) => write!(f, "Stripe request failed: {e}"),
            CallError::Api {
                status,
                code,
                message,
                ..
            } => write!(
                f,
                "Stripe answered {status} {}: {message}",
                code.as_deref().unwrap_or("(no code)")
            ),
            CallError::BadResponse(why) => write!(f, "unexpected Stripe response {why}"),
        }
    }
}

impl CallError {
    fn into_provider_error(self, payment_no: &PaymentNo) -> ProviderError {
        let message = self.to_string();
        match self {
            // A request that cannot even be built (a bad base URL) fails the same way every time.
            CallError::Transport(e) if e.is_builder() => ProviderError::Rejected(message),
            CallError::Transport(_) | CallError::BadResponse(_) => {
                ProviderError::Unavailable(message)
            }
            CallError::Api {
                status,
                should_retry,
                ..
            } => {
                // 429 is rate limiting and 409 a concurrent request with the same idempotency
                // key: both go through on a later try, as Stripe's own SDKs assume.
                if status.is_server_error()
                    || status == StatusCode::TOO_MANY_REQUESTS
                    || status == StatusCode::CONFLICT
                    || should_retry == Some(true)
                {
                    ProviderError::Unavailable(message)
                } else if status == StatusCode::NOT_FOUND {
                    ProviderError::NotFound(format!("{payment_no} ({message})"))
                } else {
                    ProviderError::Rejected(message)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(json: Value) -> Intent {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn intent_states_map_to_charge_states() {
        let paid = intent(serde_json::json!({
            "id": "pi_1", "object": "payment_intent", "status": "succeeded", "amount": 1000,
            "amount_received": 990, "currency": "usd", "latest_charge": "ch_1",
            "some_future_field": {"x": 1}
        }))
        .charge_state();
        assert_eq!(paid.status, PaymentStatus::Paid);
        assert_eq!(paid.paid_amount_minor, Some(990));
        assert_eq!(paid.currency, "USD");
        assert_eq!(paid.provider_txn_id.as_deref(), Some("ch_1"));

        let expanded = intent(serde_json::json!({
            "id": "pi_1", "status": "succeeded", "amount": 1, "amount_received": 1,
            "currency": "jpy", "latest_charge": {"id": "ch_2", "object": "charge"}
        }))
        .charge_state();
        assert_eq!(expanded.provider_txn_id.as_deref(), Some("ch_2"));

        let closed = intent(serde_json::json!({
            "id": "pi_2", "status": "canceled", "amount": 5, "currency": "eur", "latest_charge": null
        }))
        .charge_state();
        assert_eq!(closed.status, PaymentStatus::Closed);
        assert_eq!(closed.paid_amount_minor, None);
        assert_eq!(closed.provider_txn_id.as_deref(), Some("pi_2"));

        for status in [
            "requires_payment_method",
            "requires_action",
            "processing",
            "new_thing",
        ] {
            let state = intent(serde_json::json!({
                "id": "pi_3", "status": status, "amount": 5, "currency": "eur"
            }))
            .charge_state();
            assert_eq!(state.status, PaymentStatus::Pending, "{status}");
        }
    }

    #[test]
    fn only_well_formed_intent_ids_become_paths() {
        assert_eq!(
            intent_path("pi_3Mtw").unwrap(),
            "/v1/payment_intents/pi_3Mtw"
        );
        for bad in [
            "",
            "pi_",
            "ch_1",
            "pi_1/../../v1/refunds",
            "pi_1?x=1",
            "pi_ 1",
        ] {
            assert!(intent_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn http_answers_are_classified() {
        let pay = PaymentNo::parse("pay_1").unwrap();
        let api = |status: u16, should_retry| CallError::Api {
            status: StatusCode::from_u16(status).unwrap(),
            code: None,
            message: "m".into(),
            should_retry,
        };
        let kind = |e: CallError| match e.into_provider_error(&pay) {
            ProviderError::Unavailable(_) => "unavailable",
            ProviderError::Rejected(_) => "rejected",
            ProviderError::NotFound(_) => "not found",
            ProviderError::UnknownProvider(_) => "unknown",
            ProviderError::Store(_) => "store",
        };
        assert_eq!(kind(api(500, None)), "unavailable");
        assert_eq!(kind(api(503, Some(false))), "unavailable");
        assert_eq!(kind(api(429, None)), "unavailable");
        assert_eq!(kind(api(409, None)), "unavailable");
        assert_eq!(kind(api(400, Some(true))), "unavailable");
        assert_eq!(kind(api(400, None)), "rejected");
        assert_eq!(kind(api(401, None)), "rejected");
        assert_eq!(kind(api(402, Some(false))), "rejected");
        assert_eq!(kind(api(404, None)), "not found");
        assert_eq!(kind(CallError::BadResponse("x".into())), "unavailable");
    }
}
