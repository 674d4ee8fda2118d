//! `POST /v1/orders/{id}/refunds` and `GET /v1/orders/{id}/refunds`: an operator's after-sale
//! refunds (operator scope only). The request is accepted or refused at once
//! (`orderflow_client::refunds`): `201` accepted, `200` the same request again with the same
//! `Idempotency-Key`, `409` more than is left to refund (the body says how much is left), the
//! order not paid, or the key reused for another request. The money then moves in the refund's
//! own workflow; `GET` shows where each refund is.

use super::error::{ApiError, ErrorBody};
use super::{ApiJson, AppState};
use crate::api_keys::Scope;
use crate::auth::Caller;
use crate::orders::idempotency_key;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use orderflow_activities::refunds::{
    MAX_REASON_CHARS, RefundAsk, RefundLineAsk, RefundScope, StoredRefund,
};
use orderflow_client::orders::known_shape;
use orderflow_domain::{Currency, Money, Sku};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What to refund: exactly one of `amount_minor` (with `currency`), `lines`, or `all`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"lines": [{"sku": "TEE-RED-M", "quantity": 1}],
    "reason": "returned, unworn", "restock": true}))]
pub struct RefundOrderRequest {
    /// Integer minor units of the payment's currency.
    #[serde(
        default,
        deserialize_with = "crate::whole_number::deserialize_optional_u64"
    )]
    #[schema(minimum = 1, maximum = 100000000000u64)]
    pub amount_minor: Option<u64>,
    /// ISO 4217 code of `amount_minor`; must be the payment's.
    #[serde(default)]
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: Option<String>,
    /// Units of the order's lines; each line's money is its price less its share of the
    /// order's discount.
    #[serde(default)]
    #[schema(min_items = 1, max_items = 50)]
    pub lines: Option<Vec<RefundLineRequest>>,
    /// Everything not yet refunded.
    #[serde(default)]
    pub all: bool,
    #[schema(min_length = 1, max_length = 256)]
    pub reason: String,
    /// Put the refunded lines' units back on sale once the refund completes (with `lines`).
    #[serde(default)]
    pub restock: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundLineRequest {
    #[schema(min_length = 1, max_length = 40, pattern = "^[A-Z0-9_-]+$")]
    pub sku: String,
    #[serde(deserialize_with = "crate::whole_number::deserialize")]
    #[schema(minimum = 1, maximum = 1000)]
    pub quantity: i64,
}

/// An after-sale refund as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RefundResponse {
    /// The provider's refund number (`out_refund_no`): derived from the order and the key.
    pub refund_no: String,
    pub order_id: String,
    /// `REQUESTED` (accepted, counted against the payment) or `SUCCEEDED` (the money is back).
    pub state: String,
    pub amount_minor: i64,
    pub currency: String,
    pub reason: String,
    pub restock: bool,
    pub lines: Vec<RefundLineResponse>,
    pub requested_by: String,
    pub provider_refund_id: Option<String>,
    pub requested_at_ms: i64,
    pub completed_at_ms: Option<i64>,
    /// The Temporal workflow that moves the money: `refund-<refund_no>`.
    pub workflow_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RefundLineResponse {
    pub sku: String,
    pub quantity: i64,
    pub amount_minor: i64,
}

impl From<StoredRefund> for RefundResponse {
    fn from(r: StoredRefund) -> Self {
        RefundResponse {
            workflow_id: orderflow_client::refunds::refund_workflow_id(&r.refund_no),
            refund_no: r.refund_no,
            order_id: r.order_id,
            state: r.state,
            amount_minor: r.amount_minor,
            currency: r.currency,
            reason: r.reason,
            restock: r.restock,
            lines: r
                .lines
                .into_iter()
                .map(|l| RefundLineResponse {
                    sku: l.sku,
                    quantity: l.quantity,
                    amount_minor: l.amount_minor,
                })
                .collect(),
            requested_by: r.requested_by,
            provider_refund_id: r.provider_refund_id,
            requested_at_ms: r.requested_at_ms,
            completed_at_ms: r.completed_at_ms,
        }
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REFUND", message)
}

fn scope_of(body: &RefundOrderRequest) -> Result<RefundScope, ApiError> {
    let asked = [body.amount_minor.is_some(), body.lines.is_some(), body.all]
        .iter()
        .filter(|x| **x)
        .count();
    if asked != 1 {
        return Err(invalid(
            "say what to refund with exactly one of amount_minor (and currency), lines, or all",
        ));
    }
    if let Some(minor) = body.amount_minor {
        let currency = body
            .currency
            .as_deref()
            .ok_or_else(|| invalid("amount_minor needs its currency"))
            .and_then(|c| Currency::parse(c).map_err(|e| invalid(e.to_string())))?;
        let minor = i64::try_from(minor).map_err(|_| invalid("amount_minor is too large"))?;
        return Money::new(minor, currency)
            .map(RefundScope::Amount)
            .map_err(|e| invalid(e.to_string()));
    }
    if body.currency.is_some() {
        return Err(invalid("currency goes with amount_minor"));
    }
    if let Some(lines) = &body.lines {
        return lines
            .iter()
            .map(|l| {
                Ok(RefundLineAsk {
                    sku: Sku::parse(l.sku.as_str()).map_err(|e| invalid(e.to_string()))?,
                    quantity: l.quantity,
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()
            .map(RefundScope::Lines);
    }
    Ok(RefundScope::Rest)
}

/// Refund a paid order after the sale, whole or in part (operators only).
#[utoipa::path(
    post,
    path = "/v1/orders/{order_id}/refunds",
    params(
        ("order_id" = String, Path),
        ("Idempotency-Key" = String, Header, description = "Required. The same key and request always mean the same refund.")
    ),
    request_body = RefundOrderRequest,
    responses(
        (status = 201, description = "accepted: counted against the payment, its workflow started", body = RefundResponse),
        (status = 200, description = "the same request was accepted before with this key", body = RefundResponse),
        (status = 404, description = "unknown order", body = ErrorBody),
        (status = 409, description = "more than is left to refund, the order is not paid, or the key was used for another request", body = ErrorBody),
        (status = 422, description = "not a valid refund", body = ErrorBody)
    )
)]
pub async fn refund_order(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(order_id): Path<String>,
    ApiJson(body): ApiJson<RefundOrderRequest>,
) -> Result<(StatusCode, Json<RefundResponse>), ApiError> {
    caller.require(Scope::Operator)?;
    let key = idempotency_key(
        &headers,
        "the same key and request always mean the same refund",
    )?;
    let order_id = known_shape(&order_id)?;
    if body.reason.trim().is_empty() || body.reason.chars().count() > MAX_REASON_CHARS {
        return Err(invalid(format!(
            "reason is required, at most {MAX_REASON_CHARS} characters"
        )));
    }
    let ask = RefundAsk {
        order_id,
        scope: scope_of(&body)?,
        reason: body.reason,
        restock: body.restock,
        key,
        requested_by: format!("{} (key {})", caller.client, caller.key_id),
    };
    let started = app.orders.refund(&ask).await?;
    let status = if started.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(started.refund.into())))
}

/// An order's after-sale refunds, oldest first (operators only).
#[utoipa::path(
    get,
    path = "/v1/orders/{order_id}/refunds",
    params(("order_id" = String, Path)),
    responses(
        (status = 200, description = "the order's refunds (none: an empty list)", body = [RefundResponse]),
        (status = 404, description = "unknown order", body = ErrorBody)
    )
)]
pub async fn list_refunds(
    State(app): State<AppState>,
    caller: Caller,
    Path(order_id): Path<String>,
) -> Result<Json<Vec<RefundResponse>>, ApiError> {
    caller.require(Scope::Operator)?;
    let refunds = app.orders.refunds(&order_id).await?;
    if refunds.is_empty()
        && orderflow_activities::orders::load(&app.orders.db, &order_id)
            .await
            .map_err(ApiError::database)?
            .is_none()
    {
        return Err(ApiError::not_found(
            "ORDER_NOT_FOUND",
            format!("unknown order {order_id}"),
        ));
    }
    Ok(Json(refunds.into_iter().map(Into::into).collect()))
}
