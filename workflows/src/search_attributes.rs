//! The search attributes an order keeps current, listed once.
//!
//! The dev-server scripts, the tests and the compose stack register exactly [`REGISTRATION`]
//! (through `orderflow dev search-attributes`), so adding an attribute here and to
//! [`for_order`] is the only step.
//!
//! Stuck orders in the Temporal UI:
//! `OrderStatus = "AWAITING_PAYMENT" AND PaymentDeadline < "2026-01-01T00:00:00Z"`.

use orderflow_domain::{OrderStatus, OrderView};
use temporalio_common::search_attributes::{SearchAttributeKey, SearchAttributeUpdate, Timestamp};

/// `OrderStatus = "AWAITING_PAYMENT"` finds orders waiting for money.
pub const ORDER_STATUS: SearchAttributeKey<String> = SearchAttributeKey::keyword("OrderStatus");
/// When an unpaid order closes; older than now means the close is overdue.
pub const PAYMENT_DEADLINE: SearchAttributeKey<Timestamp> =
    SearchAttributeKey::datetime("PaymentDeadline");
pub const CUSTOMER_ID: SearchAttributeKey<String> = SearchAttributeKey::keyword("CustomerId");
pub const PAYMENT_PROVIDER: SearchAttributeKey<String> =
    SearchAttributeKey::keyword("PaymentProvider");
pub const ORDER_AMOUNT_MINOR: SearchAttributeKey<i64> = SearchAttributeKey::int("OrderAmountMinor");

/// Name and Temporal type of every custom search attribute the workflow writes.
pub const REGISTRATION: &[(&str, &str)] = &[
    ("OrderStatus", "Keyword"),
    ("PaymentDeadline", "Datetime"),
    ("CustomerId", "Keyword"),
    ("PaymentProvider", "Keyword"),
    ("OrderAmountMinor", "Int"),
];

/// Every attribute the order has a value for.
pub fn for_order(status: OrderStatus, view: &OrderView) -> Vec<SearchAttributeUpdate> {
    let mut updates = vec![ORDER_STATUS.value_set(status.as_str().to_owned())];
    if !view.customer_id.is_empty() {
        updates.push(CUSTOMER_ID.value_set(view.customer_id.clone()));
    }
    if !view.provider.is_empty() {
        updates.push(PAYMENT_PROVIDER.value_set(view.provider.clone()));
    }
    if let Some(amount) = view.amount_minor {
        updates.push(ORDER_AMOUNT_MINOR.value_set(amount));
    }
    if let Some(ms) = view.payment_deadline_ms {
        let nanos = i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0);
        updates.push(PAYMENT_DEADLINE.value_set(Timestamp::new(ms.div_euclid(1000), nanos)));
    }
    updates
}
