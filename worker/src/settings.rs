//! Every setting of Orderflow's binaries, from flags with environment fallbacks, in one place.
//!
//! * [`ConnectionSettings`]: where the pieces meet (the orders database, the task queue, the
//!   shim's public URL, how to reach Temporal). Declared once, flattened into both binaries.
//! * [`WorkerSettings`]: `orderflow-worker`, with its [`WorkerTuning`].
//! * [`SandboxSettings`]: the sandbox gateway's switch (off by default; development only),
//!   declared once, flattened into the worker and the shim.
//! * [`CliSettings`]: the global flags of `orderflow`.
//! * [`ServeSettings`]: `orderflow serve`, the HTTP shim.
//!
//! Temporal's own connection settings (`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`,
//! `TEMPORAL_API_KEY`, TLS, `temporal.toml`) are not here: the SDK's envconfig reads them (see
//! [`crate::connect_temporal`]), and they are never held in these structs.
//!
//! Secrets are [`SecretString`]s and the database URL a [`DatabaseUrl`]: `{:?}` never prints
//! them (a URL shows without its password), `--help` does not show their variables' values, and
//! code reads them with `expose_secret()` only where it hands them on. Defaults are the
//! constants below; [`defaults`] builds a struct from the same declarations clap reads.

use clap::Args;
pub use orderflow_activities::db::DEFAULT_DATABASE_URL;
pub use orderflow_workflows::DEFAULT_TASK_QUEUE;
use orderflow_workflows::OrderWorkflowConfig;
pub use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use temporalio_sdk::WorkerOptions;

/// Where the shim listens by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Where the sandbox's hosted checkout page is served: the shim at [`DEFAULT_LISTEN`].
pub const DEFAULT_PUBLIC_URL: &str = "http://127.0.0.1:8080";
/// The Temporal UI of `temporal server start-dev`.
pub const DEFAULT_TEMPORAL_UI_URL: &str = "http://localhost:8233";
/// Seconds running activities get to finish after ctrl-c / SIGTERM.
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 20;
/// Seconds before the shim answers a request 408.
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 15;
/// Seconds `POST /v1/orders` waits for the payment parameters before answering 202.
pub const DEFAULT_CREATE_WAIT_SECS: u64 = 10;
/// Where the shim serves `/metrics` and its health endpoints: this host only.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9465";
/// Requests per second one API key may make, sustained; and how many at once above that.
pub const DEFAULT_API_RATE_PER_SEC: u32 = 20;
pub const DEFAULT_API_BURST: u32 = 40;
/// Webhook requests per second per provider, sustained (bursts twice that): far above any
/// provider's real rate, a brake only on a flood of forged calls.
pub const DEFAULT_WEBHOOK_RATE_PER_SEC: u32 = 500;
/// Order creations in flight at once before the shim answers 503 instead of queueing more work
/// on the database and Temporal.
pub const DEFAULT_MAX_INFLIGHT_CREATES: usize = 256;
/// Seconds a client gets to send its request headers (slow-header clients are cut off).
pub const DEFAULT_HEADER_READ_TIMEOUT_SECS: u64 = 10;
/// Open connections one client address may hold.
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 64;
/// Development-only default for the sandbox webhook secret. Real deployments set their own.
pub const DEV_SANDBOX_WEBHOOK_SECRET: &str = "sandbox-dev-secret";

/// What is shown instead of a password.
const REDACTED: &str = "***";

/// Where Orderflow's pieces meet, the same for the worker and the CLI.
#[derive(Debug, Clone, Args)]
pub struct ConnectionSettings {
    /// Orders database: sqlite://path/to/file.db or postgres://user:password@host:port/db.
    #[arg(long, global = true, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: DatabaseUrl,

    /// Task queue the workers poll and orders are started on.
    #[arg(long, global = true, env = "ORDERFLOW_TASK_QUEUE", default_value = DEFAULT_TASK_QUEUE)]
    pub task_queue: String,

    /// Public base URL of the HTTP shim, used in sandbox checkout links.
    #[arg(long, global = true, env = "ORDERFLOW_PUBLIC_URL", default_value = DEFAULT_PUBLIC_URL)]
    pub public_url: String,

    /// Temporal frontend address; by default TEMPORAL_ADDRESS / temporal.toml / localhost:7233.
    #[arg(long, global = true)]
    pub temporal_address: Option<String>,

    /// gRPC compression to the Temporal server (see [`GrpcCompressionSetting`]).
    #[arg(long, global = true, env = "ORDERFLOW_GRPC_COMPRESSION", value_enum, default_value_t = GrpcCompressionSetting::Gzip)]
    pub grpc_compression: GrpcCompressionSetting,
}

/// Compression of the gRPC traffic to the Temporal server. `gzip` (the SDK's default) saves
/// bandwidth on a long link, such as to Temporal Cloud; `none` saves CPU on both ends when the
/// server is near (same host or LAN): on the benchmark machine, gzip was a large part of the
/// worker's and the server's CPU per order (BENCHMARKS.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum GrpcCompressionSetting {
    #[default]
    Gzip,
    None,
}

/// Settings of `orderflow-worker`.
#[derive(Debug, Clone, Args)]
pub struct WorkerSettings {
    #[command(flatten)]
    pub connection: ConnectionSettings,

    /// Default time a customer has to pay, in seconds (an order may ask for its own).
    #[arg(long, env = "ORDERFLOW_PAYMENT_TIMEOUT_SECS", default_value_t = orderflow_activities::DEFAULT_PAYMENT_TIMEOUT.as_secs())]
    pub payment_timeout_secs: u64,

    /// Keep the OrderStatus search attribute current. Turn off only for a server without custom
    /// search attributes (the time-skipping test server).
    #[arg(long, env = "ORDERFLOW_SEARCH_ATTRIBUTES", default_value_t = true, action = clap::ArgAction::Set)]
    pub search_attributes: bool,

    /// Stripe secret key (sk_...). When set, orders can pay with provider `stripe`.
    #[arg(long, env = "STRIPE_SECRET_KEY", hide_env_values = true)]
    pub stripe_secret_key: Option<SecretString>,

    /// Base URL of Stripe's API (a stand-in in tests).
    #[arg(long, env = "STRIPE_API_BASE", default_value = orderflow_activities::providers::stripe::DEFAULT_BASE_URL)]
    pub stripe_api_base: String,

    /// Serve Prometheus metrics (the SDK's worker metrics and Orderflow's business metrics) on this
    /// address, e.g. 0.0.0.0:9464. Off when unset.
    #[arg(long, env = "ORDERFLOW_METRICS_ADDRESS")]
    pub metrics_address: Option<std::net::SocketAddr>,

    /// Seconds to let running activities finish after ctrl-c / SIGTERM.
    #[arg(long, env = "ORDERFLOW_SHUTDOWN_GRACE_SECS", default_value_t = DEFAULT_SHUTDOWN_GRACE_SECS)]
    pub shutdown_grace_secs: u64,

    #[command(flatten)]
    pub tuning: WorkerTuning,

    #[command(flatten)]
    pub sandbox: SandboxSettings,

    #[command(flatten)]
    pub wechatpay: WechatPaySettings,

    #[command(flatten)]
    pub alipay: AlipaySettings,

    #[command(flatten)]
    pub events: EventSettings,
}

impl WorkerSettings {
    /// Defaults, as if no flag or variable were set (for tests and embedding).
    pub fn defaults() -> Self {
        defaults()
    }

    pub fn workflow_config(&self) -> OrderWorkflowConfig {
        OrderWorkflowConfig {
            search_attributes: self.search_attributes,
        }
    }
}

/// WeChat Pay API v3 (provider `wechatpay`), declared once and flattened into the worker (which
/// calls the API) and the shim (which verifies and decrypts the notifies). On when
/// `WECHATPAY_MCHID` is set; then the rest is required, and a missing or unreadable piece stops
/// the binary at start with what is wrong (never a key's content).
#[derive(Debug, Clone, Default, Args)]
pub struct WechatPaySettings {
    /// Merchant number (mchid). Setting it switches provider `wechatpay` on.
    #[arg(long, env = "WECHATPAY_MCHID")]
    pub wechatpay_mchid: Option<String>,

    /// The appid payments are made under (official account, mini program or app).
    #[arg(long, env = "WECHATPAY_APPID")]
    pub wechatpay_appid: Option<String>,

    /// Serial number of the merchant API certificate (signs our requests).
    #[arg(long, env = "WECHATPAY_MERCHANT_SERIAL")]
    pub wechatpay_merchant_serial: Option<String>,

    /// PEM file of the merchant API private key (apiclient_key.pem).
    #[arg(long, env = "WECHATPAY_MERCHANT_KEY_FILE")]
    pub wechatpay_merchant_key_file: Option<std::path::PathBuf>,

    /// The APIv3 key (32 characters), which decrypts notifies.
    #[arg(long, env = "WECHATPAY_APIV3_KEY", hide_env_values = true)]
    pub wechatpay_apiv3_key: Option<SecretString>,

    /// Platform certificate PEM files, comma-separated (their serials are read from them).
    #[arg(long, env = "WECHATPAY_PLATFORM_CERT_FILES", value_delimiter = ',')]
    pub wechatpay_platform_cert_files: Vec<std::path::PathBuf>,

    /// Id of the WeChat Pay public key (PUB_KEY_ID_...), with WECHATPAY_PUBLIC_KEY_FILE.
    #[arg(long, env = "WECHATPAY_PUBLIC_KEY_ID")]
    pub wechatpay_public_key_id: Option<String>,

    /// PEM file of the WeChat Pay public key (pub_key.pem).
    #[arg(long, env = "WECHATPAY_PUBLIC_KEY_FILE")]
    pub wechatpay_public_key_file: Option<std::path::PathBuf>,

    /// Base URL of the API (a stand-in in tests and the demo).
    #[arg(long, env = "WECHATPAY_API_BASE", default_value = orderflow_protocols::wechatpay::DEFAULT_API_BASE)]
    pub wechatpay_api_base: String,

    /// Where WeChat Pay sends notifies (https, no query). Default: ORDERFLOW_PUBLIC_URL +
    /// /v1/webhooks/wechatpay.
    #[arg(long, env = "WECHATPAY_NOTIFY_URL")]
    pub wechatpay_notify_url: Option<String>,
}

impl WechatPaySettings {
    /// The merchant's credentials, read from the configured files; `None` when WeChat Pay is off.
    pub fn load(&self) -> anyhow::Result<Option<orderflow_protocols::wechatpay::MerchantConfig>> {
        use anyhow::Context as _;
        use orderflow_protocols::rsa_keys::{Certificate, PrivateKey, PublicKey};
        use orderflow_protocols::wechatpay::{ApiV3Key, MerchantConfig, VerifierKeys};
        let Some(mchid) = self.wechatpay_mchid.clone().filter(|m| !m.is_empty()) else {
            return Ok(None);
        };
        let required = |value: &Option<String>, variable: &str| {
            value
                .clone()
                .filter(|v| !v.is_empty())
                .with_context(|| format!("WECHATPAY_MCHID is set, so {variable} is required"))
        };
        let key_file = self
            .wechatpay_merchant_key_file
            .as_ref()
            .context("WECHATPAY_MCHID is set, so WECHATPAY_MERCHANT_KEY_FILE is required")?;
        let merchant_key = PrivateKey::from_text(&read_key_file(key_file)?)
            .with_context(|| format!("the merchant key in {}", key_file.display()))?;
        let apiv3_key = ApiV3Key::from_text(
            self.wechatpay_apiv3_key
                .as_ref()
                .context("WECHATPAY_MCHID is set, so WECHATPAY_APIV3_KEY is required")?
                .expose_secret(),
        )
        .context("WECHATPAY_APIV3_KEY")?;
        let mut verifier_keys = VerifierKeys::default();
        for file in &self.wechatpay_platform_cert_files {
            let certificate = Certificate::from_pem(&read_key_file(file)?)
                .with_context(|| format!("the platform certificate in {}", file.display()))?;
            verifier_keys = verifier_keys.with_certificate(certificate);
        }
        match (
            &self.wechatpay_public_key_id,
            &self.wechatpay_public_key_file,
        ) {
            (Some(id), Some(file)) => {
                let key = PublicKey::from_text(&read_key_file(file)?)
                    .with_context(|| format!("the WeChat Pay public key in {}", file.display()))?;
                verifier_keys = verifier_keys.with_public_key(id.clone(), key);
            }
            (None, None) => {}
            _ => anyhow::bail!(
                "WECHATPAY_PUBLIC_KEY_ID and WECHATPAY_PUBLIC_KEY_FILE go together: set both or neither"
            ),
        }
        anyhow::ensure!(
            !verifier_keys.is_empty(),
            "WeChat Pay needs a key to verify its answers and notifies: set \
             WECHATPAY_PLATFORM_CERT_FILES and/or WECHATPAY_PUBLIC_KEY_ID + WECHATPAY_PUBLIC_KEY_FILE"
        );
        Ok(Some(MerchantConfig {
            mchid,
            appid: required(&self.wechatpay_appid, "WECHATPAY_APPID")?,
            merchant_serial: required(
                &self.wechatpay_merchant_serial,
                "WECHATPAY_MERCHANT_SERIAL",
            )?,
            merchant_key,
            apiv3_key,
            verifier_keys,
        }))
    }

    /// The notify URL sent with every payment and refund.
    pub fn notify_url(&self, public_url: &str) -> String {
        notify_url_or_default(
            &self.wechatpay_notify_url,
            public_url,
            orderflow_protocols::wechatpay::PROVIDER,
        )
    }
}

/// Alipay (provider `alipay`), declared once and flattened into the worker and the shim. On when
/// `ALIPAY_APP_ID` is set; then the rest is required.
#[derive(Debug, Clone, Default, Args)]
pub struct AlipaySettings {
    /// The application's app_id on the Alipay open platform. Setting it switches provider `alipay` on.
    #[arg(long, env = "ALIPAY_APP_ID")]
    pub alipay_app_id: Option<String>,

    /// The merchant's Alipay user id (PID, 2088...) that receives the money; notifies for any
    /// other seller are refused.
    #[arg(long, env = "ALIPAY_SELLER_ID")]
    pub alipay_seller_id: Option<String>,

    /// File of the application private key (PEM, or the bare base64 Alipay's key tool writes).
    #[arg(long, env = "ALIPAY_APP_PRIVATE_KEY_FILE")]
    pub alipay_app_private_key_file: Option<std::path::PathBuf>,

    /// File of the Alipay public key (PEM or bare base64), which verifies answers and notifies.
    #[arg(long, env = "ALIPAY_PUBLIC_KEY_FILE")]
    pub alipay_public_key_file: Option<std::path::PathBuf>,

    /// The gateway (a stand-in in tests and the demo; https://openapi-sandbox.dl.alipaydev.com/gateway.do
    /// for Alipay's own sandbox).
    #[arg(long, env = "ALIPAY_GATEWAY", default_value = orderflow_protocols::alipay::DEFAULT_GATEWAY)]
    pub alipay_gateway: String,

    /// Where Alipay sends notifies. Default: ORDERFLOW_PUBLIC_URL + /v1/webhooks/alipay.
    #[arg(long, env = "ALIPAY_NOTIFY_URL")]
    pub alipay_notify_url: Option<String>,

    /// How customers pay: `qr` (alipay.trade.precreate, a QR code for the Alipay app) or `page`
    /// (alipay.trade.page.pay, Alipay's desktop cashier).
    #[arg(long, env = "ALIPAY_CHANNEL", value_enum, default_value_t = AlipayChannelSetting::Qr)]
    pub alipay_channel: AlipayChannelSetting,

    /// Where Alipay's desktop cashier sends the customer back after paying (`page` only).
    #[arg(long, env = "ALIPAY_RETURN_URL")]
    pub alipay_return_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AlipayChannelSetting {
    #[default]
    Qr,
    Page,
}

impl AlipaySettings {
    /// The application's credentials, read from the configured files; `None` when Alipay is off.
    pub fn load(&self) -> anyhow::Result<Option<orderflow_protocols::alipay::MerchantConfig>> {
        use anyhow::Context as _;
        use orderflow_protocols::alipay::MerchantConfig;
        use orderflow_protocols::rsa_keys::{PrivateKey, PublicKey};
        let Some(app_id) = self.alipay_app_id.clone().filter(|a| !a.is_empty()) else {
            return Ok(None);
        };
        let seller_id = self
            .alipay_seller_id
            .clone()
            .filter(|s| !s.is_empty())
            .context("ALIPAY_APP_ID is set, so ALIPAY_SELLER_ID is required")?;
        let private_file = self
            .alipay_app_private_key_file
            .as_ref()
            .context("ALIPAY_APP_ID is set, so ALIPAY_APP_PRIVATE_KEY_FILE is required")?;
        let public_file = self
            .alipay_public_key_file
            .as_ref()
            .context("ALIPAY_APP_ID is set, so ALIPAY_PUBLIC_KEY_FILE is required")?;
        Ok(Some(MerchantConfig {
            app_id,
            seller_id,
            app_private_key: PrivateKey::from_text(&read_key_file(private_file)?)
                .with_context(|| format!("the app private key in {}", private_file.display()))?,
            alipay_public_key: PublicKey::from_text(&read_key_file(public_file)?)
                .with_context(|| format!("the Alipay public key in {}", public_file.display()))?,
        }))
    }

    pub fn channel(&self) -> orderflow_protocols::alipay::Channel {
        match self.alipay_channel {
            AlipayChannelSetting::Qr => orderflow_protocols::alipay::Channel::Qr,
            AlipayChannelSetting::Page => orderflow_protocols::alipay::Channel::Page,
        }
    }

    /// The notify URL sent with every payment.
    pub fn notify_url(&self, public_url: &str) -> String {
        notify_url_or_default(
            &self.alipay_notify_url,
            public_url,
            orderflow_protocols::alipay::PROVIDER,
        )
    }
}

/// The configured notify URL, else the shim's own webhook endpoint for `provider`.
fn notify_url_or_default(configured: &Option<String>, public_url: &str, provider: &str) -> String {
    configured.clone().unwrap_or_else(|| {
        format!(
            "{}/v1/webhooks/{provider}",
            public_url.trim_end_matches('/')
        )
    })
}

/// Reads a key or certificate file; the error names the file, never its content.
fn read_key_file(path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))
}

/// The sandbox payment gateway (provider `sandbox`: its charges, its checkout page and its
/// signed webhooks) is a development tool that anyone can pay with. Off unless switched on:
/// then the worker offers no provider `sandbox` (such an order is REJECTED `UNKNOWN_PROVIDER`)
/// and the shim has neither its webhook adapter nor its `/sandbox/...` pages.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct SandboxSettings {
    /// Switch on the sandbox payment gateway. Development only: never in production, where
    /// anyone could mark an order paid.
    #[arg(
        long = "sandbox",
        env = "ORDERFLOW_SANDBOX",
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub enabled: bool,
}

impl SandboxSettings {
    pub fn on() -> Self {
        SandboxSettings { enabled: true }
    }

    /// The warning a binary logs at start when the sandbox is on.
    pub fn warn_if_on(&self, binary: &str) {
        if self.enabled {
            tracing::warn!(
                binary,
                "the sandbox payment gateway is ON (ORDERFLOW_SANDBOX / --sandbox): anyone can pay \
                 any sandbox order with it; it must never be on in production"
            );
        }
    }
}

/// How hard the worker polls and how much it caches. Unset means the SDK's default (5 pollers
/// each, poller autoscaling when the server offers it). With the defaults only one workflow-task
/// poll is open on the shared (non-sticky) queue, which caps how fast new workflows start: raise
/// `--nonsticky-poll-ratio` or `--workflow-pollers` for bursts of new orders (`bench/run.sh` does).
#[derive(Debug, Clone, Default, Args)]
pub struct WorkerTuning {
    /// Most concurrent workflow-task polls (at least 2).
    #[arg(long, env = "ORDERFLOW_WORKFLOW_POLLERS")]
    pub workflow_pollers: Option<usize>,

    /// Most concurrent activity-task polls.
    #[arg(long, env = "ORDERFLOW_ACTIVITY_POLLERS")]
    pub activity_pollers: Option<usize>,

    /// Share of the workflow-task polls that go to the shared queue (new and evicted workflows)
    /// rather than this worker's sticky queue, 0 < ratio <= 1.
    #[arg(long, env = "ORDERFLOW_NONSTICKY_POLL_RATIO")]
    pub nonsticky_poll_ratio: Option<f32>,

    /// Workflows kept in memory between tasks (sticky cache).
    #[arg(long, env = "ORDERFLOW_MAX_CACHED_WORKFLOWS")]
    pub max_cached_workflows: Option<usize>,
}

impl WorkerTuning {
    pub(crate) fn apply(&self, options: &mut WorkerOptions) -> anyhow::Result<()> {
        use temporalio_sdk::runtime::PollerBehavior;
        if let Some(n) = self.workflow_pollers {
            anyhow::ensure!(n >= 2, "--workflow-pollers must be at least 2, got {n}");
            options.workflow_task_poller_behavior = Some(PollerBehavior::SimpleMaximum(n));
        }
        if let Some(n) = self.activity_pollers {
            anyhow::ensure!(n >= 1, "--activity-pollers must be at least 1, got {n}");
            options.activity_task_poller_behavior = Some(PollerBehavior::SimpleMaximum(n));
        }
        if let Some(ratio) = self.nonsticky_poll_ratio {
            anyhow::ensure!(
                ratio > 0.0 && ratio <= 1.0,
                "--nonsticky-poll-ratio must be in (0, 1], got {ratio}"
            );
            options.nonsticky_to_sticky_poll_ratio = ratio;
        }
        if let Some(n) = self.max_cached_workflows {
            options.max_cached_workflows = n;
        }
        Ok(())
    }
}

/// Order events: where the relay publishes them (`orderflow_relay`), declared once and flattened
/// into the worker and the CLI's `relay` and `events` commands. With no broker URL, events still
/// accumulate in the outbox (`orderflow events list`) and nothing is published.
#[derive(Debug, Clone, Args)]
pub struct EventSettings {
    /// NATS server with JetStream, e.g. nats://127.0.0.1:4222 (credentials in the URL are never
    /// printed). Unset: events are not published.
    #[arg(
        long,
        global = true,
        env = "ORDERFLOW_NATS_URL",
        hide_env_values = true
    )]
    pub nats_url: Option<SecretString>,

    /// The JetStream stream of order events (created on start if missing).
    #[arg(long, global = true, env = "ORDERFLOW_EVENTS_STREAM", default_value = DEFAULT_EVENTS_STREAM)]
    pub events_stream: String,

    /// Subject prefix: an event of type order.paid goes to `<prefix>.order.paid`.
    #[arg(long, global = true, env = "ORDERFLOW_EVENTS_SUBJECT_PREFIX", default_value = DEFAULT_EVENTS_SUBJECT_PREFIX)]
    pub events_subject_prefix: String,

    /// Hours the stream keeps an event (JetStream max_age).
    #[arg(long, global = true, env = "ORDERFLOW_EVENTS_STREAM_MAX_AGE_HOURS", default_value_t = DEFAULT_EVENTS_STREAM_MAX_AGE_HOURS)]
    pub events_stream_max_age_hours: u64,

    /// Seconds within which the stream drops a second publish of an event id. Longer than the
    /// relay's longest retry gap (checked on start).
    #[arg(long, global = true, env = "ORDERFLOW_EVENTS_DUPLICATE_WINDOW_SECS", default_value_t = DEFAULT_EVENTS_DUPLICATE_WINDOW_SECS)]
    pub events_duplicate_window_secs: u64,

    /// Hours a published event stays in the outbox before it is pruned.
    #[arg(long, global = true, env = "ORDERFLOW_EVENTS_RETENTION_HOURS", default_value_t = DEFAULT_EVENTS_RETENTION_HOURS)]
    pub events_retention_hours: u64,

    /// Run the event relay inside this worker (when a NATS URL is set). Off: run `orderflow
    /// relay` on its own instead.
    #[arg(long, env = "ORDERFLOW_EVENTS_RELAY", default_value_t = true, action = clap::ArgAction::Set)]
    pub events_relay: bool,
}

pub const DEFAULT_EVENTS_STREAM: &str = "ORDERFLOW_ORDERS";
pub const DEFAULT_EVENTS_SUBJECT_PREFIX: &str = "orderflow.orders";
pub const DEFAULT_EVENTS_STREAM_MAX_AGE_HOURS: u64 = 7 * 24;
pub const DEFAULT_EVENTS_DUPLICATE_WINDOW_SECS: u64 = 300;
pub const DEFAULT_EVENTS_RETENTION_HOURS: u64 = 72;

impl EventSettings {
    /// The stream's settings, when a broker is configured; an error for settings that could
    /// store an event twice.
    pub fn stream(&self) -> anyhow::Result<Option<orderflow_relay::jetstream::StreamSettings>> {
        let Some(url) = &self.nats_url else {
            return Ok(None);
        };
        let stream = orderflow_relay::jetstream::StreamSettings {
            url: url.expose_secret().to_owned(),
            stream: self.events_stream.clone(),
            subject_prefix: self.events_subject_prefix.clone(),
            max_age: std::time::Duration::from_secs(
                self.events_stream_max_age_hours.saturating_mul(3600),
            ),
            duplicate_window: std::time::Duration::from_secs(self.events_duplicate_window_secs),
        };
        stream.check(orderflow_relay::events::MAX_BACKOFF)?;
        Ok(Some(stream))
    }

    pub fn retention(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.events_retention_hours.saturating_mul(3600))
    }
}

/// The global flags of `orderflow`, before or after any subcommand.
#[derive(Debug, Clone, Args)]
pub struct CliSettings {
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(flatten)]
    pub connection: ConnectionSettings,

    /// Temporal UI base URL, for links to workflows.
    #[arg(long, global = true, env = "TEMPORAL_UI_URL", default_value = DEFAULT_TEMPORAL_UI_URL)]
    pub ui_url: String,

    #[command(flatten)]
    pub events: EventSettings,
}

/// Settings of `orderflow serve`, the HTTP shim.
#[derive(Debug, Clone, Args)]
pub struct ServeSettings {
    /// Address to listen on.
    #[arg(long, env = "ORDERFLOW_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: String,

    /// Secret the sandbox gateway signs its webhooks with (shared with the checkout page).
    #[arg(long, env = "ORDERFLOW_SANDBOX_WEBHOOK_SECRET", default_value = DEV_SANDBOX_WEBHOOK_SECRET, hide_default_value = true, hide_env_values = true)]
    pub sandbox_webhook_secret: SecretString,

    /// Where the sandbox checkout page delivers its webhooks (default: this shim's own endpoint).
    #[arg(long, env = "ORDERFLOW_SANDBOX_WEBHOOK_URL")]
    pub sandbox_webhook_url: Option<String>,

    /// Stripe webhook endpoint secrets (whsec_...), comma-separated: old and new during a rotation.
    /// Without any, Stripe webhooks are refused as from an unknown provider.
    #[arg(
        long,
        env = "STRIPE_WEBHOOK_SECRETS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub stripe_webhook_secrets: Vec<SecretString>,

    /// The Stripe account (acct_...) events must be for, if set.
    #[arg(long, env = "STRIPE_ACCOUNT_ID")]
    pub stripe_account_id: Option<String>,

    /// Seconds before a request is answered 408.
    #[arg(long, env = "ORDERFLOW_REQUEST_TIMEOUT_SECS", default_value_t = DEFAULT_REQUEST_TIMEOUT_SECS)]
    pub request_timeout_secs: u64,

    /// How long POST /v1/orders waits for the payment parameters before answering 202.
    #[arg(long, env = "ORDERFLOW_CREATE_WAIT_SECS", default_value_t = DEFAULT_CREATE_WAIT_SECS)]
    pub create_wait_secs: u64,

    /// Provider for an order that names none (e.g. `stripe`; `sandbox` in development). Unset:
    /// such an order is refused (422 PROVIDER_REQUIRED).
    #[arg(long, env = "ORDERFLOW_DEFAULT_PROVIDER")]
    pub default_provider: Option<String>,

    #[command(flatten)]
    pub sandbox: SandboxSettings,

    #[command(flatten)]
    pub wechatpay: WechatPaySettings,

    #[command(flatten)]
    pub alipay: AlipaySettings,

    /// Address of the admin listener: `/metrics`, `/healthz`, `/readyz`. Keep it private.
    #[arg(long, env = "ORDERFLOW_ADMIN_LISTEN", default_value = DEFAULT_ADMIN_LISTEN)]
    pub admin_listen: String,

    #[command(flatten)]
    pub limits: ShimLimits,

    /// Decide an order's stock when it is placed, before its workflow starts (for flash sales):
    /// a sold-out order is answered at once, recorded REJECTED, and costs no workflow. Off: the
    /// workflow reserves, as for any order. See activities/src/edge.rs.
    #[arg(long, env = "ORDERFLOW_RESERVE_AT_EDGE", default_value_t = false, action = clap::ArgAction::Set)]
    pub reserve_at_edge: bool,
}

/// How much the shim lets any one caller, and all callers together, ask of it.
#[derive(Debug, Clone, Args)]
pub struct ShimLimits {
    /// Requests per second per API key, sustained (429 with Retry-After above it).
    #[arg(long, env = "ORDERFLOW_API_RATE_PER_SEC", default_value_t = DEFAULT_API_RATE_PER_SEC)]
    pub api_rate_per_sec: u32,

    /// Requests per API key allowed at once above the sustained rate.
    #[arg(long, env = "ORDERFLOW_API_BURST", default_value_t = DEFAULT_API_BURST)]
    pub api_burst: u32,

    /// Webhook requests per second per provider (never shared with the API's limits).
    #[arg(long, env = "ORDERFLOW_WEBHOOK_RATE_PER_SEC", default_value_t = DEFAULT_WEBHOOK_RATE_PER_SEC)]
    pub webhook_rate_per_sec: u32,

    /// Order creations in flight at once; above it POST /v1/orders answers 503 with Retry-After.
    #[arg(long, env = "ORDERFLOW_MAX_INFLIGHT_CREATES", default_value_t = DEFAULT_MAX_INFLIGHT_CREATES)]
    pub max_inflight_creates: usize,

    /// Seconds a client has to send a request's headers before its connection is closed.
    #[arg(long, env = "ORDERFLOW_HEADER_READ_TIMEOUT_SECS", default_value_t = DEFAULT_HEADER_READ_TIMEOUT_SECS)]
    pub header_read_timeout_secs: u64,

    /// Open connections per client IP address; more are closed at once.
    #[arg(long, env = "ORDERFLOW_MAX_CONNECTIONS_PER_CLIENT", default_value_t = DEFAULT_MAX_CONNECTIONS_PER_CLIENT)]
    pub max_connections_per_client: usize,
}

impl ServeSettings {
    /// Defaults, as if no flag or variable were set (for tests and embedding).
    pub fn defaults() -> Self {
        defaults()
    }
}

/// Settings as if no flag or variable were set: the declared defaults, read by clap from the
/// declarations themselves (environment fallbacks switched off), so there is no second list.
pub fn defaults<T: Args>() -> T {
    let command = T::augment_args(clap::Command::new("defaults")).mut_args(|arg| arg.env(None));
    let matches = command
        .try_get_matches_from(["defaults"])
        .expect("every setting has a default or is optional");
    T::from_arg_matches(&matches).expect("defaults parse into their own settings")
}

/// An orders database URL. `{}` and `{:?}` show it with any password replaced by `***` (in the
/// user part or a `password=` parameter); [`DatabaseUrl::expose_secret`] gives the real one, for
/// connecting and for handing on to a child process.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The URL as given, password included.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// The URL with its password hidden, for logs and messages.
    pub fn redacted(&self) -> String {
        let raw = self.expose_secret();
        let Ok(mut url) = url::Url::parse(raw) else {
            // Not a URL: show the scheme at most, since where a password is cannot be known.
            let scheme = raw.split_once(':').map_or("", |(scheme, _)| scheme);
            return format!("{scheme}:<not a valid URL; not shown>");
        };
        if url.password().is_some() {
            // Only fails for URLs that cannot have credentials, which then have no password.
            let _ = url.set_password(Some(REDACTED));
        }
        if url.query_pairs().any(|(key, _)| key == "password") {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(key, value)| {
                    let value = if key == "password" {
                        REDACTED.to_owned()
                    } else {
                        value.into_owned()
                    };
                    (key.into_owned(), value)
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        url.into()
    }
}

impl From<String> for DatabaseUrl {
    fn from(url: String) -> Self {
        DatabaseUrl(url)
    }
}

impl From<&str> for DatabaseUrl {
    fn from(url: &str) -> Self {
        DatabaseUrl(url.to_owned())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DatabaseUrl")
            .field(&self.redacted())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DB_PASSWORD: &str = "db-PASSWORD-1";
    const STRIPE_KEY: &str = "sk_live_STRIPEKEY";
    const SANDBOX_SECRET: &str = "sandbox-SECRET";
    const WEBHOOK_SECRETS: [&str; 2] = ["whsec_OLDSECRET", "whsec_NEWSECRET"];

    /// `T` from command-line arguments, as the binaries parse it.
    fn parse<T: Args>(args: &[&str]) -> T {
        let command = T::augment_args(clap::Command::new("settings"));
        let matches = command
            .try_get_matches_from(std::iter::once("settings").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        T::from_arg_matches(&matches).unwrap()
    }

    fn database_url() -> String {
        format!("postgres://app:{DB_PASSWORD}@db.internal:5432/orders")
    }

    /// `{:?}` of the settings shows the database's host but none of `secrets`.
    fn assert_redacted(debug: &str, secrets: &[&str]) {
        for secret in secrets {
            assert!(!debug.contains(secret), "{secret:?} in {debug}");
        }
        assert!(
            debug.contains("postgres://app:***@db.internal:5432/orders"),
            "{debug}"
        );
    }

    #[test]
    fn no_settings_struct_prints_a_secret() {
        let url = database_url();
        let worker: WorkerSettings =
            parse(&["--database-url", &url, "--stripe-secret-key", STRIPE_KEY]);
        assert_redacted(&format!("{worker:?}"), &[DB_PASSWORD, STRIPE_KEY]);
        assert_redacted(&format!("{:?}", worker.connection), &[DB_PASSWORD]);

        let cli: CliSettings = parse(&["--database-url", &url]);
        assert_redacted(&format!("{cli:?}"), &[DB_PASSWORD]);

        let secrets = WEBHOOK_SECRETS.join(",");
        let serve: ServeSettings = parse(&[
            "--sandbox-webhook-secret",
            SANDBOX_SECRET,
            "--stripe-webhook-secrets",
            &secrets,
        ]);
        let debug = format!("{serve:?}");
        for secret in [SANDBOX_SECRET, WEBHOOK_SECRETS[0], WEBHOOK_SECRETS[1]] {
            assert!(!debug.contains(secret), "{secret:?} in {debug}");
        }
        let default_debug = format!("{:?}", ServeSettings::defaults());
        assert!(
            !default_debug.contains(DEV_SANDBOX_WEBHOOK_SECRET),
            "{default_debug}"
        );
    }

    #[test]
    fn secrets_reach_the_code_that_uses_them() {
        let url = database_url();
        let worker: WorkerSettings =
            parse(&["--database-url", &url, "--stripe-secret-key", STRIPE_KEY]);
        assert_eq!(worker.connection.database_url.expose_secret(), url);
        let key = worker.stripe_secret_key.as_ref().map(|k| k.expose_secret());
        assert_eq!(key, Some(STRIPE_KEY));

        let secrets = WEBHOOK_SECRETS.join(",");
        let serve: ServeSettings = parse(&["--stripe-webhook-secrets", &secrets]);
        let parsed: Vec<&str> = serve
            .stripe_webhook_secrets
            .iter()
            .map(|s| s.expose_secret())
            .collect();
        assert_eq!(parsed, WEBHOOK_SECRETS);
    }

    #[test]
    fn defaults_are_the_declared_constants() {
        let worker = WorkerSettings::defaults();
        assert_eq!(
            worker.connection.database_url.expose_secret(),
            DEFAULT_DATABASE_URL
        );
        assert_eq!(worker.connection.task_queue, DEFAULT_TASK_QUEUE);
        assert_eq!(worker.connection.public_url, DEFAULT_PUBLIC_URL);
        assert_eq!(worker.connection.temporal_address, None);
        assert_eq!(
            worker.connection.grpc_compression,
            GrpcCompressionSetting::Gzip
        );
        assert!(worker.search_attributes);
        assert!(worker.stripe_secret_key.is_none());
        assert_eq!(worker.shutdown_grace_secs, DEFAULT_SHUTDOWN_GRACE_SECS);
        assert_eq!(
            worker.payment_timeout_secs,
            orderflow_activities::DEFAULT_PAYMENT_TIMEOUT.as_secs()
        );

        let serve = ServeSettings::defaults();
        assert_eq!(serve.listen, DEFAULT_LISTEN);
        assert_eq!(
            serve.sandbox_webhook_secret.expose_secret(),
            DEV_SANDBOX_WEBHOOK_SECRET
        );
        assert!(serve.stripe_webhook_secrets.is_empty());
        assert_eq!(serve.request_timeout_secs, DEFAULT_REQUEST_TIMEOUT_SECS);
        assert_eq!(serve.create_wait_secs, DEFAULT_CREATE_WAIT_SECS);
        assert!(!serve.reserve_at_edge);
        assert_eq!(serve.default_provider, None);
        // The sandbox gateway is off unless switched on, in both binaries.
        assert!(!serve.sandbox.enabled);
        assert!(!worker.sandbox.enabled);

        let cli: CliSettings = defaults();
        assert_eq!(cli.ui_url, DEFAULT_TEMPORAL_UI_URL);
        assert!(!cli.json);
    }

    #[test]
    fn the_sandbox_switch_is_a_flag_with_an_optional_value() {
        let on = |args: &[&str]| -> (bool, bool) {
            let worker: WorkerSettings = parse(args);
            let serve: ServeSettings = parse(args);
            (worker.sandbox.enabled, serve.sandbox.enabled)
        };
        assert_eq!(on(&[]), (false, false));
        assert_eq!(on(&["--sandbox"]), (true, true));
        assert_eq!(on(&["--sandbox=true"]), (true, true));
        assert_eq!(on(&["--sandbox", "false"]), (false, false));
        let serve: ServeSettings = parse(&["--sandbox", "--default-provider", "sandbox"]);
        assert!(serve.sandbox.enabled);
        assert_eq!(serve.default_provider.as_deref(), Some("sandbox"));
    }

    fn fixture(path: &str) -> String {
        format!(
            "{}/../tests/fixtures/providers/{path}",
            env!("CARGO_MANIFEST_DIR")
        )
    }

    #[test]
    fn wechatpay_loads_from_its_files_and_never_prints_a_key() {
        let off: ServeSettings = parse(&[]);
        assert!(off.wechatpay.load().unwrap().is_none());
        let apiv3 = "0123456789abcdefABCDEF0123456789";
        let cert = fixture("wechatpay/platform_cert.pem");
        let key = fixture("wechatpay/merchant_private_key.pem");
        let pubkey = fixture("wechatpay/pubkey_public_key.pem");
        let args = [
            "--wechatpay-mchid",
            "1900000109",
            "--wechatpay-appid",
            "wxd678efh567hg6787",
            "--wechatpay-merchant-serial",
            "3A7E1C2B4D5F6071829304A5B6C7D8E9F0A1B2C3",
            "--wechatpay-merchant-key-file",
            &key,
            "--wechatpay-apiv3-key",
            apiv3,
            "--wechatpay-platform-cert-files",
            &cert,
            "--wechatpay-public-key-id",
            "PUB_KEY_ID_0114232134912410000000000000",
            "--wechatpay-public-key-file",
            &pubkey,
        ];
        let worker: WorkerSettings = parse(&args);
        let config = worker.wechatpay.load().unwrap().unwrap();
        let serials: Vec<&str> = config.verifier_keys.serials().collect();
        assert_eq!(
            serials,
            [
                "5157F09EFDC096DE15EBE81A47057A7232F1B8E1",
                "PUB_KEY_ID_0114232134912410000000000000"
            ]
        );
        for shown in [format!("{worker:?}"), format!("{config:?}")] {
            assert!(!shown.contains(apiv3), "{shown}");
            assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        }
        assert_eq!(
            worker.wechatpay.notify_url("https://shop.example/"),
            "https://shop.example/v1/webhooks/wechatpay"
        );

        // Each missing or unreadable piece is named, and nothing starts half-configured.
        let without = |flag: &str| -> String {
            let mut kept = Vec::new();
            let mut skip = false;
            for arg in args {
                if skip {
                    skip = false;
                } else if arg == flag {
                    skip = true;
                } else {
                    kept.push(arg);
                }
            }
            let settings: WorkerSettings = parse(&kept);
            format!("{:#}", settings.wechatpay.load().unwrap_err())
        };
        assert!(without("--wechatpay-appid").contains("WECHATPAY_APPID"));
        assert!(without("--wechatpay-apiv3-key").contains("WECHATPAY_APIV3_KEY"));
        assert!(without("--wechatpay-merchant-key-file").contains("WECHATPAY_MERCHANT_KEY_FILE"));
        assert!(without("--wechatpay-public-key-file").contains("go together"));
        let short_key: WorkerSettings = parse(&[
            "--wechatpay-mchid",
            "1",
            "--wechatpay-appid",
            "wx",
            "--wechatpay-merchant-serial",
            "S",
            "--wechatpay-merchant-key-file",
            &key,
            "--wechatpay-apiv3-key",
            "too-short",
            "--wechatpay-platform-cert-files",
            &cert,
        ]);
        let error = format!("{:#}", short_key.wechatpay.load().unwrap_err());
        assert!(
            error.contains("32 characters") && !error.contains("too-short"),
            "{error}"
        );
        let missing_file: WorkerSettings = parse(&[
            "--wechatpay-mchid",
            "1",
            "--wechatpay-appid",
            "wx",
            "--wechatpay-merchant-serial",
            "S",
            "--wechatpay-merchant-key-file",
            "/nonexistent/key.pem",
            "--wechatpay-apiv3-key",
            apiv3,
            "--wechatpay-platform-cert-files",
            &cert,
        ]);
        let error = format!("{:#}", missing_file.wechatpay.load().unwrap_err());
        assert!(error.contains("/nonexistent/key.pem"), "{error}");
        // A certificate file holding a key instead: refused at start, with the file named.
        let wrong: WorkerSettings = parse(&[
            "--wechatpay-mchid",
            "1",
            "--wechatpay-appid",
            "wx",
            "--wechatpay-merchant-serial",
            "S",
            "--wechatpay-merchant-key-file",
            &key,
            "--wechatpay-apiv3-key",
            apiv3,
            "--wechatpay-platform-cert-files",
            &key,
        ]);
        let error = format!("{:#}", wrong.wechatpay.load().unwrap_err());
        assert!(
            error.contains("platform certificate") && !error.contains("MII"),
            "{error}"
        );
    }

    #[test]
    fn alipay_loads_from_its_files() {
        let off: WorkerSettings = parse(&[]);
        assert!(off.alipay.load().unwrap().is_none());
        assert_eq!(
            off.alipay.channel(),
            orderflow_protocols::alipay::Channel::Qr
        );
        let private = fixture("alipay/app_private_key.pem");
        let public = fixture("alipay/alipay_public_key.pem");
        let serve: ServeSettings = parse(&[
            "--alipay-app-id",
            "2021000000000000",
            "--alipay-seller-id",
            "2088000000000000",
            "--alipay-app-private-key-file",
            &private,
            "--alipay-public-key-file",
            &public,
            "--alipay-channel",
            "page",
        ]);
        let config = serve.alipay.load().unwrap().unwrap();
        assert_eq!(
            (config.app_id.as_str(), config.seller_id.as_str()),
            ("2021000000000000", "2088000000000000")
        );
        assert_eq!(
            serve.alipay.channel(),
            orderflow_protocols::alipay::Channel::Page
        );
        assert!(!format!("{config:?}").contains("PRIVATE"));
        let no_seller: ServeSettings = parse(&[
            "--alipay-app-id",
            "2021000000000000",
            "--alipay-app-private-key-file",
            &private,
            "--alipay-public-key-file",
            &public,
        ]);
        let error = format!("{:#}", no_seller.alipay.load().unwrap_err());
        assert!(error.contains("ALIPAY_SELLER_ID"), "{error}");
        // The keys swapped: the public key file cannot sign.
        let swapped: ServeSettings = parse(&[
            "--alipay-app-id",
            "2021000000000000",
            "--alipay-seller-id",
            "2088000000000000",
            "--alipay-app-private-key-file",
            &public,
            "--alipay-public-key-file",
            &private,
        ]);
        let error = format!("{:#}", swapped.alipay.load().unwrap_err());
        assert!(error.contains("app private key"), "{error}");
    }

    /// House style: every variable a binary reads is in `.env.example`, set or commented out.
    #[test]
    fn every_variable_is_in_env_example() {
        let example = include_str!("../../.env.example");
        let listed = |name: &str| {
            example.lines().any(|line| {
                let line = line.trim_start_matches(['#', ' ']);
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('='))
            })
        };
        let commands = [
            WorkerSettings::augment_args(clap::Command::new("worker")),
            CliSettings::augment_args(clap::Command::new("cli")),
            ServeSettings::augment_args(clap::Command::new("serve")),
        ];
        let mut names = Vec::new();
        for command in &commands {
            names.extend(command.get_arguments().filter_map(|arg| arg.get_env()));
        }
        assert!(names.len() > 20, "{names:?}");
        for name in names {
            let name = name.to_str().expect("variable names are UTF-8");
            assert!(listed(name), "{name} is not in .env.example");
        }
    }

    #[test]
    fn database_urls_print_without_their_password() {
        let shown = |url: &str| DatabaseUrl::from(url).to_string();
        assert_eq!(
            shown("postgres://app:s3cret@db:5432/orders"),
            "postgres://app:***@db:5432/orders"
        );
        assert_eq!(
            shown("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(
            shown("postgres://app@db/orders?sslmode=require&password=s3cret"),
            "postgres://app@db/orders?sslmode=require&password=***"
        );
        // An `@` in the password, unescaped: the last `@` ends the credentials.
        assert_eq!(
            shown("postgres://app:p@ss@db/orders"),
            "postgres://app:***@db/orders"
        );
        assert_eq!(shown("sqlite://data/x.db"), "sqlite://data/x.db");
        assert_eq!(shown("sqlite::memory:"), "sqlite::memory:");
        assert_eq!(
            shown("postgres://app:s3cret@db:port/orders"),
            "postgres:<not a valid URL; not shown>"
        );
        assert_eq!(
            format!("{:?}", DatabaseUrl::from("postgres://app:s3cret@db/orders")),
            "DatabaseUrl(\"postgres://app:***@db/orders\")"
        );
    }
}
