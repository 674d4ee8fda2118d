//! Stripe webhooks: a `Stripe-Signature` header over the raw body, a JSON event, any 2xx answer.
//!
//! ```json
//! {"id": "evt_…", "object": "event", "type": "payment_intent.succeeded", "account": "acct_…",
//!  "data": {"object": {"id": "pi_…", "object": "payment_intent", "amount": 5248,
//!                      "amount_received": 5248, "currency": "usd", "latest_charge": "ch_…",
//!                      "metadata": {"payment_no": "pay_…", "order_id": "ord_…"}}}}
//! ```
//!
//! Only the fields below are read; Stripe adds fields to events over time, and an endpoint that
//! refused them would stop receiving payments.

use super::{
    VerifiedWebhook, WebhookAdapter, WebhookEventKind, WebhookRejection, WebhookReply,
    WebhookRequest, stripe_signature,
};
use serde_json::{Map, Value};
use std::fmt;

pub const SIGNATURE_HEADER: &str = "stripe-signature";
pub const SUCCEEDED: &str = "payment_intent.succeeded";
pub const FAILED: &str = "payment_intent.payment_failed";

pub struct StripeWebhooks {
    /// Every endpoint secret (`whsec_...`) currently valid: two while one is being rolled.
    secrets: Vec<Vec<u8>>,
    account_id: Option<String>,
    tolerance_secs: i64,
}

impl fmt::Debug for StripeWebhooks {
    // Endpoint secrets must never reach a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeWebhooks")
            .field("secrets", &self.secrets.len())
            .field("account_id", &self.account_id)
            .field("tolerance_secs", &self.tolerance_secs)
            .finish()
    }
}

impl StripeWebhooks {
    /// An adapter accepting events signed with any of `secrets`. With none, every event is refused.
    pub fn new<S: Into<Vec<u8>>>(secrets: impl IntoIterator<Item = S>) -> Self {
        StripeWebhooks {
            secrets: secrets.into_iter().map(Into::into).collect(),
            account_id: None,
            tolerance_secs: stripe_signature::DEFAULT_TOLERANCE_SECS,
        }
    }

    /// The Stripe account (`acct_...`) this deployment sells through. Events without a Connect
    /// `account` field are taken to be for it.
    pub fn with_account_id(mut self, account_id: impl Into<String>) -> Self {
        self.account_id = Some(account_id.into());
        self
    }
}

impl WebhookAdapter for StripeWebhooks {
    fn provider(&self) -> &'static str {
        orderflow_activities::providers::stripe::NAME
    }

    fn merchant_id(&self) -> Option<&str> {
        self.account_id.as_deref()
    }

    fn recorded_headers(&self) -> &'static [&'static str] {
        &[SIGNATURE_HEADER, "content-type", "user-agent"]
    }

    fn verify(
        &self,
        req: &WebhookRequest<'_>,
        now_unix: i64,
    ) -> Result<VerifiedWebhook, WebhookRejection> {
        let header = req
            .header(SIGNATURE_HEADER)
            .ok_or(WebhookRejection::MissingHeader("Stripe-Signature"))?;
        let secrets: Vec<&[u8]> = self.secrets.iter().map(Vec::as_slice).collect();
        stripe_signature::verify(header, req.body, &secrets, now_unix, self.tolerance_secs)?;
        let event: Value = serde_json::from_slice(req.body).map_err(malformed)?;
        parse_event(&event, self.account_id.as_deref())
    }

    fn ack(&self) -> WebhookReply {
        WebhookReply::json_received()
    }

    fn nack(&self, status: u16, code: &str, message: &str) -> WebhookReply {
        WebhookReply::json_error(status, code, message)
    }
}

fn malformed(why: impl fmt::Display) -> WebhookRejection {
    WebhookRejection::MalformedBody(why.to_string())
}

fn parse_event(
    event: &Value,
    configured_account: Option<&str>,
) -> Result<VerifiedWebhook, WebhookRejection> {
    let event = event
        .as_object()
        .ok_or_else(|| malformed("the event is not a JSON object"))?;
    let event_id = required_str(event, "id")?;
    let event_type = required_str(event, "type")?;
    let object = event
        .get("data")
        .and_then(|d| d.get("object"))
        .and_then(Value::as_object)
        .ok_or_else(|| malformed("no data.object"))?;
    let merchant_id = match event.get("account") {
        Some(Value::String(account)) => Some(account.clone()),
        None | Some(Value::Null) => configured_account.map(str::to_owned),
        Some(_) => return Err(malformed("account is not a string")),
    };
    let payment_no = object
        .get("metadata")
        .and_then(|m| m.get("payment_no"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let kind = match event_type {
        SUCCEEDED => WebhookEventKind::PaymentSucceeded,
        FAILED => WebhookEventKind::PaymentFailed,
        other => {
            // Acknowledged and dropped, so its object (a charge, a refund, ...) is not
            // interpreted: whatever is missing from it is no reason to make Stripe retry.
            return Ok(VerifiedWebhook {
                event_id: event_id.to_owned(),
                kind: WebhookEventKind::Ignored(other.to_owned()),
                payment_no,
                amount_minor: 0,
                currency: String::new(),
                provider_txn_id: object
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                merchant_id,
                note: None,
            });
        }
    };
    if let Some(kind) = object.get("object")
        && kind.as_str() != Some("payment_intent")
    {
        return Err(malformed(format!(
            "{event_type} carries a {kind}, not a payment_intent"
        )));
    }
    let intent_id = required_str(object, "id")?;
    let amount_field = match kind {
        WebhookEventKind::PaymentSucceeded => "amount_received",
        _ => "amount",
    };
    let amount_minor = object
        .get(amount_field)
        .and_then(Value::as_i64)
        .filter(|a| *a >= 0)
        .ok_or_else(|| malformed(format!("data.object.{amount_field} is not a whole amount")))?;
    let currency = required_str(object, "currency")?.to_ascii_uppercase();
    let provider_txn_id = match object.get("latest_charge") {
        Some(Value::String(charge)) => charge.clone(),
        Some(Value::Object(charge)) => charge
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or(intent_id)
            .to_owned(),
        _ => intent_id.to_owned(),
    };
    Ok(VerifiedWebhook {
        event_id: event_id.to_owned(),
        kind,
        payment_no,
        amount_minor,
        currency,
        provider_txn_id,
        merchant_id,
        note: None,
    })
}

fn required_str<'a>(
    object: &'a Map<String, Value>,
    key: &str,
) -> Result<&'a str, WebhookRejection> {
    object
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| malformed(format!("{key} is missing or not a string")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const SECRET: &[u8] = b"whsec_current";
    const OLD_SECRET: &[u8] = b"whsec_previous";
    const NOW: i64 = 1_700_000_000;

    fn adapter() -> StripeWebhooks {
        StripeWebhooks::new([OLD_SECRET, SECRET]).with_account_id("acct_orderflow")
    }

    fn succeeded_body() -> Vec<u8> {
        // Shaped like a real delivery, including fields this adapter does not read.
        serde_json::to_vec(&serde_json::json!({
            "id": "evt_3Mtw",
            "object": "event",
            "api_version": "2024-06-20",
            "created": NOW,
            "livemode": false,
            "pending_webhooks": 1,
            "request": {"id": null, "idempotency_key": null},
            "type": SUCCEEDED,
            "data": {"object": {
                "id": "pi_3Mtw",
                "object": "payment_intent",
                "amount": 5248,
                "amount_received": 5248,
                "currency": "usd",
                "status": "succeeded",
                "latest_charge": "ch_3Mtw",
                "metadata": {"payment_no": "pay_0123", "order_id": "ord_1"},
                "payment_method_types": ["card"],
                "a_field_stripe_adds_next_year": {"nested": [1, 2, 3]}
            }}
        }))
        .unwrap()
    }

    fn verify_with(
        adapter: &StripeWebhooks,
        header: Option<String>,
        body: &[u8],
        now: i64,
    ) -> Result<VerifiedWebhook, WebhookRejection> {
        let mut headers = BTreeMap::new();
        if let Some(header) = header {
            headers.insert(SIGNATURE_HEADER.to_owned(), header);
        }
        adapter.verify(
            &WebhookRequest {
                headers: &headers,
                body,
            },
            now,
        )
    }

    fn signed(body: &[u8]) -> Option<String> {
        Some(stripe_signature::sign(SECRET, NOW, body))
    }

    #[test]
    fn a_signed_success_event_verifies() {
        let body = succeeded_body();
        let verified = verify_with(&adapter(), signed(&body), &body, NOW + 5).unwrap();
        assert_eq!(
            verified,
            VerifiedWebhook {
                event_id: "evt_3Mtw".into(),
                kind: WebhookEventKind::PaymentSucceeded,
                payment_no: Some("pay_0123".into()),
                amount_minor: 5248,
                currency: "USD".into(),
                provider_txn_id: "ch_3Mtw".into(),
                merchant_id: Some("acct_orderflow".into()),
                note: None,
            }
        );
    }

    #[test]
    fn the_wrong_secret_is_refused() {
        let body = succeeded_body();
        let header = stripe_signature::sign(b"whsec_someone_else", NOW, &body);
        assert_eq!(
            verify_with(&adapter(), Some(header), &body, NOW),
            Err(WebhookRejection::SignatureMismatch)
        );
        assert_eq!(
            verify_with(
                &StripeWebhooks::new(Vec::<Vec<u8>>::new()),
                signed(&body),
                &body,
                NOW
            ),
            Err(WebhookRejection::SignatureMismatch)
        );
    }

    #[test]
    fn a_flipped_body_byte_is_refused() {
        let body = succeeded_body();
        let header = signed(&body);
        for i in [0, body.len() / 2, body.len() - 1] {
            let mut flipped = body.clone();
            flipped[i] ^= 0x01;
            assert_eq!(
                verify_with(&adapter(), header.clone(), &flipped, NOW),
                Err(WebhookRejection::SignatureMismatch),
                "byte {i}"
            );
        }
    }

    #[test]
    fn a_stale_timestamp_is_refused() {
        let body = succeeded_body();
        assert!(matches!(
            verify_with(&adapter(), signed(&body), &body, NOW + 301),
            Err(WebhookRejection::StaleTimestamp {
                age_secs: 301,
                tolerance_secs: 300,
                ..
            })
        ));
        assert!(verify_with(&adapter(), signed(&body), &body, NOW + 300).is_ok());
        assert!(matches!(
            verify_with(&adapter(), signed(&body), &body, NOW - 400),
            Err(WebhookRejection::StaleTimestamp { .. })
        ));
    }

    #[test]
    fn a_missing_header_is_refused() {
        let body = succeeded_body();
        assert_eq!(
            verify_with(&adapter(), None, &body, NOW),
            Err(WebhookRejection::MissingHeader("Stripe-Signature"))
        );
    }

    #[test]
    fn any_v1_of_several_verifies_and_old_secrets_still_work() {
        let body = succeeded_body();
        let current = stripe_signature::sign(SECRET, NOW, &body);
        let sig = current.split("v1=").nth(1).unwrap();
        let header = format!("t={NOW},v1={},v1={sig},v0=deadbeef", "ab".repeat(32));
        assert!(verify_with(&adapter(), Some(header), &body, NOW).is_ok());

        let by_old_secret = stripe_signature::sign(OLD_SECRET, NOW, &body);
        assert!(verify_with(&adapter(), Some(by_old_secret), &body, NOW).is_ok());
    }

    #[test]
    fn malformed_json_is_refused_after_the_signature_passes() {
        for body in [
            &b"{not json"[..],
            b"[]",
            b"{\"id\": \"evt_1\"}",
            br#"{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1","object":"payment_intent","amount_received":10.5,"currency":"usd"}}}"#,
            br#"{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1","amount_received":-1,"currency":"usd"}}}"#,
            br#"{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{"id":"ch_1","object":"charge","amount_received":1,"currency":"usd"}}}"#,
            br#"{"id":"evt_1","type":"payment_intent.payment_failed","data":{"object":{"id":"pi_1","currency":"usd"}}}"#,
        ] {
            assert!(
                matches!(
                    verify_with(&adapter(), signed(body), body, NOW),
                    Err(WebhookRejection::MalformedBody(_))
                ),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn a_failed_payment_reports_the_intent_amount() {
        let body = br#"{"id":"evt_f","type":"payment_intent.payment_failed","account":"acct_connected",
            "data":{"object":{"id":"pi_9","object":"payment_intent","amount":700,"amount_received":0,
            "currency":"eur","latest_charge":null,"metadata":{"payment_no":"pay_9"}}}}"#;
        let verified = verify_with(&adapter(), signed(body), body, NOW).unwrap();
        assert_eq!(verified.kind, WebhookEventKind::PaymentFailed);
        assert_eq!(verified.amount_minor, 700);
        assert_eq!(verified.currency, "EUR");
        assert_eq!(verified.provider_txn_id, "pi_9");
        assert_eq!(verified.merchant_id.as_deref(), Some("acct_connected"));
    }

    #[test]
    fn other_event_types_are_ignored_not_refused() {
        let body = br#"{"id":"evt_r","type":"charge.refunded","data":{"object":{"id":"ch_1","object":"charge","amount_refunded":100}}}"#;
        let verified = verify_with(&adapter(), signed(body), body, NOW).unwrap();
        assert_eq!(
            verified.kind,
            WebhookEventKind::Ignored("charge.refunded".into())
        );
        assert_eq!(verified.event_id, "evt_r");

        let without_account = StripeWebhooks::new([SECRET]);
        assert_eq!(without_account.merchant_id(), None);
        assert_eq!(
            verify_with(&without_account, signed(body), body, NOW)
                .unwrap()
                .merchant_id,
            None
        );
    }

    #[test]
    fn replies_are_json() {
        let adapter = adapter();
        assert_eq!(adapter.ack().status, 200);
        assert_eq!(adapter.ack().body, br#"{"received":true}"#);
        let nack = adapter.nack(400, "SIGNATURE_MISMATCH", "no \"match\"");
        assert_eq!(nack.status, 400);
        let body: Value = serde_json::from_slice(&nack.body).unwrap();
        assert_eq!(body["error"]["code"], "SIGNATURE_MISMATCH");
        assert_eq!(body["error"]["message"], "no \"match\"");
    }
}
