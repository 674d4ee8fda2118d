//! # orderflow-http
//!
//! One job: `orderflow serve`, the HTTP shim. It verifies, records, and starts / signals / updates
//! workflows (through `orderflow-client`) — it never decides anything about an order itself.
//!
//! * [`orders`]: `POST /v1/orders`, `GET /v1/orders/{id}`, `POST /v1/orders/{id}/cancel`,
//!   `POST /v1/orders/{id}/resolve`, each for callers with an API key ([`auth`], [`api_keys`]).
//! * [`operations`]: operators' `GET /v1/stock`, `PUT /v1/stock/{sku}`, `PUT /v1/catalog/{sku}`.
//! * [`webhooks`]: `POST /v1/webhooks/{provider}`, the same pipeline for every provider.
//! * [`webhook_adapters`]: the [`webhook_adapters::WebhookAdapter`] trait that verifies and parses
//!   a provider's callbacks on raw bytes: `sandbox`, `stripe`, and the `Stripe-Signature` scheme.
//! * [`callbacks`]: the webhook callback log and the orders API's idempotency keys.
//! * [`checkout`]: the sandbox gateway's hosted page, `GET /sandbox/checkout/{payment_no}`;
//!   mounted only when the sandbox is switched on (`ORDERFLOW_SANDBOX`, development only).
//! * `GET /openapi.json` (generated from the handlers, [`openapi`]).
//! * The admin listener ([`admin_router`], `ORDERFLOW_ADMIN_LISTEN`, this host by default):
//!   `GET /metrics` (Prometheus, see [`metrics`]), `GET /healthz`, `GET /readyz`.
//! * [`server`]: the accept loop under both (slow headers cut off, connections per client capped).
//!
//! Every error the public listener sends, routed or not, is `{"error": {"code", "message"}}`
//! ([`error`]), except a webhook's answer, which is in its provider's format.
//!
//! [`router`] is a plain function of the state, so tests can drive it with or without a socket.

pub mod api_keys;
pub mod auth;
pub mod callbacks;
pub mod checkout;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod operations;
pub mod orders;
pub mod pay_page;
pub mod refunds;
pub mod server;
pub mod trace_context;
pub mod webhook_adapters;
pub mod webhooks;
pub mod whole_number;

use crate::webhook_adapters::WebhookAdapter;
use crate::webhook_adapters::alipay::AlipayWebhooks;
use crate::webhook_adapters::sandbox::SandboxWebhooks;
use crate::webhook_adapters::stripe::StripeWebhooks;
use crate::webhook_adapters::wechatpay::WechatPayWebhooks;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use bytes::Bytes;
use error::ApiError;
use orderflow_client::orders::Orders;
use orderflow_worker::settings::ExposeSecret;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tower_http::trace::TraceLayer;

/// Largest request body accepted anywhere (`413` above it).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The shim's settings live with every other setting, in `orderflow_worker::settings`.
pub use orderflow_worker::settings::{DEV_SANDBOX_WEBHOOK_SECRET, ServeSettings};

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub orders: Orders,
    pub adapters: Arc<BTreeMap<&'static str, Arc<dyn WebhookAdapter>>>,
    pub settings: Arc<ServeSettings>,
    pub http: reqwest::Client,
    pub metrics: Arc<metrics::ShimMetrics>,
    pub limits: Arc<auth::Limits>,
}

impl AppState {
    /// Fails when a provider's credentials are configured but cannot be read (a missing key file,
    /// a malformed key): the error says which, never a key's content.
    pub fn new(orders: Orders, settings: ServeSettings) -> anyhow::Result<Self> {
        let wechatpay = settings.wechatpay.load()?;
        let alipay = settings.alipay.load()?;
        let mut adapters: BTreeMap<&'static str, Arc<dyn WebhookAdapter>> = BTreeMap::new();
        // A development tool: only when switched on (`ORDERFLOW_SANDBOX`).
        if settings.sandbox.enabled {
            let sandbox: Arc<dyn WebhookAdapter> = Arc::new(SandboxWebhooks::new(
                settings
                    .sandbox_webhook_secret
                    .expose_secret()
                    .as_bytes()
                    .to_vec(),
            ));
            adapters.insert(sandbox.provider(), sandbox);
        }
        let secrets: Vec<Vec<u8>> = settings
            .stripe_webhook_secrets
            .iter()
            .map(|s| s.expose_secret().trim())
            .filter(|s| !s.is_empty())
            .map(|s| s.as_bytes().to_vec())
            .collect();
        if !secrets.is_empty() {
            let mut stripe = StripeWebhooks::new(secrets);
            if let Some(account) = &settings.stripe_account_id {
                stripe = stripe.with_account_id(account.clone());
            }
            let stripe: Arc<dyn WebhookAdapter> = Arc::new(stripe);
            adapters.insert(stripe.provider(), stripe);
        }
        if let Some(config) = &wechatpay {
            let wechatpay: Arc<dyn WebhookAdapter> =
                Arc::new(WechatPayWebhooks::new(Arc::new(config.clone())));
            adapters.insert(wechatpay.provider(), wechatpay);
        }
        if let Some(config) = &alipay {
            let alipay: Arc<dyn WebhookAdapter> =
                Arc::new(AlipayWebhooks::new(Arc::new(config.clone())));
            adapters.insert(alipay.provider(), alipay);
        }
        Ok(AppState {
            orders,
            adapters: Arc::new(adapters),
            limits: Arc::new(auth::Limits::new(&settings.limits)),
            settings: Arc::new(settings),
            metrics: Arc::new(metrics::ShimMetrics::new()),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("an HTTP client"),
        })
    }

    pub fn with_adapter(mut self, adapter: Arc<dyn WebhookAdapter>) -> Self {
        let mut adapters = (*self.adapters).clone();
        adapters.insert(adapter.provider(), adapter);
        self.adapters = Arc::new(adapters);
        self
    }

    /// Whether orders may name `provider` here: the shim has its webhook adapter, so it can
    /// hear that the order was paid.
    pub fn has_provider(&self, provider: &str) -> bool {
        self.adapters.contains_key(provider)
    }

    pub fn sandbox_webhook_url(&self) -> String {
        self.settings
            .sandbox_webhook_url
            .clone()
            .unwrap_or_else(|| {
                format!(
                    "{}/v1/webhooks/sandbox",
                    self.orders.public_url.trim_end_matches('/')
                )
            })
    }
}

pub fn router(state: AppState) -> Router {
    let timeout = Duration::from_secs(state.settings.request_timeout_secs);
    Router::new()
        .route("/v1/orders", post(orders::create_order))
        .route("/v1/orders/{order_id}", get(orders::get_order))
        .route("/v1/orders/{order_id}/cancel", post(orders::cancel_order))
        .route("/v1/orders/{order_id}/resolve", post(orders::resolve_order))
        .route(
            "/v1/orders/{order_id}/refunds",
            post(refunds::refund_order).get(refunds::list_refunds),
        )
        .route("/v1/stock", get(operations::list_stock))
        .route("/v1/stock/{sku}", put(operations::set_stock))
        .route("/v1/catalog/{sku}", put(operations::put_catalog_item))
        .route("/v1/coupons", post(operations::define_coupon))
        .route("/v1/coupons/{id}", get(operations::get_coupon))
        .route("/v1/coupons/{id}/codes", post(operations::issue_coupons))
        .route(
            "/v1/webhooks/{provider}",
            post(webhooks::receive_webhook).route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                auth::webhook_limit,
            )),
        )
        .merge(checkout::routes(state.settings.sandbox.enabled))
        .merge(pay_page::routes())
        .route("/openapi.json", get(openapi::serve))
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::wrong_method)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            timeout,
            error::time_limit,
        ))
        .layer(axum::middleware::from_fn(error::json_errors))
        .layer(TraceLayer::new_for_http().make_span_with(trace_context::make_span))
        .with_state(state)
}

/// The admin listener's routes: for the orchestrator and Prometheus, never the public.
pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics::serve_metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::wrong_method)
        .with_state(state)
}

/// The connection limits of both listeners, from the settings.
pub fn connection_limits(settings: &ServeSettings) -> server::ConnectionLimits {
    server::ConnectionLimits {
        header_read_timeout: Duration::from_secs(settings.limits.header_read_timeout_secs.max(1)),
        max_per_client: settings.limits.max_connections_per_client.max(1),
    }
}

/// Serves the API and the admin listener until ctrl-c / SIGTERM, then finishes in-flight
/// requests.
pub async fn serve(state: AppState) -> anyhow::Result<()> {
    state.settings.sandbox.warn_if_on("orderflow serve");
    if let Some(provider) = &state.settings.default_provider
        && !state.has_provider(provider)
    {
        anyhow::bail!(
            "ORDERFLOW_DEFAULT_PROVIDER={provider:?} is not a provider configured here \
             (sandbox needs ORDERFLOW_SANDBOX=true, stripe needs STRIPE_WEBHOOK_SECRETS)"
        );
    }
    let bind = |address: String| async move {
        tokio::net::TcpListener::bind(&address)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {address}: {e}"))
    };
    let listener = bind(state.settings.listen.clone()).await?;
    let admin = bind(state.settings.admin_listen.clone()).await?;
    tracing::info!(address = %listener.local_addr()?, admin = %admin.local_addr()?, "orderflow serve listening");
    // Orders reserved at the edge whose start did not happen (a crash, an outage) are started
    // here, also when edge reservation has since been turned off.
    let relay = tokio::spawn(orderflow_client::outbox::run(
        state.orders.clone(),
        Default::default(),
        std::time::Duration::from_secs(1),
        orderflow_client::outbox::MAX_HOLD,
    ));
    let limits = connection_limits(&state.settings);
    let grace = Duration::from_secs(state.settings.request_timeout_secs);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let admin = tokio::spawn(server::serve(
        admin,
        admin_router(state.clone()),
        limits,
        async move {
            let mut stopped = stopped;
            let _ = stopped.wait_for(|stop| *stop).await;
        },
        grace,
    ));
    server::serve(
        listener,
        router(state),
        limits,
        orderflow_worker::shutdown_signal(),
        grace,
    )
    .await;
    let _ = stop.send(true);
    let _ = admin.await;
    relay.abort();
    Ok(())
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "up")))]
pub async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

/// Temporal and the database answer.
#[utoipa::path(get, path = "/readyz", responses(
    (status = 200, description = "ready"),
    (status = 503, description = "a dependency is down", body = error::ErrorBody)
))]
pub async fn readyz(State(app): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    app.orders.db.ping().await.map_err(ApiError::database)?;
    app.orders
        .client
        .connection()
        .workflow_service()
        .get_system_info(tonic::Request::new(Default::default()))
        .await
        .map_err(|e| {
            ApiError::unavailable("TEMPORAL_UNAVAILABLE", format!("Temporal: {}", e.message()))
        })?;
    Ok(Json(serde_json::json!({"status": "ready"})))
}

/// A JSON body: `413` over the limit, `400` for anything that is not exactly the expected shape
/// (malformed JSON, wrong types, unknown fields).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = raw_body(req, state).await?;
        serde_json::from_slice(&bytes).map(ApiJson).map_err(|e| {
            ApiError::bad_request("INVALID_JSON", format!("invalid request body: {e}"))
        })
    }
}

/// The raw body with the size limit turned into our `413`.
pub async fn raw_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                format!("request bodies are limited to {MAX_BODY_BYTES} bytes"),
            )
        } else {
            ApiError::bad_request("UNREADABLE_BODY", rejection.body_text())
        }
    })
}
