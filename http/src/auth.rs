//! Who is calling, and how much they may ask: the API's bearer keys and the shim's limits.
//!
//! Every orders-API handler takes a [`Caller`]; the extractor answers `401` before the handler
//! runs when the `Authorization: Bearer <key>` header is missing, malformed, unknown or revoked,
//! and `429` when the key is over its rate. The handler then asks for its scope
//! ([`Caller::require`], `403`) and, for an order, whether the caller may see it ([`visible`]:
//! another client's order is `404`, exactly as an unknown one). Webhooks are not here: providers
//! sign them, and they have a limiter of their own ([`Limits::webhook`]).

use crate::AppState;
use crate::api_keys::{self, Refused, Scope};
use crate::error::ApiError;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use orderflow_activities::sql;
use orderflow_worker::settings::ShimLimits;
use std::num::NonZeroU32;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use crate::api_keys::Caller;

/// The shim's limiters, shared by every request.
pub struct Limits {
    api: DefaultKeyedRateLimiter<String>,
    webhooks: DefaultKeyedRateLimiter<String>,
    creates: Arc<Semaphore>,
}

fn per_second(rate: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(NonZeroU32::new(burst).unwrap_or(rate))
}

impl Limits {
    pub fn new(settings: &ShimLimits) -> Self {
        Limits {
            api: RateLimiter::keyed(per_second(settings.api_rate_per_sec, settings.api_burst)),
            webhooks: RateLimiter::keyed(per_second(
                settings.webhook_rate_per_sec,
                settings.webhook_rate_per_sec.saturating_mul(2),
            )),
            creates: Arc::new(Semaphore::new(settings.max_inflight_creates.max(1))),
        }
    }

    fn check(limiter: &DefaultKeyedRateLimiter<String>, key: &str) -> Result<(), u64> {
        limiter.check_key(&key.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            // Whole seconds, rounded up: coming back after Retry-After always finds a token.
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }

    /// A slot for one order creation, held until the handler returns; `503` when all are taken.
    pub fn creation_slot(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.creates.clone().try_acquire_owned().map_err(|_| {
            ApiError::unavailable(
                "OVERLOADED",
                "too many orders are being created right now; retry shortly",
            )
        })
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Caller, ApiError> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::unauthenticated(
                "UNAUTHENTICATED",
                "this route needs an API key: Authorization: Bearer <key>",
            ));
        };
        let key = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::unauthenticated(
                    "INVALID_API_KEY",
                    "the Authorization header must be `Bearer <key>`",
                )
            })?;
        let caller = match api_keys::authenticate(&app.orders.db, key)
            .await
            .map_err(ApiError::database)?
        {
            Ok(caller) => caller,
            Err(Refused::Revoked) => {
                return Err(ApiError::unauthenticated(
                    "API_KEY_REVOKED",
                    "this API key has been revoked",
                ));
            }
            Err(Refused::Malformed | Refused::Unknown) => {
                return Err(ApiError::unauthenticated(
                    "INVALID_API_KEY",
                    "this API key is not valid",
                ));
            }
        };
        Limits::check(&app.limits.api, &caller.key_id).map_err(|secs| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMITED",
                format!("this API key is over its request rate; retry in {secs} s"),
            )
            .retry_after(secs)
        })?;
        tracing::Span::current().record("client", caller.client.as_str());
        Ok(caller)
    }
}

impl Caller {
    /// `403` unless the key has `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.has(scope) {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "MISSING_SCOPE",
            format!("this API key lacks the scope {scope}"),
        ))
    }
}

/// Whether the caller may see `order_id`: its own order, or any order for an operator. The
/// answer for another client's order is the answer for an unknown one, so ids cannot be probed.
pub async fn visible(app: &AppState, caller: &Caller, order_id: &str) -> Result<(), ApiError> {
    // An id of no possible order is unknown to everyone (and not echoed in full).
    orderflow_client::orders::known_shape(order_id)?;
    if caller.has(Scope::Operator) {
        return Ok(());
    }
    let owned = sql!("SELECT 1 FROM client_orders WHERE order_id = $1 AND client_id = $2")
        .on(&app.orders.db)
        .bind(order_id)
        .bind(caller.client.as_str())
        .fetch_optional(app.orders.db.pool())
        .await
        .map_err(ApiError::database)?;
    match owned {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found(
            "ORDER_NOT_FOUND",
            format!("unknown order {order_id}"),
        )),
    }
}

/// Webhooks' own limit, per provider: a flood of forged calls is slowed without touching the
/// API's keys, and an API flood never delays a provider.
pub async fn webhook_limit(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let named = request.uri().path().rsplit('/').next().unwrap_or_default();
    // Unknown names share one bucket, so made-up names cannot grow the limiter's table.
    let provider = if app.adapters.contains_key(named) {
        named.to_owned()
    } else {
        "(unknown)".to_owned()
    };
    match Limits::check(&app.limits.webhooks, &provider) {
        Ok(()) => next.run(request).await,
        Err(secs) => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            format!("too many webhook requests for {provider:?}; retry in {secs} s"),
        )
        .retry_after(secs)
        .into_response(),
    }
}
