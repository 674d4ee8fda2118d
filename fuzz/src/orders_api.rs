//! Properties of the orders API body (`POST /v1/orders`): what `ApiJson<CreateOrderRequest>`
//! decodes and what `create_order` then validates.
//!
//! Used by `fuzz/fuzz_targets/orders_api_body.rs` and, through `#[path]` (next to
//! `domain.rs`, whose `check_validation` it reuses), by `http/tests/api_body_properties.rs`,
//! which also drives the real router with the same bodies.

use super::domain::check_validation;
use orderflow_domain::{OrderInput, OrderLineInput, ValidOrder};
use orderflow_http::MAX_BODY_BYTES;
use orderflow_http::orders::CreateOrderRequest;
use serde_json::Value;

/// The order id the checks give every body (the handler derives one from the Idempotency-Key).
pub const ORDER_ID: &str = "ord_0123456789abcdef01234567";

const REQUEST_FIELDS: [&str; 5] = [
    "customer_id",
    "lines",
    "provider",
    "payment_timeout_secs",
    "coupon_code",
];
const LINE_FIELDS: [&str; 2] = ["sku", "quantity"];

/// The provider the checks' shim is configured to give an order that names none
/// (`ORDERFLOW_DEFAULT_PROVIDER`).
pub const DEFAULT_PROVIDER: &str = "sandbox";

/// What `create_order` hands the workflow for `request`, field by field, on a shim whose
/// default provider is [`DEFAULT_PROVIDER`].
pub fn order_input_for(request: &CreateOrderRequest, order_id: &str) -> OrderInput {
    OrderInput {
        order_id: order_id.to_owned(),
        customer_id: request.customer_id.clone(),
        lines: request
            .lines
            .iter()
            .map(|l| OrderLineInput {
                sku: l.sku.clone(),
                quantity: l.quantity,
            })
            .collect(),
        provider: request
            .provider
            .clone()
            .unwrap_or_else(|| DEFAULT_PROVIDER.to_owned()),
        payment_timeout_secs: request.payment_timeout_secs,
        coupon_code: request.coupon_code.clone(),
    }
}

/// A struct's field in its JSON: by name in an object, by position in an array (serde accepts
/// both for a struct).
fn field<'v>(value: &'v Value, name: &str, index: usize) -> Option<&'v Value> {
    match value {
        Value::Object(map) => map.get(name),
        Value::Array(items) => items.get(index),
        _ => None,
    }
}

fn only_known_fields(value: &Value, known: &[&str]) {
    if let Value::Object(map) = value {
        for key in map.keys() {
            assert!(
                known.contains(&key.as_str()),
                "unknown field {key:?} accepted"
            );
        }
    }
}

/// The whole number a JSON number is, read from its text as the API reads it.
fn whole(value: &Value) -> Option<i64> {
    value
        .is_number()
        .then(|| orderflow_http::whole_number::exact_integer(&value.to_string()))
        .flatten()
}

/// A decoded request is exactly what the JSON says, with no field the API does not document.
fn check_against_json(request: &CreateOrderRequest, value: &Value) {
    only_known_fields(value, &REQUEST_FIELDS);
    assert_eq!(
        field(value, "customer_id", 0).and_then(Value::as_str),
        Some(request.customer_id.as_str())
    );
    // Absent or null: none named (the shim's default then applies).
    let provider = field(value, "provider", 2).filter(|v| !v.is_null());
    assert_eq!(
        provider.map(Value::as_str),
        request.provider.as_deref().map(Some)
    );
    let timeout = field(value, "payment_timeout_secs", 3).filter(|v| !v.is_null());
    assert_eq!(
        timeout.map(whole),
        request.payment_timeout_secs.map(|t| i64::try_from(t).ok())
    );
    let coupon = field(value, "coupon_code", 4).filter(|v| !v.is_null());
    assert_eq!(
        coupon.map(Value::as_str),
        request.coupon_code.as_deref().map(Some)
    );
    let lines = field(value, "lines", 1)
        .and_then(Value::as_array)
        .expect("lines is an array");
    assert_eq!(lines.len(), request.lines.len());
    for (json, line) in lines.iter().zip(&request.lines) {
        only_known_fields(json, &LINE_FIELDS);
        assert_eq!(
            field(json, "sku", 0).and_then(Value::as_str),
            Some(line.sku.as_str())
        );
        // A whole number in i64 (`2` or `2.0`), exactly: never a rounded fraction, a string
        // or a clamped big number.
        assert_eq!(
            field(json, "quantity", 1).and_then(whole),
            Some(line.quantity)
        );
    }
}

/// The `orders_api_body` target: a body the router would read (at most `MAX_BODY_BYTES`) either
/// fails to decode (400) or decodes to exactly what it says, re-encodes to a stable fingerprint
/// input, and validates (422 otherwise) exactly when the domain rules say so — so an order that
/// gets through has 1..=50 distinct, valid lines with quantities in 1..=1000.
pub fn check_order_body(data: &[u8]) -> Option<ValidOrder> {
    if data.len() > MAX_BODY_BYTES {
        return None;
    }
    let request: CreateOrderRequest = serde_json::from_slice(data).ok()?;
    let value: Value = serde_json::from_slice(data).expect("a decoded body is JSON");
    check_against_json(&request, &value);
    // The Idempotency-Key fingerprint hashes `to_vec(&request)`: that form must decode to the
    // same request, or a retry of the same body could be taken for a different one.
    let canonical = serde_json::to_vec(&request).expect("requests serialize");
    let again: CreateOrderRequest =
        serde_json::from_slice(&canonical).expect("the canonical form decodes");
    assert_eq!(
        serde_json::to_vec(&again).expect("requests serialize"),
        canonical
    );
    check_validation(&order_input_for(&request, ORDER_ID))
}
