//! The JSON contract of `OrderWorkflow`: input, signal, updates, query and result.
//!
//! Field names here are the public API (documented in ARCHITECTURE.md): clients written with
//! another Temporal SDK, or the `temporal` CLI, build these by hand. Inbound messages carry plain
//! strings and integers and default missing fields, so that a malformed order still decodes and
//! is *rejected by the workflow* with a reason, instead of failing every workflow task forever.

use crate::ids::{CustomerId, IdError, OrderId, ProviderName, Sku};
use crate::quantity::{Quantity, QuantityError};
use crate::status::OrderStatus;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Most lines one order may have.
pub const MAX_LINES: usize = 50;
/// Shortest and longest payment window a caller may ask for.
pub const MIN_PAYMENT_TIMEOUT_SECS: u64 = 1;
pub const MAX_PAYMENT_TIMEOUT_SECS: u64 = 7 * 24 * 3600;

/// Workflow input. `payment_timeout_secs` is optional: without it the worker's configured
/// default (15 minutes unless changed) applies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OrderInput {
    pub order_id: String,
    pub customer_id: String,
    pub lines: Vec<OrderLineInput>,
    pub provider: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_timeout_secs: Option<u64>,
    /// A coupon code to apply. Omitted when absent, so orders without one (and every recorded
    /// history) serialize as before. The discount is always computed by the worker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coupon_code: Option<String>,
}

/// Longest coupon code.
pub const MAX_COUPON_CODE_LEN: usize = 64;

/// Whether `code` has the shape of a coupon code: 1..=64 of `[A-Za-z0-9_-]`.
pub fn is_coupon_code(code: &str) -> bool {
    (1..=MAX_COUPON_CODE_LEN).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OrderLineInput {
    pub sku: String,
    pub quantity: i64,
}

/// Why an order request is invalid. Each variant is a client mistake: never retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("invalid order id: {0}")]
    OrderId(IdError),
    #[error("invalid customer id: {0}")]
    CustomerId(IdError),
    #[error("invalid provider: {0}")]
    Provider(IdError),
    #[error("the order has no lines")]
    EmptyCart,
    #[error("the order has {0} lines; at most {MAX_LINES} are allowed")]
    TooManyLines(usize),
    #[error("line {line}: {source}")]
    Sku { line: usize, source: IdError },
    #[error("line {line} ({sku}): {source}")]
    Quantity {
        line: usize,
        sku: String,
        source: QuantityError,
    },
    #[error("SKU {0} appears on more than one line; put the total on one line")]
    DuplicateSku(String),
    #[error(
        "payment timeout of {0} s is outside {MIN_PAYMENT_TIMEOUT_SECS}..={MAX_PAYMENT_TIMEOUT_SECS} s"
    )]
    PaymentTimeout(u64),
    #[error(
        "coupon code must be 1..={MAX_COUPON_CODE_LEN} characters of A-Z, a-z, 0-9, '_' or '-'"
    )]
    CouponCode,
}

/// An order request that passed every check that needs no database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidOrder {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    /// Sorted by SKU: the order in which stock rows are locked, which keeps concurrent
    /// reservations on PostgreSQL from deadlocking.
    pub lines: Vec<ValidOrderLine>,
    pub provider: ProviderName,
    pub payment_timeout_secs: Option<u64>,
    /// Shape-checked ([`is_coupon_code`]); whether it can be used is the worker's to decide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coupon_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidOrderLine {
    pub sku: Sku,
    pub quantity: Quantity,
}

impl OrderInput {
    pub fn validate(&self) -> Result<ValidOrder, InputError> {
        let order_id = OrderId::parse(self.order_id.as_str()).map_err(InputError::OrderId)?;
        let customer_id =
            CustomerId::parse(self.customer_id.as_str()).map_err(InputError::CustomerId)?;
        let provider = ProviderName::parse(self.provider.as_str()).map_err(InputError::Provider)?;
        if self.lines.is_empty() {
            return Err(InputError::EmptyCart);
        }
        if self.lines.len() > MAX_LINES {
            return Err(InputError::TooManyLines(self.lines.len()));
        }
        let mut lines = Vec::with_capacity(self.lines.len());
        let mut seen = BTreeSet::new();
        for (i, raw) in self.lines.iter().enumerate() {
            let line = i + 1;
            let sku =
                Sku::parse(raw.sku.as_str()).map_err(|source| InputError::Sku { line, source })?;
            let quantity = Quantity::new(raw.quantity).map_err(|source| InputError::Quantity {
                line,
                sku: raw.sku.clone(),
                source,
            })?;
            if !seen.insert(sku.clone()) {
                return Err(InputError::DuplicateSku(sku.to_string()));
            }
            lines.push(ValidOrderLine { sku, quantity });
        }
        lines.sort_by(|a, b| a.sku.cmp(&b.sku));
        if let Some(secs) = self.payment_timeout_secs
            && !(MIN_PAYMENT_TIMEOUT_SECS..=MAX_PAYMENT_TIMEOUT_SECS).contains(&secs)
        {
            return Err(InputError::PaymentTimeout(secs));
        }
        if let Some(code) = &self.coupon_code
            && !is_coupon_code(code)
        {
            return Err(InputError::CouponCode);
        }
        Ok(ValidOrder {
            order_id,
            customer_id,
            lines,
            provider,
            payment_timeout_secs: self.payment_timeout_secs,
            coupon_code: self.coupon_code.clone(),
        })
    }
}

/// What the provider says happened to a payment attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentOutcome {
    #[serde(rename = "PAID")]
    Paid,
    /// The attempt failed (card declined, ...). The order keeps waiting: the customer may retry.
    #[serde(rename = "FAILED")]
    Failed,
}

/// Payload of the `payment` signal, sent by the webhook handler (or `orderflow order pay`) after it
/// verified the provider's callback. `event_id` is the provider's own event id: the workflow keeps
/// the ids it has seen and ignores repeats, because providers deliver callbacks more than once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentSignal {
    pub event_id: String,
    pub provider: String,
    pub payment_no: String,
    pub outcome: PaymentOutcome,
    pub amount_minor: i64,
    pub currency: String,
    #[serde(default)]
    pub provider_txn_id: String,
}

/// Payload of the `cancel` update.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CancelRequest {
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResolveAction {
    /// Keep the payment as it is: the order becomes `PAID`.
    #[serde(rename = "ACCEPT")]
    Accept,
    /// Give the money back and release the stock: the order becomes `REFUNDED`.
    #[serde(rename = "REFUND")]
    Refund,
}

/// Payload of the `resolve` update, which an operator sends to an order in `NEEDS_REVIEW`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolveRequest {
    pub action: ResolveAction,
    #[serde(default)]
    pub operator: String,
    #[serde(default)]
    pub note: String,
}

/// Result of the `status` query and of the two updates: everything a caller needs to show an
/// order or take the customer to pay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OrderView {
    pub order_id: String,
    pub customer_id: String,
    /// `null` only in the instant before the workflow's first step.
    pub status: Option<OrderStatus>,
    pub provider: String,
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    pub payment_no: Option<String>,
    pub checkout_url: Option<String>,
    pub qr_payload: Option<String>,
    /// Unix milliseconds at which an unpaid order closes.
    pub payment_deadline_ms: Option<i64>,
    /// The lines' sum before any coupon; `amount_minor` is what is charged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subtotal_minor: Option<i64>,
    /// What the coupon took off (0 without one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discount_minor: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coupon_code: Option<String>,
    /// Why the order is where it is (rejection reason, cancel reason, amount mismatch, ...).
    pub reason: Option<String>,
    /// What the workflow is waiting for right now, in words.
    pub waiting_for: Option<String>,
    /// Since when (Unix ms, workflow time) it has been waiting for that.
    pub waiting_since_ms: Option<i64>,
    /// Payment event ids the workflow has accepted, oldest first.
    pub payment_events: Vec<String>,
    /// True while a `payment` signal can still settle the order. Once false, money that arrives
    /// is only handled if the close finds it; after a final non-paid status it is a late payment.
    pub accepting_payments: bool,
}

/// Result of a completed `OrderWorkflow`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderOutcome {
    pub order_id: String,
    pub status: OrderStatus,
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::PaymentNo;

    fn input() -> OrderInput {
        OrderInput {
            order_id: "ord-1".into(),
            customer_id: "cust-1".into(),
            lines: vec![
                OrderLineInput {
                    sku: "MUG".into(),
                    quantity: 1,
                },
                OrderLineInput {
                    sku: "HAT".into(),
                    quantity: 2,
                },
            ],
            provider: "sandbox".into(),
            payment_timeout_secs: None,
            coupon_code: None,
        }
    }

    #[test]
    fn a_good_order_validates_and_sorts_lines() {
        let valid = input().validate().unwrap();
        let skus: Vec<_> = valid.lines.iter().map(|l| l.sku.as_str()).collect();
        assert_eq!(skus, ["HAT", "MUG"]);
    }

    #[test]
    fn bad_orders_are_rejected_with_a_reason() {
        let mut empty = input();
        empty.lines.clear();
        assert_eq!(empty.validate(), Err(InputError::EmptyCart));

        let mut zero = input();
        zero.lines[0].quantity = 0;
        assert!(matches!(
            zero.validate(),
            Err(InputError::Quantity { line: 1, .. })
        ));

        let mut negative = input();
        negative.lines[1].quantity = -5;
        assert!(matches!(
            negative.validate(),
            Err(InputError::Quantity { line: 2, .. })
        ));

        let mut huge = input();
        huge.lines[0].quantity = i64::MAX;
        assert!(matches!(huge.validate(), Err(InputError::Quantity { .. })));

        let mut dup = input();
        dup.lines[1].sku = "MUG".into();
        assert_eq!(dup.validate(), Err(InputError::DuplicateSku("MUG".into())));

        let mut bad_sku = input();
        bad_sku.lines[0].sku = "mug".into();
        assert!(matches!(
            bad_sku.validate(),
            Err(InputError::Sku { line: 1, .. })
        ));

        let mut too_many = input();
        too_many.lines = (0..51)
            .map(|i| OrderLineInput {
                sku: format!("S{i}"),
                quantity: 1,
            })
            .collect();
        assert_eq!(too_many.validate(), Err(InputError::TooManyLines(51)));

        let mut timeout = input();
        timeout.payment_timeout_secs = Some(0);
        assert_eq!(timeout.validate(), Err(InputError::PaymentTimeout(0)));

        for bad in ["", "has space", "ünï", &"X".repeat(65)] {
            let mut coupon = input();
            coupon.coupon_code = Some(bad.to_owned());
            assert_eq!(coupon.validate(), Err(InputError::CouponCode), "{bad:?}");
        }
        let mut coupon = input();
        coupon.coupon_code = Some("SPRING_10-off".to_owned());
        assert_eq!(
            coupon.validate().unwrap().coupon_code.as_deref(),
            Some("SPRING_10-off")
        );

        let mut no_id = input();
        no_id.order_id.clear();
        assert!(matches!(no_id.validate(), Err(InputError::OrderId(_))));
    }

    #[test]
    fn missing_fields_decode_and_then_fail_validation() {
        let decoded: OrderInput = serde_json::from_str(r#"{"order_id":"x"}"#).unwrap();
        assert!(decoded.validate().is_err());
    }

    #[test]
    fn wire_format_is_stable() {
        let json = serde_json::to_value(input()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "order_id": "ord-1",
                "customer_id": "cust-1",
                "lines": [{"sku": "MUG", "quantity": 1}, {"sku": "HAT", "quantity": 2}],
                "provider": "sandbox"
            })
        );
        let signal: PaymentSignal = serde_json::from_str(
            r#"{"event_id":"e1","provider":"sandbox","payment_no":"p","outcome":"PAID","amount_minor":5,"currency":"USD"}"#,
        )
        .unwrap();
        assert_eq!(signal.outcome, PaymentOutcome::Paid);
        let resolve: ResolveRequest = serde_json::from_str(r#"{"action":"REFUND"}"#).unwrap();
        assert_eq!(resolve.action, ResolveAction::Refund);
    }

    #[test]
    fn the_payment_number_is_derived_from_a_validated_order() {
        let valid = input().validate().unwrap();
        assert_eq!(
            PaymentNo::for_order(&valid.order_id),
            PaymentNo::for_order(&OrderId::parse("ord-1").unwrap())
        );
    }
}
