//! The one error type of the HTTP API: a status, a stable machine-readable code and a human message,
//! always as `{"error": {"code": "...", "message": "..."}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use orderflow_activities::failure::Classified;
use orderflow_activities::providers::ProviderError;
use orderflow_client::orders::{OrderOpError, Refusal};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `MISSING_IDEMPOTENCY_KEY`, `INVALID_JSON`, `INVALID_ORDER`,
    /// `UNKNOWN_SKU`, `UNKNOWN_PROVIDER`, `PROVIDER_REQUIRED`, `PRICING` (422), `IDEMPOTENCY_KEY_REUSED`,
    /// `ORDER_NOT_FOUND`, `ORDER_NOT_CANCELLABLE`, `ORDER_STATE_CONFLICT`, `ORDER_FINISHED`,
    /// `WRONG_PROVIDER`, `SANDBOX_REFUSED` (409), `PAYLOAD_TOO_LARGE`, `TEMPORAL_UNAVAILABLE`,
    /// `DATABASE_UNAVAILABLE`, `PROVIDER_UNAVAILABLE` (503), ...
    pub code: String,
    /// For people; may change wording between versions.
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }

    pub fn database(err: sqlx::Error) -> Self {
        tracing::warn!(error = %err, "database error");
        Self::unavailable(
            "DATABASE_UNAVAILABLE",
            "the orders database is unavailable; retry later",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<OrderOpError> for ApiError {
    fn from(err: OrderOpError) -> Self {
        match err {
            OrderOpError::UnknownOrder(id) => {
                ApiError::not_found("ORDER_NOT_FOUND", format!("unknown order {id}"))
            }
            // The caller's mistake in the request itself; the rest conflict with the order's state.
            OrderOpError::Refused {
                refusal: refusal @ Refusal::InvalidInput(_),
                message,
            } => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, refusal.code(), message),
            OrderOpError::Refused { refusal, message } => {
                ApiError::new(StatusCode::CONFLICT, refusal.code(), message)
            }
            OrderOpError::Timeout { .. } => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "ORDER_TIMEOUT",
                err.to_string(),
            ),
            OrderOpError::Temporal(source) => {
                tracing::warn!(error = %source, "Temporal error");
                ApiError::unavailable(
                    "TEMPORAL_UNAVAILABLE",
                    "the workflow service is unavailable; retry later",
                )
            }
            // The sandbox's own store is our database: the same answer as any database outage.
            OrderOpError::Sandbox(ProviderError::Store(e)) if e.retryable() => {
                ApiError::database(e)
            }
            OrderOpError::Sandbox(err) if err.retryable() => {
                tracing::warn!(error = %err, "sandbox gateway error");
                ApiError::unavailable(
                    err.code(),
                    "the payment gateway is unavailable; retry later",
                )
            }
            OrderOpError::Sandbox(err) => {
                ApiError::new(StatusCode::CONFLICT, "SANDBOX_REFUSED", err.to_string())
            }
            OrderOpError::Db(e) => ApiError::database(e),
        }
    }
}
