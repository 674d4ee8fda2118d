//! Operator actions over HTTP, for keys with the `operator` scope: stock levels and recounts, and
//! catalog prices. The same operations as `orderflow stock` and `orderflow catalog`, which talk
//! to the database directly.

use super::error::{ApiError, ErrorBody};
use super::{ApiJson, AppState};
use crate::api_keys::Scope;
use crate::auth::Caller;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
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
