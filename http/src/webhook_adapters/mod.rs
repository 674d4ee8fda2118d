//! Inbound half of the payment providers: verifying and parsing their webhooks.
//!
//! The HTTP shim runs the same pipeline for every provider (read raw bytes → [`WebhookAdapter::verify`]
//! → record → check the payment → signal → [`WebhookAdapter::ack`]); only this trait differs per
//! provider. It is shaped so that every provider we target fits without changing it:
//!
//! * Stripe / sandbox: HMAC-SHA256 over `"{t}.{body}"` in one header, JSON body, any 2xx answer.
//! * WeChat Pay v3: RSA signature over `"{timestamp}\n{nonce}\n{body}\n"` in four headers, the
//!   `resource` AES-256-GCM encrypted with the APIv3 key (the adapter holds its keys), empty 200/204
//!   answer, `{"code":"FAIL","message":…}` on failure.
//! * Alipay: RSA2 over the sorted form parameters, answer is the body `success`.
//!
//! Verification works on the raw request bytes, before any parsing, and never panics on any input.

pub mod alipay;
pub mod sandbox;
pub mod stripe;
pub mod stripe_signature;
pub mod wechatpay;

use std::collections::BTreeMap;

/// What the shim hands an adapter: header names lower-cased, the body exactly as received.
#[derive(Debug, Clone, Copy)]
pub struct WebhookRequest<'a> {
    pub headers: &'a BTreeMap<String, String>,
    pub body: &'a [u8],
}

impl WebhookRequest<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// What a verified callback says, in provider-neutral terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedWebhook {
    /// The provider's id for this event; repeats of it are acknowledged and ignored.
    pub event_id: String,
    pub kind: WebhookEventKind,
    /// Our payment number, as the provider echoes it back (metadata, out_trade_no, ...).
    pub payment_no: Option<String>,
    /// Integer minor units and upper-case ISO currency, as the provider reports them.
    pub amount_minor: i64,
    pub currency: String,
    pub provider_txn_id: String,
    /// Merchant / app / account the event was sent for, when the provider says; checked against
    /// the configured one by the shim.
    pub merchant_id: Option<String>,
    /// What else the event says that is worth keeping in the callback log with its verdict
    /// (WeChat Pay: what the payer paid, in the payer's currency).
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookEventKind {
    PaymentSucceeded,
    PaymentFailed,
    /// The provider reports how a refund went (WeChat Pay `REFUND.SUCCESS` / `REFUND.ABNORMAL` /
    /// `REFUND.CLOSED`, Alipay's notify after a refund). Recorded in the payment's log; the
    /// refund step itself follows the refund by asking the provider with its refund number.
    RefundUpdate {
        refund_no: String,
        /// The provider's word for the refund's state, upper-case (`SUCCESS`, `ABNORMAL`, …).
        status: String,
    },
    /// A valid event we do not act on (its type), acknowledged so the provider stops sending it.
    Ignored(String),
}

/// Why a callback was refused. Every variant is the sender's problem (4xx): nothing is changed and
/// nothing is signalled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookRejection {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("malformed signature header: {0}")]
    BadSignatureHeader(String),
    #[error("timestamp {timestamp} is {age_secs} s away from now; tolerance is {tolerance_secs} s")]
    StaleTimestamp {
        timestamp: i64,
        age_secs: i64,
        tolerance_secs: i64,
    },
    #[error("no signature matches the body")]
    SignatureMismatch,
    #[error("malformed body: {0}")]
    MalformedBody(String),
}

impl WebhookRejection {
    /// Stable machine-readable verdict, stored in the callback log and returned in API errors.
    pub fn code(&self) -> &'static str {
        match self {
            WebhookRejection::MissingHeader(_) => "MISSING_HEADER",
            WebhookRejection::BadSignatureHeader(_) => "BAD_SIGNATURE_HEADER",
            WebhookRejection::StaleTimestamp { .. } => "STALE_TIMESTAMP",
            WebhookRejection::SignatureMismatch => "SIGNATURE_MISMATCH",
            WebhookRejection::MalformedBody(_) => "MALFORMED_BODY",
        }
    }
}

/// An HTTP answer in the provider's required format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookReply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl WebhookReply {
    /// Stripe-style acknowledgement: any 2xx will do, the body is for people reading logs.
    pub fn json_received() -> Self {
        WebhookReply {
            status: 200,
            content_type: "application/json",
            body: br#"{"received":true}"#.to_vec(),
        }
    }

    /// The shim's error shape, `{"error": {"code", "message"}}`.
    pub fn json_error(status: u16, code: &str, message: &str) -> Self {
        WebhookReply {
            status,
            content_type: "application/json",
            body: serde_json::to_vec(
                &serde_json::json!({"error": {"code": code, "message": message}}),
            )
            .unwrap_or_default(),
        }
    }
}

pub trait WebhookAdapter: Send + Sync {
    /// The provider name in `/v1/webhooks/{provider}`.
    fn provider(&self) -> &'static str;

    /// The merchant / app / account id this deployment is configured with at the provider, if the
    /// provider's events carry one; the shim refuses events for any other.
    fn merchant_id(&self) -> Option<&str>;

    /// Header names (lower-case) worth keeping in the callback log: signature, timestamp, ids.
    fn recorded_headers(&self) -> &'static [&'static str];

    /// Verifies the signature on the raw bytes (and freshness, where the provider has a rule),
    /// then parses the event. `now_unix` is passed in so tests can move the clock.
    fn verify(
        &self,
        req: &WebhookRequest<'_>,
        now_unix: i64,
    ) -> Result<VerifiedWebhook, WebhookRejection>;

    /// The answer for a callback we accepted (or already had).
    fn ack(&self) -> WebhookReply;

    /// The answer for a refused callback (`status` 4xx) or for one we could not process now
    /// (`status` 5xx, so the provider retries).
    fn nack(&self, status: u16, code: &str, message: &str) -> WebhookReply;
}
