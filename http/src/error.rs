//! The one error type of the HTTP API: a status, a stable machine-readable code and a human message,
//! always as `{"error": {"code": "...", "message": "..."}}`.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use orderflow_activities::failure::Classified;
use orderflow_activities::providers::ProviderError;
use orderflow_client::orders::{OrderOpError, Refusal};
use serde::Serialize;
use std::time::Duration;
use utoipa::ToSchema;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// `Retry-After` (seconds) on 429 and 503, `WWW-Authenticate` on 401.
    pub headers: Vec<(HeaderName, HeaderValue)>,
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
            headers: Vec::new(),
        }
    }

    /// `401`: no usable API key. Says how to authenticate, as RFC 9110 asks.
    pub fn unauthenticated(code: &'static str, message: impl Into<String>) -> Self {
        let mut err = Self::new(StatusCode::UNAUTHORIZED, code, message);
        err.headers.push((
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"orderflow\""),
        ));
        err
    }

    /// Tells the caller when to come back (`429`, `503`).
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.headers
            .push((header::RETRY_AFTER, HeaderValue::from(seconds.max(1))));
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// `503`: a dependency is down or the shim sheds load; worth retrying soon.
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message).retry_after(1)
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
        let mut response = (self.status, Json(body)).into_response();
        response.headers_mut().extend(self.headers);
        response
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

/// The code for an error answer that did not come from a handler (a framework rejection, an
/// unrouted path): the status's own name, in the API's style.
fn code_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "BAD_REQUEST",
        StatusCode::NOT_FOUND => "NOT_FOUND",
        StatusCode::METHOD_NOT_ALLOWED => "METHOD_NOT_ALLOWED",
        StatusCode::REQUEST_TIMEOUT => "REQUEST_TIMEOUT",
        StatusCode::PAYLOAD_TOO_LARGE => "PAYLOAD_TOO_LARGE",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "UNSUPPORTED_MEDIA_TYPE",
        StatusCode::UNPROCESSABLE_ENTITY => "UNPROCESSABLE",
        StatusCode::TOO_MANY_REQUESTS => "RATE_LIMITED",
        s if s.is_server_error() => "UNAVAILABLE",
        _ => "REQUEST_REFUSED",
    }
}

/// Fallback for paths no route matches.
pub async fn no_route(uri: Uri) -> ApiError {
    ApiError::not_found("NOT_FOUND", format!("no route for {}", uri.path()))
}

/// Fallback for a known path with the wrong method (axum adds the `Allow` header).
pub async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// The request timeout, answered in the API's shape (`408`).
pub async fn time_limit(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "REQUEST_TIMEOUT",
            format!("the request took longer than {} s", limit.as_secs()),
        )
        .into_response(),
    }
}

/// Gives every error answer the documented shape, whatever produced it (an extractor's plain-text
/// rejection, say). Webhook answers are left alone: they are in their provider's format.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let provider_format = request.uri().path().starts_with("/v1/webhooks/");
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if provider_format || is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    let mut err = ApiError::new(status, code_for(status), message);
    err.headers.extend(
        parts
            .headers
            .into_iter()
            .filter_map(|(name, value)| Some((name?, value)))
            .filter(|(name, _)| *name != header::CONTENT_TYPE && *name != header::CONTENT_LENGTH),
    );
    err.into_response()
}
