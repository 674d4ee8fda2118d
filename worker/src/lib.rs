//! # orderflow-worker
//!
//! The library behind the `orderflow-worker` binary, and the pieces other binaries and the tests
//! share with it:
//!
//! * [`settings`]: every setting of every binary, from flags with environment fallbacks;
//!   secrets that never print.
//! * [`connect_temporal`]: a Temporal client from the SDK's envconfig (`TEMPORAL_ADDRESS`,
//!   `TEMPORAL_NAMESPACE`, TLS, API key, `temporal.toml` profiles), optionally pointed elsewhere.
//! * [`open_database`]: connect to `DATABASE_URL` and apply migrations.
//! * [`worker_options`]: registers `OrderWorkflow` and every activity on a task queue. The tests
//!   and [`replayer`] use the same registration, so what is tested is what runs.
//! * [`run`]: build and run until ctrl-c / SIGTERM, then drain gracefully.
//! * [`telemetry`]: the one tracing setup for all binaries.

pub mod dev_server;
pub mod settings;
pub mod telemetry;

// The types of this crate's own functions below.
pub use settings::{DatabaseUrl, GrpcCompressionSetting, WorkerSettings};

use anyhow::Context;
use orderflow_activities::db::Db;
use orderflow_activities::metrics::OrderMetrics;
use orderflow_activities::providers::Providers;
use orderflow_activities::providers::alipay::AlipayProvider;
use orderflow_activities::providers::sandbox::SandboxProvider;
use orderflow_activities::providers::stripe::StripeProvider;
use orderflow_activities::providers::wechatpay::WechatPayProvider;
use orderflow_activities::{OrderActivities, PaymentActivities};
use orderflow_workflows::{
    AfterSaleRefundWorkflow, LatePaymentWorkflow, NoopWorkflow, OrderWorkflow, OrderWorkflowConfig,
};
use settings::ExposeSecret;
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
pub async fn open_database(url: &DatabaseUrl) -> anyhow::Result<Db> {
    let db = Db::connect(url.expose_secret())
        .await
        .with_context(|| format!("opening the database {url}"))?;
    db.migrate().await?;
    Ok(db)
}

/// The payment providers this worker is configured for: the sandbox only when switched on
/// (`ORDERFLOW_SANDBOX`, development only), Stripe when a secret key is set, WeChat Pay and Alipay
/// when their merchant ids are (their keys are read here). An order naming
/// any other is rejected `UNKNOWN_PROVIDER` by its workflow.
pub fn providers(db: &Db, settings: &WorkerSettings) -> anyhow::Result<Providers> {
    let mut providers = Providers::default().with_pay_page(format!(
        "{}/pay",
        settings.connection.public_url.trim_end_matches('/')
    ));
    if settings.sandbox.enabled {
        providers = providers.with(Arc::new(SandboxProvider::new(
            db.clone(),
            &settings.connection.public_url,
        )));
    }
    if let Some(key) = settings
        .stripe_secret_key
        .as_ref()
        .map(|k| k.expose_secret())
        .filter(|k| !k.is_empty())
    {
        let stripe = StripeProvider::new(db.clone(), key)
            .context("building the Stripe client")?
            .with_base_url(settings.stripe_api_base.clone());
        providers = providers.with(Arc::new(stripe));
    }
    let public_url = &settings.connection.public_url;
    if let Some(config) = settings.wechatpay.load()? {
        let wechatpay = WechatPayProvider::new(
            Arc::new(config),
            settings.wechatpay.wechatpay_api_base.clone(),
            settings.wechatpay.notify_url(public_url),
        )
        .context("building the WeChat Pay client")?;
        providers = providers.with(Arc::new(wechatpay));
    }
    if let Some(config) = settings.alipay.load()? {
        let alipay = AlipayProvider::new(
            Arc::new(config),
            settings.alipay.alipay_gateway.clone(),
            settings.alipay.notify_url(public_url),
            settings.alipay.channel(),
            settings.alipay.alipay_return_url.clone(),
        )
        .context("building the Alipay client")?;
        providers = providers.with(Arc::new(alipay));
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
    options.register_workflow_with_factory::<AfterSaleRefundWorkflow, _>(move || {
        AfterSaleRefundWorkflow::new(config)
    })?;
    // Does nothing: the server-ceiling benchmark (`orderflow-load --workflow noop`) runs it.
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
    options
        .register_activities(PaymentActivities::new(db.clone(), providers).with_metrics(metrics));
    Ok(options)
}

/// Worker options with nothing registered yet: the task queue, the failure policy and the
/// shutdown grace period every Orderflow worker uses.
pub fn empty_worker_options(settings: &WorkerSettings) -> WorkerOptions {
    let mut options = WorkerOptions::new(settings.connection.task_queue.clone())
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
    options.register_workflow_with_factory::<AfterSaleRefundWorkflow, _>(move || {
        AfterSaleRefundWorkflow::new(config)
    })?;
    // The same workflow interceptors as the worker, so replay runs the code that runs live.
    options.workflow_interceptor(telemetry::workflow_interceptor());
    Ok(WorkflowReplayer::new(options)?)
}

/// A worker ready to run.
pub struct BuiltWorker {
    pub worker: Worker,
    pub db: Db,
    /// The Prometheus meter, when the worker serves metrics.
    pub meter: Option<Arc<dyn CoreMeter>>,
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
    let telemetry = TelemetryOptions::builder()
        .maybe_metrics(meter.clone())
        .build();
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
        meter,
        _runtime: runtime,
    })
}

/// Starts the order events' relay and the outbox's pruning in the background, when a broker is
/// configured; returns their tasks (none without a broker). The worker runs it unless
/// `ORDERFLOW_EVENTS_RELAY=false`; `orderflow relay` runs it alone.
pub fn spawn_event_relay(
    db: &Db,
    settings: &settings::EventSettings,
    meter: Option<Arc<dyn CoreMeter>>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let Some(stream) = settings.stream()? else {
        tracing::info!(
            "order events are kept in the outbox and not published (ORDERFLOW_NATS_URL is unset)"
        );
        return Ok(Vec::new());
    };
    let mut relay = orderflow_relay::events::EventRelay::new(
        db.clone(),
        Arc::new(orderflow_relay::jetstream::JetStreamSink::new(stream)),
    );
    if let Some(meter) = meter {
        relay = relay.with_metrics(meter);
    }
    Ok(vec![
        tokio::spawn(orderflow_relay::run(
            relay,
            Arc::new(tokio::sync::Notify::new()),
            orderflow_relay::events::pacing(),
        )),
        tokio::spawn(orderflow_relay::events::prune_forever(
            db.clone(),
            settings.retention(),
            std::time::Duration::from_secs(60),
        )),
    ])
}

/// A worker from options built elsewhere (tests register altered workflows this way).
pub fn build_with(options: WorkerOptions, client: Client, db: Db) -> anyhow::Result<BuiltWorker> {
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let worker = Worker::new(&runtime, client, options)?;
    Ok(BuiltWorker {
        worker,
        db,
        meter: None,
        _runtime: runtime,
    })
}

/// Runs the worker until ctrl-c or SIGTERM, then lets in-flight tasks finish.
pub async fn run(settings: WorkerSettings) -> anyhow::Result<()> {
    settings.sandbox.warn_if_on("orderflow-worker");
    let connection = &settings.connection;
    let db = open_database(&connection.database_url).await?;
    let client = connect_temporal(
        connection.temporal_address.as_deref(),
        connection.grpc_compression,
    )
    .await?;
    let mut built = build(&settings, client, db).await?;
    let relay = if settings.events.events_relay {
        spawn_event_relay(&built.db, &settings.events, built.meter.clone())?
    } else {
        Vec::new()
    };
    let shutdown = built.worker.shutdown_handle();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested; finishing in-flight tasks");
        shutdown();
    });
    tracing::info!(
        task_queue = %connection.task_queue,
        database = %connection.database_url,
        payment_timeout_secs = settings.payment_timeout_secs,
        "orderflow-worker running"
    );
    built.worker.run().await?;
    // Unmarked events are published again by the next relay, under the same ids.
    relay.iter().for_each(tokio::task::JoinHandle::abort);
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
