//! # orderflow-worker
//!
//! The library behind the `orderflow-worker` binary, and the pieces other binaries and the tests
//! share with it:
//!
//! * [`WorkerSettings`]: every setting, from flags with environment fallbacks.
//! * [`connect_temporal`]: a Temporal client from the SDK's envconfig (`TEMPORAL_ADDRESS`,
//!   `TEMPORAL_NAMESPACE`, TLS, API key, `temporal.toml` profiles), optionally pointed elsewhere.
//! * [`open_database`]: connect to `DATABASE_URL` and apply migrations.
//! * [`worker_options`]: registers `OrderWorkflow` and every activity on a task queue. The tests
//!   and [`replayer`] use the same registration, so what is tested is what runs.
//! * [`run`]: build and run until ctrl-c / SIGTERM, then drain gracefully.
//! * [`telemetry`]: the one tracing setup for all binaries.

pub mod dev_server;
pub mod telemetry;

use anyhow::Context;
use orderflow_activities::db::{DEFAULT_DATABASE_URL, Db};
use orderflow_activities::metrics::OrderMetrics;
use orderflow_activities::providers::Providers;
use orderflow_activities::providers::sandbox::SandboxProvider;
use orderflow_activities::providers::stripe::StripeProvider;
use orderflow_activities::{
    DEFAULT_PAYMENT_TIMEOUT, InventoryActivities, OrderActivities, PaymentActivities,
};
use orderflow_workflows::{
    DEFAULT_TASK_QUEUE, LatePaymentWorkflow, NoopWorkflow, OrderWorkflow, OrderWorkflowConfig,
};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use temporalio_client::envconfig::LoadClientConfigProfileOptions;
use temporalio_client::{Client, ClientOptions, Connection, GrpcCompression};
use temporalio_common::telemetry::metrics::CoreMeter;
use temporalio_common::telemetry::{
    PrometheusExporterOptions, TelemetryOptions, start_prometheus_metric_exporter,
};
use temporalio_sdk::runtime::{RuntimeOptions, WorkflowErrorType};
use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};
use temporalio_sdk::{Runtime, Worker, WorkerOptions};

/// Where the sandbox's hosted checkout page is served (the HTTP shim).
pub const DEFAULT_PUBLIC_URL: &str = "http://127.0.0.1:8080";

/// Settings of `orderflow-worker`. Temporal's own connection settings are not here: they come
/// from the SDK's envconfig (see [`connect_temporal`]).
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerSettings {
    /// Task queue to poll.
    #[arg(long, env = "ORDERFLOW_TASK_QUEUE", default_value = DEFAULT_TASK_QUEUE)]
    pub task_queue: String,

    /// Orders database: sqlite://path/to/file.db or postgres://user@host:port/db.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,

    /// Default time a customer has to pay, in seconds (an order may ask for its own).
    #[arg(long, env = "ORDERFLOW_PAYMENT_TIMEOUT_SECS", default_value_t = DEFAULT_PAYMENT_TIMEOUT.as_secs())]
    pub payment_timeout_secs: u64,

    /// Public base URL of the HTTP shim, used in sandbox checkout links.
    #[arg(long, env = "ORDERFLOW_PUBLIC_URL", default_value = DEFAULT_PUBLIC_URL)]
    pub public_url: String,

    /// Keep the OrderStatus search attribute current. Turn off only for a server without custom
    /// search attributes (the time-skipping test server).
    #[arg(long, env = "ORDERFLOW_SEARCH_ATTRIBUTES", default_value_t = true, action = clap::ArgAction::Set)]
    pub search_attributes: bool,

    /// Run order steps as local activities first (fewer server round trips; a step that keeps
    /// failing moves to a regular, visible activity). Must be the same on every worker of a
    /// task queue, like the workflow code.
    #[arg(long, env = "ORDERFLOW_LOCAL_STEPS", default_value_t = true, action = clap::ArgAction::Set)]
    pub local_steps: bool,

    /// Fewer, larger steps for new orders (patched "lean-tasks": one search-attribute upsert per
    /// resting point, one provider step to close, one transaction per ending). Needs local
    /// steps. On by default; off only to measure what it buys (`bench/run.sh`). Same on every
    /// worker of a queue.
    #[arg(long, env = "ORDERFLOW_LEAN_TASKS", default_value_t = true, action = clap::ArgAction::Set)]
    pub lean_tasks: bool,

    /// Merged steps for new orders (patched "merged-steps": `open_order` records, reserves,
    /// creates the payment and marks AWAITING_PAYMENT; `close_order` closes the charge and records
    /// the ending). Needs lean tasks. On by default; off only to measure what it buys. Same on
    /// every worker of a queue.
    #[arg(long, env = "ORDERFLOW_MERGED_STEPS", default_value_t = true, action = clap::ArgAction::Set)]
    pub merged_steps: bool,

    /// Stripe secret key (sk_...). When set, orders can pay with provider `stripe`.
    #[arg(long, env = "STRIPE_SECRET_KEY", hide_env_values = true)]
    pub stripe_secret_key: Option<String>,

    /// Base URL of Stripe's API (a stand-in in tests).
    #[arg(long, env = "STRIPE_API_BASE", default_value = orderflow_activities::providers::stripe::DEFAULT_BASE_URL)]
    pub stripe_api_base: String,

    /// Serve Prometheus metrics (the SDK's worker metrics and Orderflow's business metrics) on this
    /// address, e.g. 0.0.0.0:9464. Off when unset.
    #[arg(long, env = "ORDERFLOW_METRICS_ADDRESS")]
    pub metrics_address: Option<std::net::SocketAddr>,

    /// Seconds to let running activities finish after ctrl-c / SIGTERM.
    #[arg(long, env = "ORDERFLOW_SHUTDOWN_GRACE_SECS", default_value_t = 20)]
    pub shutdown_grace_secs: u64,

    /// gRPC compression to the Temporal server (see [`GrpcCompressionSetting`]).
    #[arg(long, env = "ORDERFLOW_GRPC_COMPRESSION", value_enum, default_value_t = GrpcCompressionSetting::Gzip)]
    pub grpc_compression: GrpcCompressionSetting,

    #[command(flatten)]
    pub tuning: WorkerTuning,
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

/// How hard the worker polls and how much it caches. Unset means the SDK's default (5 pollers
/// each, poller autoscaling when the server offers it). With the defaults only one workflow-task
/// poll is open on the shared (non-sticky) queue, which caps how fast new workflows start: raise
/// `--nonsticky-poll-ratio` or `--workflow-pollers` for bursts of new orders (`bench/run.sh` does).
#[derive(Debug, Clone, Default, clap::Args)]
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
    fn apply(&self, options: &mut WorkerOptions) -> anyhow::Result<()> {
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

impl WorkerSettings {
    /// Defaults, as if no flag or variable were set (for tests and embedding).
    pub fn defaults() -> Self {
        WorkerSettings {
            task_queue: DEFAULT_TASK_QUEUE.to_owned(),
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            payment_timeout_secs: DEFAULT_PAYMENT_TIMEOUT.as_secs(),
            public_url: DEFAULT_PUBLIC_URL.to_owned(),
            search_attributes: true,
            local_steps: true,
            lean_tasks: true,
            merged_steps: true,
            stripe_secret_key: None,
            stripe_api_base: orderflow_activities::providers::stripe::DEFAULT_BASE_URL.to_owned(),
            metrics_address: None,
            shutdown_grace_secs: 20,
            grpc_compression: GrpcCompressionSetting::Gzip,
            tuning: WorkerTuning::default(),
        }
    }

    pub fn workflow_config(&self) -> OrderWorkflowConfig {
        OrderWorkflowConfig {
            search_attributes: self.search_attributes,
            local_steps: self.local_steps,
            lean_tasks: self.lean_tasks,
            merged_steps: self.merged_steps,
        }
    }
}

/// A Temporal client configured the way every Temporal tool is: `TEMPORAL_ADDRESS`,
/// `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`, TLS variables and `temporal.toml` profiles.
/// `address_override` (tests) replaces only the target address.
pub async fn connect_temporal(
    address_override: Option<&str>,
    compression: GrpcCompressionSetting,
) -> anyhow::Result<Client> {
    let (mut conn_opts, client_opts) = ClientOptions::load_from_config(
        LoadClientConfigProfileOptions::default(),
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "reading the Temporal client configuration (TEMPORAL_* variables, temporal.toml): {e}"
        )
    })?;
    if let Some(address) = address_override {
        let with_scheme = if address.contains("://") {
            address.to_owned()
        } else {
            format!("http://{address}")
        };
        conn_opts.target = with_scheme
            .parse()
            .with_context(|| format!("invalid Temporal address {address:?}"))?;
    }
    let target = conn_opts.target.to_string();
    conn_opts.connect_timeout = Some(Duration::from_secs(5));
    conn_opts.grpc_compression = match compression {
        GrpcCompressionSetting::Gzip => GrpcCompression::Gzip,
        GrpcCompressionSetting::None => GrpcCompression::None,
    };
    let connection = Connection::connect(conn_opts)
        .await
        .with_context(|| format!("cannot reach the Temporal server at {target}; is it running?"))?;
    Ok(Client::new(connection, client_opts)?)
}

/// Connects to the orders database and brings its schema up to date.
pub async fn open_database(url: &str) -> anyhow::Result<Db> {
    let db = Db::connect(url)
        .await
        .with_context(|| format!("opening the database {}", redact_url(url)))?;
    db.migrate().await?;
    Ok(db)
}

/// The payment providers this worker is configured for: always the sandbox, Stripe when a
/// secret key is set.
pub fn providers(db: &Db, settings: &WorkerSettings) -> anyhow::Result<Providers> {
    let mut providers = Providers::default().with(Arc::new(SandboxProvider::new(
        db.clone(),
        &settings.public_url,
    )));
    if let Some(key) = settings
        .stripe_secret_key
        .as_deref()
        .filter(|k| !k.is_empty())
    {
        let stripe = StripeProvider::new(db.clone(), key)
            .context("building the Stripe client")?
            .with_base_url(settings.stripe_api_base.clone());
        providers = providers.with(Arc::new(stripe));
    }
    Ok(providers)
}

/// Worker options with `OrderWorkflow` and all activities registered. Non-determinism fails the
/// workflow (visible in the UI) instead of retrying its task forever.
pub fn worker_options(settings: &WorkerSettings, db: &Db) -> anyhow::Result<WorkerOptions> {
    worker_options_with_metrics(settings, db, None)
}

/// [`worker_options`], with the activities recording business metrics on `metrics`.
pub fn worker_options_with_metrics(
    settings: &WorkerSettings,
    db: &Db,
    metrics: Option<Arc<OrderMetrics>>,
) -> anyhow::Result<WorkerOptions> {
    let mut options = empty_worker_options(settings);
    settings.tuning.apply(&mut options)?;
    let config = settings.workflow_config();
    options
        .register_workflow_with_factory::<OrderWorkflow, _>(move || OrderWorkflow::new(config))?;
    options.register_workflow::<LatePaymentWorkflow>()?;
    // Does nothing: the server-ceiling benchmark (`orderflow load --workflow noop`) runs it.
    options.register_workflow::<NoopWorkflow>()?;
    let providers = providers(db, settings)?;
    options.register_activities(
        OrderActivities::new(
            db.clone(),
            Duration::from_secs(settings.payment_timeout_secs),
            &providers,
        )
        .with_metrics(metrics.clone()),
    );
    options.register_activities(InventoryActivities::new(db.clone()).with_metrics(metrics.clone()));
    options
        .register_activities(PaymentActivities::new(db.clone(), providers).with_metrics(metrics));
    Ok(options)
}

/// Worker options with nothing registered yet: the task queue, the failure policy and the
/// shutdown grace period every Orderflow worker uses.
pub fn empty_worker_options(settings: &WorkerSettings) -> WorkerOptions {
    let mut options = WorkerOptions::new(settings.task_queue.clone())
        .workflow_failure_errors(HashSet::from([WorkflowErrorType::Nondeterminism]))
        .graceful_shutdown_period(Duration::from_secs(settings.shutdown_grace_secs))
        .build();
    // Trace context from the order's start header on to its activities' spans.
    telemetry::register(&mut options);
    options
}

/// A replayer with the same workflow registration as the worker.
pub fn replayer(config: OrderWorkflowConfig) -> anyhow::Result<WorkflowReplayer> {
    let mut options = WorkflowReplayerOptions::new()
        .workflow_failure_errors(HashSet::from([WorkflowErrorType::Nondeterminism]))
        .build();
    options
        .register_workflow_with_factory::<OrderWorkflow, _>(move || OrderWorkflow::new(config))?;
    options.register_workflow::<LatePaymentWorkflow>()?;
    // The same workflow interceptors as the worker, so replay runs the code that runs live.
    options.workflow_interceptor(telemetry::workflow_interceptor());
    Ok(WorkflowReplayer::new(options)?)
}

/// A worker ready to run.
pub struct BuiltWorker {
    pub worker: Worker,
    pub db: Db,
    // Keeps the SDK core runtime alive as long as the worker.
    _runtime: Runtime,
}

/// The production worker: registration, and the Prometheus endpoint when configured (one meter
/// for the SDK's own worker metrics and the activities' business metrics).
pub async fn build(
    settings: &WorkerSettings,
    client: Client,
    db: Db,
) -> anyhow::Result<BuiltWorker> {
    let meter: Option<Arc<dyn CoreMeter>> = match settings.metrics_address {
        Some(address) => {
            let started = start_prometheus_metric_exporter(
                PrometheusExporterOptions::builder()
                    .socket_addr(address)
                    .counters_total_suffix(false)
                    .build(),
            )
            .with_context(|| format!("serving metrics on {address}"))?;
            tracing::info!(address = %started.bound_addr, "metrics at /metrics");
            Some(started.meter)
        }
        None => None,
    };
    let metrics = meter.clone().map(OrderMetrics::new);
    let options = worker_options_with_metrics(settings, &db, metrics)?;
    let telemetry = TelemetryOptions::builder().maybe_metrics(meter).build();
    let runtime = Runtime::from_current_tokio(
        RuntimeOptions::builder()
            .telemetry_options(telemetry)
            .build()
            .map_err(|e| anyhow::anyhow!("runtime options: {e}"))?,
    )?;
    let worker = Worker::new(&runtime, client, options)?;
    Ok(BuiltWorker {
        worker,
        db,
        _runtime: runtime,
    })
}

/// A worker from options built elsewhere (tests register altered workflows this way).
pub fn build_with(options: WorkerOptions, client: Client, db: Db) -> anyhow::Result<BuiltWorker> {
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let worker = Worker::new(&runtime, client, options)?;
    Ok(BuiltWorker {
        worker,
        db,
        _runtime: runtime,
    })
}

/// Runs the worker until ctrl-c or SIGTERM, then lets in-flight tasks finish.
pub async fn run(settings: WorkerSettings) -> anyhow::Result<()> {
    let db = open_database(&settings.database_url).await?;
    let client = connect_temporal(None, settings.grpc_compression).await?;
    let mut built = build(&settings, client, db).await?;
    let shutdown = built.worker.shutdown_handle();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested; finishing in-flight tasks");
        shutdown();
    });
    tracing::info!(
        task_queue = %settings.task_queue,
        database = %redact_url(&settings.database_url),
        payment_timeout_secs = settings.payment_timeout_secs,
        "orderflow-worker running"
    );
    built.worker.run().await?;
    built.db.close().await;
    tracing::info!("orderflow-worker stopped");
    Ok(())
}

/// Resolves on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Hides a password in a database URL before it is logged.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/orders"),
            "postgres://app:***@db:5432/orders"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(redact_url("sqlite://data/x.db"), "sqlite://data/x.db");
    }
}
