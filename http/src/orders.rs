//! The orders API.

use super::error::{ApiError, ErrorBody};
use super::{ApiJson, AppState, raw_body};
use crate::api_keys::Scope;
use crate::auth::{self, Caller};
use crate::callbacks::{self, KeyClaim};
use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use orderflow_client::orders::{EdgePlaced, OrderOpError, Refusal, order_id_for_key};
use orderflow_domain::{
    Currency, Money, OrderInput, OrderLineInput, OrderView, ResolveAction, ResolveRequest,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::{Duration, UNIX_EPOCH};
use utoipa::ToSchema;

/// Longest accepted `Idempotency-Key`.
const MAX_KEY_LEN: usize = 255;
/// What an `Idempotency-Key` may contain: visible ASCII, no spaces (as the OpenAPI document says).
pub const IDEMPOTENCY_KEY_PATTERN: &str = "^[!-~]{1,255}$";

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"customer_id": "alice", "provider": "sandbox",
    "lines": [{"sku": "TEE-RED-M", "quantity": 2}, {"sku": "MUG-LOGO", "quantity": 1}]}))]
pub struct CreateOrderRequest {
    /// The shop's id for its customer.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_.@+-]+$")]
    pub customer_id: String,
    /// At most 50 lines, each SKU once.
    #[schema(min_items = 1, max_items = 50)]
    pub lines: Vec<OrderLineRequest>,
    /// `stripe`, or `sandbox` in development: one this deployment has configured (`422
    /// UNKNOWN_PROVIDER` otherwise). Absent: the deployment's `ORDERFLOW_DEFAULT_PROVIDER`, or
    /// `422 PROVIDER_REQUIRED` when it has none.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 32, pattern = "^[a-z0-9_]+$")]
    pub provider: Option<String>,
    /// Seconds the customer has to pay (1..=604800); the worker's default when absent.
    #[serde(
        default,
        deserialize_with = "crate::whole_number::deserialize_optional_u64"
    )]
    #[schema(minimum = 1, maximum = 604800)]
    pub payment_timeout_secs: Option<u64>,
    /// A coupon code. The discount is computed by Orderflow from the catalog and the coupon's
    /// definition (a client never sends one). A code that cannot be used (unknown, another
    /// customer's, expired, minimum spend or currency not met, already used or held by another
    /// order) rejects the order: status `REJECTED`, reason `COUPON_UNAVAILABLE: …`; it is never
    /// priced without the coupon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]+$")]
    pub coupon_code: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderLineRequest {
    #[schema(min_length = 1, max_length = 40, pattern = "^[A-Z0-9_-]+$")]
    pub sku: String,
    #[serde(deserialize_with = "crate::whole_number::deserialize")]
    #[schema(minimum = 1, maximum = 1000)]
    pub quantity: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelOrderRequest {
    /// Why, for the record.
    #[serde(default)]
    #[schema(max_length = 500)]
    pub reason: String,
}

/// An order as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrderResponse {
    pub order_id: String,
    /// `PENDING`, `AWAITING_PAYMENT`, `PAID`, `CLOSED`, `CANCELLED`, `REJECTED`, `NEEDS_REVIEW`,
    /// `REFUNDED`, `PARTIALLY_REFUNDED`.
    pub status: Option<String>,
    pub customer_id: String,
    pub provider: String,
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    /// Display form, e.g. `52.48 USD`.
    pub amount: Option<String>,
    pub payment_no: Option<String>,
    /// Where the customer pays (a hosted page), if the provider has one.
    pub checkout_url: Option<String>,
    pub qr_payload: Option<String>,
    /// RFC 3339.
    pub payment_deadline: Option<String>,
    pub payment_deadline_ms: Option<i64>,
    pub reason: Option<String>,
    pub waiting_for: Option<String>,
    /// With a coupon: the lines' sum before it, what it took off, and its code (`amount_minor` is
    /// what is charged). Absent for orders without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subtotal_minor: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discount_minor: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coupon_code: Option<String>,
}

impl From<OrderView> for OrderResponse {
    fn from(v: OrderView) -> Self {
        let amount = match (v.amount_minor, v.currency.as_deref().map(Currency::parse)) {
            (Some(minor), Some(Ok(c))) => Money::new(minor, c).ok().map(|m| m.to_string()),
            _ => None,
        };
        OrderResponse {
            order_id: v.order_id,
            status: v.status.map(|s| s.to_string()),
            customer_id: v.customer_id,
            provider: v.provider,
            amount_minor: v.amount_minor,
            currency: v.currency,
            amount,
            payment_no: v.payment_no,
            checkout_url: v.checkout_url,
            qr_payload: v.qr_payload,
            payment_deadline: v.payment_deadline_ms.map(|ms| {
                let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
                humantime::format_rfc3339_millis(at).to_string()
            }),
            payment_deadline_ms: v.payment_deadline_ms,
            reason: v.reason,
            waiting_for: v.waiting_for,
            subtotal_minor: v.subtotal_minor,
            discount_minor: v.discount_minor,
            coupon_code: v.coupon_code,
        }
    }
}

/// The request's `Idempotency-Key` header: required, 1..=255 visible ASCII characters. `meaning`
/// tells a caller without one what the key is for.
pub(crate) fn idempotency_key(headers: &HeaderMap, meaning: &str) -> Result<String, ApiError> {
    let key = headers
        .get("idempotency-key")
        .ok_or_else(|| {
            ApiError::bad_request(
                "MISSING_IDEMPOTENCY_KEY",
                format!("the Idempotency-Key header is required: {meaning}"),
            )
        })?
        .to_str()
        .unwrap_or_default()
        .to_owned();
    let visible_ascii = key.bytes().all(|b| b.is_ascii_graphic());
    if key.is_empty() || key.len() > MAX_KEY_LEN || !visible_ascii {
        return Err(ApiError::bad_request(
            "INVALID_IDEMPOTENCY_KEY",
            format!(
                "Idempotency-Key must be 1..={MAX_KEY_LEN} visible ASCII characters, no spaces"
            ),
        ));
    }
    Ok(key)
}

/// Start an order. Same `Idempotency-Key` and body: the same order (`200`); same key, different
/// body: `409`. Answers once the payment parameters exist (`201`), or `202` if that takes longer
/// than the configured wait.
#[utoipa::path(
    post,
    path = "/v1/orders",
    request_body = CreateOrderRequest,
    params(("Idempotency-Key" = String, Header, description = "Required. The same key always means the same order.")),
    responses(
        (status = 201, description = "order created", body = OrderResponse),
        (status = 200, description = "the order this key created before", body = OrderResponse),
        (status = 202, description = "created; payment parameters not ready yet", body = OrderResponse),
        (status = 400, description = "missing key, malformed JSON, unknown fields", body = ErrorBody),
        (status = 409, description = "key reused with a different body", body = ErrorBody),
        (status = 413, description = "body over 64 KiB", body = ErrorBody),
        (status = 422, description = "invalid order; `PROVIDER_REQUIRED`: no provider named and no default; `UNKNOWN_PROVIDER`: a provider not configured here", body = ErrorBody)
    )
)]
pub async fn create_order(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(mut body): ApiJson<CreateOrderRequest>,
) -> Result<(StatusCode, Json<OrderResponse>), ApiError> {
    caller.require(Scope::OrdersCreate)?;
    // Held until the answer: past the cap, shed load before it reaches the database or Temporal.
    let _slot = app.limits.creation_slot()?;
    let key = idempotency_key(&headers, "the same key always means the same order")?;
    let order_id = order_id_for_key(&caller.client, &key);
    let provider = body
        .provider
        .clone()
        .or_else(|| app.settings.default_provider.clone())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "PROVIDER_REQUIRED",
                "the order names no payment provider and this deployment has no default \
                 (ORDERFLOW_DEFAULT_PROVIDER): set \"provider\"",
            )
        })?;
    // The fingerprint below covers the provider the order really gets, as it did when the
    // field had a fixed default: a repeat that leaves it out is the same request.
    body.provider = Some(provider.clone());
    tracing::Span::current()
        .record("order_id", order_id.as_str())
        .record("provider", provider.as_str());
    let input = OrderInput {
        order_id: order_id.to_string(),
        customer_id: body.customer_id.clone(),
        lines: body
            .lines
            .iter()
            .map(|l| OrderLineInput {
                sku: l.sku.clone(),
                quantity: l.quantity,
            })
            .collect(),
        provider,
        payment_timeout_secs: body.payment_timeout_secs,
        coupon_code: body.coupon_code.clone(),
    };
    // The workflow validates too; checking here answers a client mistake with a 422 instead of
    // a rejected order.
    input.validate().map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_ORDER",
            e.to_string(),
        )
    })?;
    // A provider this shim has no webhook adapter for could never report the payment, and
    // the worker may not offer it either: refuse before anything is claimed, reserved or
    // started.
    if !app.has_provider(&input.provider) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "UNKNOWN_PROVIDER",
            format!(
                "payment provider {:?} is not configured in this deployment",
                input.provider
            ),
        ));
    }

    let fingerprint = hex::encode(Sha256::digest(
        serde_json::to_vec(&body).expect("request serializes"),
    ));
    let claim = callbacks::claim_idempotency_key(
        &app.orders.db,
        &caller.client,
        &key,
        &fingerprint,
        order_id.as_str(),
    )
    .await
    .map_err(ApiError::database)?;
    let created = match claim {
        KeyClaim::Claimed => true,
        KeyClaim::Repeat { .. } => false,
        KeyClaim::Conflict { order_id } => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "IDEMPOTENCY_KEY_REUSED",
                format!(
                    "this Idempotency-Key was used for order {order_id} with a different request"
                ),
            ));
        }
    };
    if app.settings.reserve_at_edge {
        // Stock decided here; a refused order has no workflow to wait for. A repeat of a
        // request whose start failed starts it now (or the relay does).
        match app.orders.place_at_edge(input, true).await? {
            EdgePlaced::Started | EdgePlaced::Reserved => {}
            EdgePlaced::Refused { .. } | EdgePlaced::Decided => {
                let status = if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                return Ok((
                    status,
                    Json(app.orders.view(order_id.as_str()).await?.into()),
                ));
            }
        }
    } else {
        // Always (re)start: if an earlier attempt claimed the key but failed to start, this
        // heals it. The start itself is idempotent (UseExisting + RejectDuplicate).
        app.orders.ensure_started(input).await?;
    }
    let wait = Duration::from_secs(app.settings.create_wait_secs);
    let (status, view) = match app.orders.wait_ready(order_id.as_str(), wait).await {
        Ok(view) if created => (StatusCode::CREATED, view),
        Ok(view) => (StatusCode::OK, view),
        Err(OrderOpError::Timeout { .. }) => (
            StatusCode::ACCEPTED,
            app.orders.view(order_id.as_str()).await?,
        ),
        Err(e) => return Err(e.into()),
    };
    Ok((status, Json(view.into())))
}

/// An order: from its running workflow, or from the database once it has finished.
#[utoipa::path(
    get,
    path = "/v1/orders/{order_id}",
    params(("order_id" = String, Path)),
    responses(
        (status = 200, body = OrderResponse),
        (status = 404, body = ErrorBody)
    )
)]
pub async fn get_order(
    State(app): State<AppState>,
    caller: Caller,
    Path(order_id): Path<String>,
) -> Result<Json<OrderResponse>, ApiError> {
    caller.require(Scope::OrdersRead)?;
    auth::visible(&app, &caller, &order_id).await?;
    Ok(Json(app.orders.view(&order_id).await?.into()))
}

/// Cancel an order awaiting payment. `409` with the reason when it can no longer be cancelled.
#[utoipa::path(
    post,
    path = "/v1/orders/{order_id}/cancel",
    params(("order_id" = String, Path)),
    request_body(content = CancelOrderRequest, description = "optional: without a body the order is cancelled with no reason"),
    responses(
        (status = 200, description = "cancelled (or paid first: see status)", body = OrderResponse),
        (status = 202, description = "cancel accepted, still closing", body = OrderResponse),
        (status = 404, body = ErrorBody),
        (status = 409, description = "not cancellable", body = ErrorBody)
    )
)]
pub async fn cancel_order(
    State(app): State<AppState>,
    caller: Caller,
    Path(order_id): Path<String>,
    req: Request,
) -> Result<(StatusCode, Json<OrderResponse>), ApiError> {
    caller.require(Scope::OrdersCancel)?;
    auth::visible(&app, &caller, &order_id).await?;
    let bytes = raw_body(req, &()).await?;
    let body: CancelOrderRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        CancelOrderRequest::default()
    } else {
        serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::bad_request("INVALID_JSON", format!("invalid request body: {e}"))
        })?
    };
    if body.reason.chars().count() > MAX_NOTE_CHARS {
        return Err(ApiError::bad_request(
            "INVALID_REASON",
            format!("reason is limited to {MAX_NOTE_CHARS} characters"),
        ));
    }
    let accepted = app
        .orders
        .cancel(&order_id, &body.reason)
        .await
        .map_err(|e| match e {
            OrderOpError::Refused {
                refusal: Refusal::WrongState | Refusal::Finished,
                message,
            } => ApiError::new(StatusCode::CONFLICT, "ORDER_NOT_CANCELLABLE", message),
            other => other.into(),
        })?;
    let wait = Duration::from_secs(app.settings.create_wait_secs);
    match app.orders.wait_final(&order_id, wait).await {
        Ok(view) => Ok((StatusCode::OK, Json(view.into()))),
        Err(OrderOpError::Timeout { .. }) => Ok((StatusCode::ACCEPTED, Json(accepted.into()))),
        Err(e) => Err(e.into()),
    }
}

/// An operator's decision on an order in `NEEDS_REVIEW`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveOrderRequest {
    /// `ACCEPT` keeps the payment (the order becomes `PAID`); `REFUND` gives it back.
    pub action: ResolveActionRequest,
    /// Why, for the record (at most 500 characters).
    #[serde(default)]
    #[schema(max_length = 500)]
    pub note: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ResolveActionRequest {
    Accept,
    Refund,
}

/// Longest accepted cancel reason or operator note.
const MAX_NOTE_CHARS: usize = 500;

/// Resolve an order waiting for review (operators only). The operator on record is the API
/// key's client, never a name in the body.
#[utoipa::path(
    post,
    path = "/v1/orders/{order_id}/resolve",
    params(("order_id" = String, Path)),
    request_body = ResolveOrderRequest,
    responses(
        (status = 200, description = "resolved", body = OrderResponse),
        (status = 409, description = "not waiting for review", body = ErrorBody)
    )
)]
pub async fn resolve_order(
    State(app): State<AppState>,
    caller: Caller,
    Path(order_id): Path<String>,
    ApiJson(body): ApiJson<ResolveOrderRequest>,
) -> Result<Json<OrderResponse>, ApiError> {
    caller.require(Scope::Operator)?;
    if body.note.chars().count() > MAX_NOTE_CHARS {
        return Err(ApiError::bad_request(
            "INVALID_NOTE",
            format!("note is limited to {MAX_NOTE_CHARS} characters"),
        ));
    }
    let request = ResolveRequest {
        action: match body.action {
            ResolveActionRequest::Accept => ResolveAction::Accept,
            ResolveActionRequest::Refund => ResolveAction::Refund,
        },
        operator: format!("{} (key {})", caller.client, caller.key_id),
        note: body.note,
    };
    Ok(Json(app.orders.resolve(&order_id, request).await?.into()))
}
