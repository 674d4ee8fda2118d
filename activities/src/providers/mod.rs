//! Payment providers behind one trait.
//!
//! The workflow never talks to a provider; the payment activities do, through
//! [`PaymentProvider`]. Every call is keyed by our [`PaymentNo`], which is derived from the order
//! id, so a retried activity repeats the same request instead of opening a second charge — the
//! provider's idempotency guarantee does the rest.
//!
//! Only the outbound half lives here (create, query, close, refund). Verifying and parsing a
//! provider's *webhooks* is the HTTP shim's job and has its own adapter trait.

pub mod alipay;
pub mod sandbox;
pub mod stripe;
pub mod wechatpay;

use crate::failure::{self, Classified};
use async_trait::async_trait;
use orderflow_domain::{Money, OrderId, PaymentNo, PaymentStatus};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What we ask a provider to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    pub payment_no: PaymentNo,
    pub order_id: OrderId,
    pub amount: Money,
    /// Unix milliseconds after which the charge should no longer be payable; sent as the
    /// provider's own expiry where it has one (WeChat Pay `time_expire`, Alipay `time_expire`).
    pub deadline_ms: i64,
    /// What the customer sees on their payment screen (WeChat Pay `description`, Alipay `subject`).
    pub description: String,
}

/// How the customer pays: a hosted page and/or a QR payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayParams {
    pub checkout_url: String,
    pub qr_payload: String,
    /// For providers paid from the shop's own page (Stripe's PaymentIntent client secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

/// A provider's answer to "what happened to this charge?".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeState {
    /// `PENDING`, `PAID`, `CLOSED` or `REFUNDED` (never `MISMATCHED`: that is our verdict).
    pub status: PaymentStatus,
    /// What the customer actually paid, when they paid.
    pub paid_amount_minor: Option<i64>,
    pub currency: String,
    pub provider_txn_id: Option<String>,
}

/// Closing an unpaid charge either works or finds the customer already paid (WeChat Pay's
/// `ORDERPAID`, Alipay's `TRADE_SUCCESS`): the latter is a payment, not an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CloseResult {
    Closed,
    AlreadyPaid(ChargeState),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    pub payment_no: PaymentNo,
    /// The refund's idempotency key at the provider (WeChat Pay `out_refund_no`, Alipay
    /// `out_request_no`), derived from the payment ([`refund_no_for`]), never random: asking again
    /// with it returns the refund already made instead of making a second one.
    pub refund_no: String,
    pub amount: Money,
    pub reason: String,
}

/// The refund number of a payment's one refund: `rf_` and the payment number's 28 hex digits
/// (32 characters, within every provider's limit).
pub fn refund_no_for(payment_no: &PaymentNo) -> String {
    let digits = payment_no
        .as_str()
        .strip_prefix("pay_")
        .unwrap_or(payment_no.as_str());
    format!("rf_{digits}")
}

/// What `refund_payment` returns once the money is back with the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundResult {
    pub refund_id: String,
}

/// A provider's answer to a refund request: the refund it made (or had made for this refund
/// number before) and how far it has got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRefund {
    pub refund_id: String,
    pub state: RefundState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundState {
    /// The money is back with the customer (WeChat Pay `SUCCESS`, Alipay `fund_change=Y` or
    /// `REFUND_SUCCESS`, Stripe `succeeded`).
    Succeeded,
    /// Accepted, not yet done (WeChat Pay `PROCESSING`, Stripe `pending`): asked again later.
    Processing,
    /// The provider could not return the money and will not without a person (WeChat Pay
    /// `ABNORMAL`: the customer's card or account is closed). Asked again later too, because an
    /// operator can still complete it at the provider; the reason shows as the step's last error.
    Stuck(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("payment provider {0:?} is not configured on this worker")]
    UnknownProvider(String),
    #[error("the provider has no charge {0}")]
    NotFound(String),
    /// The provider refused the request for good (bad parameters, declined, conflicting reuse of
    /// an idempotency key). Retrying sends the same request and gets the same answer.
    #[error("the provider rejected the request: {0}")]
    Rejected(String),
    /// Timeouts, 5xx, connection failures: try again later.
    #[error("the provider is unavailable: {0}")]
    Unavailable(String),
    /// The provider's own store in our database (the sandbox's charges, Stripe's intent ids):
    /// classified by the same rule as every database error.
    #[error("the provider's store: {0}")]
    Store(#[from] sqlx::Error),
}

impl Classified for ProviderError {
    fn code(&self) -> &'static str {
        match self {
            ProviderError::UnknownProvider(_) => failure::UNKNOWN_PROVIDER,
            ProviderError::NotFound(_) => failure::PAYMENT_NOT_FOUND,
            ProviderError::Rejected(_) => failure::PAYMENT_REJECTED,
            ProviderError::Unavailable(_) => failure::PROVIDER_UNAVAILABLE,
            ProviderError::Store(e) => e.code(),
        }
    }

    fn retryable(&self) -> bool {
        match self {
            ProviderError::Unavailable(_) => true,
            ProviderError::Store(e) => e.retryable(),
            _ => false,
        }
    }
}

#[async_trait]
pub trait PaymentProvider: Send + Sync {
    fn name(&self) -> &'static str;
    /// Opens the charge, or returns the existing one for the same payment number.
    async fn create(&self, req: &ChargeRequest) -> Result<PayParams, ProviderError>;
    async fn query(&self, payment_no: &PaymentNo) -> Result<ChargeState, ProviderError>;
    /// Idempotent: closing a closed charge answers `Closed` again.
    async fn close(&self, payment_no: &PaymentNo) -> Result<CloseResult, ProviderError>;
    /// Idempotent per refund number: a second call returns the first refund and its state now,
    /// so calling again is how a refund in progress is followed to its end.
    async fn refund(&self, req: &RefundRequest) -> Result<ProviderRefund, ProviderError>;
}

/// The providers a worker is configured with, by name. A `BTreeMap`, so listing them is ordered.
#[derive(Clone, Default)]
pub struct Providers {
    by_name: BTreeMap<&'static str, Arc<dyn PaymentProvider>>,
    pay_page_base: Option<String>,
}

impl Providers {
    /// Where the shim serves its payment page (`{public_url}/pay`): a charge paid by scanning a
    /// QR code (WeChat Pay, Alipay) gets `{base}/{payment_no}` as its checkout URL, the page that
    /// shows the code with the amount and the time left.
    pub fn with_pay_page(mut self, base: impl Into<String>) -> Self {
        self.pay_page_base = Some(base.into().trim_end_matches('/').to_owned());
        self
    }

    /// The checkout URL for a charge the provider answered with `pay`.
    pub fn checkout_url(&self, payment_no: &PaymentNo, pay: &PayParams) -> String {
        match &self.pay_page_base {
            Some(base) if pay.checkout_url.is_empty() && !pay.qr_payload.is_empty() => {
                format!("{base}/{payment_no}")
            }
            _ => pay.checkout_url.clone(),
        }
    }

    pub fn with(mut self, provider: Arc<dyn PaymentProvider>) -> Self {
        self.by_name.insert(provider.name(), provider);
        self
    }

    pub fn get(&self, name: &str) -> Result<&Arc<dyn PaymentProvider>, ProviderError> {
        self.by_name
            .get(name)
            .ok_or_else(|| ProviderError::UnknownProvider(name.to_owned()))
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.by_name.keys().copied()
    }
}
