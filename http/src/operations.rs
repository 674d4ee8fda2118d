//! Operator actions over HTTP, for keys with the `operator` scope: stock levels and recounts,
//! catalog prices, and coupons (define, issue codes, look). The same operations as `orderflow stock` and `orderflow catalog`, which talk
//! to the database directly.

use super::error::{ApiError, ErrorBody};
use super::{ApiJson, AppState};
use crate::api_keys::Scope;
use crate::auth::Caller;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use orderflow_activities::coupons::{self, CouponDefinition, CouponError, CouponKind};
use orderflow_activities::inventory::{self, InventoryError, StockLevel};
use orderflow_activities::orders::{self as order_rows, CatalogItem};
use orderflow_client::catalog::{self, SetStockError};
use orderflow_domain::{Currency, Money, Sku};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Largest total stock one SKU may be set to.
pub const MAX_STOCK: i64 = 1_000_000_000;
/// Largest catalog price, in minor units.
pub const MAX_PRICE_MINOR: i64 = 1_000_000_000_000;

/// A SKU's stock: `total = available + reserved + sold`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StockResponse {
    pub sku: String,
    pub total: i64,
    pub available: i64,
    pub reserved: i64,
    pub sold: i64,
}

impl From<StockLevel> for StockResponse {
    fn from(l: StockLevel) -> Self {
        StockResponse {
            sku: l.sku,
            total: l.total,
            available: l.available,
            reserved: l.reserved,
            sold: l.sold,
        }
    }
}

/// A recount: the SKU's new total.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetStockRequest {
    /// At least what is reserved or sold (`409` otherwise).
    #[serde(deserialize_with = "crate::whole_number::deserialize")]
    #[schema(minimum = 0, maximum = 1000000000)]
    pub total: i64,
}

/// A catalog entry: what the SKU is called and what it costs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CatalogItemRequest {
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// In the currency's minor units (cents; yen for JPY).
    #[serde(deserialize_with = "crate::whole_number::deserialize")]
    #[schema(minimum = 0, maximum = 1000000000000i64)]
    pub price_minor: i64,
    /// ISO 4217, one of the currencies Orderflow prices in.
    pub currency: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CatalogItemResponse {
    pub sku: String,
    pub name: String,
    pub price_minor: i64,
    pub currency: String,
    /// Display form, e.g. `19.99 USD`.
    pub price: String,
}

impl From<&CatalogItem> for CatalogItemResponse {
    fn from(i: &CatalogItem) -> Self {
        CatalogItemResponse {
            sku: i.sku.to_string(),
            name: i.name.clone(),
            price_minor: i.price.minor(),
            currency: i.price.currency().to_string(),
            price: i.price.to_string(),
        }
    }
}

fn sku(raw: &str) -> Result<Sku, ApiError> {
    Sku::parse(raw).map_err(|_| ApiError::not_found("UNKNOWN_SKU", format!("unknown SKU {raw:?}")))
}

/// Stock of every SKU (operators only).
#[utoipa::path(get, path = "/v1/stock", responses((status = 200, body = [StockResponse])))]
pub async fn list_stock(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<StockResponse>>, ApiError> {
    caller.require(Scope::Operator)?;
    let levels = inventory::levels(&app.orders.db)
        .await
        .map_err(ApiError::database)?;
    Ok(Json(levels.into_iter().map(Into::into).collect()))
}

/// Set a SKU's total stock after a recount (operators only). The SKU must be in the catalog.
#[utoipa::path(
    put,
    path = "/v1/stock/{sku}",
    params(("sku" = String, Path)),
    request_body = SetStockRequest,
    responses(
        (status = 200, body = StockResponse),
        (status = 409, description = "below what is reserved or sold", body = ErrorBody)
    )
)]
pub async fn set_stock(
    State(app): State<AppState>,
    caller: Caller,
    Path(raw_sku): Path<String>,
    ApiJson(body): ApiJson<SetStockRequest>,
) -> Result<Json<StockResponse>, ApiError> {
    caller.require(Scope::Operator)?;
    let sku = sku(&raw_sku)?;
    if !(0..=MAX_STOCK).contains(&body.total) {
        return Err(ApiError::bad_request(
            "INVALID_TOTAL",
            format!("total must be in 0..={MAX_STOCK}"),
        ));
    }
    match catalog::set_stock(&app.orders.db, &sku, body.total).await {
        Ok(level) => Ok(Json(level.into())),
        Err(e @ SetStockError::UnknownSku(_)) => {
            Err(ApiError::not_found("UNKNOWN_SKU", e.to_string()))
        }
        Err(SetStockError::Inventory(e @ InventoryError::BelowCommitted { .. })) => Err(
            ApiError::new(StatusCode::CONFLICT, "STOCK_BELOW_COMMITTED", e.to_string()),
        ),
        Err(SetStockError::Inventory(InventoryError::Db(e))) => Err(ApiError::database(e)),
        Err(e @ SetStockError::Negative(_)) => {
            Err(ApiError::bad_request("INVALID_TOTAL", e.to_string()))
        }
        Err(SetStockError::Inventory(e)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "STOCK_REFUSED",
            e.to_string(),
        )),
        Err(SetStockError::Catalog(e)) => {
            tracing::warn!(error = %e, "catalog unavailable");
            Err(ApiError::unavailable(
                "DATABASE_UNAVAILABLE",
                "the orders database is unavailable; retry later",
            ))
        }
    }
}

/// Add a SKU to the catalog or change its name and price (operators only). Orders already placed
/// keep the price they were placed at.
#[utoipa::path(
    put,
    path = "/v1/catalog/{sku}",
    params(("sku" = String, Path)),
    request_body = CatalogItemRequest,
    responses((status = 200, body = CatalogItemResponse))
)]
pub async fn put_catalog_item(
    State(app): State<AppState>,
    caller: Caller,
    Path(raw_sku): Path<String>,
    ApiJson(body): ApiJson<CatalogItemRequest>,
) -> Result<Json<CatalogItemResponse>, ApiError> {
    caller.require(Scope::Operator)?;
    let sku = sku(&raw_sku)?;
    let name = body.name.as_str();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::bad_request(
            "INVALID_NAME",
            "name must be 1..=200 characters",
        ));
    }
    let currency = Currency::parse(&body.currency)
        .map_err(|e| ApiError::bad_request("INVALID_CURRENCY", e.to_string()))?;
    if !(0..=MAX_PRICE_MINOR).contains(&body.price_minor) {
        return Err(ApiError::bad_request(
            "INVALID_PRICE",
            format!("price_minor must be in 0..={MAX_PRICE_MINOR}"),
        ));
    }
    let price = Money::new(body.price_minor, currency)
        .map_err(|e| ApiError::bad_request("INVALID_PRICE", e.to_string()))?;
    let item = CatalogItem {
        sku,
        name: name.to_owned(),
        price,
    };
    order_rows::upsert_catalog_item(&app.orders.db, &item)
        .await
        .map_err(ApiError::database)?;
    Ok(Json((&item).into()))
}

/// A coupon definition (operators only): what its codes take off, on which spend, when.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CouponDefinitionRequest {
    /// 1..=64 of `A-Z a-z 0-9 _ -`.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]+$")]
    pub id: String,
    /// `FIXED` (minor units off) or `PERCENT` (whole percent off, rounded down).
    #[schema(pattern = "^(FIXED|PERCENT)$")]
    pub kind: String,
    /// Minor units (FIXED) or percent 1..=100 (PERCENT).
    #[serde(deserialize_with = "crate::whole_number::deserialize")]
    #[schema(minimum = 1, maximum = 1000000000000i64)]
    pub amount_off: i64,
    /// ISO 4217: the currency of the orders it applies to.
    pub currency: String,
    /// The smallest subtotal (minor units) it applies to.
    #[serde(default, deserialize_with = "crate::whole_number::deserialize")]
    #[schema(minimum = 0, maximum = 1000000000000i64)]
    pub min_spend_minor: i64,
    /// Unix ms: valid from (inclusive) until (exclusive).
    #[serde(deserialize_with = "crate::whole_number::deserialize")]
    #[schema(minimum = 0)]
    pub valid_from_ms: i64,
    #[serde(deserialize_with = "crate::whole_number::deserialize")]
    #[schema(minimum = 1)]
    pub valid_until_ms: i64,
}

/// Codes to issue under a definition, single use each.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueCouponsRequest {
    #[schema(min_items = 1, max_items = 1000)]
    pub codes: Vec<String>,
    /// Only this customer may use them; absent: anyone.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_.@+-]+$")]
    pub customer_id: Option<String>,
}

/// A definition and the codes issued under it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CouponResponse {
    pub id: String,
    pub kind: String,
    pub amount_off: i64,
    pub currency: String,
    pub min_spend_minor: i64,
    pub valid_from_ms: i64,
    pub valid_until_ms: i64,
    pub codes: Vec<CouponCodeResponse>,
}

/// An issued code: `AVAILABLE`, `LOCKED` by an order awaiting payment or review, or `USED`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CouponCodeResponse {
    pub code: String,
    pub customer_id: Option<String>,
    pub state: String,
    pub order_id: Option<String>,
}

impl From<coupons::IssuedCoupon> for CouponCodeResponse {
    fn from(c: coupons::IssuedCoupon) -> Self {
        CouponCodeResponse {
            code: c.code,
            customer_id: c.customer_id,
            state: c.state,
            order_id: c.order_id,
        }
    }
}

fn coupon_response(d: CouponDefinition, codes: Vec<coupons::IssuedCoupon>) -> CouponResponse {
    CouponResponse {
        id: d.id,
        kind: d.kind.as_str().to_owned(),
        amount_off: d.amount_off,
        currency: d.currency,
        min_spend_minor: d.min_spend_minor,
        valid_from_ms: d.valid_from_ms,
        valid_until_ms: d.valid_until_ms,
        codes: codes.into_iter().map(Into::into).collect(),
    }
}

/// The coupon module's refusals as API answers: the operator's mistakes are 4xx.
fn coupon_error(e: CouponError) -> ApiError {
    match e {
        CouponError::Invalid(m) | CouponError::Unavailable(m) => {
            ApiError::bad_request("INVALID_COUPON", m)
        }
        CouponError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "COUPON_CONFLICT", m),
        CouponError::NotFound(m) => ApiError::not_found("UNKNOWN_COUPON", m),
        CouponError::Db(e) => ApiError::database(e),
        CouponError::Invariant(m) => {
            tracing::error!(message = %m, "coupon invariant");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "internal error",
            )
        }
    }
}

/// Define a coupon (operators only). The same id and terms again answer the stored definition;
/// other terms under an existing id are `409`.
#[utoipa::path(
    post,
    path = "/v1/coupons",
    request_body = CouponDefinitionRequest,
    responses(
        (status = 201, body = CouponResponse),
        (status = 400, description = "not a valid definition", body = ErrorBody),
        (status = 409, description = "the id exists with other terms", body = ErrorBody)
    )
)]
pub async fn define_coupon(
    State(app): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CouponDefinitionRequest>,
) -> Result<(StatusCode, Json<CouponResponse>), ApiError> {
    caller.require(Scope::Operator)?;
    let kind = CouponKind::parse(&body.kind).map_err(coupon_error)?;
    let def = CouponDefinition {
        id: body.id,
        kind,
        amount_off: body.amount_off,
        currency: body.currency,
        min_spend_minor: body.min_spend_minor,
        valid_from_ms: body.valid_from_ms,
        valid_until_ms: body.valid_until_ms,
    };
    if def.amount_off > MAX_PRICE_MINOR || def.min_spend_minor > MAX_PRICE_MINOR {
        return Err(ApiError::bad_request(
            "INVALID_COUPON",
            format!("amounts must be at most {MAX_PRICE_MINOR}"),
        ));
    }
    let stored = coupons::define(&app.orders.db, &def)
        .await
        .map_err(coupon_error)?;
    let codes = coupons::codes(&app.orders.db, &stored.id)
        .await
        .map_err(ApiError::database)?;
    Ok((StatusCode::CREATED, Json(coupon_response(stored, codes))))
}

/// Issue codes under a definition (operators only). Idempotent by code; a code already issued
/// under other terms is `409`.
#[utoipa::path(
    post,
    path = "/v1/coupons/{id}/codes",
    params(("id" = String, Path)),
    request_body = IssueCouponsRequest,
    responses(
        (status = 200, body = [CouponCodeResponse]),
        (status = 400, description = "not a valid code or customer", body = ErrorBody),
        (status = 404, description = "no such definition", body = ErrorBody),
        (status = 409, description = "a code exists with other terms", body = ErrorBody)
    )
)]
pub async fn issue_coupons(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<IssueCouponsRequest>,
) -> Result<Json<Vec<CouponCodeResponse>>, ApiError> {
    caller.require(Scope::Operator)?;
    if body.codes.is_empty() || body.codes.len() > 1000 {
        return Err(ApiError::bad_request(
            "INVALID_COUPON",
            "issue 1..=1000 codes at a time",
        ));
    }
    if !orderflow_domain::is_coupon_code(&id) {
        return Err(ApiError::not_found(
            "UNKNOWN_COUPON",
            format!("coupon definition {id}"),
        ));
    }
    let mut issued = Vec::with_capacity(body.codes.len());
    for code in &body.codes {
        let c = coupons::issue(&app.orders.db, &id, body.customer_id.as_deref(), code)
            .await
            .map_err(coupon_error)?;
        issued.push(c.into());
    }
    Ok(Json(issued))
}

/// A definition and its codes (operators only).
#[utoipa::path(
    get,
    path = "/v1/coupons/{id}",
    params(("id" = String, Path)),
    responses(
        (status = 200, body = CouponResponse),
        (status = 404, description = "no such definition", body = ErrorBody)
    )
)]
pub async fn get_coupon(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<CouponResponse>, ApiError> {
    caller.require(Scope::Operator)?;
    let unknown = || ApiError::not_found("UNKNOWN_COUPON", format!("coupon definition {id}"));
    if !orderflow_domain::is_coupon_code(&id) {
        return Err(unknown());
    }
    let def = coupons::definition(&app.orders.db, &id)
        .await
        .map_err(ApiError::database)?
        .ok_or_else(unknown)?;
    let codes = coupons::codes(&app.orders.db, &id)
        .await
        .map_err(ApiError::database)?;
    Ok(Json(coupon_response(def, codes)))
}
