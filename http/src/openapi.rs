//! `GET /openapi.json`: the API's contract. The handlers' annotations give the paths, bodies and
//! their own answers; [`document`] adds what every route shares, so it is written once: the
//! bearer-key security scheme and the statuses of the shared layers (401/403/429 from
//! [`crate::auth`], 408 from the request timeout, 413 from the body limit, 503/504 when a
//! dependency is down), the `Retry-After` header, and the links from a created order to the
//! operations on it. `tests/tests/openapi_contract.rs` holds the running shim to this document
//! with schemathesis.

use crate::orders::IDEMPOTENCY_KEY_PATTERN;
use crate::{error, operations, orders, refunds, webhooks};
use axum::Json;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Orderflow API",
        description = "Start and follow orders; receive payment-provider webhooks. Every \
            /v1/orders route needs an API key (`Authorization: Bearer ofk_...`, from \
            `orderflow api-keys create`) with the scope the route names; a client sees only its \
            own orders (another client's order answers 404, as an unknown one does)."
    ),
    paths(
        orders::create_order,
        orders::get_order,
        orders::cancel_order,
        orders::resolve_order,
        refunds::refund_order,
        refunds::list_refunds,
        operations::list_stock,
        operations::set_stock,
        operations::put_catalog_item,
        operations::define_coupon,
        operations::issue_coupons,
        operations::get_coupon,
        webhooks::receive_webhook
    ),
    components(schemas(
        orders::CreateOrderRequest,
        orders::OrderLineRequest,
        orders::CancelOrderRequest,
        orders::ResolveOrderRequest,
        orders::ResolveActionRequest,
        orders::OrderResponse,
        refunds::RefundOrderRequest,
        refunds::RefundLineRequest,
        refunds::RefundResponse,
        refunds::RefundLineResponse,
        operations::StockResponse,
        operations::SetStockRequest,
        operations::CatalogItemRequest,
        operations::CatalogItemResponse,
        operations::CouponDefinitionRequest,
        operations::IssueCouponsRequest,
        operations::CouponResponse,
        operations::CouponCodeResponse,
        error::ErrorBody,
        error::ErrorDetail
    ))
)]
struct ApiDoc;

/// The scope each authenticated operation needs, by operation id.
const SCOPES: [(&str, &str); 12] = [
    ("create_order", "orders:create"),
    ("get_order", "orders:read"),
    ("cancel_order", "orders:cancel (or operator)"),
    ("resolve_order", "operator"),
    ("refund_order", "operator"),
    ("list_refunds", "operator"),
    ("list_stock", "operator"),
    ("set_stock", "operator"),
    ("put_catalog_item", "operator"),
    ("define_coupon", "operator"),
    ("issue_coupons", "operator"),
    ("get_coupon", "operator"),
];

/// Order ids, as `OrderId` accepts them.
fn order_id_schema() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9_-]+$"})
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    })
}

fn with_retry_after(mut response: Value) -> Value {
    response["headers"] = json!({"Retry-After": {
        "description": "seconds to wait before trying again",
        "required": true,
        "schema": {"type": "integer", "minimum": 1}
    }});
    response
}

/// The whole document.
pub fn document() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
    doc["components"]["securitySchemes"] = json!({"api_key": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key from `orderflow api-keys create`, shown once at creation."
    }});
    let Some(paths) = doc["paths"].as_object_mut() else {
        return doc;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (_method, op) in item.iter_mut() {
            let id = op["operationId"].as_str().unwrap_or_default().to_owned();
            let responses = &mut op["responses"];
            responses["408"] = error_response("the request took too long");
            responses["503"] = with_retry_after(error_response(
                "a dependency is down, or the shim is shedding load; retry after Retry-After",
            ));
            if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
                for param in params {
                    if param["name"] == "order_id" {
                        param["schema"] = order_id_schema();
                    }
                    if param["name"] == "sku" {
                        param["schema"] = json!({"type": "string", "minLength": 1, "maxLength": 40,
                                                 "pattern": "^[A-Z0-9_-]+$"});
                    }
                    if param["name"] == "Idempotency-Key" {
                        param["required"] = json!(true);
                        param["schema"] = json!({
                            "type": "string", "minLength": 1, "maxLength": 255,
                            "pattern": IDEMPOTENCY_KEY_PATTERN
                        });
                    }
                }
            }
            if op.get("requestBody").is_some() {
                op["responses"]["413"] = error_response("body over 64 KiB");
            }
            if path.starts_with("/v1/webhooks/") {
                op["responses"]["429"] =
                    with_retry_after(error_response("too many webhook requests"));
                continue;
            }
            let Some((_, scope)) = SCOPES.iter().find(|(op_id, _)| *op_id == id) else {
                continue;
            };
            op["security"] = json!([{"api_key": []}]);
            let responses = &mut op["responses"];
            responses["400"] = error_response("malformed request: JSON, headers or fields");
            responses["401"] = error_response(
                "no API key, or one that is malformed, unknown or revoked (WWW-Authenticate: Bearer)",
            );
            responses["403"] = error_response(&format!("the API key lacks the scope {scope}"));
            responses["429"] = with_retry_after(error_response(
                "this API key is over its request rate; retry after Retry-After",
            ));
            if path.contains("{order_id}") {
                responses["404"] = error_response("no such order, or another client's");
                responses["504"] = error_response("the order's workflow did not answer in time");
            }
            if path.contains("{sku}") {
                responses["404"] = error_response(
                    "no such SKU: not the shape of one, or (stock) not in the catalog",
                );
            }
        }
    }
    let currencies: Vec<&str> = orderflow_domain::Currency::codes().collect();
    doc["components"]["schemas"]["CatalogItemRequest"]["properties"]["currency"]["enum"] =
        json!(currencies);
    let refund = &mut doc["components"]["schemas"]["RefundOrderRequest"];
    refund["properties"]["currency"]["enum"] = json!(currencies);
    refund["properties"]["reason"]["pattern"] = json!("\\S");
    // Exactly one of an amount, lines or everything; stock goes back only with lines.
    refund["oneOf"] = json!([
        {"required": ["amount_minor", "currency"],
         "properties": {"amount_minor": {"type": "integer"}, "currency": {"type": "string"},
                        "lines": false, "all": {"const": false}, "restock": {"const": false}}},
        {"required": ["lines"],
         "properties": {"lines": {"type": "array"}, "amount_minor": false, "currency": false,
                        "all": {"const": false}}},
        {"required": ["all"],
         "properties": {"all": {"const": true}, "amount_minor": false, "currency": false,
                        "lines": false, "restock": {"const": false}}}
    ]);
    doc["components"]["schemas"]["CouponDefinitionRequest"]["properties"]["currency"]["enum"] =
        json!(currencies);
    // Each code has the shape `POST /v1/orders` takes in `coupon_code`.
    doc["components"]["schemas"]["IssueCouponsRequest"]["properties"]["codes"]["items"] = json!({
        "type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9_-]+$"
    });
    // A cancel may come without a body (no reason given).
    doc["paths"]["/v1/orders/{order_id}/cancel"]["post"]["requestBody"]["required"] = json!(false);
    link_created_orders(&mut doc);
    doc
}

/// A created (or repeated) order links to the operations on it, for clients and for stateful
/// testing.
fn link_created_orders(doc: &mut Value) {
    let links = json!({
        "GetOrder": {"operationId": "get_order", "parameters": {"order_id": "$response.body#/order_id"}},
        "CancelOrder": {"operationId": "cancel_order", "parameters": {"order_id": "$response.body#/order_id"}},
        "ResolveOrder": {"operationId": "resolve_order", "parameters": {"order_id": "$response.body#/order_id"}},
        "RefundOrder": {"operationId": "refund_order", "parameters": {"order_id": "$response.body#/order_id"}},
        "ListRefunds": {"operationId": "list_refunds", "parameters": {"order_id": "$response.body#/order_id"}}
    });
    for status in ["200", "201", "202"] {
        let response = &mut doc["paths"]["/v1/orders"]["post"]["responses"][status];
        if response.is_object() {
            response["links"] = links.clone();
        }
    }
}

/// The document is the same for the life of the process: built once.
pub async fn serve() -> impl IntoResponse {
    static DOCUMENT: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    Json(DOCUMENT.get_or_init(document).clone())
}
